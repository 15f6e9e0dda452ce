/*
 * Stored text the request API would refuse today — a display name and a room name that are
 * not UTF-8, as an older mqchat-admin wrote them, and a message body damaged on disk — must
 * not silence the bridge. Before the fix, jansson refused to make JSON strings of those
 * bytes, the bridge logged "out of memory" and sent no answer at all to rooms.list,
 * contacts.list, room.get or history, for every user who shares a room with bob.
 *
 * Here every participant asks each of those, through the real broker, plugin and bridge,
 * and gets ok:true with U+FFFD in place of each bad byte; the bridge logs one warning per
 * bad value naming the column and the row, and never "out of memory".
 */
#include <stdlib.h>
#include <string.h>


#include "api_client.h"

#define FFFD "\xEF\xBF\xBD"

static api_user A, B, C; /* alice, bob (MQTT 3.1.1), carol */
static char direct_ab[65], group[65];
static long long msg_id;

/* Writes what mqchat-admin and the plugin no longer let through, as an operator with
 * sqlite3 could. 0 or -1 (printed). */
static int db_write(h_env *env, const char *sql)
{
	return h_db_script(env, sql);
}

/* The bridge's log so far (malloc'd, NUL-terminated), or NULL. */
static char *bridge_log(h_env *env)
{
	FILE *f = fopen(env->bridge_log, "r");
	char *text = NULL;
	size_t len = 0;

	if(!f) return NULL;
	FILE *m = open_memstream(&text, &len);
	int ch;
	while(m && (ch = fgetc(f)) != EOF) fputc(ch, m);
	fclose(f);
	if(m) fclose(m);
	return text;
}

static int occurrences(const char *hay, const char *needle)
{
	int n = 0;
	for(const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
	return n;
}

static const json_t *find_room(const json_t *rooms, const char *id)
{
	size_t i;
	json_t *r;
	json_array_foreach(rooms, i, r) {
		if(json_string_value(json_object_get(r, "id")) && !strcmp(json_string_value(json_object_get(r, "id")), id)) return r;
	}
	return NULL;
}

static void every_participant_is_answered(h_env *env)
{
	(void)env;
	api_user *who[] = { &A, &B, &C };

	for(size_t w = 0; w < 3; w++) {
		api_user *u = who[w];
		bool in_direct = u != &C;

		/* rooms.list: the group's name and last message, with replacements */
		json_t *res = API_OK(u, "{s:s}", "op", "rooms.list");
		H_REQUIRE(res);
		const json_t *g = find_room(json_object_get(res, "rooms"), group);
		H_CHECK(g != NULL);
		H_CHECK_STR(json_string_value(json_object_get(g, "name")), "Lunch " FFFD);
		H_CHECK_STR(json_string_value(json_object_get(json_object_get(g, "last_message"), "body")),
				"caf" FFFD " at noon");
		H_CHECK(!in_direct || find_room(json_object_get(res, "rooms"), direct_ab) != NULL);
		json_decref(res);

		/* contacts.list: bob's display name, for those who share a room with him */
		res = API_OK(u, "{s:s}", "op", "contacts.list");
		H_REQUIRE(res);
		size_t i;
		json_t *e;
		bool saw_bob = false;
		json_array_foreach(json_object_get(res, "contacts"), i, e) {
			if(!strcmp(json_string_value(json_object_get(e, "user")), "bob")) {
				saw_bob = true;
				H_CHECK_STR(json_string_value(json_object_get(e, "display_name")), "B" FFFD "b");
			}
		}
		H_CHECK(saw_bob == (u != &B));
		json_decref(res);

		/* room.get of the group, and of the direct room whose last message is bob's */
		res = API_OK(u, "{s:s,s:s}", "op", "room.get", "room", group);
		H_CHECK_STR(json_string_value(json_object_get(res, "name")), "Lunch " FFFD);
		json_decref(res);
		if(in_direct) {
			res = API_OK(u, "{s:s,s:s}", "op", "room.get", "room", direct_ab);
			H_CHECK(json_is_null(json_object_get(res, "name")));
			json_decref(res);
		}

		/* history of the group */
		res = API_OK(u, "{s:s,s:s}", "op", "history", "room", group);
		H_REQUIRE(res);
		json_t *m = json_array_get(json_object_get(res, "messages"), 0);
		H_CHECK_INT(json_integer_value(json_object_get(m, "id")), ==, msg_id);
		H_CHECK_STR(json_string_value(json_object_get(m, "body")), "caf" FFFD " at noon");
		H_CHECK_STR(json_string_value(json_object_get(m, "from")), "bob");
		json_decref(res);
	}
	API_NO_MORE(&A, 200);
	API_NO_MORE(&B, 200);
	API_NO_MORE(&C, 200);
}

static void the_bridge_says_what_was_wrong(h_env *env)
{
	char want[512];
	char *log = bridge_log(env);

	H_REQUIRE(log);
	/* alice and carol each listed contacts once: two lines, each whole */
	H_CHECK_INT(occurrences(log, "requests: users.display_name of user bob is not valid UTF-8 (an incomplete sequence "
				"(lead byte 0xe9, then 0x62) at offset 1; 1 byte replaced); answering with U+FFFD replacements\n"), ==, 2);
	snprintf(want, sizeof(want), "requests: rooms.name of room %s is not valid UTF-8 (a sequence cut short by the end "
			"of the text (lead byte 0xe2) at offset 6; 1 byte replaced); answering with U+FFFD replacements\n", group);
	H_CHECK_INT(occurrences(log, want), >=, 3);
	snprintf(want, sizeof(want), "requests: messages.body of message %lld is not valid UTF-8", msg_id);
	H_CHECK_INT(occurrences(log, want), >=, 3);
	H_CHECK_INT(occurrences(log, "out of memory"), ==, 0);
	if(h_failures) fprintf(stderr, "bridge log:\n%s\n", log);
	free(log);
}

/* Text that is fine gets no warning: the check is quiet on valid data. */
static void valid_text_is_quiet(h_env *env)
{
	char *before = bridge_log(env);
	json_t *res = API_OK(&A, "{s:s,s:s}", "op", "room.get", "room", direct_ab);
	json_decref(res);
	char *after = bridge_log(env);
	H_REQUIRE(before && after);
	H_CHECK_INT(occurrences(after, "not valid UTF-8"), ==, occurrences(before, "not valid UTF-8"));
	free(before);
	free(after);
}

int main(void)
{
	h_env *env = h_env_new("stored_text");
	char sql[1024];

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, direct_ab, "alice", "bob", (char *)NULL)
			|| h_room_create(env, group, "--name", "Lunch", "alice", "bob", "carol", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	if(h_db_is_pg(env)) {
		/* PostgreSQL (a UTF8 database) refuses text that is not UTF-8 whoever writes it:
		 * the damage this test answers cannot be made. Check that it cannot. */
		H_CHECK_INT(h_db_script(env, "UPDATE users SET display_name = convert_from('\\x42e962'::bytea, 'UTF8')"
					" WHERE id = 'bob'"), ==, -1);
		H_CHECK_INT(h_db_script(env, "UPDATE users SET display_name = E'B\\xe9b' WHERE id = 'bob'"), ==, -1);
		return h_env_finish(env);
	}
	/* What an older mqchat-admin let through: Latin-1 "Béb", a name cut mid-character. */
	snprintf(sql, sizeof(sql),
			"UPDATE users SET display_name = CAST(X'42E962' AS TEXT) WHERE id = 'bob';"
			"UPDATE rooms SET name = CAST(X'4C756E636820E2' AS TEXT) WHERE id = '%s';", group);
	if(db_write(env, sql)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);
	if(!API_OPEN(env, &A, "alice", H_PROTO_V5) || !API_OPEN(env, &B, "bob", H_PROTO_V311)
			|| !API_OPEN(env, &C, "carol", H_PROTO_V5)) {
		return h_env_finish(env);
	}
	/* bob's messages, stored by the bridge; then the group's body is damaged on disk. */
	if(api_send(B.c, direct_ab, "hello") != 0 || api_send(B.c, group, "cafe at noon") != 0
			|| h_db_wait_int(env, 2, 5000, "SELECT count(*) FROM messages", (char *)NULL) != 2) {
		h_fail(__FILE__, __LINE__, "bob's messages were not stored");
		return h_env_finish(env);
	}
	msg_id = h_db_int(env, "SELECT id FROM messages WHERE room_id = ?1", group, (char *)NULL);
	snprintf(sql, sizeof(sql), "UPDATE messages SET body = CAST(X'636166E9206174206E6F6F6E' AS TEXT) WHERE id = %lld;",
			msg_id);
	if(msg_id <= 0 || db_write(env, sql)) {
		h_failures++;
		return h_env_finish(env);
	}

	H_RUN(env, every_participant_is_answered);
	H_RUN(env, the_bridge_says_what_was_wrong);
	H_RUN(env, valid_text_is_quiet);
	return h_env_finish(env);
}
