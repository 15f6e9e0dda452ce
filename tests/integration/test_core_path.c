/*
 * The core path (issue 2): a direct room both ways with each sender's own echo, and a
 * group room of three where one send reaches every participant exactly once.
 * Mixed protocols on purpose: MQTT 5 and 3.1.1 clients share rooms.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char direct_ab[65], group_abc[65];

static void subscribe_room(h_client *c, const char *room)
{
	char topic[256];

	h_topic_messages(topic, room);
	H_CHECK_INT(h_subscribe(c, topic, 1), ==, 1);
}

static void send_msg(h_client *c, const char *room, const char *body, int qos)
{
	char topic[256], payload[512];

	h_topic_send(topic, room);
	snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"%s\"}", body);
	H_CHECK_INT(h_publish_str(c, topic, payload, qos), ==, 0);
}

static void expect(h_client *c, const char *room, const char *from, const char *body)
{
	json_decref(H_EXPECT_CHAT(c, room, from, body));
}

static void direct_both_ways(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);

	H_REQUIRE(alice && bob);
	subscribe_room(alice, direct_ab);
	subscribe_room(bob, direct_ab);

	send_msg(alice, direct_ab, "hi bob", 1);
	expect(bob, direct_ab, "alice", "hi bob");
	expect(alice, direct_ab, "alice", "hi bob"); /* the sender's own echo */

	send_msg(bob, direct_ab, "hi alice", 1);
	expect(alice, direct_ab, "bob", "hi alice");
	expect(bob, direct_ab, "bob", "hi alice");

	/* QoS 0 sends take the same path. */
	send_msg(bob, direct_ab, "qos zero", 0);
	expect(alice, direct_ab, "bob", "qos zero");
	expect(bob, direct_ab, "bob", "qos zero");

	H_CHECK_NO_MESSAGE(alice, 500);
	H_CHECK_NO_MESSAGE(bob, 100);
	h_client_close(alice);
	h_client_close(bob);
}

static void direct_wildcard_subscription(h_env *env)
{
	/* The allowed filter chat/rooms/+/messages delivers the rooms the user is in. */
	h_client *alice = h_login(env, "alice", H_PROTO_V311);
	h_client *bob = h_login(env, "bob", H_PROTO_V5);

	H_REQUIRE(alice && bob);
	H_CHECK_INT(h_subscribe(alice, "chat/rooms/+/messages", 1), ==, 1);
	subscribe_room(bob, direct_ab);
	send_msg(bob, direct_ab, "through the wildcard", 1);
	expect(alice, direct_ab, "bob", "through the wildcard");
	expect(bob, direct_ab, "bob", "through the wildcard");
	send_msg(bob, group_abc, "group via wildcard", 1);
	expect(alice, group_abc, "bob", "group via wildcard");
	H_CHECK_NO_MESSAGE(alice, 500);
	h_client_close(alice);
	h_client_close(bob);
}

static void group_of_three_exactly_once(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	h_client *dave = h_login(env, "dave", H_PROTO_V5);
	h_client *all[3] = { alice, bob, carol };

	H_REQUIRE(alice && bob && carol && dave);
	for(int i = 0; i < 3; i++) subscribe_room(all[i], group_abc);
	H_CHECK_INT(h_subscribe(dave, "chat/rooms/+/messages", 1), ==, 1);

	send_msg(carol, group_abc, "hello group", 1);
	for(int i = 0; i < 3; i++) expect(all[i], group_abc, "carol", "hello group");
	send_msg(alice, group_abc, "second", 1);
	for(int i = 0; i < 3; i++) expect(all[i], group_abc, "alice", "second");

	/* Exactly once: nothing further arrives for anyone, and dave (not a participant)
	 * gets nothing through his wildcard. */
	for(int i = 0; i < 3; i++) H_CHECK_NO_MESSAGE(all[i], i == 0 ? 700 : 100);
	H_CHECK_NO_MESSAGE(dave, 100);
	for(int i = 0; i < 3; i++) h_client_close(all[i]);
	h_client_close(dave);
}

int main(void)
{
	h_env *env = h_env_new("core_path");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	h_user(env, "dave");
	if(h_room_create(env, direct_ab, "alice", "bob", (char *)NULL)
			|| h_room_create(env, group_abc, "--name", "abc", "alice", "bob", "carol", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);

	H_RUN(env, direct_both_ways);
	H_RUN(env, direct_wildcard_subscription);
	H_RUN(env, group_of_three_exactly_once);
	return h_env_finish(env);
}
