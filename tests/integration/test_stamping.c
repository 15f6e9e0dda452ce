/*
 * Stamping (issue 2): id, room, from and ts are always the plugin's, whatever the client
 * put in its payload; ids grow, stay below 2^53 and match ts; ts is near now; the
 * client's own fields (type, body, client_msg_id, attachment) pass through unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mqchat_store.h"

static char room_ab[65], room_other[65];

static json_int_t jint(const json_t *j, const char *key)
{
	const json_t *v = json_object_get(j, key);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void forged_fields_overwritten(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);
	char topic[256], payload[512];
	int64_t before, after;
	json_t *m;

	H_REQUIRE(alice && bob);
	h_topic_messages(topic, room_ab);
	H_REQUIRE_INT(h_subscribe(bob, topic, 1), ==, 1);
	snprintf(payload, sizeof(payload),
			"{\"type\":\"msg\",\"body\":\"forged\",\"client_msg_id\":\"c-1\",\"from\":\"bob\","
			"\"id\":42,\"ts\":5,\"room\":\"%s\"}", room_other);
	h_topic_send(topic, room_ab);
	before = h_now_ms();
	H_REQUIRE_INT(h_publish_str(alice, topic, payload, 1), ==, 0);
	m = H_EXPECT_CHAT(bob, room_ab, "alice", "forged");
	after = h_now_ms();
	H_REQUIRE(m);
	H_CHECK_STR(json_string_value(json_object_get(m, "from")), "alice");
	H_CHECK_STR(json_string_value(json_object_get(m, "room")), room_ab);
	H_CHECK_STR(json_string_value(json_object_get(m, "type")), "msg");
	H_CHECK_STR(json_string_value(json_object_get(m, "client_msg_id")), "c-1");
	H_CHECK_INT(jint(m, "id"), !=, 42);
	H_CHECK_INT(jint(m, "id"), >, 0);
	H_CHECK_INT(jint(m, "id"), <=, (long long)MQC_ID_MAX);
	H_CHECK_INT(jint(m, "ts"), !=, 5);
	H_CHECK_INT(jint(m, "ts"), >=, before - 2000);
	H_CHECK_INT(jint(m, "ts"), <=, after + 2000);
	json_decref(m);

	/* Each forged field alone, as a string too: always overwritten. */
	static const char *const forgeries[] = {
		"{\"type\":\"msg\",\"body\":\"f1\",\"from\":\"carol\"}",
		"{\"type\":\"msg\",\"body\":\"f2\",\"id\":\"9007199254740993\"}",
		"{\"type\":\"msg\",\"body\":\"f3\",\"ts\":-1}",
		"{\"type\":\"msg\",\"body\":\"f4\",\"room\":\"elsewhere\"}",
		NULL };
	for(int i = 0; forgeries[i]; i++) {
		char body[8];
		snprintf(body, sizeof(body), "f%d", i + 1);
		H_CHECK_INT(h_publish_str(alice, topic, forgeries[i], 1), ==, 0);
		m = H_EXPECT_CHAT(bob, room_ab, "alice", body);
		if(m) {
			H_CHECK(json_is_integer(json_object_get(m, "id")));
			H_CHECK_INT(jint(m, "ts"), >=, before - 2000);
		}
		json_decref(m);
	}
	h_client_close(alice);
	h_client_close(bob);
}

static void ids_grow_and_match_ts(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	char topic[256];
	json_int_t last = 0;

	H_REQUIRE(alice && bob);
	h_topic_messages(topic, room_ab);
	H_REQUIRE_INT(h_subscribe(alice, topic, 1), ==, 1);
	h_topic_send(topic, room_ab);
	for(int i = 0; i < 40; i++) {
		/* Both senders interleaved: one id sequence for the whole broker. */
		h_client *who = i % 2 ? bob : alice;
		H_CHECK_INT(h_publish_str(who, topic, "{\"type\":\"msg\",\"body\":\"n\"}", 1), ==, 0);
	}
	for(int i = 0; i < 40; i++) {
		json_t *m = H_EXPECT_CHAT(alice, room_ab, i % 2 ? "bob" : "alice", "n");
		if(!m) break;
		json_int_t id = jint(m, "id"), ts = jint(m, "ts");
		H_CHECK_INT(id, >, last);
		H_CHECK_INT(id, <=, (long long)MQC_ID_MAX);
		/* The id's millisecond and ts agree (docs/architecture.md "Messages and ids"). */
		H_CHECK_INT(mqc_id_to_ms((uint64_t)id), >=, ts - 1000);
		H_CHECK_INT(mqc_id_to_ms((uint64_t)id), <=, ts + 1000);
		last = id;
		json_decref(m);
	}
	h_client_close(alice);
	h_client_close(bob);
}

static void attachment_passes_through(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V311);
	char topic[256];
	json_t *m;

	H_REQUIRE(alice);
	h_topic_messages(topic, room_ab);
	H_REQUIRE_INT(h_subscribe(alice, topic, 1), ==, 1);
	h_topic_send(topic, room_ab);
	H_REQUIRE_INT(h_publish_str(alice, topic, "{\"type\":\"image\",\"body\":\"cat\",\"attachment\":"
			"{\"url\":\"https://example.org/cat.png\",\"name\":\"cat.png\",\"mime\":\"image/png\",\"size\":48213}}", 1), ==, 0);
	m = H_EXPECT_CHAT(alice, room_ab, "alice", "cat");
	H_REQUIRE(m);
	H_CHECK_STR(json_string_value(json_object_get(m, "type")), "image");
	json_t *a = json_object_get(m, "attachment");
	H_CHECK(json_is_object(a));
	H_CHECK_STR(json_string_value(json_object_get(a, "name")), "cat.png");
	H_CHECK_INT(json_integer_value(json_object_get(a, "size")), ==, 48213);
	json_decref(m);
	h_client_close(alice);
}

static void ids_survive_broker_restart(h_env *env)
{
	char topic[256];
	json_int_t before_id = 0, after_id = 0;
	json_t *m;
	h_client *alice = h_login(env, "alice", H_PROTO_V5);

	H_REQUIRE(alice);
	h_topic_messages(topic, room_ab);
	H_REQUIRE_INT(h_subscribe(alice, topic, 1), ==, 1);
	h_topic_send(topic, room_ab);
	H_REQUIRE_INT(h_publish_str(alice, topic, "{\"type\":\"msg\",\"body\":\"before restart\"}", 1), ==, 0);
	m = H_EXPECT_CHAT(alice, room_ab, "alice", "before restart");
	H_REQUIRE(m);
	before_id = jint(m, "id");
	json_decref(m);
	h_client_close(alice);

	H_REQUIRE_INT(h_bridge_stop(env), ==, 0);
	H_REQUIRE_INT(h_broker_restart(env), ==, 0);
	H_REQUIRE_INT(h_bridge_start(env), ==, 0);
	alice = h_login(env, "alice", H_PROTO_V5);
	H_REQUIRE(alice);
	h_topic_messages(topic, room_ab);
	H_REQUIRE_INT(h_subscribe(alice, topic, 1), ==, 1);
	h_topic_send(topic, room_ab);
	H_REQUIRE_INT(h_publish_str(alice, topic, "{\"type\":\"msg\",\"body\":\"after restart\"}", 1), ==, 0);
	m = H_EXPECT_CHAT(alice, room_ab, "alice", "after restart");
	H_REQUIRE(m);
	after_id = jint(m, "id");
	json_decref(m);
	H_CHECK_INT(after_id, >, before_id);
	h_client_close(alice);
}

static void client_msg_id_resend_delivered_once(h_env *env)
{
	/* client_msg_id is the client's idempotency key: a resend (say, after a lost PUBACK)
	 * is accepted but not delivered again; another key or another room is a new message. */
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	char topic[256];
	const char *p = "{\"type\":\"msg\",\"body\":\"once\",\"client_msg_id\":\"dup-1\"}";

	H_REQUIRE(alice && bob);
	h_topic_messages(topic, room_ab);
	H_REQUIRE_INT(h_subscribe(bob, topic, 1), ==, 1);
	h_topic_send(topic, room_ab);
	H_CHECK_INT(h_publish_str(alice, topic, p, 1), ==, 0);
	H_CHECK_INT(h_publish_str(alice, topic, p, 1), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room_ab, "alice", "once"));
	H_CHECK_NO_MESSAGE(bob, 700);
	H_CHECK_INT(h_publish_str(alice, topic, "{\"type\":\"msg\",\"body\":\"twice\",\"client_msg_id\":\"dup-2\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room_ab, "alice", "twice"));
	h_client_close(alice);
	h_client_close(bob);
}

int main(void)
{
	h_env *env = h_env_new("stamping");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room_ab, "alice", "bob", (char *)NULL)
			|| h_room_create(env, room_other, "alice", "carol", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);

	H_RUN(env, forged_fields_overwritten);
	H_RUN(env, ids_grow_and_match_ts);
	H_RUN(env, attachment_passes_through);
	H_RUN(env, client_msg_id_resend_delivered_once);
	H_RUN(env, ids_survive_broker_restart);
	return h_env_finish(env);
}
