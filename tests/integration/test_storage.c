/*
 * Storage (issue 2): every message that was delivered is in the database, once, with the
 * stamped fields exactly as delivered (id, room, sender, ts, type, body, attachment,
 * client_msg_id); nothing that was not delivered is stored.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define N 60

static char room_ab[65], group_abc[65];

static void check_stored(h_env *env, const json_t *m)
{
	char id[32], got[1024];
	const char *room = json_string_value(json_object_get(m, "room"));
	const char *from = json_string_value(json_object_get(m, "from"));
	const char *type = json_string_value(json_object_get(m, "type"));
	const char *body = json_string_value(json_object_get(m, "body"));
	const char *cmid = json_string_value(json_object_get(m, "client_msg_id"));
	const json_t *att = json_object_get(m, "attachment");
	json_int_t ts = json_integer_value(json_object_get(m, "ts"));

	snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(m, "id")));
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE id = ?1", id, (char *)NULL), ==, 1);
	H_CHECK(h_db_text(env, got, sizeof(got), "SELECT room_id FROM messages WHERE id = ?1", id, (char *)NULL) == 0
			&& room && !strcmp(got, room));
	H_CHECK(h_db_text(env, got, sizeof(got), "SELECT sender FROM messages WHERE id = ?1", id, (char *)NULL) == 0
			&& from && !strcmp(got, from));
	H_CHECK(h_db_text(env, got, sizeof(got), "SELECT type FROM messages WHERE id = ?1", id, (char *)NULL) == 0
			&& type && !strcmp(got, type));
	H_CHECK_INT(h_db_int(env, "SELECT ts FROM messages WHERE id = ?1", id, (char *)NULL), ==, ts);
	if(body) {
		H_CHECK(h_db_text(env, got, sizeof(got), "SELECT body FROM messages WHERE id = ?1", id, (char *)NULL) == 0
				&& !strcmp(got, body));
	} else {
		H_CHECK_INT(h_db_int(env, "SELECT body IS NULL FROM messages WHERE id = ?1", id, (char *)NULL), ==, 1);
	}
	if(cmid) {
		H_CHECK(h_db_text(env, got, sizeof(got), "SELECT client_msg_id FROM messages WHERE id = ?1", id, (char *)NULL) == 0
				&& !strcmp(got, cmid));
	} else {
		H_CHECK_INT(h_db_int(env, "SELECT client_msg_id IS NULL FROM messages WHERE id = ?1", id, (char *)NULL), ==, 1);
	}
	if(att) {
		json_t *stored;
		H_REQUIRE(h_db_text(env, got, sizeof(got), "SELECT attachment FROM messages WHERE id = ?1", id, (char *)NULL) == 0);
		stored = json_loads(got, 0, NULL);
		if(!json_equal(stored, (json_t *)att)) h_fail(__FILE__, __LINE__, "message %s: attachment stored as %s", id, got);
		json_decref(stored);
	}
}

static void every_delivered_message_stored_once(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	json_t *got[N] = { 0 };
	char topic[256], payload[512];
	int received = 0;

	H_REQUIRE(alice && bob && carol);
	H_REQUIRE_INT(h_subscribe(bob, "chat/rooms/+/messages", 1), ==, 1);
	for(int i = 0; i < N; i++) {
		const char *room = i % 3 == 2 ? group_abc : room_ab;
		h_client *who = i % 2 ? bob : alice;
		if(i % 5 == 4) {
			snprintf(payload, sizeof(payload), "{\"type\":\"file\",\"attachment\":{\"url\":\"https://f.example/%d\","
					"\"name\":\"f%d.pdf\",\"mime\":\"application/pdf\",\"size\":%d}}", i, i, 1000 + i);
		} else if(i % 4 == 1) {
			snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"m%d \\u00e9\\u00e8 \\\"q\\\"\",\"client_msg_id\":\"c-%d\"}", i, i);
		} else {
			snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"m%d\"}", i);
		}
		h_topic_send(topic, room);
		H_CHECK_INT(h_publish_str(who, topic, payload, 1), ==, 0);
	}
	for(received = 0; received < N; received++) {
		got[received] = h_wait_json(bob, 5000, NULL);
		if(!got[received]) break;
	}
	H_CHECK_INT(received, ==, N);
	H_CHECK_NO_MESSAGE(bob, 300);

	/* Everything bob saw is stored, once, and nothing else is. */
	long long stored = h_db_wait_int(env, received, 10000, "SELECT count(*) FROM messages", (char *)NULL);
	H_CHECK_INT(stored, ==, received);
	for(int i = 0; i < received; i++) {
		if(stored > 0) check_stored(env, got[i]); /* else one failure says it all */
		json_decref(got[i]);
	}
	/* The store's per-room counters agree with the rows. */
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM rooms r WHERE msg_count <> "
			"(SELECT count(*) FROM messages m WHERE m.room_id = r.id)", (char *)NULL), ==, 0);
	h_client_close(alice);
	h_client_close(bob);
	h_client_close(carol);
}

static void bridge_restart_stores_nothing_twice(h_env *env)
{
	long long before = h_db_int(env, "SELECT count(*) FROM messages", (char *)NULL);

	/* A restarted bridge gets again what the plugin still keeps: INSERT OR IGNORE keeps
	 * the count where it was. */
	H_REQUIRE_INT(h_bridge_restart(env), ==, 0);
	h_sleep_ms(1000);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages", (char *)NULL), ==, before);
}

int main(void)
{
	h_env *env = h_env_new("storage");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room_ab, "alice", "bob", (char *)NULL)
			|| h_room_create(env, group_abc, "alice", "bob", "carol", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	/* This test sends faster than the default per-sender rate (plugin_opt_send_rate). */
	h_env_no_limits(env);
	h_env_start(env);

	H_RUN(env, every_delivered_message_stored_once);
	H_RUN(env, bridge_restart_stores_nothing_twice);
	return h_env_finish(env);
}
