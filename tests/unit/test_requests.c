/*
 * Unit tests of the bridge's request API (bridge/requests.c) against a real database of
 * the engine MQCHAT_TEST_ENGINE names: sqlite (the default), a fresh file in a temp dir;
 * postgresql, a fresh database on the server whose URL MQCHAT_TEST_PG gives (like
 * postgresql://postgres@127.0.0.1:PORT/postgres), dropped at the end. The same cases on
 * both: every op's success path and its error codes, direct-room dedupe, history paging
 * without skips or repeats while messages arrive, unread counting, the controls and events
 * that go with each state change; on SQLite also the query plans that must stay indexed
 * and stored text that is not UTF-8.
 *
 * Messages are stored the way bridge/ingest.c stores them (seq, msg_count, last_msg_id,
 * room_sender_counts, the sender's read marker), by store_msg() below. The SQL the tests
 * write themselves runs on both engines: exec() on the request API's own connection,
 * sql_int() on one of the test's own (tests/lib/dbconn.h; db.h runs only the statement
 * table).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dbconn.h"

#include "../../bridge/requests.c"
#include "../../bridge/req_rooms.c"
#include "../../bridge/req_messages.c"
#include "../../bridge/req_people.c"

/* The bridge's logger (bridge/main.c), so requests.c links alone. Warnings are also kept,
 * one per line, in `warned` (cleared by the tests that look at them). */
static char warned[8192];
void bridge__log(int level, const char *module, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%d %s: ", level, module);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if(level == BLOG_WARN){
		size_t l = strlen(warned);
		va_start(ap, fmt);
		vsnprintf(warned + l, sizeof(warned) - l, fmt, ap);
		va_end(ap);
		l = strlen(warned);
		if(l + 1 < sizeof(warned)) strcpy(warned + l, "\n");
	}
}

/* bridge/log.c's: here every line is kept (the tests count the warnings one by one). */
void bridge__log_repeated(struct log_repeat *lr, int level, const char *module, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	(void)lr;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	bridge__log(level, module, "%s", line);
}

static int failures;
#define CHECK(cond) do{ if(!(cond)){ fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); failures++; } }while(0)
#define CHECK_STR(a, b) do{ const char *a_ = (a), *b_ = (b); if(!a_ || !b_ || strcmp(a_, b_)){ \
	fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, #a, #b, \
		a_ ? a_ : "(null)", b_ ? b_ : "(null)"); failures++; } }while(0)
#define CHECK_INT(a, b) do{ long long a_ = (long long)(a), b_ = (long long)(b); if(a_ != b_){ \
	fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b, a_, b_); \
	failures++; } }while(0)

static mqc_db *db;        /* the request API's connection */
static struct hx_conn look; /* the test's own connection to the same database */
static struct requests *R;
static struct req_out last; /* the outcome of the latest rq(), kept until the next */
static mqc_idgen idgen;

/* Runs test SQL (one or more statements) on the request API's connection. */
static void exec(const char *sql)
{
	if(mqc_exec_script(db, sql)){
		fprintf(stderr, "SQL failed: %s\n%s\n", mqc_db_errmsg(db), sql);
		exit(2);
	}
}

static int look_query(const char *sql, ...)
{
	va_list ap;
	va_start(ap, sql);
	int rc = dbc_query(&look, sql, ap);
	va_end(ap);
	return rc;
}

/* The first column of the first row of a query on the test's connection, -1 without a row. */
static int64_t sql_int(const char *fmt, ...)
{
	char sql[1024];
	va_list ap;
	int64_t v = -1;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	if(look_query(sql, (char *)NULL)){
		fprintf(stderr, "SQL failed: %s\n%s\n", dbc_err(&look), sql);
		exit(2);
	}
	if(dbc_row(&look) == 1) v = dbc_int(&look, 0);
	return v;
}

static void clear_last(void)
{
	json_decref(last.response);
	json_decref(last.controls);
	json_decref(last.events);
	memset(&last, 0, sizeof(last));
}

/* Sends a request (printf-formatted JSON) as user; returns the answer (owned by `last`). */
static json_t *rq(const char *user, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *rq(const char *user, const char *fmt, ...)
{
	char buf[65536 + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	clear_last();
	if(requests__handle(R, user, buf, (size_t)n, &last) != 0 || !last.response){
		fprintf(stderr, "requests__handle failed for %s\n", buf);
		exit(2);
	}
	if(mqc_db_in_txn(db)){
		fprintf(stderr, "transaction left open after %s\n", buf);
		exit(2);
	}
	return last.response;
}

/* The result of a successful answer, or NULL (and a failure) if it was an error. */
static json_t *ok_at(json_t *resp, int line)
{
	if(!json_is_true(json_object_get(resp, "ok"))){
		char *s = json_dumps(resp, 0);
		fprintf(stderr, "%s:%d: expected ok, got %s\n", __FILE__, line, s);
		free(s);
		failures++;
		return NULL;
	}
	return json_object_get(resp, "result");
}
#define OK(resp) ok_at((resp), __LINE__)

/* The error code of an answer ("" if it succeeded). Also checks the answer's shape. */
static const char *code_of(json_t *resp)
{
	if(json_is_true(json_object_get(resp, "ok"))) return "";
	json_t *e = json_object_get(resp, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	CHECK(msg && *msg);
	return json_string_value(json_object_get(e, "code"));
}
#define ERR(resp, code) CHECK_STR(code_of(resp), code)

static const char *result_str(json_t *resp, const char *key)
{
	return json_string_value(json_object_get(json_object_get(resp, "result"), key));
}

static const char *err_msg(json_t *resp)
{
	return json_string_value(json_object_get(json_object_get(resp, "error"), "message"));
}

static void add_user(const char *id, int disabled)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "INSERT INTO users(id, display_name, password_hash, created_at, disabled)"
			" VALUES ('%s', 'User %s', 'x', 1, %d)", id, id, disabled);
	exec(sql);
}

/* Stores a message the way bridge/ingest.c does (SQL both engines take). Returns its id. */
static int64_t store_msg(const char *room, const char *from, const char *body)
{
	int64_t id = (int64_t)mqc_id_next(&idgen, mqc_now_ms());
	char sql[1024];
	snprintf(sql, sizeof(sql),
			"INSERT INTO messages(id, room_id, seq, sender, type, body, ts)"
			" VALUES (%lld, '%s', (SELECT msg_count + 1 FROM rooms WHERE id = '%s'), '%s', 'msg', '%s', %lld);"
			"UPDATE rooms SET msg_count = msg_count + 1, last_msg_id = %lld WHERE id = '%s';"
			"INSERT INTO room_sender_counts(room_id, sender, n) VALUES ('%s', '%s', 1)"
			" ON CONFLICT (room_id, sender) DO UPDATE SET n = room_sender_counts.n + 1;"
			"INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES ('%s', '%s', %lld)"
			" ON CONFLICT (user_id, room_id) DO UPDATE SET last_read_id = CASE"
			" WHEN excluded.last_read_id > read_markers.last_read_id THEN excluded.last_read_id"
			" ELSE read_markers.last_read_id END;",
			(long long)id, room, room, from, body, (long long)mqc_now_ms(), (long long)id, room,
			room, from, from, room, (long long)id);
	exec(sql);
	return id;
}

/* The event of `name` queued for user in `last`, or NULL. */
static json_t *event_for(const char *user, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(last.events, i, e){
		json_t *ev = json_object_get(e, "event");
		if(strcmp(json_string_value(json_object_get(e, "user")), user) == 0
				&& strcmp(json_string_value(json_object_get(ev, "event")), name) == 0){
			return ev;
		}
	}
	return NULL;
}

/* The single control of `last`; checks its members equal the comma-separated list. */
static json_t *control_check(const char *room, const char *members_csv, bool enabled)
{
	CHECK_INT(json_array_size(last.controls), 1);
	json_t *c = json_array_get(last.controls, 0);
	if(!c) return NULL;
	CHECK_STR(json_string_value(json_object_get(c, "op")), "room");
	CHECK_STR(json_string_value(json_object_get(c, "room")), room);
	CHECK(json_is_boolean(json_object_get(c, "enabled")) && json_is_true(json_object_get(c, "enabled")) == enabled);
	CHECK_INT(json_integer_value(json_object_get(c, "version")), sql_int("SELECT version FROM rooms WHERE id = '%s'", room));
	CHECK_INT(json_integer_value(json_object_get(c, "acl_to")), sql_int("SELECT value FROM meta WHERE key = 'acl_version'"));
	CHECK(json_integer_value(json_object_get(c, "acl_from")) < json_integer_value(json_object_get(c, "acl_to")));
	char got[1024] = "";
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(c, "members"), i, m){
		if(i) strcat(got, ",");
		strcat(got, json_string_value(m));
	}
	CHECK_STR(got, members_csv);
	return c;
}

/* ---------------------------------------------------------------- protocol */

static void test_protocol(void)
{
	json_t *r;

	r = rq("alice", "{\"op\":");
	ERR(r, "invalid");
	CHECK(strstr(err_msg(r), "malformed JSON") != NULL);
	CHECK(json_is_null(json_object_get(r, "req_id")));

	ERR(rq("alice", "[1,2]"), "invalid");
	r = rq("alice", "{\"req_id\":\"a1\"}");
	ERR(r, "invalid");
	CHECK_STR(json_string_value(json_object_get(r, "req_id")), "a1");
	CHECK(strstr(err_msg(r), "op") != NULL);
	ERR(rq("alice", "{\"op\":7}"), "invalid");
	r = rq("alice", "{\"op\":\"room.explode\",\"req_id\":42}");
	ERR(r, "invalid");
	CHECK(strstr(err_msg(r), "room.explode") != NULL);
	CHECK_INT(json_integer_value(json_object_get(r, "req_id")), 42);
	r = rq("alice", "{\"op\":\"contacts.list\",\"colour\":1}");
	ERR(r, "invalid");
	CHECK(strstr(err_msg(r), "colour") != NULL);
	ERR(rq("alice", "{\"op\":\"contacts.list\",\"req_id\":[1]}"), "invalid");
	ERR(rq("alice", "{\"op\":\"contacts.list\",\"op\":\"x\"}"), "invalid"); /* duplicate key */
	/* An error message quotes at most 64 bytes of the client's text; a cut through a
	 * multi-byte character must still give an answer (it used to give none). */
	char key[128] = "a";
	for(int i = 0; i < 40; i++) strcat(key, "\xC3\xA9");
	r = rq("alice", "{\"op\":\"contacts.list\",\"%s\":1}", key);
	ERR(r, "invalid");
	CHECK(err_msg(r) && strstr(err_msg(r), "unknown argument \"a\xC3\xA9") != NULL);
	r = rq("alice", "{\"op\":\"%s\"}", key);
	ERR(r, "invalid");
	CHECK(err_msg(r) && strstr(err_msg(r), "op: unknown operation") != NULL);

	r = rq("alice", "{\"op\":\"contacts.list\",\"req_id\":\"r-1\"}");
	CHECK(OK(r) != NULL);
	CHECK_STR(json_string_value(json_object_get(r, "req_id")), "r-1");
	CHECK(last.controls == NULL && last.events == NULL);

	/* Over the payload limit. */
	char *big = malloc(REQ_MAX_PAYLOAD + 2);
	memset(big, ' ', REQ_MAX_PAYLOAD + 1);
	big[0] = '{';
	big[REQ_MAX_PAYLOAD] = '}';
	clear_last();
	CHECK(requests__handle(R, "alice", big, REQ_MAX_PAYLOAD + 1, &last) == 0);
	ERR(last.response, "too_large");
	free(big);
}

/* ---------------------------------------------------------------- rooms */

static char dm_ab[32], grp[32];

static void test_room_create(void)
{
	json_t *r, *res, *ev;

	/* Direct room: created once, in either order. */
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"alice\",\"bob\"]}");
	res = OK(r);
	CHECK(json_is_true(json_object_get(res, "created")));
	CHECK_STR(json_string_value(json_object_get(res, "kind")), "direct");
	CHECK_STR(json_string_value(json_object_get(res, "created_by")), "alice");
	CHECK(json_is_null(json_object_get(res, "last_message")));
	CHECK_INT(json_integer_value(json_object_get(res, "unread")), 0);
	CHECK_INT(json_array_size(json_object_get(res, "participants")), 2);
	snprintf(dm_ab, sizeof(dm_ab), "%s", json_string_value(json_object_get(res, "id")));
	CHECK(mqc_name_valid(dm_ab, strlen(dm_ab)));
	control_check(dm_ab, "alice,bob", true);
	CHECK(event_for("alice", "room.added") && event_for("bob", "room.added"));
	ev = event_for("bob", "room.added");
	CHECK_STR(json_string_value(json_object_get(json_object_get(ev, "info"), "id")), dm_ab);
	CHECK_STR(json_string_value(json_object_get(ev, "by")), "alice");

	r = rq("bob", "{\"op\":\"room.create\",\"participants\":[\"alice\"]}");
	res = OK(r);
	CHECK_STR(json_string_value(json_object_get(res, "id")), dm_ab);
	CHECK(json_is_false(json_object_get(res, "created")));
	CHECK(last.controls == NULL && last.events == NULL);
	CHECK_INT(sql_int("SELECT count(*) FROM rooms WHERE direct_key = 'alice:bob'"), 1);

	/* null is the same as an absent optional argument. */
	r = rq("bob", "{\"op\":\"room.create\",\"participants\":[\"alice\"],\"name\":null}");
	CHECK_STR(result_str(r, "id"), dm_ab);
	CHECK(OK(rq("bob", "{\"op\":\"history\",\"room\":\"%s\",\"before\":null,\"from\":null}", dm_ab)) != NULL);
	ERR(rq("bob", "{\"op\":\"room.get\",\"room\":null}"), "invalid");

	/* Group room with a name. */
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"Trio\"}");
	res = OK(r);
	CHECK_STR(json_string_value(json_object_get(res, "kind")), "group");
	CHECK_STR(json_string_value(json_object_get(res, "name")), "Trio");
	snprintf(grp, sizeof(grp), "%s", json_string_value(json_object_get(res, "id")));
	control_check(grp, "alice,bob,carol", true);
	CHECK(event_for("carol", "room.added") != NULL);
	CHECK_INT(json_array_size(last.events), 3);

	/* A second group with the same people is a new room. */
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"]}");
	CHECK(strcmp(result_str(r, "id"), grp) != 0);
	CHECK(json_is_null(json_object_get(json_object_get(r, "result"), "name")));

	/* Errors. */
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"alice\"]}");
	ERR(r, "invalid");
	CHECK(strstr(err_msg(r), "two") != NULL);
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":[]}"), "invalid");
	ERR(rq("alice", "{\"op\":\"room.create\"}"), "invalid");
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":\"bob\"}"), "invalid");
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob/x\"]}"), "invalid");
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":[3]}"), "invalid");
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"nobody\"]}");
	ERR(r, "not_found");
	CHECK(strstr(err_msg(r), "nobody") != NULL);
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"mallory\",\"bob\"]}");
	ERR(r, "invalid");
	CHECK(strstr(err_msg(r), "mallory") != NULL);
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\"],\"name\":\"x\"}"), "invalid");
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":5}"), "invalid");
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"\"}"), "invalid");
	char name[200];
	memset(name, 'n', 129);
	name[129] = '\0';
	ERR(rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"%s\"}", name), "too_large");
	name[128] = '\0';
	CHECK(OK(rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"%s\"}", name)) != NULL);
	/* The name rule is store/text.c's (the same as mqchat-admin's --name): no control
	 * characters, which JSON escapes could carry before. */
	const char *control[] = { "a\\nb", "tab\\t", "\\u001b[31mred", "del\\u007f", "\\u0001" };
	for(size_t i = 0; i < sizeof(control) / sizeof(control[0]); i++){
		r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"%s\"}", control[i]);
		ERR(r, "invalid");
		CHECK(err_msg(r) && strstr(err_msg(r), "name: must not contain control characters") != NULL);
	}
	/* 128 bytes of multi-byte UTF-8 is at the limit, one more byte is over. */
	char euros[400] = "";
	for(int i = 0; i < 42; i++) strcat(euros, "\xE2\x82\xAC");
	strcat(euros, "ab");
	CHECK(OK(rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"%s\"}", euros)) != NULL);
	strcat(euros, "c");
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"%s\"}", euros);
	ERR(r, "too_large");
	CHECK(err_msg(r) && strstr(err_msg(r), "name: at most 128 bytes") != NULL);

	/* Too many participants in one request. */
	static char many[REQ_MAX_PAYLOAD];
	size_t off = 0;
	off += (size_t)snprintf(many + off, sizeof(many) - off, "{\"op\":\"room.create\",\"participants\":[");
	for(int i = 0; i <= REQ_MAX_ROOM_MEMBERS; i++){
		off += (size_t)snprintf(many + off, sizeof(many) - off, "%s\"u%d\"", i ? "," : "", i);
	}
	snprintf(many + off, sizeof(many) - off, "]}");
	ERR(rq("alice", "%s", many), "too_large");
	CHECK(!mqc_db_in_txn(db));
}

/* Many pairs asked for in both orders: one room per pair, enforced by UNIQUE(direct_key). */
static void test_direct_dedupe(void)
{
	char u[8][8];
	int i, j;
	for(i = 0; i < 8; i++){
		snprintf(u[i], sizeof(u[i]), "d%d", i);
		add_user(u[i], 0);
	}
	for(int round = 0; round < 3; round++){
		for(i = 0; i < 8; i++){
			for(j = 0; j < 8; j++){
				if(i == j) continue;
				json_t *res = OK(rq(u[i], "{\"op\":\"room.create\",\"participants\":[\"%s\"]}", u[j]));
				CHECK(res && json_is_true(json_object_get(res, "created")) == (round == 0 && i < j));
			}
		}
	}
	CHECK_INT(sql_int("SELECT count(*) FROM rooms WHERE direct_key LIKE 'd%%:d%%'"), 28);
	CHECK_INT(sql_int("SELECT count(*) FROM rooms r WHERE direct_key LIKE 'd%%' AND"
			" (SELECT count(*) FROM room_participants p WHERE p.room_id = r.id) <> 2"), 0);

	/* The same key was also made by someone else (mqchat-admin) first: still one room. */
	exec("INSERT INTO rooms(id, kind, created_by, created_at, direct_key) VALUES ('radmin', 'direct', 'd0', 1, 'd0:zed')");
	add_user("zed", 0);
	exec("INSERT INTO room_participants VALUES ('radmin', 'd0', 1), ('radmin', 'zed', 1)");
	CHECK_STR(result_str(rq("zed", "{\"op\":\"room.create\",\"participants\":[\"d0\"]}"), "id"), "radmin");
}

static void test_room_direct_get(void)
{
	json_t *r = rq("bob", "{\"op\":\"room.direct\",\"with\":\"alice\"}");
	CHECK_STR(result_str(r, "room"), dm_ab);
	r = rq("carol", "{\"op\":\"room.direct\",\"with\":\"alice\"}");
	CHECK(json_is_null(json_object_get(OK(r), "room")));
	ERR(rq("carol", "{\"op\":\"room.direct\",\"with\":\"carol\"}"), "invalid");
	ERR(rq("carol", "{\"op\":\"room.direct\"}"), "invalid");
	ERR(rq("carol", "{\"op\":\"room.direct\",\"with\":\"$SYS\"}"), "invalid");

	r = rq("carol", "{\"op\":\"room.get\",\"room\":\"%s\"}", grp);
	json_t *res = OK(r);
	CHECK_STR(json_string_value(json_object_get(res, "id")), grp);
	CHECK(json_is_true(json_object_get(res, "enabled")));
	CHECK_INT(json_integer_value(json_object_get(res, "created_at")) > 0, 1);
	/* Not a participant, and no such room: the same answer. */
	json_t *a = json_deep_copy(rq("carol", "{\"op\":\"room.get\",\"room\":\"%s\"}", dm_ab));
	ERR(a, "not_found");
	json_t *b = rq("carol", "{\"op\":\"room.get\",\"room\":\"rNoSuchRoom\"}");
	ERR(b, "not_found");
	ERR(rq("carol", "{\"op\":\"room.get\",\"room\":\"a/b\"}"), "invalid");
	ERR(rq("carol", "{\"op\":\"room.get\",\"room\":12}"), "invalid");
	json_decref(a);
}

static void test_members(void)
{
	json_t *r, *res;

	/* Only the owner changes a group. */
	ERR(rq("bob", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[\"dave\"]}", grp), "forbidden");
	ERR(rq("dave", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[\"dave\"]}", grp), "not_found");
	ERR(rq("alice", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[\"carol\"]}", dm_ab), "invalid");
	ERR(rq("alice", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[\"nobody\"]}", grp), "not_found");
	ERR(rq("alice", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[\"mallory\"]}", grp), "invalid");
	ERR(rq("alice", "{\"op\":\"room.members.add\",\"room\":\"%s\"}", grp), "invalid");
	ERR(rq("alice", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[]}", grp), "invalid");

	/* Messages before dave joins are not unread for him. */
	store_msg(grp, "bob", "before dave");
	r = rq("alice", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[\"dave\",\"bob\"]}", grp);
	res = OK(r);
	CHECK_INT(json_array_size(json_object_get(res, "added")), 1);
	CHECK_STR(json_string_value(json_array_get(json_object_get(res, "added"), 0)), "dave");
	control_check(grp, "alice,bob,carol,dave", true);
	CHECK(event_for("dave", "room.added") != NULL);
	CHECK(event_for("bob", "room.updated") != NULL);
	CHECK(event_for("bob", "room.added") == NULL);
	CHECK_INT(json_integer_value(json_object_get(json_object_get(event_for("dave", "room.added"), "info"), "unread")), 0);
	/* Adding someone already in: nothing changes, nothing is published. */
	r = rq("alice", "{\"op\":\"room.members.add\",\"room\":\"%s\",\"users\":[\"dave\"]}", grp);
	CHECK_INT(json_array_size(json_object_get(OK(r), "added")), 0);
	CHECK(last.controls == NULL && last.events == NULL);

	/* Remove. */
	ERR(rq("bob", "{\"op\":\"room.members.remove\",\"room\":\"%s\",\"users\":[\"dave\"]}", grp), "forbidden");
	ERR(rq("alice", "{\"op\":\"room.members.remove\",\"room\":\"%s\",\"users\":[\"alice\"]}", grp), "invalid");
	ERR(rq("alice", "{\"op\":\"room.members.remove\",\"room\":\"%s\",\"users\":[\"bob\"]}", dm_ab), "invalid");
	ERR(rq("eve", "{\"op\":\"room.members.remove\",\"room\":\"%s\",\"users\":[\"bob\"]}", grp), "not_found");
	r = rq("alice", "{\"op\":\"room.members.remove\",\"room\":\"%s\",\"users\":[\"bob\",\"eve\"]}", grp);
	res = OK(r);
	CHECK_INT(json_array_size(json_object_get(res, "removed")), 1);
	control_check(grp, "alice,carol,dave", true);
	CHECK(event_for("bob", "room.removed") != NULL);
	CHECK(event_for("bob", "room.updated") == NULL);
	CHECK(event_for("carol", "room.updated") != NULL);
	ERR(rq("bob", "{\"op\":\"room.get\",\"room\":\"%s\"}", grp), "not_found");
	/* The last-but-one cannot be removed: a room needs two. State unchanged. */
	int64_t v = sql_int("SELECT version FROM rooms WHERE id = '%s'", grp);
	ERR(rq("alice", "{\"op\":\"room.members.remove\",\"room\":\"%s\",\"users\":[\"carol\",\"dave\"]}", grp), "conflict");
	CHECK_INT(sql_int("SELECT version FROM rooms WHERE id = '%s'", grp), v);
	CHECK_INT(sql_int("SELECT count(*) FROM room_participants WHERE room_id = '%s'", grp), 3);
	CHECK(last.controls == NULL);
}

static void test_leave_disable(void)
{
	json_t *r, *res;
	char g2[32];

	ERR(rq("alice", "{\"op\":\"room.leave\",\"room\":\"%s\"}", dm_ab), "invalid");
	ERR(rq("bob", "{\"op\":\"room.leave\",\"room\":\"%s\"}", grp), "not_found");

	/* The owner leaves: ownership passes to the earliest member (ties by id). */
	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"g2\"}");
	snprintf(g2, sizeof(g2), "%s", result_str(r, "id"));
	r = rq("alice", "{\"op\":\"room.leave\",\"room\":\"%s\"}", g2);
	res = OK(r);
	CHECK(json_is_true(json_object_get(res, "left")));
	control_check(g2, "bob,carol", true);
	CHECK(event_for("alice", "room.removed") != NULL);
	CHECK(event_for("bob", "room.updated") != NULL);
	CHECK_STR(result_str(rq("bob", "{\"op\":\"room.get\",\"room\":\"%s\"}", g2), "created_by"), "bob");

	/* Disable / enable: owner only. */
	ERR(rq("carol", "{\"op\":\"room.disable\",\"room\":\"%s\"}", g2), "forbidden");
	ERR(rq("alice", "{\"op\":\"room.disable\",\"room\":\"%s\"}", g2), "not_found");
	r = rq("bob", "{\"op\":\"room.disable\",\"room\":\"%s\"}", g2);
	res = OK(r);
	CHECK(json_is_true(json_object_get(res, "changed")) && json_is_false(json_object_get(res, "enabled")));
	control_check(g2, "bob,carol", false);
	CHECK(event_for("bob", "room.disabled") && event_for("carol", "room.disabled"));
	r = rq("bob", "{\"op\":\"room.disable\",\"room\":\"%s\"}", g2);
	CHECK(json_is_false(json_object_get(OK(r), "changed")));
	CHECK(last.controls == NULL && last.events == NULL);
	/* History stays readable while disabled. */
	CHECK(OK(rq("carol", "{\"op\":\"history\",\"room\":\"%s\"}", g2)) != NULL);
	ERR(rq("carol", "{\"op\":\"room.enable\",\"room\":\"%s\"}", g2), "forbidden");
	r = rq("bob", "{\"op\":\"room.enable\",\"room\":\"%s\"}", g2);
	CHECK(json_is_true(json_object_get(OK(r), "enabled")));
	control_check(g2, "bob,carol", true);
	CHECK(event_for("carol", "room.enabled") != NULL);

	/* The last-but-one leaves: the room is disabled with the last member in it. */
	r = rq("carol", "{\"op\":\"room.leave\",\"room\":\"%s\"}", g2);
	res = OK(r);
	CHECK(json_is_true(json_object_get(res, "room_disabled")));
	control_check(g2, "bob", false);
	CHECK(event_for("bob", "room.disabled") != NULL);
	CHECK(event_for("carol", "room.removed") != NULL);
	r = rq("bob", "{\"op\":\"room.enable\",\"room\":\"%s\"}", g2);
	ERR(r, "conflict");
	/* Direct rooms: the creator may disable them. */
	ERR(rq("bob", "{\"op\":\"room.disable\",\"room\":\"%s\"}", dm_ab), "forbidden");
	CHECK(OK(rq("alice", "{\"op\":\"room.disable\",\"room\":\"%s\"}", dm_ab)) != NULL);
	CHECK(OK(rq("alice", "{\"op\":\"room.enable\",\"room\":\"%s\"}", dm_ab)) != NULL);
	ERR(rq("alice", "{\"op\":\"room.enable\"}"), "invalid");
}

/* ---------------------------------------------------------------- contacts */

static void test_contacts(void)
{
	json_t *r, *list, *e;
	size_t i;
	bool saw_bob = false, saw_frank = false, saw_carol = false;

	ERR(rq("alice", "{\"op\":\"contacts.add\",\"user\":\"alice\"}"), "invalid");
	ERR(rq("alice", "{\"op\":\"contacts.add\",\"user\":\"nobody\"}"), "not_found");
	ERR(rq("alice", "{\"op\":\"contacts.add\"}"), "invalid");
	r = rq("alice", "{\"op\":\"contacts.add\",\"user\":\"frank\"}");
	CHECK(json_is_true(json_object_get(OK(r), "added")));
	r = rq("alice", "{\"op\":\"contacts.add\",\"user\":\"frank\"}");
	CHECK(json_is_false(json_object_get(OK(r), "added")));
	r = rq("alice", "{\"op\":\"contacts.add\",\"user\":\"bob\"}");
	CHECK(json_is_true(json_object_get(OK(r), "added")));

	list = json_object_get(OK(rq("alice", "{\"op\":\"contacts.list\"}")), "contacts");
	json_array_foreach(list, i, e){
		const char *u = json_string_value(json_object_get(e, "user"));
		CHECK(strcmp(u, "alice") != 0);
		if(strcmp(u, "bob") == 0){
			saw_bob = true;
			CHECK(json_is_true(json_object_get(e, "explicit")));
			CHECK_STR(json_string_value(json_object_get(e, "direct_room")), dm_ab);
			CHECK_STR(json_string_value(json_object_get(e, "display_name")), "User bob");
		}else if(strcmp(u, "frank") == 0){
			saw_frank = true;
			CHECK(json_is_true(json_object_get(e, "explicit")));
			CHECK(json_is_null(json_object_get(e, "direct_room")));
		}else if(strcmp(u, "carol") == 0){
			saw_carol = true; /* shares the groups */
			CHECK(json_is_false(json_object_get(e, "explicit")));
			CHECK(json_is_null(json_object_get(e, "direct_room")));
		}
	}
	CHECK(saw_bob && saw_frank && saw_carol);

	r = rq("alice", "{\"op\":\"contacts.remove\",\"user\":\"frank\"}");
	CHECK(json_is_true(json_object_get(OK(r), "removed")));
	r = rq("alice", "{\"op\":\"contacts.remove\",\"user\":\"frank\"}");
	CHECK(json_is_false(json_object_get(OK(r), "removed")));
	ERR(rq("alice", "{\"op\":\"contacts.remove\",\"user\":\"alice\"}"), "invalid");
	ERR(rq("alice", "{\"op\":\"contacts.remove\",\"user\":\"a b\"}"), "invalid");
	list = json_object_get(OK(rq("alice", "{\"op\":\"contacts.list\"}")), "contacts");
	json_array_foreach(list, i, e) CHECK(strcmp(json_string_value(json_object_get(e, "user")), "frank") != 0);
}

/* ---------------------------------------------------------------- device tokens */

/* The control of a token change in `last`: op, user, id, and the acl versions around it. */
static json_t *token_control_check(const char *op, const char *user, const char *id)
{
	CHECK_INT(json_array_size(last.controls), 1);
	json_t *c = json_array_get(last.controls, 0);
	if(!c) return NULL;
	CHECK_STR(json_string_value(json_object_get(c, "op")), op);
	CHECK_STR(json_string_value(json_object_get(c, "user")), user);
	CHECK_STR(json_string_value(json_object_get(c, "id")), id);
	CHECK_INT(json_integer_value(json_object_get(c, "acl_to")), sql_int("SELECT value FROM meta WHERE key = 'acl_version'"));
	CHECK(json_integer_value(json_object_get(c, "acl_from")) < json_integer_value(json_object_get(c, "acl_to")));
	return c;
}

static void test_tokens(void)
{
	json_t *r, *res, *list, *c;
	char id1[32], id2[32], report[256];

	/* A token: the secret shown once, its hash to the plugin before the answer. */
	res = OK(rq("eve", "{\"op\":\"token.create\",\"name\":\"phone\"}"));
	if(!res) return;
	snprintf(id1, sizeof(id1), "%s", json_string_value(json_object_get(res, "id")));
	CHECK_INT(strlen(id1), MQC_TOKEN_ID_LEN);
	CHECK(strncmp(json_string_value(json_object_get(res, "token")), MQC_TOKEN_PREFIX, 4) == 0);
	CHECK_STR(json_string_value(json_object_get(res, "name")), "phone");
	CHECK(json_is_null(json_object_get(res, "expires_at")));
	c = token_control_check("token", "eve", id1);
	CHECK_INT(strlen(json_string_value(json_object_get(c, "hash"))), MQC_TOKEN_HASH_HEX);
	CHECK(json_is_null(json_object_get(c, "expires_at")));
	CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE id = '%s' AND user_id = 'eve'", id1), 1);
	usleep(2000); /* a later created_at: tokens.list's order is not decided by the ids */
	res = OK(rq("eve", "{\"op\":\"token.create\",\"name\":\"laptop\",\"expires_in\":3600}"));
	if(!res) return;
	snprintf(id2, sizeof(id2), "%s", json_string_value(json_object_get(res, "id")));
	CHECK_INT(json_integer_value(json_object_get(res, "expires_at")),
			json_integer_value(json_object_get(res, "created_at")) + 3600 * 1000);
	c = token_control_check("token", "eve", id2);
	CHECK_INT(json_integer_value(json_object_get(c, "expires_at")), json_integer_value(json_object_get(res, "expires_at")));

	/* tokens.list: oldest first, no secret and no hash. */
	list = json_object_get(OK(rq("eve", "{\"op\":\"tokens.list\"}")), "tokens");
	CHECK_INT(json_array_size(list), 2);
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 0), "id")), id1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(list, 1), "name")), "laptop");
	CHECK(json_object_get(json_array_get(list, 0), "token") == NULL && json_object_get(json_array_get(list, 0), "hash") == NULL);
	CHECK(json_is_null(json_object_get(json_array_get(list, 0), "expires_at")));
	CHECK(json_is_null(json_object_get(json_array_get(list, 0), "last_used_at")));
	CHECK(json_is_integer(json_object_get(json_array_get(list, 1), "expires_at")));
	CHECK(last.controls == NULL && last.events == NULL);
	CHECK_INT(json_array_size(json_object_get(OK(rq("frank", "{\"op\":\"tokens.list\"}")), "tokens")), 0);

	/* The plugin's reports of use: written together, a last use never moves back, and
	 * a report naming someone else's token changes nothing. */
	snprintf(report, sizeof(report), "{\"user\":\"eve\",\"id\":\"%s\",\"at\":5000}", id1);
	CHECK(requests__token_used(R, report, strlen(report)) == 0);
	snprintf(report, sizeof(report), "{\"user\":\"eve\",\"id\":\"%s\",\"at\":4000}", id1);
	CHECK(requests__token_used(R, report, strlen(report)) == 0);
	snprintf(report, sizeof(report), "{\"user\":\"frank\",\"id\":\"%s\",\"at\":6000}", id2);
	CHECK(requests__token_used(R, report, strlen(report)) == 0);
	CHECK(requests__token_used(R, "{\"user\":\"eve\",\"at\":1}", 21) == -1);
	requests__flush_used(R, true);
	CHECK(!mqc_db_in_txn(db));
	CHECK_INT(R->used_n, 0);
	CHECK_INT(sql_int("SELECT last_used_at FROM tokens WHERE id = '%s'", id1), 5000);
	CHECK_INT(sql_int("SELECT coalesce(last_used_at, -2) FROM tokens WHERE id = '%s'", id2), -2);
	list = json_object_get(OK(rq("eve", "{\"op\":\"tokens.list\"}")), "tokens");
	CHECK_INT(json_integer_value(json_object_get(json_array_get(list, 0), "last_used_at")), 5000);

	/* A session that logged in with a device token makes no tokens. */
	requests__set_token_login(R, true);
	ERR(rq("eve", "{\"op\":\"token.create\",\"name\":\"more\"}"), "forbidden");
	requests__set_token_login(R, false);

	/* Errors. */
	ERR(rq("eve", "{\"op\":\"token.create\"}"), "invalid");
	ERR(rq("eve", "{\"op\":\"token.create\",\"name\":\"\"}"), "invalid");
	ERR(rq("eve", "{\"op\":\"token.create\",\"name\":\"x\",\"expires_in\":59}"), "invalid");
	ERR(rq("eve", "{\"op\":\"token.revoke\"}"), "invalid");
	/* A disabled user gets none: the database refuses the row (tokens_bi_disabled), the
	 * transaction is rolled back, nothing is handed out, and the next request works. */
	int64_t acl = sql_int("SELECT value FROM meta WHERE key = 'acl_version'");
	ERR(rq("mallory", "{\"op\":\"token.create\",\"name\":\"x\"}"), "internal");
	CHECK(last.controls == NULL);
	CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE user_id = 'mallory'"), 0);
	CHECK_INT(sql_int("SELECT value FROM meta WHERE key = 'acl_version'"), acl);
	CHECK_INT(json_array_size(json_object_get(OK(rq("mallory", "{\"op\":\"tokens.list\"}")), "tokens")), 0);

	/* Revoking: only your own. */
	ERR(rq("frank", "{\"op\":\"token.revoke\",\"id\":\"%s\"}", id1), "not_found");
	CHECK(last.controls == NULL);
	r = rq("eve", "{\"op\":\"token.revoke\",\"id\":\"%s\"}", id1);
	CHECK(json_is_true(json_object_get(OK(r), "revoked")));
	c = token_control_check("token.revoke", "eve", id1);
	CHECK(c && json_object_get(c, "hash") == NULL);
	ERR(rq("eve", "{\"op\":\"token.revoke\",\"id\":\"%s\"}", id1), "not_found");
	CHECK_INT(json_array_size(json_object_get(OK(rq("eve", "{\"op\":\"tokens.list\"}")), "tokens")), 1);

	/* At most REQ_MAX_TOKENS each. */
	for(int i = 1; i < REQ_MAX_TOKENS; i++) OK(rq("eve", "{\"op\":\"token.create\",\"name\":\"t%d\"}", i));
	ERR(rq("eve", "{\"op\":\"token.create\",\"name\":\"one more\"}"), "conflict");
	CHECK_INT(sql_int("SELECT count(*) FROM tokens WHERE user_id = 'eve'"), REQ_MAX_TOKENS);
}

/* ---------------------------------------------------------------- history, count, read */

static void test_history(void)
{
	enum { N = 260 };
	static int64_t ids[N + 40];
	int n = 0, i;
	json_t *res, *msgs, *m;
	char room[32];

	json_t *r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"hist\"}");
	snprintf(room, sizeof(room), "%s", result_str(r, "id"));
	for(i = 0; i < N; i++) ids[n++] = store_msg(room, i % 3 == 0 ? "bob" : "alice", "m");

	/* Backwards from the newest, 50 a page: every message once, newest first, while new
	 * messages keep arriving (they are above the first page and never show up). */
	int64_t before = 0;
	int seen = 0, pages = 0, arrived = 0;
	for(;;){
		if(before) r = rq("carol", "{\"op\":\"history\",\"room\":\"%s\",\"before\":%lld}", room, (long long)before);
		else r = rq("carol", "{\"op\":\"history\",\"room\":\"%s\"}", room);
		res = OK(r);
		if(!res) return;
		msgs = json_object_get(res, "messages");
		json_array_foreach(msgs, i, m){
			CHECK_INT(json_integer_value(json_object_get(m, "id")), ids[N - 1 - seen]);
			seen++;
		}
		pages++;
		if(arrived < 20){
			ids[n++] = store_msg(room, "bob", "late");
			arrived++;
		}
		if(!json_is_true(json_object_get(res, "more"))) break;
		before = json_integer_value(json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "id"));
	}
	CHECK_INT(seen, N);
	CHECK_INT(pages, (N + 49) / 50);

	/* Forwards from the start, 50 a page, while messages keep arriving: every message once,
	 * each page newest first and the pages in ascending order. */
	int64_t after = 0, prev_max = 0;
	seen = 0;
	for(;;){
		r = rq("carol", "{\"op\":\"history\",\"room\":\"%s\",\"after\":%lld,\"limit\":50}", room, (long long)after);
		res = OK(r);
		if(!res) return;
		msgs = json_object_get(res, "messages");
		for(i = (int)json_array_size(msgs) - 1; i >= 0; i--){
			m = json_array_get(msgs, (size_t)i);
			int64_t id = json_integer_value(json_object_get(m, "id"));
			CHECK(id > prev_max);
			CHECK_INT(id, ids[seen]);
			prev_max = id;
			seen++;
		}
		/* A message arrives after each page; once caught up (more: false) the next page
		 * holds just what arrived since. */
		bool arrived_now = false;
		if(n < N + 40){
			ids[n++] = store_msg(room, "alice", "during forward paging");
			arrived_now = true;
		}
		if(json_array_size(msgs) > 0) after = json_integer_value(json_object_get(json_array_get(msgs, 0), "id"));
		if(!json_is_true(json_object_get(res, "more")) && !arrived_now) break;
	}
	CHECK_INT(seen, n);

	/* The delivered shape. */
	r = rq("carol", "{\"op\":\"history\",\"room\":\"%s\",\"limit\":1}", room);
	m = json_array_get(json_object_get(OK(r), "messages"), 0);
	CHECK_INT(json_integer_value(json_object_get(m, "id")), ids[n - 1]);
	CHECK_STR(json_string_value(json_object_get(m, "room")), room);
	CHECK_STR(json_string_value(json_object_get(m, "from")), "alice");
	CHECK_STR(json_string_value(json_object_get(m, "type")), "msg");
	CHECK(json_is_integer(json_object_get(m, "ts")));
	CHECK(json_object_get(m, "attachment") == NULL && json_object_get(m, "client_msg_id") == NULL);
	CHECK(json_is_true(json_object_get(OK(r), "more")));

	/* from: only bob's, newest first, and the count agrees. */
	int bob_total = (int)sql_int("SELECT count(*) FROM messages WHERE room_id = '%s' AND sender = 'bob'", room);
	before = 0;
	seen = 0;
	int64_t prev = INT64_MAX;
	for(;;){
		if(before) r = rq("carol", "{\"op\":\"history\",\"room\":\"%s\",\"from\":\"bob\",\"limit\":30,\"before\":%lld}", room, (long long)before);
		else r = rq("carol", "{\"op\":\"history\",\"room\":\"%s\",\"from\":\"bob\",\"limit\":30}", room);
		res = OK(r);
		if(!res) return;
		msgs = json_object_get(res, "messages");
		json_array_foreach(msgs, i, m){
			CHECK_STR(json_string_value(json_object_get(m, "from")), "bob");
			CHECK(json_integer_value(json_object_get(m, "id")) < prev);
			prev = json_integer_value(json_object_get(m, "id"));
			seen++;
		}
		if(!json_is_true(json_object_get(res, "more"))) break;
		before = prev;
	}
	CHECK_INT(seen, bob_total);
	r = rq("carol", "{\"op\":\"count\",\"room\":\"%s\",\"from\":\"bob\"}", room);
	CHECK_INT(json_integer_value(json_object_get(OK(r), "total")), bob_total);

	/* A range: after and before together. */
	r = rq("carol", "{\"op\":\"history\",\"room\":\"%s\",\"after\":%lld,\"before\":%lld}", room,
			(long long)ids[10], (long long)ids[14]);
	msgs = json_object_get(OK(r), "messages");
	CHECK_INT(json_array_size(msgs), 3);
	CHECK_INT(json_integer_value(json_object_get(json_array_get(msgs, 0), "id")), ids[13]);
	CHECK(json_is_false(json_object_get(OK(r), "more")));

	/* Attachments and client_msg_id come back as delivered. */
	char room2[32];
	snprintf(room2, sizeof(room2), "%s", dm_ab);
	int64_t aid = (int64_t)mqc_id_next(&idgen, mqc_now_ms());
	char sql[512];
	snprintf(sql, sizeof(sql), "INSERT INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)"
			" VALUES (%lld, '%s', 1, 'bob', 'image', 'cap', '{\"url\":\"https://x/y.png\",\"size\":5}', 'c-9', 7);"
			"UPDATE rooms SET msg_count = 1, last_msg_id = %lld WHERE id = '%s'", (long long)aid, room2, (long long)aid, room2);
	exec(sql);
	r = rq("alice", "{\"op\":\"history\",\"room\":\"%s\"}", room2);
	m = json_array_get(json_object_get(OK(r), "messages"), 0);
	CHECK_STR(json_string_value(json_object_get(json_object_get(m, "attachment"), "url")), "https://x/y.png");
	CHECK_INT(json_integer_value(json_object_get(json_object_get(m, "attachment"), "size")), 5);
	CHECK_STR(json_string_value(json_object_get(m, "client_msg_id")), "c-9");
	CHECK_STR(json_string_value(json_object_get(m, "body")), "cap");

	/* Errors. */
	ERR(rq("bob", "{\"op\":\"history\",\"room\":\"%s\",\"limit\":0}", room), "invalid");
	ERR(rq("bob", "{\"op\":\"history\",\"room\":\"%s\",\"limit\":101}", room), "invalid");
	ERR(rq("bob", "{\"op\":\"history\",\"room\":\"%s\",\"before\":\"x\"}", room), "invalid");
	ERR(rq("bob", "{\"op\":\"history\",\"room\":\"%s\",\"after\":-1}", room), "invalid");
	ERR(rq("bob", "{\"op\":\"history\",\"room\":\"%s\",\"from\":\"a+b\"}", room), "invalid");
	ERR(rq("bob", "{\"op\":\"history\"}"), "invalid");
	ERR(rq("dave", "{\"op\":\"history\",\"room\":\"%s\"}", room), "not_found");
	CHECK(OK(rq("bob", "{\"op\":\"history\",\"room\":\"%s\",\"limit\":100}", room)) != NULL);
}

static void test_count_read(void)
{
	json_t *r, *res;
	char room[32];
	int64_t m[6];

	r = rq("alice", "{\"op\":\"room.create\",\"participants\":[\"bob\",\"carol\"],\"name\":\"cr\"}");
	snprintf(room, sizeof(room), "%s", result_str(r, "id"));
	for(int i = 0; i < 6; i++) m[i] = store_msg(room, i < 4 ? "alice" : "bob", "x");

	res = OK(rq("carol", "{\"op\":\"count\",\"room\":\"%s\"}", room));
	CHECK_INT(json_integer_value(json_object_get(res, "total")), 6);
	CHECK_INT(json_integer_value(json_object_get(res, "unread")), 6);
	res = OK(rq("alice", "{\"op\":\"count\",\"room\":\"%s\"}", room));
	CHECK_INT(json_integer_value(json_object_get(res, "unread")), 2); /* her own are read */
	res = OK(rq("bob", "{\"op\":\"count\",\"room\":\"%s\",\"from\":\"alice\"}", room));
	CHECK_INT(json_integer_value(json_object_get(res, "total")), 4);
	CHECK_INT(json_integer_value(json_object_get(res, "unread")), 0);
	res = OK(rq("bob", "{\"op\":\"count\",\"room\":\"%s\",\"from\":\"zed\"}", room));
	CHECK_INT(json_integer_value(json_object_get(res, "total")), 0);

	/* read moves forward only. */
	res = OK(rq("carol", "{\"op\":\"read\",\"room\":\"%s\",\"upto\":%lld}", room, (long long)m[3]));
	CHECK_INT(json_integer_value(json_object_get(res, "unread")), 2);
	CHECK_INT(json_integer_value(json_object_get(res, "last_read_id")), m[3]);
	res = OK(rq("carol", "{\"op\":\"read\",\"room\":\"%s\",\"upto\":%lld}", room, (long long)m[1]));
	CHECK_INT(json_integer_value(json_object_get(res, "unread")), 2);
	CHECK_INT(json_integer_value(json_object_get(res, "last_read_id")), m[3]);
	store_msg(room, "alice", "y");
	res = OK(rq("carol", "{\"op\":\"count\",\"room\":\"%s\"}", room));
	CHECK_INT(json_integer_value(json_object_get(res, "unread")), 3);
	CHECK_INT(json_integer_value(json_object_get(res, "total")), 7);

	/* rooms.list carries the same unread count and the last message. */
	json_t *rooms = json_object_get(OK(rq("carol", "{\"op\":\"rooms.list\",\"limit\":1}")), "rooms");
	json_t *first = json_array_get(rooms, 0);
	CHECK_STR(json_string_value(json_object_get(first, "id")), room);
	CHECK_INT(json_integer_value(json_object_get(first, "unread")), 3);
	CHECK_STR(json_string_value(json_object_get(json_object_get(first, "last_message"), "body")), "y");

	/* Errors. */
	ERR(rq("carol", "{\"op\":\"read\",\"room\":\"%s\",\"upto\":%lld}", room, (long long)m[0] - 1), "invalid");
	int64_t other = store_msg(dm_ab, "alice", "elsewhere");
	ERR(rq("alice", "{\"op\":\"read\",\"room\":\"%s\",\"upto\":%lld}", room, (long long)other), "invalid");
	ERR(rq("carol", "{\"op\":\"read\",\"room\":\"%s\"}", room), "invalid");
	ERR(rq("carol", "{\"op\":\"read\",\"room\":\"%s\",\"upto\":1.5}", room), "invalid");
	ERR(rq("dave", "{\"op\":\"read\",\"room\":\"%s\",\"upto\":%lld}", room, (long long)m[0]), "not_found");
	ERR(rq("dave", "{\"op\":\"count\",\"room\":\"%s\"}", room), "not_found");
	ERR(rq("dave", "{\"op\":\"count\"}"), "invalid");
}

/* ---------------------------------------------------------------- rooms.list */

static void test_rooms_list(void)
{
	enum { NR = 37 };
	char ids[NR][32], users[3][16] = {"lw", "lx", "ly"};
	json_t *r, *res, *e;
	size_t i;

	for(i = 0; i < 3; i++) add_user(users[i], 0);
	for(i = 0; i < NR; i++){
		r = rq("lw", "{\"op\":\"room.create\",\"participants\":[\"lx\",\"ly\"],\"name\":\"L%zu\"}", i);
		snprintf(ids[i], sizeof(ids[i]), "%s", result_str(r, "id"));
	}
	/* Activity: room 5 then room 20 get messages; the rest are ordered by creation.
	 * (A later millisecond than any creation, so no tie with a room's creation time.) */
	usleep(3000);
	store_msg(ids[5], "lx", "a");
	store_msg(ids[20], "lx", "b");

	/* Page through 8 at a time: every room once, in activity order, ties by id. */
	char seen[NR] = {0};
	int got = 0;
	char cursor[128] = "";
	int pages = 0;
	for(;;){
		if(cursor[0]) r = rq("ly", "{\"op\":\"rooms.list\",\"limit\":8,\"before\":\"%s\"}", cursor);
		else r = rq("ly", "{\"op\":\"rooms.list\",\"limit\":8}");
		res = OK(r);
		if(!res) return;
		pages++;
		json_array_foreach(json_object_get(res, "rooms"), i, e){
			const char *id = json_string_value(json_object_get(e, "id"));
			int k;
			for(k = 0; k < NR && strcmp(ids[k], id); k++);
			CHECK(k < NR);
			if(k < NR){
				CHECK(!seen[k]);
				seen[k] = 1;
			}
			if(got == 0) CHECK_STR(id, ids[20]);
			if(got == 1) CHECK_STR(id, ids[5]);
			CHECK_INT(json_array_size(json_object_get(e, "participants")), 3);
			got++;
		}
		if(!json_is_true(json_object_get(res, "more"))){
			CHECK(json_is_null(json_object_get(res, "next")));
			break;
		}
		snprintf(cursor, sizeof(cursor), "%s", json_string_value(json_object_get(res, "next")));
	}
	CHECK_INT(got, NR);
	CHECK_INT(pages, (NR + 7) / 8);
	/* The unread of the rooms with a message. */
	r = rq("ly", "{\"op\":\"rooms.list\",\"limit\":2}");
	json_array_foreach(json_object_get(OK(r), "rooms"), i, e) CHECK_INT(json_integer_value(json_object_get(e, "unread")), 1);

	ERR(rq("ly", "{\"op\":\"rooms.list\",\"limit\":0}"), "invalid");
	ERR(rq("ly", "{\"op\":\"rooms.list\",\"limit\":101}"), "invalid");
	ERR(rq("ly", "{\"op\":\"rooms.list\",\"before\":\"garbage\"}"), "invalid");
	ERR(rq("ly", "{\"op\":\"rooms.list\",\"before\":5}"), "invalid");
	/* Someone with no rooms. */
	add_user("lonely", 0);
	res = OK(rq("lonely", "{\"op\":\"rooms.list\"}"));
	CHECK_INT(json_array_size(json_object_get(res, "rooms")), 0);
	CHECK(json_is_false(json_object_get(res, "more")));
}

/* Thousands of rooms: rooms.list stays a top-N over my participations. The bound is loose
 * (sanitizer builds, busy CI); the plan check below is the real guard. */
static void test_many_rooms(void)
{
	enum { NR = 5000 };
	char sql[512];
	struct timespec t0, t1;

	add_user("heavy", 0);
	add_user("other", 0);
	exec("BEGIN");
	for(int i = 0; i < NR; i++){
		snprintf(sql, sizeof(sql), "INSERT INTO rooms(id, kind, name, created_by, created_at) VALUES ('h%d', 'group', 'h', 'heavy', %d);"
				"INSERT INTO room_participants VALUES ('h%d', 'heavy', 1), ('h%d', 'other', 1), ('h%d', 'alice', 1)",
				i, 1000 + i, i, i, i);
		exec(sql);
	}
	exec("COMMIT");
	for(int i = 0; i < 50; i++){
		char room[16];
		snprintf(room, sizeof(room), "h%d", i * 97);
		store_msg(room, "other", "x");
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	json_t *res = OK(rq("heavy", "{\"op\":\"rooms.list\",\"limit\":100}"));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	printf("rooms.list over %d rooms: %.1f ms\n", NR, ms);
	CHECK(ms < 250);
	CHECK_INT(json_array_size(json_object_get(res, "rooms")), 100);
	CHECK(json_is_true(json_object_get(res, "more")));
	/* The 50 rooms with messages come first, newest message first. */
	CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(res, "rooms"), 0), "id")), "h4753");
	CHECK_INT(json_integer_value(json_object_get(json_array_get(json_object_get(res, "rooms"), 0), "unread")), 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(res, "rooms"), 50), "id")), "h4999");
}

/* Query plans that must stay indexed whatever the data size (SQLite's planner). */
static void plan_of(mqc_qid id, char *out, size_t outlen)
{
	char sql[8192];
	sqlite3_stmt *s;
	out[0] = '\0';
	snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", mqc_q_sqlite[id]);
	if(sqlite3_prepare_v2(look.lite, sql, -1, &s, NULL) != SQLITE_OK){
		fprintf(stderr, "EXPLAIN failed: %s\n", sqlite3_errmsg(look.lite));
		failures++;
		return;
	}
	while(sqlite3_step(s) == SQLITE_ROW){
		size_t l = strlen(out);
		snprintf(out + l, outlen - l, "%s\n", (const char *)sqlite3_column_text(s, 3));
	}
	sqlite3_finalize(s);
}

static void test_plans(void)
{
	char p[8192];
	plan_of(MQC_Q_REQ_ROOMS_PAGE, p, sizeof(p));
	if(getenv("MQCHAT_SHOW_PLANS")) fprintf(stderr, "rooms.list plan:\n%s", p);
	CHECK(strstr(p, "room_participants_by_user") != NULL);
	CHECK(strstr(p, "SCAN r ") == NULL && strstr(p, "SCAN rooms") == NULL);
	CHECK(strstr(p, "SCAN m") == NULL && strstr(p, "SCAN s") == NULL && strstr(p, "SCAN p2") == NULL);

	plan_of(MQC_Q_REQ_HIST_DESC, p, sizeof(p));
	CHECK(strstr(p, "messages_by_room") != NULL);
	plan_of(MQC_Q_REQ_HIST_ASC, p, sizeof(p));
	CHECK(strstr(p, "messages_by_room") != NULL);
	CHECK(strstr(p, "TEMP B-TREE") == NULL);
	plan_of(MQC_Q_REQ_HIST_FROM_DESC, p, sizeof(p));
	CHECK(strstr(p, "messages_by_room_sender") != NULL);
	CHECK(strstr(p, "TEMP B-TREE") == NULL);
	plan_of(MQC_Q_REQ_HIST_FROM_ASC, p, sizeof(p));
	CHECK(strstr(p, "messages_by_room_sender") != NULL);
	plan_of(MQC_Q_REQ_UNREAD, p, sizeof(p));
	CHECK(strstr(p, "SCAN") == NULL);
	plan_of(MQC_Q_REQ_CONTACTS_LIST, p, sizeof(p));
	if(getenv("MQCHAT_SHOW_PLANS")) fprintf(stderr, "contacts.list plan:\n%s", p);
	CHECK(strstr(p, "SCAN p1") == NULL && strstr(p, "SCAN d") == NULL);
}

/* Text in the database that the request API would refuse today (not UTF-8, a NUL byte)
 * is answered with U+FFFD in place of each bad byte, never dropped: one warning per bad
 * value, naming the column and the row. SQLite only: a PostgreSQL database (UTF8) refuses
 * such text, and no PostgreSQL text holds a NUL. */
static int64_t bad_msg_id;
static void test_stored_text(void)
{
	json_t *r, *res, *e;
	size_t i;
	char sql[1024];

	/* Latin-1 "Zoë" and a room name cut short; written the way an old mqchat-admin did. */
	exec("INSERT INTO users(id, display_name, password_hash, created_at) VALUES"
			" ('zoe', CAST(X'5A6FEB' AS TEXT), 'x', 1), ('yan', 'Yan', 'x', 1), ('xia', 'Xia', 'x', 1)");
	r = rq("yan", "{\"op\":\"room.create\",\"participants\":[\"zoe\",\"xia\"],\"name\":\"tmp\"}");
	char room[65];
	snprintf(room, sizeof(room), "%s", result_str(r, "id") ? result_str(r, "id") : "");
	snprintf(sql, sizeof(sql), "UPDATE rooms SET name = CAST(X'4C756E6368E282' AS TEXT) WHERE id = '%s'", room);
	exec(sql);
	/* A message whose body holds a NUL and a stray byte, with a damaged attachment and
	 * client_msg_id (bytes the plugin never lets through). */
	bad_msg_id = (int64_t)mqc_id_next(&idgen, mqc_now_ms());
	snprintf(sql, sizeof(sql),
			"INSERT INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)"
			" VALUES (%lld, '%s', 1, 'zoe', 'msg', CAST(X'6869006F6B80' AS TEXT),"
			" CAST(X'7B226E616D65223A2263AF227D' AS TEXT), CAST(X'632DFF' AS TEXT), 1);"
			"UPDATE rooms SET msg_count = 1, last_msg_id = %lld WHERE id = '%s';",
			(long long)bad_msg_id, room, (long long)bad_msg_id, room);
	exec(sql);

	const char *who[] = { "zoe", "yan", "xia" };
	for(size_t w = 0; w < 3; w++){
		warned[0] = '\0';
		/* contacts.list: everyone who shares the room with zoe sees zoe's name */
		res = OK(rq(who[w], "{\"op\":\"contacts.list\"}"));
		bool saw = strcmp(who[w], "zoe") == 0;
		json_array_foreach(json_object_get(res, "contacts"), i, e){
			if(strcmp(json_string_value(json_object_get(e, "user")), "zoe") == 0){
				saw = true;
				CHECK_STR(json_string_value(json_object_get(e, "display_name")), "Zo\xEF\xBF\xBD");
			}
		}
		CHECK(saw);
		if(strcmp(who[w], "zoe") != 0){
			CHECK(strstr(warned, "users.display_name of user zoe is not valid UTF-8 (a sequence cut short by the end "
						"of the text (lead byte 0xeb) at offset 2; 1 byte replaced); answering with U+FFFD replacements") != NULL);
		}

		/* rooms.list and room.get: the name and the last message */
		res = OK(rq(who[w], "{\"op\":\"rooms.list\"}"));
		json_t *o = json_array_get(json_object_get(res, "rooms"), 0);
		CHECK_STR(json_string_value(json_object_get(o, "id")), room);
		CHECK_STR(json_string_value(json_object_get(o, "name")), "Lunch\xEF\xBF\xBD\xEF\xBF\xBD");
		snprintf(sql, sizeof(sql), "rooms.name of room %s is not valid UTF-8", room);
		CHECK(strstr(warned, sql) != NULL);
		json_t *m = json_object_get(o, "last_message");
		CHECK_STR(json_string_value(json_object_get(m, "body")), "hi\xEF\xBF\xBDok\xEF\xBF\xBD");
		CHECK_STR(json_string_value(json_object_get(json_object_get(m, "attachment"), "name")), "c\xEF\xBF\xBD");
		CHECK_STR(json_string_value(json_object_get(m, "client_msg_id")), "c-\xEF\xBF\xBD");
		snprintf(sql, sizeof(sql), "messages.body of message %lld is not valid UTF-8 (a NUL byte at offset 2; 2 bytes replaced)",
				(long long)bad_msg_id);
		CHECK(strstr(warned, sql) != NULL);
		snprintf(sql, sizeof(sql), "messages.attachment of message %lld is not valid UTF-8", (long long)bad_msg_id);
		CHECK(strstr(warned, sql) != NULL);
		snprintf(sql, sizeof(sql), "messages.client_msg_id of message %lld is not valid UTF-8", (long long)bad_msg_id);
		CHECK(strstr(warned, sql) != NULL);

		r = rq(who[w], "{\"op\":\"room.get\",\"room\":\"%s\"}", room);
		CHECK_STR(json_string_value(json_object_get(OK(r), "name")), "Lunch\xEF\xBF\xBD\xEF\xBF\xBD");

		/* history */
		res = OK(rq(who[w], "{\"op\":\"history\",\"room\":\"%s\"}", room));
		m = json_array_get(json_object_get(res, "messages"), 0);
		CHECK_INT(json_integer_value(json_object_get(m, "id")), bad_msg_id);
		CHECK_STR(json_string_value(json_object_get(m, "body")), "hi\xEF\xBF\xBDok\xEF\xBF\xBD");
	}
	/* One line per bad value per answer: history of one message warns three times. */
	warned[0] = '\0';
	OK(rq("yan", "{\"op\":\"history\",\"room\":\"%s\"}", room));
	int lines = 0;
	for(const char *p = warned; (p = strchr(p, '\n')); p++) lines++;
	CHECK_INT(lines, 3);
	/* Valid text warns about nothing. */
	warned[0] = '\0';
	OK(rq("alice", "{\"op\":\"rooms.list\"}"));
	OK(rq("alice", "{\"op\":\"contacts.list\"}"));
	CHECK_STR(warned, "");
}

/* Writes refuse to run inside a transaction the caller left open. */
static void test_open_transaction(void)
{
	exec("BEGIN");
	clear_last();
	const char *q = "{\"op\":\"contacts.add\",\"user\":\"bob\"}";
	CHECK(requests__handle(R, "carol", q, strlen(q), &last) == 0);
	ERR(last.response, "internal");
	CHECK(mqc_db_in_txn(db)); /* the caller's transaction is left alone */
	exec("ROLLBACK");
}

/* The cases, in order (each builds on what the ones before left), on the open database db
 * with the test's own connection `look` to the same database. */
static void run_cases(void)
{
	bool sqlite = mqc_db_engine(db) == MQC_ENGINE_SQLITE;

	mqc_idgen_init(&idgen, 0);
	const char *people[] = {"alice", "bob", "carol", "dave", "eve", "frank"};
	for(size_t i = 0; i < sizeof(people) / sizeof(people[0]); i++) add_user(people[i], 0);
	add_user("mallory", 1);

	R = requests__new(db, "chat");
	if(!R){
		fprintf(stderr, "requests__new failed on %s\n", mqc_db_name(db));
		exit(2);
	}
	test_protocol();
	test_room_create();
	test_direct_dedupe();
	test_room_direct_get();
	test_members();
	test_leave_disable();
	test_contacts();
	test_tokens();
	test_history();
	test_count_read();
	test_rooms_list();
	test_many_rooms();
	if(sqlite) test_plans();
	test_open_transaction();
	if(sqlite) test_stored_text();

	clear_last();
	requests__free(R);
	R = NULL;
}

/* Opens the database at where for the request API: migrated first (as mqchat-admin init
 * does), then opened the bridge's way; and the test's own connection. Exits on failure. */
static void open_db(const char *where)
{
	char reason[512];
	if(mqc_db_open(where, MQC_OPEN_MIGRATE, 1000, &db, reason, sizeof(reason))
			|| mqc_db_migrate(db, NULL, reason, sizeof(reason))){
		fprintf(stderr, "open: %s\n", reason);
		exit(2);
	}
	mqc_db_close(db);
	if(mqc_db_open(where, MQC_OPEN_READWRITE, 1000, &db, reason, sizeof(reason))){
		fprintf(stderr, "open: %s\n", reason);
		exit(2);
	}
	if(dbc_open(where, &look, true)) exit(2);
}

static void close_db(void)
{
	dbc_close(&look);
	mqc_db_close(db);
	db = NULL;
}

/* A fresh SQLite database in a temp dir; kept if a check failed. */
static int run_sqlite(void)
{
	char dir[] = "/tmp/mqchat-requests-XXXXXX", path[256];

	if(!mkdtemp(dir)) return 2;
	snprintf(path, sizeof(path), "%s/t.db", dir);
	open_db(path);
	run_cases();
	close_db();
	if(failures){
		fprintf(stderr, "test_requests: %d check(s) failed on SQLite; database kept in %s\n", failures, dir);
		return 1;
	}
	unlink(path);
	char p2[300];
	snprintf(p2, sizeof(p2), "%s-wal", path);
	unlink(p2);
	snprintf(p2, sizeof(p2), "%s-shm", path);
	unlink(p2);
	rmdir(dir);
	printf("test_requests: all checks passed (SQLite)\n");
	return 0;
}

/* A fresh database on the PostgreSQL server at server (a URL), dropped at the end
 * (tests/lib/dbconn.c: from template0 with the C collation). */
static int run_pg(const char *server)
{
	char name[64], url[1024];

	if(dbc_pg_create(server, "mqchat_test_requests", name, sizeof(name), url, sizeof(url))) return 2;
	open_db(url);
	run_cases();
	close_db();
	int dropped = dbc_pg_drop(server, name);
	if(failures){
		fprintf(stderr, "test_requests: %d check(s) failed on PostgreSQL (database %s)\n", failures, name);
		return 1;
	}
	if(dropped) return 2;
	printf("test_requests: all checks passed (PostgreSQL)\n");
	return 0;
}

int main(void)
{
	const char *server;
	if(dbc_test_pg(&server)) return run_pg(server);
	return run_sqlite();
}
