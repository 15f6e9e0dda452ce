/*
 * What a request sees while messages are still being stored (docs/protocol.md
 * "Consistency"; docs/architecture.md "The bridge's threads").
 *
 * The bridge runs with --batch-ms 300, so a message waits up to 300 ms in a batch before
 * the writer thread commits it; the cases below would fail if requests simply read the
 * database as it is, or if every request waited for every commit:
 *   - own_writes: a sender's history and count include the message it just sent;
 *   - read_just_received: `read` of a message received a moment ago succeeds;
 *   - reader_not_blocked: with the write lock held by someone else (this test), so the
 *     writer cannot commit, a history of a room where nothing waits is answered at once,
 *     so is a refused history of the busy room by a non-member, and a history of the room
 *     whose message waits (by another user than its sender) is answered only once the
 *     message is committed, and then includes it.
 */
#include <stdlib.h>
#include <string.h>

#include "api_client.h"

static char room[65], quiet[65];

/* The body of the newest message of r as u sees it, or "" (recorded). */
static void newest_body(api_user *u, const char *r_id, char *out, size_t outlen)
{
	json_t *r = API_OK(u, "{s:s,s:s,s:i}", "op", "history", "room", r_id, "limit", 1);
	const char *b = json_string_value(json_object_get(json_array_get(json_object_get(r, "messages"), 0), "body"));
	snprintf(out, outlen, "%s", b ? b : "");
	json_decref(r);
}

/* Through the API, so the plugin knows the room at once (mqchat-admin: within a reload). */
static void make_room(h_env *env)
{
	api_user A;

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5));
	json_t *r = API_OK(&A, "{s:s,s:[s,s]}", "op", "room.create", "participants", "bob", "carol");
	H_REQUIRE(r);
	snprintf(room, sizeof(room), "%s", json_string_value(json_object_get(r, "id")));
	json_decref(r);
	r = API_OK(&A, "{s:s,s:[s]}", "op", "room.create", "participants", "carol");
	H_REQUIRE(r);
	snprintf(quiet, sizeof(quiet), "%s", json_string_value(json_object_get(r, "id")));
	json_decref(r);
}

static void own_writes(h_env *env)
{
	api_user A;
	char body[32], got[64];

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5));
	for(int i = 0; i < 20; i++) {
		snprintf(body, sizeof(body), "own-%d", i);
		H_CHECK_INT(api_send(A.c, room, body), ==, 0);
		newest_body(&A, room, got, sizeof(got));
		H_CHECK_STR(got, body);
		json_t *r = API_OK(&A, "{s:s,s:s}", "op", "count", "room", room);
		H_CHECK_INT(json_integer_value(json_object_get(r, "total")), ==, i + 1);
		json_decref(r);
	}
}

static void read_just_received(h_env *env)
{
	api_user A, B;
	char topic[256];

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5) && API_OPEN(env, &B, "bob", H_PROTO_V5));
	h_client *live = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(live);
	h_topic_messages(topic, room);
	H_REQUIRE(h_subscribe(live, topic, 1) == 1);
	for(int i = 0; i < 10; i++) {
		H_CHECK_INT(api_send(A.c, room, "read me"), ==, 0);
		json_t *m = h_wait_json(live, 5000, NULL);
		H_REQUIRE(m);
		json_int_t id = json_integer_value(json_object_get(m, "id"));
		json_decref(m);
		json_t *r = API_OK(&B, "{s:s,s:s,s:I}", "op", "read", "room", room, "upto", id);
		H_CHECK_INT(json_integer_value(json_object_get(r, "last_read_id")), ==, id);
		H_CHECK_INT(json_integer_value(json_object_get(r, "unread")), ==, 0);
		json_decref(r);
	}
}

/* A message bob received live is in the history bob asks for right after, although bob
 * did not send it: the plugin marks bob's request with the last message it had sent the
 * bridge, and the bridge takes that one first. (Its request and the message travel on two
 * connections to the bridge; without the mark the request could come first.) */
static void history_after_live_message(h_env *env)
{
	api_user A, B;
	char topic[256], got[64], body[64];

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5) && API_OPEN(env, &B, "bob", H_PROTO_V5));
	h_client *live = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(live);
	h_topic_messages(topic, room);
	H_REQUIRE(h_subscribe(live, topic, 1) == 1);
	for(int i = 0; i < 50; i++) {
		snprintf(body, sizeof(body), "live-%d", i);
		H_CHECK_INT(api_send(A.c, room, body), ==, 0);
		json_decref(h_wait_json(live, 5000, NULL));
		newest_body(&B, room, got, sizeof(got));
		H_CHECK_STR(got, body);
	}
	h_client_close(live);
}

static void reader_not_blocked(h_env *env)
{
	api_user A, B, C;
	char got[64], req_id[128];

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5) && API_OPEN(env, &B, "bob", H_PROTO_V5)
			&& API_OPEN(env, &C, "carol", H_PROTO_V5));
	H_CHECK_INT(api_send(A.c, quiet, "quiet one"), ==, 0);
	H_CHECK_INT(api_send(A.c, room, "before the lock"), ==, 0);
	newest_body(&A, room, got, sizeof(got));
	H_CHECK_STR(got, "before the lock");
	newest_body(&A, quiet, got, sizeof(got)); /* both committed */
	H_CHECK_STR(got, "quiet one");

	void *lock = h_db_lock(env);
	H_REQUIRE(lock != NULL);

	H_CHECK_INT(api_send(A.c, room, "held"), ==, 0);
	h_sleep_ms(600); /* past --batch-ms: the writer has the batch and waits for the lock */

	/* carol reads the quiet room, where nothing waits: answered while the writer is stuck */
	int64_t t0 = h_now_ms();
	newest_body(&C, quiet, got, sizeof(got));
	H_CHECK_STR(got, "quiet one");
	H_CHECK_INT(h_now_ms() - t0, <, 3000);

	/* dave is not in the busy room: his refused history waits for nothing either */
	api_user D;
	H_REQUIRE(API_OPEN(env, &D, "dave", H_PROTO_V5));
	t0 = h_now_ms();
	API_ERR(&D, "not_found", NULL, "{s:s,s:s}", "op", "history", "room", room);
	H_CHECK_INT(h_now_ms() - t0, <, 3000);

	/* bob reads the room whose message waits: answered only once it is committed */
	H_REQUIRE(api_post(&B, json_pack("{s:s,s:s,s:i}", "op", "history", "room", room, "limit", 1), req_id) == 0);
	API_NO_MORE(&B, 1000);
	h_db_unlock(lock);
	json_t *ans = api_collect_at(__FILE__, __LINE__, &B, req_id);
	const char *b = json_string_value(json_object_get(
			json_array_get(json_object_get(json_object_get(ans, "result"), "messages"), 0), "body"));
	H_CHECK_STR(b ? b : "", "held");
	json_decref(ans);
}

int main(void)
{
	h_env *env = h_env_new("api_consistency");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	h_user(env, "dave");
	h_env_no_limits(env);
	h_env_bridge_arg(env, "--batch-ms", "300");
	h_env_start(env);

	H_RUN(env, make_room);
	H_RUN(env, own_writes);
	H_RUN(env, read_just_received);
	H_RUN(env, history_after_live_message);
	H_RUN(env, reader_not_blocked);
	return h_env_finish(env);
}
