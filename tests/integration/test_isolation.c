/*
 * Room isolation (issue 2): carol, outside room R of alice and bob, can neither subscribe
 * to R's messages, nor send to R, nor see R through chat/rooms/+/messages, chat/#, # or
 * $share/...; and nothing she tried reaches the room or the database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char room_r[65];
static const char *const count_sql = "SELECT count(*) FROM messages WHERE room_id = ?1";

/* A refused SUBSCRIBE: 0x80 in MQTT 3.1.1, 0x87 (not authorised) or another failure
 * code >= 0x80 in MQTT 5. */
static void check_sub_refused(h_client *c, const char *filter)
{
	int rc = h_subscribe(c, filter, 1);

	if(rc < 0x80) h_fail(__FILE__, __LINE__, "SUBSCRIBE %s was granted (%d), expected a failure >= 0x80", filter, rc);
}

static void alice_says(h_client *alice, const char *body)
{
	char topic[256], payload[256];

	h_topic_send(topic, room_r);
	snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"%s\"}", body);
	H_CHECK_INT(h_publish_str(alice, topic, payload, 1), ==, 0);
}

static void cannot_subscribe(h_env *env)
{
	h_client *carol5 = h_login(env, "carol", H_PROTO_V5);
	h_client *carol3 = h_login(env, "carol", H_PROTO_V311);
	char topic[256];

	H_REQUIRE(carol5 && carol3);
	h_topic_messages(topic, room_r);
	H_CHECK_INT(h_subscribe(carol5, topic, 1), ==, 0x87);
	H_CHECK_INT(h_subscribe(carol3, topic, 1), ==, 0x80);
	/* Nobody subscribes to a send topic, not even a participant. */
	h_topic_send(topic, room_r);
	check_sub_refused(carol5, topic);
	h_client_close(carol5);
	h_client_close(carol3);
}

static void cannot_send(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	h_client *carol3 = h_login(env, "carol", H_PROTO_V311);
	char topic[256];
	long long before;
	int rc;

	H_REQUIRE(alice && carol && carol3);
	h_topic_messages(topic, room_r);
	H_REQUIRE_INT(h_subscribe(alice, topic, 1), ==, 1);
	/* A stored baseline, so "unchanged" below means something. */
	alice_says(alice, "baseline");
	json_decref(H_EXPECT_CHAT(alice, room_r, "alice", "baseline"));
	before = h_db_int(env, count_sql, room_r, (char *)NULL);
	H_CHECK_INT(h_db_wait_int(env, before > 0 ? before : 1, 5000, count_sql, room_r, (char *)NULL), >=, 1);
	before = h_db_int(env, count_sql, room_r, (char *)NULL);

	h_topic_send(topic, room_r);
	rc = h_publish_str(carol, topic, "{\"type\":\"msg\",\"body\":\"let me in\"}", 1);
	if(rc < 0x80) h_fail(__FILE__, __LINE__, "carol's send to R got PUBACK %d, expected >= 0x80", rc);
	H_CHECK_INT(h_publish_str(carol3, topic, "{\"type\":\"msg\",\"body\":\"v3 try\"}", 1), >=, 0);
	H_CHECK_INT(h_publish_str(carol3, topic, "{\"type\":\"msg\",\"body\":\"v3 qos0\"}", 0), ==, 0);
	/* Nor can she write the delivery topic directly, as a participant cannot either. */
	h_topic_messages(topic, room_r);
	rc = h_publish_str(carol, topic, "{\"id\":1,\"room\":\"x\",\"from\":\"alice\",\"ts\":1,\"type\":\"msg\",\"body\":\"forged\"}", 1);
	if(rc < 0x80) h_fail(__FILE__, __LINE__, "carol's publish to R's messages got PUBACK %d, expected >= 0x80", rc);
	rc = h_publish_str(alice, topic, "{\"id\":1,\"room\":\"x\",\"from\":\"alice\",\"ts\":1,\"type\":\"msg\",\"body\":\"forged\"}", 1);
	if(rc < 0x80) h_fail(__FILE__, __LINE__, "alice's publish to R's messages got PUBACK %d, expected >= 0x80", rc);

	H_CHECK_NO_MESSAGE(alice, 700);
	/* A later valid message is stored, and it is the only new row. */
	alice_says(alice, "after carol");
	json_decref(H_EXPECT_CHAT(alice, room_r, "alice", "after carol"));
	H_CHECK_INT(h_db_wait_int(env, before + 1, 5000, count_sql, room_r, (char *)NULL), ==, before + 1);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE sender = 'carol'", (char *)NULL), ==, 0);
	h_client_close(alice);
	h_client_close(carol);
	h_client_close(carol3);
}

static void sees_nothing_through_wildcards(h_env *env)
{
	static const char *const refused[] = { "chat/#", "#", "$share/g/chat/rooms/+/messages",
		"chat/rooms/#", "+/rooms/+/messages", "$SYS/#", NULL };
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);
	h_client *carol_plus = h_login(env, "carol", H_PROTO_V5);
	h_client *carol_wild = h_login(env, "carol", H_PROTO_V5);
	h_client *carol_wild3 = h_login(env, "carol", H_PROTO_V311);
	char topic[256];

	H_REQUIRE(alice && bob && carol_plus && carol_wild && carol_wild3);
	h_topic_messages(topic, room_r);
	H_REQUIRE_INT(h_subscribe(bob, topic, 1), ==, 1);
	/* The + filter is allowed: it delivers only carol's own rooms (none). */
	H_CHECK_INT(h_subscribe(carol_plus, "chat/rooms/+/messages", 1), ==, 1);
	for(int i = 0; refused[i]; i++) {
		check_sub_refused(carol_wild, refused[i]);
		check_sub_refused(carol_wild3, refused[i]);
	}

	alice_says(alice, "for bob only");
	json_decref(H_EXPECT_CHAT(bob, room_r, "alice", "for bob only"));
	H_CHECK_NO_MESSAGE(carol_plus, 700);
	H_CHECK_NO_MESSAGE(carol_wild, 100);
	H_CHECK_NO_MESSAGE(carol_wild3, 100);
	h_client_close(alice);
	h_client_close(bob);
	h_client_close(carol_plus);
	h_client_close(carol_wild);
	h_client_close(carol_wild3);
}

static void other_users_topics(h_env *env)
{
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	int rc;

	H_REQUIRE(carol);
	check_sub_refused(carol, "chat/users/alice/res");
	check_sub_refused(carol, "chat/users/alice/events");
	check_sub_refused(carol, "chat/users/+/res");
	rc = h_publish_str(carol, "chat/users/alice/req", "{\"op\":\"rooms.list\",\"req_id\":\"1\"}", 1);
	if(rc < 0x80) h_fail(__FILE__, __LINE__, "carol publishing alice's req got PUBACK %d, expected >= 0x80", rc);
	h_client_close(carol);
}

/* "chat/users/<me>/#" and "/+", the first filters anyone writes, are granted (issue 10):
 * answers and events come through them, the user's own requests do not come back, and
 * nobody else's tree can be had that way. */
static void own_tree_wildcards(h_env *env)
{
	h_client *carol = h_login(env, "carol", H_PROTO_V311);
	h_client *carol5 = h_login(env, "carol", H_PROTO_V5);
	H_REQUIRE(carol && carol5);
	H_CHECK_INT(h_subscribe(carol, "chat/users/carol/#", 1), ==, 1);
	H_CHECK_INT(h_subscribe(carol5, "chat/users/carol/+", 1), ==, 1);
	check_sub_refused(carol5, "chat/users/alice/#");
	check_sub_refused(carol5, "chat/users/+/#");
	check_sub_refused(carol5, "chat/users/#");
	H_CHECK_INT(h_publish_str(carol, "chat/users/carol/req", "{\"op\":\"contacts.list\",\"req_id\":\"w1\"}", 1), ==, 0);
	char topic[256];
	json_t *a = h_wait_json(carol, 5000, topic);
	H_CHECK(a && json_is_true(json_object_get(a, "ok")) && !strcmp(topic, "chat/users/carol/res"));
	json_decref(a);
	a = h_wait_json(carol5, 5000, topic);
	H_CHECK(a && json_is_true(json_object_get(a, "ok")) && !strcmp(topic, "chat/users/carol/res"));
	json_decref(a);
	H_CHECK_NO_MESSAGE(carol, 500); /* not her own request */
	H_CHECK_NO_MESSAGE(carol5, 100);
	h_client_close(carol);
	h_client_close(carol5);
}

/* The plugin's epoch, from the state file its reload thread keeps ("<epoch> <last> <first>"). */
static unsigned long long plugin_epoch(h_env *env)
{
	char path[H_PATH_MAX + 16];
	unsigned long long epoch = 0;
	snprintf(path, sizeof(path), "%s.spool.state", env->files);
	for(int i = 0; i < 100 && !epoch; i++){
		FILE *f = fopen(path, "r");
		if(f){
			if(fscanf(f, "%llu", &epoch) != 1) epoch = 0;
			fclose(f);
		}
		if(!epoch) h_sleep_ms(50);
	}
	return epoch;
}

/* Mosquitto answers every QoS 1 publish on $CONTROL/ with PUBACK success, whatever the
 * plugin decides, so this checks the effect: a user saying hello as the bridge's store or
 * request connection gets nothing (the plugin keeps other rooms' messages, and forwards
 * everyone's requests), and a forged confirmation, even with the plugin's real epoch,
 * drops nothing. */
static void control_topic_is_service_only(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	char topic[256], payload[256];

	H_REQUIRE(alice && carol);
	H_CHECK_INT(h_subscribe(carol, "chat/rooms/+/messages", 1), ==, 1);
	H_CHECK_INT(h_subscribe(carol, "chat/users/carol/res/#", 1), ==, 1);
	h_topic_messages(topic, room_r);
	H_REQUIRE_INT(h_subscribe(alice, topic, 1), ==, 1);
	H_REQUIRE_INT(h_bridge_stop(env), ==, 0); /* so the plugin keeps the next message unconfirmed */
	alice_says(alice, "buffered");
	json_decref(H_EXPECT_CHAT(alice, room_r, "alice", "buffered"));
	unsigned long long epoch = plugin_epoch(env);
	H_CHECK(epoch != 0);
	H_CHECK_INT(h_publish_str(carol, "$CONTROL/mqchat/v1", "{\"op\":\"hello\",\"role\":\"store\",\"epoch\":0,\"seq\":0}", 1), >=, 0);
	H_CHECK_INT(h_publish_str(carol, "$CONTROL/mqchat/v1", "{\"op\":\"hello\",\"role\":\"requests\"}", 1), >=, 0);
	snprintf(payload, sizeof(payload), "{\"op\":\"resend\",\"epoch\":%llu,\"from\":1}", epoch);
	H_CHECK_INT(h_publish_str(carol, "$CONTROL/mqchat/v1", payload, 1), >=, 0);
	snprintf(payload, sizeof(payload), "{\"op\":\"stored\",\"epoch\":%llu,\"seq\":9007199254740991}", epoch);
	H_CHECK_INT(h_publish_str(carol, "$CONTROL/mqchat/v1", payload, 1), >=, 0);
	H_CHECK_NO_MESSAGE(carol, 1000);
	H_CHECK_INT(h_bridge_start(env), ==, 0);
	/* The forged "stored" must not have dropped the kept copy: it is stored. */
	H_CHECK_INT(h_db_wait_int(env, 1, 10000, "SELECT count(*) FROM messages WHERE body = 'buffered'", (char *)NULL), ==, 1);
	/* Requests still go to the bridge, not to carol. */
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(bob);
	H_CHECK_INT(h_subscribe(bob, "chat/users/bob/res", 1), ==, 1);
	H_CHECK_INT(h_publish_str(bob, "chat/users/bob/req", "{\"op\":\"rooms.list\",\"req_id\":\"b1\"}", 1), ==, 0);
	json_t *answer = h_wait_json(bob, 5000, NULL);
	H_CHECK(answer && json_is_true(json_object_get(answer, "ok")));
	json_decref(answer);
	H_CHECK_NO_MESSAGE(carol, 300);
	h_client_close(bob);
	h_client_close(alice);
	h_client_close(carol);
}

int main(void)
{
	h_env *env = h_env_new("isolation");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room_r, "alice", "bob", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);

	H_RUN(env, cannot_subscribe);
	H_RUN(env, cannot_send);
	H_RUN(env, sees_nothing_through_wildcards);
	H_RUN(env, other_users_topics);
	H_RUN(env, own_tree_wildcards);
	H_RUN(env, control_topic_is_service_only);
	return h_env_finish(env);
}
