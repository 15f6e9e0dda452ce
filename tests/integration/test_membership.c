/*
 * Membership changes made with mqchat-admin while the broker runs reach the plugin
 * without a restart (docs/architecture.md "Membership"): within the reload interval
 * (default 1 s; polled here for up to 5 s) a new room opens to its participants only,
 * a new user can log in, and a removed participant can no longer send or receive.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char room_ab[65];

/* Polls a SUBSCRIBE on a fresh connection until it is granted or 5 s pass. */
static int poll_subscribe(h_env *env, const char *user, const char *filter)
{
	int64_t until = h_now_ms() + 5000;
	int rc = -1;

	while(h_now_ms() < until) {
		h_client *c = h_login(env, user, H_PROTO_V5);
		if(c) {
			rc = h_subscribe(c, filter, 1);
			h_client_close(c);
			if(rc >= 0 && rc < 0x80) return rc;
		}
		h_sleep_ms(100);
	}
	return rc;
}

static void new_room_takes_effect(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	char room_ac[65], topic[256];
	int rc;

	H_REQUIRE(alice && carol && bob);
	H_REQUIRE_INT(h_room_create(env, room_ac, "alice", "carol", (char *)NULL), ==, 0);
	h_topic_messages(topic, room_ac);
	rc = poll_subscribe(env, "carol", topic);
	H_REQUIRE_INT(rc, ==, 1);
	/* Already-connected clients see it too. */
	H_CHECK_INT(h_subscribe(carol, topic, 1), ==, 1);
	H_CHECK_INT(h_subscribe(alice, "chat/rooms/+/messages", 1), ==, 1);
	H_CHECK_INT(h_subscribe(bob, "chat/rooms/+/messages", 1), ==, 1);
	H_CHECK_INT(h_subscribe(bob, topic, 1), >=, 0x80);
	h_topic_send(topic, room_ac);
	H_CHECK_INT(h_publish_str(carol, topic, "{\"type\":\"msg\",\"body\":\"new room\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(alice, room_ac, "carol", "new room"));
	json_decref(H_EXPECT_CHAT(carol, room_ac, "carol", "new room"));
	H_CHECK_NO_MESSAGE(bob, 700);
	/* bob still cannot send there. */
	H_CHECK_INT(h_publish_str(bob, topic, "{\"type\":\"msg\",\"body\":\"intruder\"}", 1), >=, 0x80);
	H_CHECK_INT(h_db_wait_int(env, 1, 5000, "SELECT count(*) FROM messages WHERE room_id = ?1", room_ac, (char *)NULL), ==, 1);
	h_client_close(alice);
	h_client_close(carol);
	h_client_close(bob);
}

static void new_user_can_log_in(h_env *env)
{
	int64_t until;
	h_client *c = NULL;
	int reason = 0;

	H_REQUIRE_INT(h_user_add(env, "frank", h_pw("frank")), ==, 0);
	until = h_now_ms() + 5000;
	while(!c && h_now_ms() < until) {
		c = h_connect(env, "frank", h_pw("frank"), "frank", H_PROTO_V5, &reason);
		if(!c) h_sleep_ms(100);
	}
	if(!c) h_fail(__FILE__, __LINE__, "frank, added with mqchat-admin, could not log in after 5 s (CONNACK %d)", reason);
	h_client_close(c);
}

static void group_room_with_new_user(h_env *env)
{
	char room[65], topic[256];
	h_client *frank, *alice;

	H_REQUIRE_INT(h_room_create(env, room, "alice", "bob", "frank", (char *)NULL), ==, 0);
	h_topic_messages(topic, room);
	H_REQUIRE_INT(poll_subscribe(env, "frank", topic), ==, 1);
	frank = h_login(env, "frank", H_PROTO_V311);
	alice = h_login(env, "alice", H_PROTO_V5);
	H_REQUIRE(frank && alice);
	H_CHECK_INT(h_subscribe(frank, topic, 1), ==, 1);
	h_topic_send(topic, room);
	H_CHECK_INT(h_publish_str(alice, topic, "{\"type\":\"msg\",\"body\":\"welcome frank\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(frank, room, "alice", "welcome frank"));
	h_client_close(frank);
	h_client_close(alice);
}

static void removed_participant_loses_access(h_env *env)
{
	char room[65], topic[256], send[256];
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	int64_t until;
	int rc = 0;

	H_REQUIRE(alice && carol);
	H_REQUIRE_INT(h_room_create(env, room, "--name", "trio", "alice", "bob", "carol", (char *)NULL), ==, 0);
	h_topic_messages(topic, room);
	h_topic_send(send, room);
	H_REQUIRE_INT(poll_subscribe(env, "carol", topic), ==, 1);
	H_REQUIRE_INT(h_subscribe(alice, topic, 1), ==, 1);
	H_REQUIRE_INT(h_subscribe(carol, "chat/rooms/+/messages", 1), ==, 1);
	H_CHECK_INT(h_publish_str(carol, send, "{\"type\":\"msg\",\"body\":\"still in\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(alice, room, "carol", "still in"));
	json_decref(H_EXPECT_CHAT(carol, room, "carol", "still in"));

	H_REQUIRE_INT(h_admin(env, NULL, NULL, 0, "--db", env->db, "room", "remove", room, "carol", (char *)NULL), ==, 0);
	/* Within the reload interval her sends are refused ... */
	until = h_now_ms() + 5000;
	while(h_now_ms() < until) {
		rc = h_publish_str(carol, send, "{\"type\":\"msg\",\"body\":\"am I out?\"}", 1);
		if(rc >= 0x80) break;
		h_sleep_ms(100);
	}
	H_CHECK_INT(rc, >=, 0x80);
	h_drain(alice, 300);
	h_drain(carol, 300);
	/* ... and she receives nothing more, also not through her wildcard subscription. */
	H_CHECK_INT(h_publish_str(alice, send, "{\"type\":\"msg\",\"body\":\"carol is gone\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(alice, room, "alice", "carol is gone"));
	H_CHECK_NO_MESSAGE(carol, 700);
	H_CHECK_INT(h_subscribe(carol, topic, 1), >=, 0x80);
	h_client_close(alice);
	h_client_close(carol);
}

int main(void)
{
	h_env *env = h_env_new("membership");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room_ab, "alice", "bob", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);

	H_RUN(env, new_room_takes_effect);
	H_RUN(env, new_user_can_log_in);
	H_RUN(env, group_room_with_new_user);
	H_RUN(env, removed_participant_loses_access);
	return h_env_finish(env);
}
