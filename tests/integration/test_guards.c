/*
 * The plugin's guards beyond membership: client_msg_id as the idempotency key (a resend
 * is delivered and stored once), the per-sender rate limit, and the control topic that
 * only the service user may write.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char room[65];

static void resend_with_same_client_msg_id_is_delivered_once(h_env *env)
{
	char send[256], msgs[256];
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);

	H_REQUIRE(alice && bob);
	h_topic_send(send, room);
	h_topic_messages(msgs, room);
	H_REQUIRE_INT(h_subscribe(bob, msgs, 1), ==, 1);

	const char *m = "{\"type\":\"msg\",\"body\":\"once\",\"client_msg_id\":\"c-dup-1\"}";
	/* 0x00 Success, not 0x10 "no matching subscribers": the bridge's refused
	 * subscription to .../send is what makes the broker say so. */
	H_CHECK_INT(h_publish_raw_rc(alice, send, m), ==, 0x00);
	H_CHECK_INT(h_publish_str(alice, send, m, 1), ==, 0); /* the resend is acknowledged too */
	json_t *first = H_EXPECT_CHAT(bob, room, "alice", "once");
	H_CHECK_NO_MESSAGE(bob, 500);

	/* The same client_msg_id with another body is not a resend: refused with a reason
	 * (PUBACK 0x87 and a log line), never acknowledged and dropped (issue 10). */
	size_t mark = h_file_size(env->broker_log);
	H_CHECK_INT(h_publish_raw_rc(alice, send, "{\"type\":\"msg\",\"body\":\"other\",\"client_msg_id\":\"c-dup-1\"}"), ==, 0x87);
	H_CHECK(h_log_wait(env->broker_log, mark, "client_msg_id 'c-dup-1' was already used for another message", 2000));
	H_CHECK_NO_MESSAGE(bob, 300);

	/* Another client_msg_id is another message. */
	H_CHECK_INT(h_publish_str(alice, send, "{\"type\":\"msg\",\"body\":\"twice\",\"client_msg_id\":\"c-dup-2\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "alice", "twice"));

	/* The same client_msg_id from another sender is that sender's own message. */
	H_CHECK_INT(h_publish_str(bob, send, m, 1), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "bob", "once"));

	if(first){
		char idbuf[32];
		snprintf(idbuf, sizeof(idbuf), "%lld", (long long)json_integer_value(json_object_get(first, "id")));
		H_CHECK_INT(h_db_wait_int(env, 1, 5000,
				"SELECT count(*) FROM messages WHERE sender = 'alice' AND client_msg_id = 'c-dup-1'", (char *)NULL), ==, 1);
		H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE id = ?1", idbuf, (char *)NULL), ==, 1);
	}
	json_decref(first);
	h_client_close(alice);
	h_client_close(bob);
}

/* The env runs with send_rate 5, send_burst 5. Over the rate a QoS 1 send is not
 * acknowledged: the connection is closed (try again later), and nothing of it is delivered. */
static void sender_over_rate_is_refused_then_recovers(h_env *env)
{
	char send[256], msgs[256], body[64];
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);

	H_REQUIRE(carol && bob);
	h_topic_send(send, room);
	h_topic_messages(msgs, room);
	H_REQUIRE_INT(h_subscribe(bob, msgs, 1), ==, 1);

	int accepted = 0, closed = 0, other = 0;
	for(int i = 0; i < 12 && !closed; i++){
		snprintf(body, sizeof(body), "{\"type\":\"msg\",\"body\":\"burst %d\"}", i);
		int rc = h_publish_str(carol, send, body, 1);
		if(rc == 0) accepted++;
		else if(rc == -2) closed++;
		else other++;
	}
	/* 5 from the burst, maybe one more refilled while sending; then closed, no PUBACK. */
	H_CHECK_INT(accepted, >=, 5);
	H_CHECK_INT(accepted, <=, 7);
	H_CHECK_INT(closed, ==, 1);
	H_CHECK_INT(other, ==, 0);
	int got = h_drain(bob, 1000);
	H_CHECK_INT(got, ==, accepted);
	H_CHECK(!h_client_connected(carol));
	H_CHECK(h_log_contains(env->broker_log, "over send_rate"));
	h_client_close(carol);

	h_sleep_ms(1100); /* 5 tokens come back */
	carol = h_login(env, "carol", H_PROTO_V5);
	H_REQUIRE(carol);
	H_CHECK_INT(h_publish_str(carol, send, "{\"type\":\"msg\",\"body\":\"after the pause\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room, "carol", "after the pause"));
	h_client_close(carol);
	h_client_close(bob);
}

static void users_cannot_write_the_control_topic(h_env *env)
{
	char msgs[256], payload[512];
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *erin = h_login(env, "erin", H_PROTO_V5);

	H_REQUIRE(alice && erin);
	h_topic_messages(msgs, room);
	/* Alice, a participant, tries to add erin through the plugin's own channel. */
	snprintf(payload, sizeof(payload),
			"{\"op\":\"room\",\"room\":\"%s\",\"version\":1000000,\"enabled\":true,\"members\":[\"alice\",\"erin\"]}", room);
	H_CHECK_INT(h_publish_str(alice, "$CONTROL/mqchat/v1", payload, 1), ==, 0x87);
	H_CHECK_INT(h_subscribe(erin, msgs, 1), >=, 0x80);
	/* And the store connection's hello cannot be used to read the unconfirmed messages. */
	H_CHECK_INT(h_publish_str(erin, "$CONTROL/mqchat/v1", "{\"op\":\"hello\",\"role\":\"store\",\"epoch\":0,\"seq\":0}", 1),
			==, 0x87);
	H_CHECK_NO_MESSAGE(erin, 500);
	h_client_close(alice);
	h_client_close(erin);
}

/* Disabled with mqchat-admin while connected: refused everything at once, then dropped. */
static void disabled_user_is_cut_off_while_connected(h_env *env)
{
	char send[256], msgs[256];
	h_client *frank = h_login(env, "frank", H_PROTO_V5);
	h_client *alice = h_login(env, "alice", H_PROTO_V5);

	H_REQUIRE(frank && alice);
	h_topic_send(send, room);
	h_topic_messages(msgs, room);
	H_REQUIRE_INT(h_subscribe(frank, msgs, 1), ==, 1);
	H_REQUIRE_INT(h_admin(env, NULL, NULL, 0, "--db", env->db, "user", "disable", "frank", (char *)NULL), ==, 0);

	int64_t until = h_now_ms() + 5000;
	while(h_now_ms() < until && h_client_connected(frank)) h_sleep_ms(50);
	H_CHECK(!h_client_connected(frank));
	/* Whatever frank's client still does, it gets nothing of the room. */
	H_CHECK_INT(h_publish_str(alice, send, "{\"type\":\"msg\",\"body\":\"after frank\"}", 1), ==, 0);
	H_CHECK_NO_MESSAGE(frank, 500);
	int reason = 0;
	h_client *again = h_connect(env, "frank", h_pw("frank"), "frank", H_PROTO_V5, &reason);
	H_CHECK(again == NULL);
	H_CHECK_INT(reason, >=, 0x80);
	h_client_close(again);
	h_client_close(frank);
	h_client_close(alice);
}

int main(void)
{
	h_env *env = h_env_new("guards");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	h_user(env, "erin");
	h_user(env, "frank");
	if(h_room_create(env, room, "alice", "bob", "carol", "frank", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_plugin_opt(env, "send_rate", "5");
	h_env_plugin_opt(env, "send_burst", "5");
	h_env_start(env);

	H_RUN(env, resend_with_same_client_msg_id_is_delivered_once);
	H_RUN(env, sender_over_rate_is_refused_then_recovers);
	H_RUN(env, users_cannot_write_the_control_topic);
	H_RUN(env, disabled_user_is_cut_off_while_connected);
	return h_env_finish(env);
}
