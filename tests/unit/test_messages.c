/*
 * test_messages.c: message validation and stamping, driven by data (as jansson does):
 *   tests/data/messages/valid/NAME.json            must parse; its stamp must read back
 *                                                  through mqc_stamped_parse unchanged
 *   tests/data/messages/invalid/CASE/input.json    must be refused,
 *   tests/data/messages/invalid/CASE/expected      line 1: the mqc_msg_err name,
 *                                                  line 2: a substring of the reason
 * The data directory comes from MQCHAT_TEST_DATA (set by CTest).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mqchat_store.h"

static const char *err_names[] = { "MQC_MSG_OK", "MQC_MSG_TOO_LARGE", "MQC_MSG_BAD_JSON",
	"MQC_MSG_BAD_TYPE", "MQC_MSG_BAD_FIELD", "MQC_MSG_MISSING", "MQC_MSG_INTERNAL" };

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if(f == NULL) return NULL;
	if(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0){
		buf = malloc((size_t)n + 1);
		if(buf && fread(buf, 1, (size_t)n, f) != (size_t)n){
			free(buf);
			buf = NULL;
		}else if(buf){
			buf[n] = '\0';
			*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted entries of dir (without . and ..) that end in suffix ("" for all). */
static int list_dir(const char *dir, const char *suffix, char ***out)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	int n = 0;

	*out = NULL;
	if(d == NULL) return -1;
	while((e = readdir(d)) != NULL){
		size_t l = strlen(e->d_name), sl = strlen(suffix);
		if(e->d_name[0] == '.') continue;
		if(l < sl || strcmp(e->d_name + l - sl, suffix)) continue;
		names = realloc(names, sizeof(char *) * (size_t)(n + 1));
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(char *), cmp_names);
	*out = names;
	return n;
}

static bool same_str(const char *a, const json_t *b)
{
	if(a == NULL || b == NULL) return a == NULL && b == NULL;
	return json_is_string(b) && !strcmp(a, json_string_value(b));
}

static void check_valid(const char *path, const char *name)
{
	static void *(*alloc)(size_t) = malloc;
	char *buf, reason[256] = "";
	char *stamped;
	size_t len = 0, slen = 0;
	json_t *msg = NULL;
	mqc_stamped st;
	mqc_msg_err rc;
	uint64_t id = 7265409843200001ULL;
	int64_t ts = 1764000000123LL;

	buf = slurp(path, &len);
	CHECKF(buf != NULL, "cannot read %s", path);
	if(buf == NULL) return;
	rc = mqc_msg_parse(buf, len, NULL, &msg, reason, sizeof(reason));
	CHECKF(rc == MQC_MSG_OK, "%s: %s (%s)", name, err_names[rc], reason);
	if(rc != MQC_MSG_OK){
		free(buf);
		return;
	}
	/* the server's fields never survive parsing */
	CHECKF(json_object_get(msg, "id") == NULL && json_object_get(msg, "room") == NULL
			&& json_object_get(msg, "from") == NULL && json_object_get(msg, "ts") == NULL, "%s", name);

	stamped = mqc_msg_stamp(msg, id, "rAbC123", "alice", ts, alloc, &slen);
	CHECKF(stamped != NULL, "%s: stamp failed", name);
	if(stamped){
		const char *order[] = { "{\"id\":", ",\"room\":", ",\"from\":", ",\"ts\":", ",\"type\":",
			",\"body\":", ",\"attachment\":", ",\"client_msg_id\":" };
		const char *head = "{\"id\":7265409843200001,\"room\":\"rAbC123\",\"from\":\"alice\",\"ts\":1764000000123,\"type\":";
		const char *at = stamped, *p;
		size_t i;

		CHECKF(strlen(stamped) == slen, "%s", name);
		CHECKF(strncmp(stamped, head, strlen(head)) == 0, "%s: %.200s", name, stamped);
		CHECKF(stamped[slen - 1] == '}', "%s", name);
		/* field order as documented; a key cannot appear inside a string value, where
		 * every '"' is escaped */
		for(i = 0; i < sizeof(order)/sizeof(order[0]); i++){
			p = strstr(stamped, order[i]);
			if(p){
				CHECKF(p >= at, "%s: %s out of order in %.200s", name, order[i], stamped);
				at = p;
			}
		}
		CHECKF(mqc_stamped_parse(stamped, slen, &st, reason, sizeof(reason)) == 0, "%s: %s", name, reason);
		if(st.root){
			const json_t *att = json_object_get(msg, "attachment");
			CHECK(st.id == id);
			CHECK(!strcmp(st.room, "rAbC123"));
			CHECK(!strcmp(st.from, "alice"));
			CHECK(st.ts == ts);
			CHECKF(same_str(st.type, json_object_get(msg, "type")), "%s", name);
			CHECKF(same_str(st.body, json_object_get(msg, "body")), "%s", name);
			CHECKF(same_str(st.client_msg_id, json_object_get(msg, "client_msg_id")), "%s", name);
			CHECKF((att == NULL && st.attachment == NULL) || json_equal(att, st.attachment), "%s", name);
			CHECKF(json_object_size(st.root) == 4 + json_object_size(msg), "%s", name);
			json_decref(st.root);
		}
		free(stamped);
	}
	json_decref(msg);
	free(buf);
}

static void check_invalid(const char *dir, const char *name)
{
	char path[1024], reason[512] = "";
	char *input = NULL, *expected = NULL, *nl, *want_reason;
	size_t len = 0, elen = 0;
	json_t *msg = (json_t *)1;
	mqc_msg_err rc;

	if(snprintf(path, sizeof(path), "%s/%s/expected", dir, name) >= (int)sizeof(path)) goto toolong;
	expected = slurp(path, &elen);
	CHECKF(expected != NULL, "cannot read %s", path);
	if(snprintf(path, sizeof(path), "%s/%s/input.json", dir, name) >= (int)sizeof(path)) goto toolong;
	input = slurp(path, &len);
	CHECKF(input != NULL, "cannot read %s", path);
	if(expected == NULL || input == NULL) goto done;

	nl = strchr(expected, '\n');
	CHECKF(nl != NULL, "%s: expected needs two lines", name);
	if(nl == NULL) goto done;
	*nl = '\0';
	want_reason = nl + 1;
	nl = strchr(want_reason, '\n');
	if(nl) *nl = '\0';
	CHECKF(want_reason[0] != '\0', "%s: expected line 2 (reason) is empty", name);

	rc = mqc_msg_parse(input, len, NULL, &msg, reason, sizeof(reason));
	CHECKF(rc != MQC_MSG_OK, "%s: accepted", name);
	CHECKF(msg == NULL, "%s: *out not NULL on failure", name);
	if(rc == MQC_MSG_OK) json_decref(msg);
	CHECKF(!strcmp(err_names[rc], expected), "%s: got %s, expected %s (reason: %s)",
			name, err_names[rc], expected, reason);
	CHECKF(strstr(reason, want_reason) != NULL, "%s: reason \"%s\" lacks \"%s\"", name, reason, want_reason);
	CHECKF(strchr(reason, '\n') == NULL, "%s: reason is not one line", name);
done:
	free(expected);
	free(input);
	return;
toolong:
	CHECKF(0, "%s/%s: path too long", dir, name);
	goto done;
}

/* What the data files cannot say: custom limits, NULL reason, and stamped_parse refusals. */
static void check_fixed(void)
{
	mqc_msg_limits lim = { .max_body = 5, .max_payload = 40 };
	char reason[256];
	json_t *msg = NULL;
	mqc_stamped st;
	const char *ok5 = "{\"type\":\"msg\",\"body\":\"12345\"}";
	const char *long6 = "{\"type\":\"msg\",\"body\":\"123456\"}";
	const char *big = "{\"type\":\"msg\",\"body\":\"1\",\"client_msg_id\":\"abcdefghijkl\"}";
	const char *bad_stamped[] = {
		"[]",
		"{\"room\":\"r1\",\"from\":\"a\",\"ts\":1,\"type\":\"msg\",\"body\":\"x\"}",
		"{\"id\":0,\"room\":\"r1\",\"from\":\"a\",\"ts\":1,\"type\":\"msg\",\"body\":\"x\"}",
		"{\"id\":9007199254740992,\"room\":\"r1\",\"from\":\"a\",\"ts\":1,\"type\":\"msg\"}",
		"{\"id\":1,\"room\":\"r/1\",\"from\":\"a\",\"ts\":1,\"type\":\"msg\",\"body\":\"x\"}",
		"{\"id\":1,\"room\":\"r1\",\"ts\":1,\"type\":\"msg\",\"body\":\"x\"}",
		"{\"id\":1,\"room\":\"r1\",\"from\":\"a\",\"ts\":\"1\",\"type\":\"msg\",\"body\":\"x\"}",
		"{\"id\":1,\"room\":\"r1\",\"from\":\"a\",\"ts\":1,\"type\":\"gif\",\"body\":\"x\"}",
		"{\"id\":1,\"room\":\"r1\",\"from\":\"a\",\"ts\":1,\"type\":\"msg\",\"body\":1}",
		"{\"id\":1,\"room\":\"r1\",\"from\":\"a\",\"ts\":1,\"type\":\"file\",\"attachment\":\"x\"}",
	};
	size_t i;

	CHECK(mqc_msg_parse(ok5, strlen(ok5), &lim, &msg, reason, sizeof(reason)) == MQC_MSG_OK);
	json_decref(msg);
	CHECK(mqc_msg_parse(long6, strlen(long6), &lim, &msg, reason, sizeof(reason)) == MQC_MSG_TOO_LARGE);
	CHECKF(strstr(reason, "body: exceeds 5 bytes") != NULL, "%s", reason);
	CHECK(mqc_msg_parse(big, strlen(big), &lim, &msg, reason, sizeof(reason)) == MQC_MSG_TOO_LARGE);
	CHECKF(strstr(reason, "exceeds 40 bytes") != NULL, "%s", reason);
	CHECK(mqc_msg_parse(long6, strlen(long6), &lim, &msg, NULL, 0) == MQC_MSG_TOO_LARGE);
	CHECK(mqc_msg_parse("", 0, NULL, &msg, reason, sizeof(reason)) == MQC_MSG_BAD_JSON);
	/* the payload length bounds the parse, not a NUL */
	CHECK(mqc_msg_parse(ok5, 10, NULL, &msg, reason, sizeof(reason)) == MQC_MSG_BAD_JSON);

	/* a room or sender that is not a plain name is still encoded as valid JSON */
	CHECK(mqc_msg_parse(ok5, strlen(ok5), NULL, &msg, reason, sizeof(reason)) == MQC_MSG_OK);
	if(msg){
		size_t slen = 0;
		char *s = mqc_msg_stamp(msg, 42, "r\"1", "a\\b\n", 7, malloc, &slen);
		json_t *back = s ? json_loadb(s, slen, 0, NULL) : NULL;
		CHECKF(back != NULL, "stamp: %s", s ? s : "(null)");
		CHECK(back && !strcmp(json_string_value(json_object_get(back, "room")), "r\"1"));
		CHECK(back && !strcmp(json_string_value(json_object_get(back, "from")), "a\\b\n"));
		CHECK(back && json_integer_value(json_object_get(back, "id")) == 42);
		json_decref(back);
		free(s);
		json_decref(msg);
	}

	for(i = 0; i < sizeof(bad_stamped)/sizeof(bad_stamped[0]); i++){
		CHECKF(mqc_stamped_parse(bad_stamped[i], strlen(bad_stamped[i]), &st, reason, sizeof(reason)) == -1,
				"stamped %s accepted", bad_stamped[i]);
		CHECK(st.root == NULL);
	}
}

int main(void)
{
	const char *data = getenv("MQCHAT_TEST_DATA");
	char dir[1024], path[1200];
	char **names;
	int n, i, nvalid = 0, ninvalid = 0;

	if(data == NULL){
		fprintf(stderr, "MQCHAT_TEST_DATA is not set (CTest sets it to tests/data)\n");
		return 1;
	}

	snprintf(dir, sizeof(dir), "%s/messages/valid", data);
	n = list_dir(dir, ".json", &names);
	CHECKF(n >= 8, "%s: %d valid cases, expected at least 8", dir, n);
	for(i = 0; i < n; i++){
		if(snprintf(path, sizeof(path), "%s/%s", dir, names[i]) < (int)sizeof(path)){
			check_valid(path, names[i]);
		}else{
			CHECKF(0, "%s/%s: path too long", dir, names[i]);
		}
		nvalid++;
		free(names[i]);
	}
	free(names);

	snprintf(dir, sizeof(dir), "%s/messages/invalid", data);
	n = list_dir(dir, "", &names);
	CHECKF(n >= 25, "%s: %d invalid cases, expected at least 25", dir, n);
	for(i = 0; i < n; i++){
		check_invalid(dir, names[i]);
		ninvalid++;
		free(names[i]);
	}
	free(names);

	check_fixed();
	printf("%d valid and %d invalid message cases\n", nvalid, ninvalid);
	return CHECK_RESULT();
}
