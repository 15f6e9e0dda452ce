/*
 * Hostile requests to the bridge (docs/protocol.md "Requests"), against a real broker and
 * bridge: malformed JSON, hostile nesting, every argument with every wrong type and
 * out-of-range value, other users' rooms, and 1,000 requests in flight at once.
 *
 * The standard: every request gets exactly one answer with ok:false and the documented
 * code (invalid / too_large / not_found / forbidden), nothing is changed by a refused
 * request, and the bridge keeps storing chat messages throughout.
 */
#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "mqchat_store.h"

static char room[65], others_room[65], group[65];

static bool code_in(const char *code, const char *allowed)
{
	/* allowed: "invalid|too_large" */
	size_t n = code ? strlen(code) : 0;
	for(const char *p = allowed; code && *p; ){
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if(len == n && !strncmp(p, code, n)) return true;
		p += len + (bar ? 1 : 0);
	}
	return false;
}

/* Payloads whose req_id cannot be read: each gets one answer, req_id null, ok false. */
static void malformed_requests_get_one_answer_each(h_env *env)
{
	api_user a;
	if(!API_OPEN(env, &a, "alice", H_PROTO_V5)) return;

	char *deep = malloc(10001), *big = malloc(65537 + 1);
	H_REQUIRE(deep && big);
	memset(deep, '[', 10000);
	deep[10000] = '\0';
	/* a well-formed request one byte over 64 KiB */
	memset(big, ' ', 65537);
	memcpy(big, "{\"op\":\"rooms.list\"", 18);
	big[65536] = '}';
	big[65537] = '\0';
	static const char nul[] = "{\"op\":\"rooms.list\",\"req_id\":\"a\0b\"}";
	struct { const char *p; int len; const char *codes; } cases[] = {
		{ "", 0, "invalid" },
		{ "not json", -1, "invalid" },
		{ "[]", -1, "invalid" },
		{ "null", -1, "invalid" },
		{ "\"rooms.list\"", -1, "invalid" },
		{ "{", -1, "invalid" },
		{ deep, -1, "invalid" },
		{ "{\"op\":\"rooms.list\"}\xff", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"x\":\"\xc0\xaf\"}", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"x\":\"\\ud800\"}", -1, "invalid" },
		{ nul, (int)sizeof(nul) - 1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"req_id\":\"\\u0000\"}", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"op\":\"count\"}", -1, "invalid" },
		{ "{\"op\":1}", -1, "invalid" },
		{ "{\"op\":null}", -1, "invalid" },
		{ "{}", -1, "invalid" },
		{ "{\"op\":\"ROOMS.LIST\"}", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"req_id\":{\"a\":1}}", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"req_id\":[1]}", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"req_id\":true}", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"n\":123456789012345678901234567890}", -1, "invalid" },
		{ "{\"op\":\"rooms.list\",\"n\":1e999}", -1, "invalid" },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	/* One byte over 64 KiB never reaches the bridge: the plugin refuses it (0x87). */
	H_CHECK_INT(api_post_raw(&a, big, 65537, true, NULL), ==, 0x87);
	for(size_t i = 0; i < n; i++){
		int len = cases[i].len >= 0 ? cases[i].len : (int)strlen(cases[i].p);
		H_CHECK_INT(api_post_raw(&a, cases[i].p, len, true, NULL), ==, 0);
		json_t *ans = api_next_answer(&a, 5000, NULL, NULL, NULL);
		const char *code = json_string_value(json_object_get(json_object_get(ans, "error"), "code"));
		if(!ans || !json_is_false(json_object_get(ans, "ok")) || !json_is_null(json_object_get(ans, "req_id"))
				|| !code_in(code, cases[i].codes)){
			char *s = api_dump(ans);
			h_fail(__FILE__, __LINE__, "malformed case %zu (%.40s): expected %s with req_id null, got %s",
					i, cases[i].p, cases[i].codes, s);
			free(s);
		}
		json_decref(ans);
	}
	API_NO_MORE(&a, 500);
	/* A too-long req_id cannot be echoed. */
	char rid[400];
	memset(rid, 'q', 257);
	rid[257] = '\0';
	char req[600];
	snprintf(req, sizeof(req), "{\"op\":\"rooms.list\",\"req_id\":\"%s\"}", rid);
	H_CHECK_INT(api_post_raw(&a, req, (int)strlen(req), true, NULL), ==, 0);
	json_t *ans = api_next_answer(&a, 5000, NULL, NULL, NULL);
	H_CHECK(ans && json_is_null(json_object_get(ans, "req_id")));
	H_CHECK_STR(json_string_value(json_object_get(json_object_get(ans, "error"), "code")), "too_large");
	json_decref(ans);
	API_NO_MORE(&a, 300);
	free(deep);
	free(big);
}

/* Every argument, every wrong type and out-of-range value: one answer with the right code. */
static void wrong_arguments_are_refused(h_env *env)
{
	api_user a;
	if(!API_OPEN(env, &a, "alice", H_PROTO_V5)) return;
	char longid[70];
	memset(longid, 'a', 65);
	longid[65] = '\0';
	char name129[140];
	memset(name129, 'n', 129);
	name129[129] = '\0';
	/* 1001 participants: too_large before any lookup. */
	json_t *many = json_array();
	for(int i = 0; i < 1001; i++){
		char u[32];
		snprintf(u, sizeof(u), "u%d", i);
		json_array_append_new(many, json_string(u));
	}
	json_t *wrong[] = { json_integer(1), json_real(1.5), json_true(), json_array(), json_object(),
			json_string(""), json_string("bad/id"), json_string("+"), json_string("#"), json_string(longid),
			json_string("\xc3\xa9"), json_integer(-1), json_integer(0), json_integer((json_int_t)1 << 53),
			json_integer(INT64_MAX), json_integer(INT64_MIN), json_string("1") };
	size_t nw = sizeof(wrong) / sizeof(wrong[0]);
	struct { const char *op; const char *arg; const char *base; } args[] = {
		{ "history", "room", NULL }, { "history", "before", "room" }, { "history", "after", "room" },
		{ "history", "limit", "room" }, { "history", "from", "room" },
		{ "count", "room", NULL }, { "count", "from", "room" },
		{ "read", "room", NULL }, { "read", "upto", "room" },
		{ "room.get", "room", NULL }, { "room.direct", "with", NULL },
		{ "rooms.list", "limit", NULL }, { "rooms.list", "before", NULL },
		{ "room.create", "participants", NULL }, { "room.create", "name", "participants" },
		{ "room.members.add", "users", "room" }, { "room.members.remove", "users", "room" },
		{ "room.members.add", "room", "users" },
		{ "room.leave", "room", NULL }, { "room.disable", "room", NULL }, { "room.enable", "room", NULL },
		{ "contacts.add", "user", NULL }, { "contacts.remove", "user", NULL },
	};
	int answered = 0, checked = 0;
	for(size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++){
		for(size_t w = 0; w < nw; w++){
			json_t *req = json_pack("{s:s}", "op", args[i].op);
			/* The companion argument, valid, so only the one under test is wrong. */
			if(args[i].base){
				if(!strcmp(args[i].base, "room")) json_object_set_new(req, "room", json_string(strcmp(args[i].op, "room.members.add") && strcmp(args[i].op, "room.members.remove") ? room : group));
				else if(!strcmp(args[i].base, "participants")) json_object_set_new(req, "participants", json_pack("[s,s]", "bob", "carol"));
				else if(!strcmp(args[i].base, "users")) json_object_set_new(req, "users", json_pack("[s]", "carol"));
			}
			json_object_set(req, args[i].arg, wrong[w]);
			char *what = api_dump(req);
			json_t *ans = API_CALL(&a, req);
			checked++;
			if(ans) answered++;
			/* Some "wrong" values are legitimately in range for some arguments (e.g. after:
			 * 0, limit 1): those may succeed; what they must never do is fail as internal. */
			const char *code = json_string_value(json_object_get(json_object_get(ans, "error"), "code"));
			bool ok = json_is_true(json_object_get(ans, "ok"));
			if(ans && !ok && !code_in(code, "invalid|too_large|not_found|forbidden|conflict")){
				h_fail(__FILE__, __LINE__, "%s: unexpected error code %s", what, code ? code : "(none)");
			}
			if(ans && ok){
				/* Allowed successes: integers in range. A string, object, array, bool or real never. */
				bool id_arg = !strcmp(args[i].arg, "from") || !strcmp(args[i].arg, "with") || !strcmp(args[i].arg, "user");
				bool valid_id = json_is_string(wrong[w]) && mqc_name_valid(json_string_value(wrong[w]),
						json_string_length(wrong[w]));
				bool free_text = !strcmp(args[i].arg, "name") && json_is_string(wrong[w]);
				if(!json_is_integer(wrong[w]) && !(id_arg && valid_id) && !free_text){
					char *s = api_dump(ans);
					h_fail(__FILE__, __LINE__, "%s was accepted: %.300s", what, s);
					free(s);
				}
			}
			free(what);
			json_decref(ans);
		}
	}
	H_CHECK_INT(answered, ==, checked);
	/* Specific codes. */
	API_ERR(&a, "too_large", NULL, "{s:s,s:O}", "op", "room.create", "participants", many);
	API_ERR(&a, "too_large", NULL, "{s:s,s:[s,s],s:s}", "op", "room.create", "participants", "bob", "carol", "name", name129);
	API_ERR(&a, "invalid", NULL, "{s:s,s:[s]}", "op", "room.create", "participants", "alice");
	API_ERR(&a, "invalid", NULL, "{s:s,s:[]}", "op", "room.create", "participants");
	API_ERR(&a, "not_found", NULL, "{s:s,s:[s]}", "op", "room.create", "participants", "nobody-such");
	API_ERR(&a, "not_found", NULL, "{s:s,s:s}", "op", "room.get", "room", others_room);
	API_ERR(&a, "not_found", NULL, "{s:s,s:s}", "op", "history", "room", others_room);
	API_ERR(&a, "not_found", NULL, "{s:s,s:s}", "op", "count", "room", others_room);
	API_ERR(&a, "not_found", NULL, "{s:s,s:s,s:I}", "op", "read", "room", others_room, "upto", (json_int_t)1);
	API_ERR(&a, "not_found", NULL, "{s:s,s:s}", "op", "room.disable", "room", others_room);
	API_ERR(&a, "not_found", NULL, "{s:s,s:s,s:[s]}", "op", "room.members.add", "room", others_room, "users", "alice");
	API_ERR(&a, "invalid", NULL, "{s:s,s:s}", "op", "contacts.add", "user", "alice");
	API_ERR(&a, "invalid", NULL, "{s:s,s:s,s:s}", "op", "rooms.list", "before", "1:", "req_id", "rl1");
	API_ERR(&a, "invalid", NULL, "{s:s,s:s}", "op", "rooms.list", "before", "99999999999999999999999:r");
	API_ERR(&a, "invalid", NULL, "{s:s,s:s,s:s}", "op", "history", "room", room, "colour", "red");
	API_NO_MORE(&a, 300);
	/* Nothing a refused request asked for happened. */
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM room_participants WHERE room_id = ?1 AND user_id = 'alice'",
			others_room, (char *)NULL), ==, 0);
	H_CHECK_INT(h_db_int(env, "SELECT enabled FROM rooms WHERE id = ?1", others_room, (char *)NULL), ==, 1);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM contacts WHERE owner = 'alice' AND contact = 'alice'", (char *)NULL), ==, 0);
	for(size_t w = 0; w < nw; w++) json_decref(wrong[w]);
	json_decref(many);
}

/* The other user's tree: alice cannot ask as bob, nor read bob's answers. */
static void requests_as_another_user_are_refused(h_env *env)
{
	api_user a;
	if(!API_OPEN(env, &a, "alice", H_PROTO_V5)) return;
	const char *req = "{\"op\":\"rooms.list\",\"req_id\":\"steal\"}";
	H_CHECK_INT(h_publish_str(a.c, "chat/users/bob/req", req, 1), >=, 0x80);
	H_CHECK_INT(h_publish_str(a.c, "chat/users/alice/req/x", req, 1), >=, 0x80);
	H_CHECK_INT(h_subscribe(a.c, "chat/users/bob/res", 1), >=, 0x80);
	/* A response topic pointing at bob's inbox is ignored: the answer comes to alice. */
	mosquitto_property *props = NULL;
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "chat/users/bob/res");
	H_CHECK_INT(api_post_raw(&a, req, (int)strlen(req), true, props), ==, 0);
	mosquitto_property_free_all(&props);
	char topic[256];
	json_t *ans = api_next_answer(&a, 5000, topic, NULL, NULL);
	H_CHECK(ans != NULL);
	H_CHECK_STR(topic, "chat/users/alice/res");
	json_decref(ans);
	API_NO_MORE(&a, 300);
}

/* 1,000 requests in flight from one client (valid and invalid mixed) while bob chats: one
 * answer each, and every chat message is stored. */
static void thousand_requests_in_flight(h_env *env)
{
	api_user a;
	if(!API_OPEN(env, &a, "alice", H_PROTO_V5)) return;
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(bob);
	char send[256];
	h_topic_send(send, room);
	enum { N = 1000 };
	static char seen[N];
	memset(seen, 0, sizeof(seen));
	for(int i = 0; i < N; i++){
		char req[256];
		switch(i % 4){
		case 0: snprintf(req, sizeof(req), "{\"op\":\"history\",\"req_id\":\"f%d\",\"room\":\"%s\",\"limit\":5}", i, room); break;
		case 1: snprintf(req, sizeof(req), "{\"op\":\"count\",\"req_id\":\"f%d\",\"room\":\"%s\"}", i, room); break;
		case 2: snprintf(req, sizeof(req), "{\"op\":\"history\",\"req_id\":\"f%d\",\"room\":\"%s\",\"limit\":-1}", i, room); break;
		default: snprintf(req, sizeof(req), "{\"op\":\"room.get\",\"req_id\":\"f%d\",\"room\":\"%s\"}", i, others_room); break;
		}
		if(api_post_raw(&a, req, (int)strlen(req), false, NULL) != 0){
			h_fail(__FILE__, __LINE__, "posting request %d failed", i);
			return;
		}
		if(i % 50 == 0){
			char body[64];
			snprintf(body, sizeof(body), "{\"type\":\"msg\",\"body\":\"during %d\"}", i);
			H_CHECK_INT(h_publish_str(bob, send, body, 1), ==, 0);
		}
	}
	int got = 0, wrong = 0;
	int64_t until = h_now_ms() + 60000;
	while(got < N && h_now_ms() < until){
		json_t *ans = api_next_answer(&a, 5000, NULL, NULL, NULL);
		if(!ans) break;
		const char *rid = json_string_value(json_object_get(ans, "req_id"));
		int i = rid && rid[0] == 'f' ? atoi(rid + 1) : -1;
		if(i < 0 || i >= N || seen[i]){
			wrong++;
		}else{
			seen[i] = 1;
			bool ok = json_is_true(json_object_get(ans, "ok"));
			const char *code = json_string_value(json_object_get(json_object_get(ans, "error"), "code"));
			if((i % 4 < 2 && !ok) || (i % 4 == 2 && (ok || strcmp(code, "invalid")))
					|| (i % 4 == 3 && (ok || strcmp(code, "not_found")))) wrong++;
		}
		got++;
		json_decref(ans);
	}
	H_CHECK_INT(got, ==, N);
	H_CHECK_INT(wrong, ==, 0);
	API_NO_MORE(&a, 500);
	H_CHECK_INT(h_db_wait_int(env, N / 50, 10000, "SELECT count(*) FROM messages WHERE body LIKE 'during %'",
			(char *)NULL), ==, N / 50);
}

int main(void)
{
	h_env *env = h_env_new("hostile_requests");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room, "alice", "bob", (char *)NULL)
			|| h_room_create(env, others_room, "bob", "carol", (char *)NULL)
			|| h_room_create(env, group, "alice", "bob", "carol", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_no_limits(env);
	h_env_start(env);

	H_RUN(env, malformed_requests_get_one_answer_each);
	H_RUN(env, wrong_arguments_are_refused);
	H_RUN(env, requests_as_another_user_are_refused);
	H_RUN(env, thousand_requests_in_flight);
	return h_env_finish(env);
}
