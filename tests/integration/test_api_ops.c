/*
 * The request API, op by op (docs/protocol.md "Operations"): each op's success path and
 * each error code it can give, through a real broker, plugin and bridge. Also the errors
 * common to every op (malformed JSON, unknown op, bad arguments, limits), the MQTT 5
 * response topic and correlation data, and that every request gets exactly one answer.
 */
#include <stdlib.h>
#include <string.h>

#include "api_client.h"

static api_user A, B, C, D, F; /* alice, bob, carol, dave, frank; all MQTT 5 but bob */
static char direct_ab[65], group[65];

static void common_errors(h_env *env)
{
	(void)env;
	struct { const char *payload; const char *code; const char *needle; } bad[] = {
		{ "not json", "invalid", "malformed JSON" },
		{ "{\"op\":\"rooms.list\"", "invalid", "malformed JSON" },
		{ "[1,2]", "invalid", "JSON object" },
		{ "\"rooms.list\"", "invalid", "malformed JSON" }, /* jansson refuses a bare string without JSON_DECODE_ANY */
		{ "{}", "invalid", "op: required" },
		{ "{\"op\":5}", "invalid", "op: expected a string" },
		{ "{\"op\":\"room.explode\"}", "invalid", "room.explode" },
		{ "{\"op\":\"contacts.list\",\"colour\":\"red\"}", "invalid", "colour" },
		{ "{\"op\":\"rooms.list\",\"req_id\":true}", "invalid", "req_id" },
		{ "", "invalid", "malformed JSON" },
	};
	for(size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		H_CHECK_INT(api_post_raw(&A, bad[i].payload, (int)strlen(bad[i].payload), true, NULL), ==, 0);
		json_t *ans = api_next_answer(&A, API_TIMEOUT_MS, NULL, NULL, NULL);
		json_t *err = json_object_get(ans, "error");
		const char *code = json_string_value(json_object_get(err, "code"));
		const char *msg = json_string_value(json_object_get(err, "message"));
		if(!ans || !json_is_false(json_object_get(ans, "ok")) || !code || strcmp(code, bad[i].code) || !msg
				|| !strstr(msg, bad[i].needle) || !json_is_null(json_object_get(ans, "req_id"))) {
			char *s = api_dump(ans);
			h_fail(__FILE__, __LINE__, "request '%s': expected %s naming \"%s\" with req_id null, got %s",
					bad[i].payload, bad[i].code, bad[i].needle, s);
			free(s);
		}
		json_decref(ans);
	}
	/* req_id is echoed verbatim, string or number, also on errors. */
	const char *numeric = "{\"op\":\"room.explode\",\"req_id\":9}";
	H_CHECK_INT(api_post_raw(&A, numeric, (int)strlen(numeric), true, NULL), ==, 0);
	json_t *ans = api_next_answer(&A, API_TIMEOUT_MS, NULL, NULL, NULL);
	H_CHECK(json_is_integer(json_object_get(ans, "req_id")));
	H_CHECK_INT(json_integer_value(json_object_get(ans, "req_id")), ==, 9);
	H_CHECK(json_is_false(json_object_get(ans, "ok")));
	json_decref(ans);
	ans = API_CALL(&A, json_pack("{s:s,s:s}", "op", "contacts.list", "req_id", "r\"7\u00e9"));
	H_CHECK_STR(json_string_value(json_object_get(ans, "req_id")), "r\"7\u00e9");
	H_CHECK(json_is_true(json_object_get(ans, "ok")));
	json_decref(ans);

	/* Missing and wrong-typed arguments name the argument. */
	API_ERR(&A, "invalid", "room: required", "{s:s}", "op", "room.get");
	API_ERR(&A, "invalid", "room: expected a string", "{s:s,s:i}", "op", "room.get", "room", 5);
	API_ERR(&A, "invalid", "room: not a valid id", "{s:s,s:s}", "op", "room.get", "room", "a/b");
	API_ERR(&A, "invalid", "limit", "{s:s,s:s,s:s}", "op", "history", "room", direct_ab, "limit", "ten");

	/* Limits: a req_id over 256 bytes, a request over 64 KiB. */
	char big_id[300];
	memset(big_id, 'x', 257);
	big_id[257] = '\0';
	/* (Too long to echo: the answer's req_id is null.) */
	char big_req[400];
	snprintf(big_req, sizeof(big_req), "{\"op\":\"rooms.list\",\"req_id\":\"%s\"}", big_id);
	H_CHECK_INT(api_post_raw(&A, big_req, (int)strlen(big_req), true, NULL), ==, 0);
	ans = api_next_answer(&A, API_TIMEOUT_MS, NULL, NULL, NULL);
	H_CHECK_STR(json_string_value(json_object_get(json_object_get(ans, "error"), "code")), "too_large");
	const char *em = json_string_value(json_object_get(json_object_get(ans, "error"), "message"));
	H_CHECK(em && strstr(em, "req_id"));
	json_decref(ans);
	size_t n = 70000;
	char *huge = malloc(n + 64);
	H_REQUIRE(huge);
	int len = snprintf(huge, n + 64, "{\"op\":\"contacts.list\",\"pad\":\"");
	memset(huge + len, 'p', n);
	strcpy(huge + len + n, "\"}");
	/* Over 64 KiB: refused at the publish (PUBACK 0x87) by the plugin, never answered. */
	H_CHECK_INT(api_post_raw(&A, huge, (int)strlen(huge), true, NULL), ==, 0x87);
	free(huge);
	API_NO_MORE(&A, 500); /* exactly one answer each, none for the refused one */
}

/* MQTT 3.1.1 has no response topic: "res":"phone" sends the answer to .../res/phone, so
 * each device of a user can take its own answers (issue 10). */
static void v311_res_argument(h_env *env)
{
	h_client *p = h_login(env, "gus", H_PROTO_V311);
	h_client *q = h_login(env, "gus", H_PROTO_V311);
	H_REQUIRE(p && q);
	H_REQUIRE_INT(h_subscribe(p, "chat/users/gus/res/phone", 1), ==, 1);
	H_REQUIRE_INT(h_subscribe(q, "chat/users/gus/res/laptop", 1), ==, 1);
	H_CHECK_INT(h_publish_str(p, "chat/users/gus/req", "{\"op\":\"contacts.list\",\"req_id\":\"r1\",\"res\":\"phone\"}", 1), ==, 0);
	char topic[256];
	json_t *a = h_wait_json(p, 5000, topic);
	H_CHECK(a && json_is_true(json_object_get(a, "ok")) && !strcmp(topic, "chat/users/gus/res/phone"));
	json_decref(a);
	H_CHECK_NO_MESSAGE(q, 300); /* the other device does not get it */
	/* a bad one is an error, on .../res */
	H_REQUIRE_INT(h_subscribe(q, "chat/users/gus/res", 1), ==, 1);
	H_CHECK_INT(h_publish_str(q, "chat/users/gus/req", "{\"op\":\"contacts.list\",\"req_id\":\"r2\",\"res\":\"a/#\"}", 1), ==, 0);
	a = h_wait_json(q, 5000, topic);
	H_CHECK(a && json_is_false(json_object_get(a, "ok")) && !strcmp(topic, "chat/users/gus/res"));
	json_decref(a);
	h_client_close(p);
	h_client_close(q);
}

static void mqtt5_response_topic_and_correlation(h_env *env)
{
	(void)env;
	mosquitto_property *props = NULL;
	const char *req = "{\"op\":\"room.direct\",\"with\":\"bob\"}";
	char topic[256], corr[128];
	int corr_len = -2;

	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "chat/users/alice/res/phone");
	mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, "c-42", 4);
	H_CHECK_INT(api_post_raw(&A, req, (int)strlen(req), true, props), ==, 0);
	mosquitto_property_free_all(&props);
	json_t *ans = api_next_answer(&A, API_TIMEOUT_MS, topic, corr, &corr_len);
	H_REQUIRE(ans);
	H_CHECK_STR(topic, "chat/users/alice/res/phone");
	H_CHECK_INT(corr_len, ==, 4);
	H_CHECK_STR(corr, "c-42");
	H_CHECK(json_is_true(json_object_get(ans, "ok")));
	H_CHECK(json_is_null(json_object_get(ans, "req_id")));
	H_CHECK_STR(json_string_value(json_object_get(json_object_get(ans, "result"), "room")), direct_ab);
	json_decref(ans);

	/* Without a response topic: .../res, correlation data still echoed. */
	mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, "\x01\x02z", 3);
	H_CHECK_INT(api_post_raw(&A, req, (int)strlen(req), true, props), ==, 0);
	mosquitto_property_free_all(&props);
	ans = api_next_answer(&A, API_TIMEOUT_MS, topic, corr, &corr_len);
	H_REQUIRE(ans);
	H_CHECK_STR(topic, "chat/users/alice/res");
	H_CHECK_INT(corr_len, ==, 3);
	H_CHECK(memcmp(corr, "\x01\x02z", 3) == 0);
	json_decref(ans);

	/* An error answer goes the same way. */
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "chat/users/alice/res/x");
	mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, "e", 1);
	H_CHECK_INT(api_post_raw(&A, "nope", 4, true, props), ==, 0);
	mosquitto_property_free_all(&props);
	ans = api_next_answer(&A, API_TIMEOUT_MS, topic, corr, &corr_len);
	H_REQUIRE(ans);
	H_CHECK_STR(topic, "chat/users/alice/res/x");
	H_CHECK_STR(corr, "e");
	H_CHECK(json_is_false(json_object_get(ans, "ok")));
	json_decref(ans);

	/* MQTT 3.1.1 (bob): the answer on .../res, matched by req_id. */
	json_t *r = API_OK(&B, "{s:s,s:s}", "op", "room.direct", "with", "alice");
	H_CHECK_STR(json_string_value(json_object_get(r, "room")), direct_ab);
	json_decref(r);
	API_NO_MORE(&A, 300);
	API_NO_MORE(&B, 100);
}

static void room_create_direct(h_env *env)
{
	(void)env;
	/* The direct room made by the admin tool is found, by either side, in either order. */
	json_t *r = API_OK(&A, "{s:s,s:[s]}", "op", "room.create", "participants", "bob");
	H_REQUIRE(r);
	H_CHECK_STR(json_string_value(json_object_get(r, "id")), direct_ab);
	H_CHECK_STR(json_string_value(json_object_get(r, "kind")), "direct");
	H_CHECK(json_is_false(json_object_get(r, "created")));
	H_CHECK(json_is_null(json_object_get(r, "name")));
	H_CHECK_INT(json_array_size(json_object_get(r, "participants")), ==, 2);
	json_decref(r);
	r = API_OK(&B, "{s:s,s:[s,s,s]}", "op", "room.create", "participants", "alice", "bob", "alice");
	H_CHECK_STR(json_string_value(json_object_get(r, "id")), direct_ab);
	H_CHECK(json_is_false(json_object_get(r, "created")));
	json_decref(r);

	/* A new pair makes a new room, once. */
	r = API_OK(&C, "{s:s,s:[s]}", "op", "room.create", "participants", "dave");
	H_REQUIRE(r);
	char id[65];
	api_str(r, "id", id);
	H_CHECK(json_is_true(json_object_get(r, "created")));
	H_CHECK_STR(json_string_value(json_object_get(r, "created_by")), "carol");
	H_CHECK(json_is_true(json_object_get(r, "enabled")));
	H_CHECK(json_is_null(json_object_get(r, "last_message")));
	H_CHECK(api_has(json_object_get(r, "participants"), "carol") && api_has(json_object_get(r, "participants"), "dave"));
	json_decref(r);
	r = API_OK(&D, "{s:s,s:[s]}", "op", "room.create", "participants", "carol");
	H_CHECK_STR(json_string_value(json_object_get(r, "id")), id);
	H_CHECK(json_is_false(json_object_get(r, "created")));
	json_decref(r);

	API_ERR(&A, "invalid", "participants", "{s:s,s:[]}", "op", "room.create", "participants");
	API_ERR(&A, "invalid", "at least two", "{s:s,s:[s]}", "op", "room.create", "participants", "alice");
	API_ERR(&A, "invalid", "participants: required", "{s:s}", "op", "room.create");
	API_ERR(&A, "invalid", "participants: expected an array", "{s:s,s:s}", "op", "room.create", "participants", "bob");
	API_ERR(&A, "invalid", "participants[0]", "{s:s,s:[i]}", "op", "room.create", "participants", 7);
	API_ERR(&A, "invalid", "participants[1]", "{s:s,s:[s,s]}", "op", "room.create", "participants", "bob", "no/slash");
	API_ERR(&A, "invalid", "name", "{s:s,s:[s],s:s}", "op", "room.create", "participants", "bob", "name", "us");
	API_ERR(&A, "invalid", "erin", "{s:s,s:[s]}", "op", "room.create", "participants", "erin"); /* disabled */
	API_ERR(&A, "not_found", "nobody", "{s:s,s:[s]}", "op", "room.create", "participants", "nobody");
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM rooms WHERE kind = 'direct'", (char *)NULL), ==, 2);
}

static void room_create_group(h_env *env)
{
	(void)env;
	json_t *r = API_OK(&A, "{s:s,s:[s,s],s:s}", "op", "room.create", "participants", "bob", "carol", "name", "Lunch");
	H_REQUIRE(r);
	api_str(r, "id", group);
	H_CHECK_STR(json_string_value(json_object_get(r, "kind")), "group");
	H_CHECK_STR(json_string_value(json_object_get(r, "name")), "Lunch");
	H_CHECK(json_is_true(json_object_get(r, "created")));
	H_CHECK_INT(json_array_size(json_object_get(r, "participants")), ==, 3);
	json_decref(r);
	/* The same three again: a group is never deduplicated. */
	r = API_OK(&A, "{s:s,s:[s,s]}", "op", "room.create", "participants", "bob", "carol");
	H_CHECK(r && strcmp(json_string_value(json_object_get(r, "id")), group) != 0);
	H_CHECK(json_is_null(json_object_get(r, "name")));
	json_decref(r);

	char name[200];
	memset(name, 'n', 129);
	name[129] = '\0';
	API_ERR(&A, "too_large", "name", "{s:s,s:[s,s],s:s}", "op", "room.create", "participants", "bob", "carol", "name", name);
	API_ERR(&A, "invalid", "name", "{s:s,s:[s,s],s:s}", "op", "room.create", "participants", "bob", "carol", "name", "");
	API_ERR(&A, "invalid", "name", "{s:s,s:[s,s],s:i}", "op", "room.create", "participants", "bob", "carol", "name", 3);
	json_t *many = json_array();
	char u[32];
	/* The cost of one request is capped (101 names; the room limit, 1000, is in members_add_remove). */
	for(int i = 0; i < 101; i++) {
		snprintf(u, sizeof(u), "u%d", i);
		json_array_append_new(many, json_string(u));
	}
	API_ERR(&A, "too_large", "at most 100 users in one request", "{s:s,s:o}", "op", "room.create", "participants", many);
}

static void room_direct(h_env *env)
{
	(void)env;
	json_t *r = API_OK(&B, "{s:s,s:s}", "op", "room.direct", "with", "alice");
	H_CHECK_STR(json_string_value(json_object_get(r, "room")), direct_ab);
	json_decref(r);
	r = API_OK(&A, "{s:s,s:s}", "op", "room.direct", "with", "frank");
	H_CHECK(r && json_is_null(json_object_get(r, "room")));
	json_decref(r);
	/* Asking does not create it. */
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM rooms WHERE kind = 'direct'", (char *)NULL), ==, 2);
	API_ERR(&A, "invalid", "with: required", "{s:s}", "op", "room.direct");
	API_ERR(&A, "invalid", "with", "{s:s,s:s}", "op", "room.direct", "with", "alice");
	API_ERR(&A, "invalid", "with", "{s:s,s:s}", "op", "room.direct", "with", "#");
	API_ERR(&A, "invalid", "with", "{s:s,s:b}", "op", "room.direct", "with", 1);
}

static void rooms_list(h_env *env)
{
	(void)env;
	/* alice: the direct room and two groups. */
	json_t *r = API_OK(&A, "{s:s}", "op", "rooms.list");
	H_REQUIRE(r);
	json_t *rooms = json_object_get(r, "rooms");
	H_CHECK_INT(json_array_size(rooms), ==, 3);
	H_CHECK(json_is_false(json_object_get(r, "more")));
	H_CHECK(json_is_null(json_object_get(r, "next")));
	json_decref(r);

	/* Paging one by one gives the same three, each once. */
	char seen[3][65] = { "", "", "" };
	json_t *cursor = json_null();
	for(int page = 0; page < 4; page++) {
		r = API_OK(&A, "{s:s,s:i,s:O}", "op", "rooms.list", "limit", 1, "before", cursor);
		json_decref(cursor);
		cursor = NULL;
		if(!r) break;
		rooms = json_object_get(r, "rooms");
		if(page < 3) {
			H_CHECK_INT(json_array_size(rooms), ==, 1);
			api_str(json_array_get(rooms, 0), "id", seen[page]);
			for(int k = 0; k < page; k++) H_CHECK(strcmp(seen[k], seen[page]) != 0);
		}
		bool more = json_is_true(json_object_get(r, "more"));
		H_CHECK(more == (page < 2));
		cursor = json_incref(json_object_get(r, "next"));
		json_decref(r);
		if(!more) break;
	}
	json_decref(cursor);

	/* A message makes its room the most recent. */
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(bob);
	H_CHECK_INT(api_send(bob, direct_ab, "bump"), ==, 0);
	H_CHECK_INT(h_db_wait_int(env, 1, 5000, "SELECT count(*) FROM messages WHERE room_id = ?1", direct_ab, (char *)NULL), ==, 1);
	r = API_OK(&A, "{s:s,s:i}", "op", "rooms.list", "limit", 1);
	json_t *first = json_array_get(json_object_get(r, "rooms"), 0);
	H_CHECK_STR(json_string_value(json_object_get(first, "id")), direct_ab);
	H_CHECK_STR(json_string_value(json_object_get(json_object_get(first, "last_message"), "body")), "bump");
	H_CHECK_INT(json_integer_value(json_object_get(first, "unread")), ==, 1);
	json_decref(r);
	h_client_close(bob);

	API_ERR(&A, "invalid", "limit", "{s:s,s:i}", "op", "rooms.list", "limit", 0);
	API_ERR(&A, "invalid", "limit", "{s:s,s:i}", "op", "rooms.list", "limit", 101);
	API_ERR(&A, "invalid", "limit", "{s:s,s:s}", "op", "rooms.list", "limit", "5");
	API_ERR(&A, "invalid", "before", "{s:s,s:s}", "op", "rooms.list", "before", "garbage");
	API_ERR(&A, "invalid", "before", "{s:s,s:i}", "op", "rooms.list", "before", 5);
}

static void room_get(h_env *env)
{
	(void)env;
	json_t *r = API_OK(&C, "{s:s,s:s}", "op", "room.get", "room", group);
	H_CHECK_STR(json_string_value(json_object_get(r, "id")), group);
	H_CHECK_STR(json_string_value(json_object_get(r, "created_by")), "alice");
	json_decref(r);
	/* Not a participant and no such room: the same answer. */
	API_ERR(&C, "not_found", direct_ab, "{s:s,s:s}", "op", "room.get", "room", direct_ab);
	API_ERR(&C, "not_found", "rNoSuchRoom", "{s:s,s:s}", "op", "room.get", "room", "rNoSuchRoom");
	API_ERR(&C, "invalid", "room", "{s:s}", "op", "room.get");
	API_ERR(&C, "invalid", "room", "{s:s,s:s}", "op", "room.get", "room", "");
}

static void members_add_remove(h_env *env)
{
	(void)env;
	json_t *r = API_OK(&A, "{s:s,s:s,s:[s,s]}", "op", "room.members.add", "room", group, "users", "dave", "bob");
	H_REQUIRE(r);
	H_CHECK_INT(json_array_size(json_object_get(r, "added")), ==, 1);
	H_CHECK(api_has(json_object_get(r, "added"), "dave"));
	H_CHECK_INT(json_array_size(json_object_get(r, "participants")), ==, 4);
	json_decref(r);
	r = API_OK(&A, "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", group, "users", "dave");
	H_CHECK(r && json_array_size(json_object_get(r, "added")) == 0);
	json_decref(r);

	API_ERR(&B, "forbidden", "owner", "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", group, "users", "frank");
	API_ERR(&A, "not_found", "nobody", "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", group, "users", "nobody");
	API_ERR(&A, "not_found", NULL, "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", "rNoSuchRoom", "users", "frank");
	/* frank, not a participant: the same answer as for a room that does not exist. */
	API_ERR(&F, "not_found", group, "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", group, "users", "frank");
	API_ERR(&A, "invalid", "direct", "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", direct_ab, "users", "carol");
	API_ERR(&A, "invalid", "users", "{s:s,s:s,s:[]}", "op", "room.members.add", "room", group, "users");
	API_ERR(&A, "invalid", "users: required", "{s:s,s:s}", "op", "room.members.add", "room", group);
	API_ERR(&A, "invalid", "erin", "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", group, "users", "erin");
	json_t *many = json_array();
	char u[32];
	for(int i = 0; i < 101; i++) {
		snprintf(u, sizeof(u), "u%d", i);
		json_array_append_new(many, json_string(u));
	}
	API_ERR(&A, "too_large", "at most 100 users in one request", "{s:s,s:s,s:o}", "op", "room.members.add", "room", group, "users", many);

	/* remove: dave goes; nobody else's state changes. */
	r = API_OK(&A, "{s:s,s:s,s:[s,s]}", "op", "room.members.remove", "room", group, "users", "dave", "frank");
	H_REQUIRE(r);
	H_CHECK_INT(json_array_size(json_object_get(r, "removed")), ==, 1);
	H_CHECK(api_has(json_object_get(r, "removed"), "dave"));
	H_CHECK(!api_has(json_object_get(r, "participants"), "dave"));
	json_decref(r);
	API_ERR(&D, "not_found", NULL, "{s:s,s:s}", "op", "room.get", "room", group);
	API_ERR(&B, "forbidden", "owner", "{s:s,s:s,s:[s]}", "op", "room.members.remove", "room", group, "users", "carol");
	API_ERR(&A, "invalid", "room.leave", "{s:s,s:s,s:[s]}", "op", "room.members.remove", "room", group, "users", "alice");
	API_ERR(&A, "invalid", "direct", "{s:s,s:s,s:[s]}", "op", "room.members.remove", "room", direct_ab, "users", "bob");
	API_ERR(&F, "not_found", NULL, "{s:s,s:s,s:[s]}", "op", "room.members.remove", "room", group, "users", "bob");
	API_ERR(&A, "conflict", "two participants", "{s:s,s:s,s:[s,s]}", "op", "room.members.remove", "room", group, "users", "bob", "carol");
	/* The refused change changed nothing. */
	r = API_OK(&A, "{s:s,s:s}", "op", "room.get", "room", group);
	H_CHECK_INT(json_array_size(json_object_get(r, "participants")), ==, 3);
	json_decref(r);
}

static void leave_disable_enable(h_env *env)
{
	(void)env;
	/* A group of alice, bob, frank: alice (the owner) leaves, ownership passes on. */
	json_t *r = API_OK(&A, "{s:s,s:[s,s]}", "op", "room.create", "participants", "bob", "frank");
	H_REQUIRE(r);
	char g[65];
	api_str(r, "id", g);
	json_decref(r);
	API_ERR(&A, "invalid", "direct", "{s:s,s:s}", "op", "room.leave", "room", direct_ab);
	API_ERR(&C, "not_found", NULL, "{s:s,s:s}", "op", "room.leave", "room", g);
	API_ERR(&C, "invalid", "room", "{s:s}", "op", "room.leave");
	r = API_OK(&A, "{s:s,s:s}", "op", "room.leave", "room", g);
	H_CHECK(r && json_is_true(json_object_get(r, "left")));
	H_CHECK(!json_is_true(json_object_get(r, "room_disabled"))); /* absent or false: two remain */
	json_decref(r);
	API_ERR(&A, "not_found", NULL, "{s:s,s:s}", "op", "room.get", "room", g);
	r = API_OK(&F, "{s:s,s:s}", "op", "room.get", "room", g);
	H_CHECK_STR(json_string_value(json_object_get(r, "created_by")), "bob"); /* joined first; ties: smallest id */
	json_decref(r);

	/* disable / enable: only the owner, changed says whether it changed. */
	API_ERR(&F, "forbidden", "owner", "{s:s,s:s}", "op", "room.disable", "room", g);
	API_ERR(&F, "forbidden", "owner", "{s:s,s:s}", "op", "room.enable", "room", g);
	API_ERR(&C, "not_found", NULL, "{s:s,s:s}", "op", "room.disable", "room", g);
	API_ERR(&C, "invalid", "room", "{s:s,s:i}", "op", "room.enable", "room", 1);
	r = API_OK(&B, "{s:s,s:s}", "op", "room.disable", "room", g);
	H_CHECK(r && json_is_true(json_object_get(r, "changed")) && json_is_false(json_object_get(r, "enabled")));
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s}", "op", "room.disable", "room", g);
	H_CHECK(r && json_is_false(json_object_get(r, "changed")));
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s}", "op", "room.enable", "room", g);
	H_CHECK(r && json_is_true(json_object_get(r, "changed")) && json_is_true(json_object_get(r, "enabled")));
	json_decref(r);

	/* The last but one leaves: the room is disabled, and cannot be enabled alone. */
	r = API_OK(&F, "{s:s,s:s}", "op", "room.leave", "room", g);
	H_CHECK(r && json_is_true(json_object_get(r, "room_disabled")));
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s}", "op", "room.get", "room", g);
	H_CHECK(r && json_is_false(json_object_get(r, "enabled")));
	json_decref(r);
	API_ERR(&B, "conflict", NULL, "{s:s,s:s}", "op", "room.enable", "room", g);
}

static void contacts(h_env *env)
{
	(void)env;
	json_t *r = API_OK(&A, "{s:s,s:s}", "op", "contacts.add", "user", "frank");
	H_CHECK(r && json_is_true(json_object_get(r, "added")));
	json_decref(r);
	r = API_OK(&A, "{s:s,s:s}", "op", "contacts.add", "user", "frank");
	H_CHECK(r && json_is_false(json_object_get(r, "added")));
	json_decref(r);
	API_ERR(&A, "invalid", "user", "{s:s,s:s}", "op", "contacts.add", "user", "alice");
	API_ERR(&A, "invalid", "user", "{s:s,s:s}", "op", "contacts.add", "user", "a+b");
	API_ERR(&A, "invalid", "user: required", "{s:s}", "op", "contacts.add");
	API_ERR(&A, "not_found", "nobody", "{s:s,s:s}", "op", "contacts.add", "user", "nobody");
	API_ERR(&A, "invalid", "unknown argument", "{s:s,s:s}", "op", "contacts.list", "user", "bob");

	/* bob: shares rooms (direct room id), carol: shares a group (null), frank: explicit. */
	r = API_OK(&A, "{s:s}", "op", "contacts.list");
	json_t *list = json_object_get(r, "contacts"), *e;
	size_t i;
	bool bob = false, carol = false, frank = false;
	json_array_foreach(list, i, e) {
		const char *u = json_string_value(json_object_get(e, "user"));
		json_t *dr = json_object_get(e, "direct_room");
		if(!u) continue;
		H_CHECK(strcmp(u, "alice") != 0);
		if(!strcmp(u, "bob")) {
			bob = true;
			H_CHECK_STR(json_string_value(dr), direct_ab);
		} else if(!strcmp(u, "carol")) {
			carol = true;
			H_CHECK(json_is_null(dr));
		} else if(!strcmp(u, "frank")) {
			frank = true;
			H_CHECK(json_is_true(json_object_get(e, "explicit")));
		}
		if(i > 0) H_CHECK(strcmp(json_string_value(json_object_get(json_array_get(list, i - 1), "user")), u) < 0);
	}
	H_CHECK(bob && carol && frank);
	json_decref(r);

	r = API_OK(&A, "{s:s,s:s}", "op", "contacts.remove", "user", "frank");
	H_CHECK(r && json_is_true(json_object_get(r, "removed")));
	json_decref(r);
	r = API_OK(&A, "{s:s,s:s}", "op", "contacts.remove", "user", "frank");
	H_CHECK(r && json_is_false(json_object_get(r, "removed")));
	json_decref(r);
	API_ERR(&A, "invalid", "user", "{s:s,s:s}", "op", "contacts.remove", "user", "alice");
	/* frank shares a (disabled) room with alice? No: alice left it. He is gone from the list. */
	r = API_OK(&A, "{s:s}", "op", "contacts.list");
	json_array_foreach(json_object_get(r, "contacts"), i, e) {
		H_CHECK(strcmp(json_string_value(json_object_get(e, "user")), "frank") != 0);
	}
	json_decref(r);
}

static void history_count_read(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);
	char body[32];

	H_REQUIRE(alice && bob);
	long long before = h_db_int(env, "SELECT count(*) FROM messages WHERE room_id = ?1", direct_ab, (char *)NULL);
	for(int i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "h%d", i);
		H_CHECK_INT(api_send(i % 2 ? bob : alice, direct_ab, body), ==, 0);
	}
	H_CHECK_INT(h_db_wait_int(env, before + 5, 5000, "SELECT count(*) FROM messages WHERE room_id = ?1", direct_ab,
			(char *)NULL), ==, before + 5);

	json_t *r = API_OK(&A, "{s:s,s:s,s:i}", "op", "history", "room", direct_ab, "limit", 2);
	H_REQUIRE(r);
	json_t *msgs = json_object_get(r, "messages");
	H_CHECK_INT(json_array_size(msgs), ==, 2);
	H_CHECK_STR(json_string_value(json_object_get(json_array_get(msgs, 0), "body")), "h4");
	H_CHECK_STR(json_string_value(json_object_get(json_array_get(msgs, 1), "body")), "h3");
	H_CHECK(json_is_true(json_object_get(r, "more")));
	json_int_t h3 = json_integer_value(json_object_get(json_array_get(msgs, 1), "id"));
	json_decref(r);
	r = API_OK(&A, "{s:s,s:s,s:s}", "op", "history", "room", direct_ab, "from", "bob");
	msgs = json_object_get(r, "messages");
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m) H_CHECK_STR(json_string_value(json_object_get(m, "from")), "bob");
	H_CHECK_INT(json_array_size(msgs), ==, before + 2); /* "bump" and h1, h3 */
	json_decref(r);

	/* count: total, from, unread (bob's marker is at his own h3). */
	r = API_OK(&B, "{s:s,s:s}", "op", "count", "room", direct_ab);
	H_CHECK_INT(json_integer_value(json_object_get(r, "total")), ==, before + 5);
	H_CHECK_INT(json_integer_value(json_object_get(r, "unread")), ==, 1);
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s,s:s}", "op", "count", "room", direct_ab, "from", "alice");
	H_CHECK_INT(json_integer_value(json_object_get(r, "total")), ==, 3);
	json_decref(r);

	/* read: to h4, then an older id leaves the marker where it is. */
	r = API_OK(&B, "{s:s,s:s,s:I}", "op", "read", "room", direct_ab, "upto", (json_int_t)h3 + 0);
	H_CHECK_INT(json_integer_value(json_object_get(r, "unread")), ==, 1);
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s}", "op", "history", "room", direct_ab);
	json_int_t h4 = json_integer_value(json_object_get(json_array_get(json_object_get(r, "messages"), 0), "id"));
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s,s:I}", "op", "read", "room", direct_ab, "upto", h4);
	H_CHECK_INT(json_integer_value(json_object_get(r, "last_read_id")), ==, h4);
	H_CHECK_INT(json_integer_value(json_object_get(r, "unread")), ==, 0);
	json_decref(r);
	r = API_OK(&B, "{s:s,s:s,s:I}", "op", "read", "room", direct_ab, "upto", h3);
	H_CHECK_INT(json_integer_value(json_object_get(r, "last_read_id")), ==, h4);
	json_decref(r);

	/* Errors of history, count, read. */
	API_ERR(&C, "not_found", NULL, "{s:s,s:s}", "op", "history", "room", direct_ab);
	API_ERR(&C, "not_found", NULL, "{s:s,s:s}", "op", "count", "room", direct_ab);
	API_ERR(&C, "not_found", NULL, "{s:s,s:s,s:I}", "op", "read", "room", direct_ab, "upto", h4);
	API_ERR(&A, "invalid", "limit", "{s:s,s:s,s:i}", "op", "history", "room", direct_ab, "limit", 0);
	API_ERR(&A, "invalid", "limit", "{s:s,s:s,s:i}", "op", "history", "room", direct_ab, "limit", 101);
	API_ERR(&A, "invalid", "before", "{s:s,s:s,s:s}", "op", "history", "room", direct_ab, "before", "x");
	API_ERR(&A, "invalid", "after", "{s:s,s:s,s:f}", "op", "history", "room", direct_ab, "after", 1.5);
	API_ERR(&A, "invalid", "from", "{s:s,s:s,s:s}", "op", "history", "room", direct_ab, "from", "");
	API_ERR(&A, "invalid", "room", "{s:s}", "op", "count");
	API_ERR(&A, "invalid", "from", "{s:s,s:s,s:i}", "op", "count", "room", direct_ab, "from", 3);
	API_ERR(&A, "invalid", "upto", "{s:s,s:s}", "op", "read", "room", direct_ab);
	API_ERR(&A, "invalid", "upto", "{s:s,s:s,s:i}", "op", "read", "room", direct_ab, "upto", 1);
	API_ERR(&A, "invalid", "upto", "{s:s,s:s,s:s}", "op", "read", "room", direct_ab, "upto", "7");
	h_client_close(alice);
	h_client_close(bob);
}

static void exactly_one_answer_each(h_env *env)
{
	(void)env;
	/* 30 requests in flight at once, good and bad mixed: 30 answers, one per req_id. */
	char ids[30][128];
	bool seen[30] = { false };
	for(int i = 0; i < 30; i++) {
		json_t *req = i % 3 == 0 ? json_pack("{s:s}", "op", "rooms.list")
			: i % 3 == 1 ? json_pack("{s:s,s:s}", "op", "room.get", "room", "rNope")
			: json_pack("{s:s,s:i}", "op", "no.such.op", "x", i);
		H_CHECK_INT(api_post(&A, req, ids[i]), ==, 0);
	}
	for(int n = 0; n < 30; n++) {
		json_t *ans = api_next_answer(&A, API_TIMEOUT_MS, NULL, NULL, NULL);
		if(!ans) {
			h_fail(__FILE__, __LINE__, "only %d answers to 30 requests", n);
			break;
		}
		const char *id = json_string_value(json_object_get(ans, "req_id"));
		int k = -1;
		for(int i = 0; id && i < 30; i++) if(!strcmp(ids[i], id)) k = i;
		H_CHECK(k >= 0 && !seen[k]);
		if(k >= 0) {
			seen[k] = true;
			H_CHECK(json_is_true(json_object_get(ans, "ok")) == (k % 3 == 0));
		}
		json_decref(ans);
	}
	API_NO_MORE(&A, 500);
}

/* A client's own user properties (the plugin adds its marks after them) are no obstacle:
 * the bridge reads past them. (A first user property not the bridge's own once made it look
 * at the same property forever, and the request thread answered nobody again.) Last: it
 * makes a room, which the other cases would count. */
static void request_with_user_properties(h_env *env)
{
	(void)env;
	mosquitto_property *props = NULL;
	const char *req = "{\"op\":\"room.direct\",\"with\":\"bob\"}";
	char topic[256], corr[128], send[256];
	int corr_len = -2;

	mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "app", "chat-client/1.0");
	mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "trace", "t-1");
	H_CHECK_INT(api_post_raw(&A, req, (int)strlen(req), true, props), ==, 0);
	mosquitto_property_free_all(&props);
	json_t *ans = api_next_answer(&A, API_TIMEOUT_MS, topic, corr, &corr_len);
	H_CHECK(ans && json_is_true(json_object_get(ans, "ok")));
	json_decref(ans);
	/* the same right after a send, so the plugin adds its marks */
	json_t *own = API_OK(&A, "{s:s,s:[s,s],s:s}", "op", "room.create", "participants", "bob", "carol", "name", "marks");
	H_REQUIRE(own);
	h_topic_send(send, json_string_value(json_object_get(own, "id")));
	json_decref(own);
	H_CHECK_INT(h_publish_str(A.c, send, "{\"type\":\"msg\",\"body\":\"marked\"}", 1), ==, 0);
	mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "app", "chat-client/1.0");
	H_CHECK_INT(api_post_raw(&A, req, (int)strlen(req), true, props), ==, 0);
	mosquitto_property_free_all(&props);
	ans = api_next_answer(&A, API_TIMEOUT_MS, topic, corr, &corr_len);
	H_CHECK(ans && json_is_true(json_object_get(ans, "ok")));
	json_decref(ans);
}

int main(void)
{
	h_env *env = h_env_new("api_ops");
	const char *users[] = { "alice", "bob", "carol", "dave", "erin", "frank", "gus" };

	for(size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) h_user(env, users[i]);
	if(h_room_create(env, direct_ab, "alice", "bob", (char *)NULL)
			|| h_admin(env, NULL, NULL, 0, "--db", env->db, "user", "disable", "erin", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_no_limits(env);
	h_env_start(env);
	if(!API_OPEN(env, &A, "alice", H_PROTO_V5) || !API_OPEN(env, &B, "bob", H_PROTO_V311)
			|| !API_OPEN(env, &C, "carol", H_PROTO_V5) || !API_OPEN(env, &D, "dave", H_PROTO_V5)
			|| !API_OPEN(env, &F, "frank", H_PROTO_V5)) {
		return h_env_finish(env);
	}

	H_RUN(env, common_errors);
	H_RUN(env, mqtt5_response_topic_and_correlation);
	H_RUN(env, v311_res_argument);
	H_RUN(env, room_create_direct);
	H_RUN(env, room_create_group);
	H_RUN(env, room_direct);
	H_RUN(env, rooms_list);
	H_RUN(env, room_get);
	H_RUN(env, members_add_remove);
	H_RUN(env, leave_disable_enable);
	H_RUN(env, contacts);
	H_RUN(env, history_count_read);
	H_RUN(env, exactly_one_answer_each);
	H_RUN(env, request_with_user_properties);
	return h_env_finish(env);
}
