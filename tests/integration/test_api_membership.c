/*
 * Membership changes through the request API are exact (issue 3): the very next publish
 * and delivery after the answer obey the new state, through exact and wildcard
 * subscriptions, with the users' events. Also a disabled room, unread counts per user,
 * and that alice's requests are never answered as or to anyone else.
 * No sleeps between an answer and the action that must obey it.
 */
#include <stdlib.h>
#include <string.h>

#include "api_client.h"

static void subscribe(h_client *c, const char *filter)
{
	H_CHECK_INT(h_subscribe(c, filter, 1), ==, 1);
}

static void remove_bob_add_dave(h_env *env)
{
	api_user A;
	char g[65], msgs[256];
	h_client *bob_send = h_login(env, "bob", H_PROTO_V5);
	h_client *bob_exact = h_login(env, "bob", H_PROTO_V311);
	h_client *bob_wild = h_login(env, "bob", H_PROTO_V5);
	h_client *bob_events = api_events_client(env, "bob");
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	h_client *dave = h_login(env, "dave", H_PROTO_V5);
	h_client *dave_wild = h_login(env, "dave", H_PROTO_V311);
	h_client *dave_events = api_events_client(env, "dave");

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5));
	H_REQUIRE(bob_send && bob_exact && bob_wild && bob_events && carol && dave && dave_wild && dave_events);
	json_t *r = API_OK(&A, "{s:s,s:[s,s],s:s}", "op", "room.create", "participants", "bob", "carol", "name", "m");
	H_REQUIRE(r);
	api_str(r, "id", g);
	json_decref(r);
	json_decref(API_EXPECT_EVENT(bob_events, "room.added", g));
	h_topic_messages(msgs, g);
	subscribe(bob_exact, msgs);
	subscribe(bob_wild, "chat/rooms/+/messages");
	subscribe(carol, msgs);
	subscribe(dave_wild, "chat/rooms/+/messages");
	/* dave, not yet a participant, is refused the exact topic. */
	H_CHECK_INT(h_subscribe(dave, msgs, 1), >=, 0x80);

	/* Before: bob sends and receives on both subscriptions. */
	H_CHECK_INT(api_send(bob_send, g, "bob before"), ==, 0);
	json_decref(H_EXPECT_CHAT(bob_exact, g, "bob", "bob before"));
	json_decref(H_EXPECT_CHAT(bob_wild, g, "bob", "bob before"));
	json_decref(H_EXPECT_CHAT(carol, g, "bob", "bob before"));

	r = API_OK(&A, "{s:s,s:s,s:[s]}", "op", "room.members.remove", "room", g, "users", "bob");
	H_CHECK(r && api_has(json_object_get(r, "removed"), "bob"));
	json_decref(r);
	/* The very next send is refused, and nothing more reaches him. */
	H_CHECK_INT(api_send(bob_send, g, "bob after"), ==, 0x87);
	H_CHECK_INT(api_send(carol, g, "carol after"), ==, 0);
	json_decref(H_EXPECT_CHAT(carol, g, "carol", "carol after"));
	H_CHECK_NO_MESSAGE(bob_exact, 700);
	H_CHECK_NO_MESSAGE(bob_wild, 100);
	json_decref(API_EXPECT_EVENT(bob_events, "room.removed", g));
	/* A fresh subscription is refused too, and history is closed to him. */
	H_CHECK_INT(h_subscribe(bob_send, msgs, 1), >=, 0x80);
	api_user B;
	H_REQUIRE(API_OPEN(env, &B, "bob", H_PROTO_V5));
	API_ERR(&B, "not_found", NULL, "{s:s,s:s}", "op", "history", "room", g);

	r = API_OK(&A, "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", g, "users", "dave");
	H_CHECK(r && api_has(json_object_get(r, "added"), "dave"));
	json_decref(r);
	/* dave's very next subscribe, send and receive work, wildcard included. */
	H_CHECK_INT(h_subscribe(dave, msgs, 1), ==, 1);
	H_CHECK_INT(api_send(dave, g, "dave here"), ==, 0);
	json_decref(H_EXPECT_CHAT(dave, g, "dave", "dave here"));
	json_decref(H_EXPECT_CHAT(dave_wild, g, "dave", "dave here"));
	json_decref(H_EXPECT_CHAT(carol, g, "dave", "dave here"));
	json_t *ev = API_EXPECT_EVENT(dave_events, "room.added", g);
	H_CHECK(api_has(json_object_get(json_object_get(ev, "info"), "participants"), "dave"));
	json_decref(ev);
	H_CHECK_NO_MESSAGE(bob_exact, 300);
	H_CHECK_NO_MESSAGE(bob_wild, 100);
	H_CHECK_NO_MESSAGE(bob_events, 100);
	h_client *all[] = { bob_send, bob_exact, bob_wild, bob_events, carol, dave, dave_wild, dave_events, A.c, B.c };
	for(size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) h_client_close(all[i]);
}

/* The same, repeated with no pause at all: remove then send, add then send, 20 times. */
static void remove_add_races(h_env *env)
{
	api_user A;
	char g[65], msgs[256], body[32];
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	h_client *bob_wild = h_login(env, "bob", H_PROTO_V5);

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5));
	H_REQUIRE(bob && bob_wild);
	json_t *r = API_OK(&A, "{s:s,s:[s,s]}", "op", "room.create", "participants", "bob", "carol");
	H_REQUIRE(r);
	api_str(r, "id", g);
	json_decref(r);
	h_topic_messages(msgs, g);
	subscribe(bob_wild, "chat/rooms/+/messages");
	for(int i = 0; i < 20; i++) {
		json_decref(API_OK(&A, "{s:s,s:s,s:[s]}", "op", "room.members.remove", "room", g, "users", "bob"));
		snprintf(body, sizeof(body), "out %d", i);
		H_CHECK_INT(api_send(bob, g, body), ==, 0x87);
		H_CHECK_INT(api_send(A.c, g, body), ==, 0);
		json_decref(API_OK(&A, "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", g, "users", "bob"));
		snprintf(body, sizeof(body), "in %d", i);
		H_CHECK_INT(api_send(bob, g, body), ==, 0);
		/* Bob, through his wildcard: his own "in", never alice's "out". */
		json_decref(H_EXPECT_CHAT(bob_wild, g, "bob", body));
	}
	H_CHECK_NO_MESSAGE(bob_wild, 300);
	h_client_close(bob);
	h_client_close(bob_wild);
	h_client_close(A.c);
}

static void disabled_room(h_env *env)
{
	api_user A, B;
	char g[65], msgs[256];
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	h_client *carol = h_login(env, "carol", H_PROTO_V5);
	h_client *bob_events = api_events_client(env, "bob");
	h_client *carol_events = api_events_client(env, "carol");

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5) && API_OPEN(env, &B, "bob", H_PROTO_V311));
	H_REQUIRE(bob && carol && bob_events && carol_events);
	json_t *r = API_OK(&A, "{s:s,s:[s,s]}", "op", "room.create", "participants", "bob", "carol");
	H_REQUIRE(r);
	api_str(r, "id", g);
	json_decref(r);
	json_decref(API_EXPECT_EVENT(bob_events, "room.added", g));
	json_decref(API_EXPECT_EVENT(carol_events, "room.added", g));
	h_topic_messages(msgs, g);
	subscribe(carol, msgs);
	H_CHECK_INT(api_send(bob, g, "before"), ==, 0);
	json_decref(H_EXPECT_CHAT(carol, g, "bob", "before"));

	r = API_OK(&A, "{s:s,s:s}", "op", "room.disable", "room", g);
	H_CHECK(r && json_is_false(json_object_get(r, "enabled")));
	json_decref(r);
	H_CHECK_INT(api_send(bob, g, "while disabled"), ==, 0x87);
	H_CHECK_INT(api_send(A.c, g, "owner too"), ==, 0x87);
	H_CHECK_NO_MESSAGE(carol, 500);
	json_decref(API_EXPECT_EVENT(bob_events, "room.disabled", g));
	json_decref(API_EXPECT_EVENT(carol_events, "room.disabled", g));
	/* History stays readable, and holds only what was sent while enabled. */
	r = API_OK(&B, "{s:s,s:s}", "op", "history", "room", g);
	H_CHECK_INT(json_array_size(json_object_get(r, "messages")), ==, 1);
	H_CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(r, "messages"), 0), "body")), "before");
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s}", "op", "room.get", "room", g);
	H_CHECK(r && json_is_false(json_object_get(r, "enabled")));
	json_decref(r);

	r = API_OK(&A, "{s:s,s:s}", "op", "room.enable", "room", g);
	H_CHECK(r && json_is_true(json_object_get(r, "enabled")));
	json_decref(r);
	H_CHECK_INT(api_send(bob, g, "enabled again"), ==, 0);
	json_decref(H_EXPECT_CHAT(carol, g, "bob", "enabled again"));
	json_decref(API_EXPECT_EVENT(bob_events, "room.enabled", g));
	json_decref(API_EXPECT_EVENT(carol_events, "room.enabled", g));
	H_CHECK_NO_MESSAGE(bob_events, 300);
	h_client *all[] = { bob, carol, bob_events, carol_events, A.c, B.c };
	for(size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) h_client_close(all[i]);
}

/* unread as rooms.list reports it for room g; -1 if g is not listed. */
static long long list_unread(api_user *u, const char *g)
{
	json_t *r = API_OK(u, "{s:s,s:i}", "op", "rooms.list", "limit", 100), *room;
	long long v = -1;
	size_t i;

	json_array_foreach(json_object_get(r, "rooms"), i, room) {
		if(!strcmp(json_string_value(json_object_get(room, "id")), g)) {
			v = json_integer_value(json_object_get(room, "unread"));
		}
	}
	json_decref(r);
	return v;
}

static long long count_unread(api_user *u, const char *g)
{
	json_t *r = API_OK(u, "{s:s,s:s}", "op", "count", "room", g);
	long long v = r && json_is_integer(json_object_get(r, "unread")) ? json_integer_value(json_object_get(r, "unread")) : -1;

	json_decref(r);
	return v;
}

#define CHECK_UNREAD(u, g, want) do { H_CHECK_INT(count_unread((u), (g)), ==, (want)); \
	H_CHECK_INT(list_unread((u), (g)), ==, (want)); } while(0)

static void unread_per_user(h_env *env)
{
	api_user A, B, C;
	char g[65], body[32];
	json_int_t ids[4];

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5) && API_OPEN(env, &B, "bob", H_PROTO_V311)
			&& API_OPEN(env, &C, "carol", H_PROTO_V5));
	json_t *r = API_OK(&A, "{s:s,s:[s,s]}", "op", "room.create", "participants", "bob", "carol");
	H_REQUIRE(r);
	api_str(r, "id", g);
	json_decref(r);
	CHECK_UNREAD(&A, g, 0);
	CHECK_UNREAD(&B, g, 0);

	for(int i = 0; i < 3; i++) {
		snprintf(body, sizeof(body), "u%d", i);
		H_CHECK_INT(api_send(A.c, g, body), ==, 0);
	}
	H_CHECK_INT(h_db_wait_int(env, 3, 5000, "SELECT count(*) FROM messages WHERE room_id = ?1", g, (char *)NULL), ==, 3);
	CHECK_UNREAD(&A, g, 0); /* your own messages are read */
	CHECK_UNREAD(&B, g, 3);
	CHECK_UNREAD(&C, g, 3);

	r = API_OK(&B, "{s:s,s:s,s:i}", "op", "history", "room", g, "limit", 3);
	for(int i = 0; i < 3; i++) ids[i] = json_integer_value(json_object_get(json_array_get(json_object_get(r, "messages"), 2 - i), "id"));
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s,s:I}", "op", "read", "room", g, "upto", ids[1]);
	H_CHECK_INT(json_integer_value(json_object_get(r, "unread")), ==, 1);
	json_decref(r);
	CHECK_UNREAD(&B, g, 1);
	CHECK_UNREAD(&C, g, 3); /* carol's are hers */

	/* bob writes: everything before his message is read for him, one more for the others. */
	H_CHECK_INT(api_send(B.c, g, "bob says"), ==, 0);
	H_CHECK_INT(h_db_wait_int(env, 4, 5000, "SELECT count(*) FROM messages WHERE room_id = ?1", g, (char *)NULL), ==, 4);
	CHECK_UNREAD(&B, g, 0);
	CHECK_UNREAD(&C, g, 4);
	CHECK_UNREAD(&A, g, 1);
	/* A marker never goes back. */
	r = API_OK(&B, "{s:s,s:s,s:I}", "op", "read", "room", g, "upto", ids[0]);
	H_CHECK_INT(json_integer_value(json_object_get(r, "unread")), ==, 0);
	json_decref(r);
	CHECK_UNREAD(&B, g, 0);
	r = API_OK(&C, "{s:s,s:s}", "op", "history", "room", g);
	ids[3] = json_integer_value(json_object_get(json_array_get(json_object_get(r, "messages"), 0), "id"));
	json_decref(r);
	json_decref(API_OK(&C, "{s:s,s:s,s:I}", "op", "read", "room", g, "upto", ids[3]));
	CHECK_UNREAD(&C, g, 0);
	CHECK_UNREAD(&A, g, 1);
	/* dave, added later: what was said before counts as read. */
	json_decref(API_OK(&A, "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", g, "users", "dave"));
	api_user D;
	H_REQUIRE(API_OPEN(env, &D, "dave", H_PROTO_V5));
	CHECK_UNREAD(&D, g, 0);
	H_CHECK_INT(api_send(C.c, g, "welcome dave"), ==, 0);
	H_CHECK_INT(h_db_wait_int(env, 5, 5000, "SELECT count(*) FROM messages WHERE room_id = ?1", g, (char *)NULL), ==, 5);
	CHECK_UNREAD(&D, g, 1);
	CHECK_UNREAD(&A, g, 2);
	h_client_close(A.c);
	h_client_close(B.c);
	h_client_close(C.c);
	h_client_close(D.c);
}

/* A request published by alice is answered as alice, to alice, and never to anyone else. */
static void answered_only_as_and_to_the_requester(h_env *env)
{
	api_user A, B;
	mosquitto_property *props = NULL;
	char topic[256], corr[128];
	const char *req = "{\"op\":\"rooms.list\",\"req_id\":\"mine\"}";
	h_client *bob_res_sub = h_login(env, "bob", H_PROTO_V5);

	H_REQUIRE(API_OPEN(env, &A, "alice", H_PROTO_V5) && API_OPEN(env, &B, "bob", H_PROTO_V5) && bob_res_sub);
	/* bob's own view of his res tree and of his events. */
	H_REQUIRE_INT(h_subscribe(bob_res_sub, "chat/users/bob/events", 1), ==, 1);

	/* alice cannot publish into bob's request topic (nor subscribe to his answers). */
	H_CHECK_INT(h_publish_str(A.c, "chat/users/bob/req", "{\"op\":\"room.create\",\"participants\":[\"carol\"]}", 1), ==, 0x87);
	H_CHECK_INT(h_subscribe(A.c, "chat/users/bob/res", 1), >=, 0x80);
	H_CHECK_INT(h_subscribe(A.c, "chat/users/+/res", 1), >=, 0x80);
	H_CHECK_INT(h_publish_str(A.c, "chat/users/bob/res", "{\"req_id\":\"x\",\"ok\":true,\"result\":{}}", 1), ==, 0x87);

	/* Response topics that point outside alice's res tree are refused, not silently
	 * replaced (issue 10): an error answer comes to chat/users/alice/res, correlation data
	 * echoed, and the request is not run. */
	const char *elsewhere[] = { "chat/users/bob/res", "chat/users/bob/res/x", "chat/users/alice/events",
		"chat/users/alice/resx", "chat/users/alice", "chat/rooms/rX/messages", "other/topic", "$CONTROL/mqchat/v1",
		"chat/users/alice/res/+", "chat/users/alice/res/" };
	for(size_t i = 0; i < sizeof(elsewhere) / sizeof(elsewhere[0]); i++) {
		mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, elsewhere[i]);
		mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, "k", 1);
		H_CHECK_INT(api_post_raw(&A, req, (int)strlen(req), true, props), ==, 0);
		mosquitto_property_free_all(&props);
		json_t *ans = api_next_answer(&A, API_TIMEOUT_MS, topic, corr, NULL);
		if(!ans) {
			h_fail(__FILE__, __LINE__, "no answer with response topic %s", elsewhere[i]);
			continue;
		}
		if(strcmp(topic, "chat/users/alice/res") || strcmp(corr, "k")) {
			h_fail(__FILE__, __LINE__, "response topic %s: answer on %s with correlation '%s'", elsewhere[i], topic, corr);
		}
		json_t *err = json_object_get(ans, "error");
		const char *msg = json_string_value(json_object_get(err, "message"));
		if(!json_is_false(json_object_get(ans, "ok")) || !msg || !strstr(msg, "response topic")
				|| strcmp(json_string_value(json_object_get(err, "code")), "invalid")) {
			h_fail(__FILE__, __LINE__, "response topic %s: expected an invalid answer naming it", elsewhere[i]);
		}
		json_decref(ans);
	}

	/* Answered as alice: she sees her rooms, not bob's; a room of bob and carol is not hers. */
	json_t *r = API_OK(&B, "{s:s,s:[s]}", "op", "room.create", "participants", "carol");
	char bc[65];
	api_str(r, "id", bc);
	json_decref(r);
	H_CHECK(bc[0]);
	API_ERR(&A, "not_found", NULL, "{s:s,s:s}", "op", "room.get", "room", bc);
	API_ERR(&A, "invalid", "unknown argument", "{s:s,s:s}", "op", "rooms.list", "user", "bob");
	API_ERR(&A, "invalid", "unknown argument", "{s:s,s:s,s:s}", "op", "count", "room", bc, "as", "bob");
	r = API_OK(&A, "{s:s,s:i}", "op", "rooms.list", "limit", 100);
	json_t *room;
	size_t i;
	json_array_foreach(json_object_get(r, "rooms"), i, room) {
		H_CHECK(api_has(json_object_get(room, "participants"), "alice"));
		H_CHECK(strcmp(json_string_value(json_object_get(room, "id")), bc) != 0);
	}
	json_decref(r);
	/* Nothing of alice's reached bob: his res client got only his own answers, already
	 * collected; his events only bob's room.added for bc. */
	API_NO_MORE(&B, 500);
	json_decref(API_EXPECT_EVENT(bob_res_sub, "room.added", bc));
	H_CHECK_NO_MESSAGE(bob_res_sub, 100);
	API_NO_MORE(&A, 100);
	h_client_close(A.c);
	h_client_close(B.c);
	h_client_close(bob_res_sub);
}

int main(void)
{
	h_env *env = h_env_new("api_membership");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	h_user(env, "dave");
	h_env_no_limits(env);
	h_env_start(env);

	H_RUN(env, remove_bob_add_dave);
	H_RUN(env, remove_add_races);
	H_RUN(env, disabled_room);
	H_RUN(env, unread_per_user);
	H_RUN(env, answered_only_as_and_to_the_requester);
	return h_env_finish(env);
}
