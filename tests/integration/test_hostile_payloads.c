/*
 * Hostile input on the plugin's hot path, against a real broker: message payloads, topics,
 * subscription filters and CONNECT fields built to break the parser, the limits and the
 * topic rules.
 *
 * The standard every case holds to: bad input is refused with a failure reason code
 * (PUBACK / SUBACK >= 0x80 on MQTT 5, a CONNACK failure), nothing of it reaches anyone,
 * what was accepted is delivered and stored exactly as specified, and the broker answers
 * the next client promptly (checked after every group of cases by a timed round trip).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char room[65], other_room[65];

/* A payload with its length (may hold NUL bytes) and what must happen to it. */
struct pcase {
	const char *what;
	const char *payload;
	int len;          /* -1: strlen(payload) */
	bool accept;
	const char *body; /* accepted: the body the receiver must see (NULL: no body) */
};

/* One valid message round trip alice -> bob within 1 s: the broker still serves. */
static void still_serving(h_client *alice, h_client *bob, const char *tag)
{
	char send[256], payload[128];
	h_topic_send(send, room);
	snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"alive %s\"}", tag);
	int64_t t0 = h_now_ms();
	H_CHECK_INT(h_publish_str(alice, send, payload, 1), ==, 0);
	char body[96];
	snprintf(body, sizeof(body), "alive %s", tag);
	json_t *m = h_expect_chat_at(__FILE__, __LINE__, bob, room, "alice", body, 1000);
	H_CHECK(m != NULL);
	H_CHECK_INT(h_now_ms() - t0, <, 1000);
	json_decref(m);
}

/* fmt with its one "%s" (if any) replaced by room: the formats are data, not literals. */
static void subst(char *out, size_t outlen, const char *fmt, const char *r)
{
	const char *at = strstr(fmt, "%s");
	if(!at){
		snprintf(out, outlen, "%s", fmt);
		return;
	}
	snprintf(out, outlen, "%.*s%s%s", (int)(at - fmt), fmt, r, at + 2);
}

static char *repeat(const char *unit, size_t n)
{
	size_t ul = strlen(unit);
	char *s = malloc(ul * n + 1);
	if(!s) return NULL;
	for(size_t i = 0; i < n; i++) memcpy(s + i * ul, unit, ul);
	s[ul * n] = '\0';
	return s;
}

/* {"type":"msg","body":"<n x c>"} padded with spaces to exactly total bytes. */
static char *padded_message(size_t bodylen, size_t total)
{
	char *s = malloc(total + 1);
	if(!s) return NULL;
	int head = snprintf(s, total + 1, "{\"type\":\"msg\",\"body\":\"");
	memset(s + head, 'p', bodylen);
	size_t pos = (size_t)head + bodylen;
	memcpy(s + pos, "\"", 1);
	pos += 1;
	memset(s + pos, ' ', total - pos - 1);
	s[total - 1] = '}';
	s[total] = '\0';
	return s;
}

static void run_cases(h_client *alice, h_client *bob, const struct pcase *cases, size_t n)
{
	char send[256];
	h_topic_send(send, room);
	for(size_t i = 0; i < n; i++){
		const struct pcase *pc = &cases[i];
		int len = pc->len >= 0 ? pc->len : (int)strlen(pc->payload);
		int rc = h_publish(alice, send, pc->payload, len, 1, false, NULL);
		if(pc->accept){
			if(rc != 0) h_fail(__FILE__, __LINE__, "case '%s' refused with %d, expected accepted", pc->what, rc);
			json_t *m = h_expect_chat_at(__FILE__, __LINE__, bob, room, "alice", pc->body, 3000);
			if(!m) h_fail(__FILE__, __LINE__, "case '%s': accepted but not delivered", pc->what);
			json_decref(m);
		}else{
			if(rc < 0x80) h_fail(__FILE__, __LINE__, "case '%s' answered %d, expected a refusal (>= 0x80)", pc->what, rc);
		}
		if(!h_client_connected(alice)){
			h_fail(__FILE__, __LINE__, "case '%s' disconnected the publisher", pc->what);
			return;
		}
	}
	H_CHECK_NO_MESSAGE(bob, 300); /* nothing refused leaked through */
}

static void malformed_and_hostile_json_is_refused(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	H_REQUIRE(alice && bob);

	char *deep_arr = repeat("[", 10000);
	char *deep_obj = repeat("{\"a\":", 10000);
	char *deep_in_att = NULL;
	char *nested = repeat("[", 3000);
	H_REQUIRE(deep_arr && deep_obj && nested);
	size_t dl = strlen(nested) + 128;
	deep_in_att = malloc(dl);
	H_REQUIRE(deep_in_att);
	snprintf(deep_in_att, dl, "{\"type\":\"msg\",\"body\":\"x\",\"id\":%s", nested);

	static const char nul_raw[] = "{\"type\":\"msg\",\"body\":\"a\0b\"}";
	const struct pcase cases[] = {
		{ "10000 [", deep_arr, -1, false, NULL },
		{ "10000 nested objects", deep_obj, -1, false, NULL },
		{ "3000 [ in an ignored member", deep_in_att, -1, false, NULL },
		{ "empty payload", "", 0, false, NULL },
		{ "not an object: array", "[]", -1, false, NULL },
		{ "not an object: string", "\"msg\"", -1, false, NULL },
		{ "not an object: null", "null", -1, false, NULL },
		{ "trailing garbage", "{\"type\":\"msg\",\"body\":\"x\"} {}", -1, false, NULL },
		{ "truncated", "{\"type\":\"msg\",\"body\":\"x\"", -1, false, NULL },
		{ "integer overflow in ignored id", "{\"type\":\"msg\",\"body\":\"x\",\"id\":123456789012345678901234567890}", -1, false, NULL },
		{ "real overflow in ignored ts", "{\"type\":\"msg\",\"body\":\"x\",\"ts\":1e999999}", -1, false, NULL },
		{ "invalid UTF-8 byte", "{\"type\":\"msg\",\"body\":\"a\xff" "b\"}", -1, false, NULL },
		{ "overlong encoding of /", "{\"type\":\"msg\",\"body\":\"a\xc0\xaf\"}", -1, false, NULL },
		{ "overlong NUL", "{\"type\":\"msg\",\"body\":\"a\xc0\x80\"}", -1, false, NULL },
		{ "raw UTF-16 surrogate", "{\"type\":\"msg\",\"body\":\"a\xed\xa0\x80\"}", -1, false, NULL },
		{ "code point above U+10FFFF", "{\"type\":\"msg\",\"body\":\"a\xf4\x90\x80\x80\"}", -1, false, NULL },
		{ "lone high surrogate escape", "{\"type\":\"msg\",\"body\":\"a\\ud800\"}", -1, false, NULL },
		{ "lone low surrogate escape", "{\"type\":\"msg\",\"body\":\"a\\udc00b\"}", -1, false, NULL },
		{ "reversed surrogate pair", "{\"type\":\"msg\",\"body\":\"\\ude00\\ud83d\"}", -1, false, NULL },
		{ "escaped NUL", "{\"type\":\"msg\",\"body\":\"a\\u0000b\"}", -1, false, NULL },
		{ "raw NUL in a string", nul_raw, (int)sizeof(nul_raw) - 1, false, NULL },
		{ "raw NUL after the object", "{\"type\":\"msg\",\"body\":\"x\"}\0", 27, false, NULL },
		{ "raw control character", "{\"type\":\"msg\",\"body\":\"a\x1b[31mb\"}", -1, false, NULL },
		{ "duplicate key", "{\"type\":\"msg\",\"body\":\"x\",\"body\":\"y\"}", -1, false, NULL },
		{ "duplicate type", "{\"type\":\"msg\",\"type\":\"image\",\"body\":\"x\"}", -1, false, NULL },
		{ "duplicate key in attachment", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"url\":\"https://c/d\"}}", -1, false, NULL },
		{ "unknown top-level member", "{\"type\":\"msg\",\"body\":\"x\",\"colour\":\"red\"}", -1, false, NULL },
		{ "type of the wrong case", "{\"type\":\"MSG\",\"body\":\"x\"}", -1, false, NULL },
		{ "type a number", "{\"type\":1,\"body\":\"x\"}", -1, false, NULL },
		{ "type missing", "{\"body\":\"x\"}", -1, false, NULL },
		{ "body a number", "{\"type\":\"msg\",\"body\":1}", -1, false, NULL },
		{ "body null", "{\"type\":\"msg\",\"body\":null}", -1, false, NULL },
		{ "body empty", "{\"type\":\"msg\",\"body\":\"\"}", -1, false, NULL },
		{ "msg with attachment", "{\"type\":\"msg\",\"body\":\"x\",\"attachment\":{\"url\":\"https://a/b\"}}", -1, false, NULL },
		{ "image without attachment", "{\"type\":\"image\",\"body\":\"x\"}", -1, false, NULL },
		{ "attachment an array", "{\"type\":\"file\",\"attachment\":[\"https://a/b\"]}", -1, false, NULL },
		{ "attachment null", "{\"type\":\"file\",\"attachment\":null}", -1, false, NULL },
		{ "attachment empty object", "{\"type\":\"file\",\"attachment\":{}}", -1, false, NULL },
		{ "attachment url empty", "{\"type\":\"file\",\"attachment\":{\"url\":\"\"}}", -1, false, NULL },
		{ "attachment url javascript:", "{\"type\":\"file\",\"attachment\":{\"url\":\"javascript:alert(1)\"}}", -1, false, NULL },
		{ "attachment url with a space", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b c\"}}", -1, false, NULL },
		{ "attachment url with a newline", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\\nc\"}}", -1, false, NULL },
		{ "attachment url a number", "{\"type\":\"file\",\"attachment\":{\"url\":7}}", -1, false, NULL },
		{ "attachment odd member", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"onclick\":\"x\"}}", -1, false, NULL },
		{ "attachment nested object", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"name\":{\"x\":1}}}", -1, false, NULL },
		{ "attachment size negative", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"size\":-1}}", -1, false, NULL },
		{ "attachment size real", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"size\":1.5}}", -1, false, NULL },
		{ "attachment size string", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"size\":\"12\"}}", -1, false, NULL },
		{ "image with mime text/html", "{\"type\":\"image\",\"attachment\":{\"url\":\"https://a/b\",\"mime\":\"text/html\"}}", -1, false, NULL },
		{ "mime without subtype", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"mime\":\"image/\"}}", -1, false, NULL },
		{ "mime with a header break", "{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"mime\":\"text/plain\\r\\nX: y\"}}", -1, false, NULL },
		{ "client_msg_id not ASCII", "{\"type\":\"msg\",\"body\":\"x\",\"client_msg_id\":\"c-\xc3\xa9\"}", -1, false, NULL },
		{ "client_msg_id with a newline", "{\"type\":\"msg\",\"body\":\"x\",\"client_msg_id\":\"c\\n1\"}", -1, false, NULL },
		{ "client_msg_id a number", "{\"type\":\"msg\",\"body\":\"x\",\"client_msg_id\":5}", -1, false, NULL },
		{ "client_msg_id empty", "{\"type\":\"msg\",\"body\":\"x\",\"client_msg_id\":\"\"}", -1, false, NULL },
		/* Accepted exactly as specified. */
		{ "surrogate pair escape", "{\"type\":\"msg\",\"body\":\"smile \\ud83d\\ude00\"}", -1, true, "smile \xf0\x9f\x98\x80" },
		{ "4-byte UTF-8", "{\"type\":\"msg\",\"body\":\"\xf0\x9f\x98\x80 raw\"}", -1, true, "\xf0\x9f\x98\x80 raw" },
		{ "escaped control characters", "{\"type\":\"msg\",\"body\":\"tab\\tnl\\nesc\\u001b\"}", -1, true, "tab\tnl\nesc\x1b" },
		{ "spoofed stamp fields", "{\"type\":\"msg\",\"body\":\"spoof\",\"id\":1,\"from\":\"mallory\",\"room\":\"elsewhere\",\"ts\":0}", -1, true, "spoof" },
		{ "huge attachment size", "{\"type\":\"file\",\"body\":\"big\",\"attachment\":{\"url\":\"https://a/b\",\"size\":9223372036854775807}}", -1, true, "big" },
		{ "whitespace everywhere", " \n\t{ \"type\" : \"msg\" ,\r\n \"body\" : \"ws\" } \n", -1, true, "ws" },
	};
	run_cases(alice, bob, cases, sizeof(cases) / sizeof(cases[0]));
	still_serving(alice, bob, "after json");
	H_CHECK(h_client_connected(alice));

	free(deep_arr);
	free(deep_obj);
	free(nested);
	free(deep_in_att);
	h_client_close(alice);
	h_client_close(bob);
}

/* The stamp wins over whatever the client wrote in id/room/from/ts. */
static void spoofed_fields_are_overwritten(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	char send[256];
	H_REQUIRE(alice && bob);
	h_topic_send(send, room);
	int64_t t0 = h_now_ms();
	H_CHECK_INT(h_publish_str(alice, send, "{\"type\":\"msg\",\"body\":\"who\",\"id\":9007199254740993,"
			"\"from\":\"bob\",\"room\":\"x\",\"ts\":-5}", 1), ==, 0);
	json_t *m = H_EXPECT_CHAT(bob, room, "alice", "who");
	H_REQUIRE(m);
	H_CHECK_STR(json_string_value(json_object_get(m, "room")), room);
	H_CHECK(json_integer_value(json_object_get(m, "id")) < (json_int_t)1 << 53);
	H_CHECK(json_integer_value(json_object_get(m, "id")) > 0);
	H_CHECK(json_integer_value(json_object_get(m, "ts")) >= t0 - 1000);
	json_decref(m);
	h_client_close(alice);
	h_client_close(bob);
}

static void limits_exactly_and_one_over(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	char send[256];
	H_REQUIRE(alice && bob);
	h_topic_send(send, room);

	/* body: exactly 16 KiB accepted and delivered unchanged, one byte more refused. */
	char *b16 = padded_message(16384, 16384 + 40);
	char *b16p1 = padded_message(16385, 16385 + 40);
	H_REQUIRE(b16 && b16p1);
	H_CHECK_INT(h_publish(alice, send, b16, (int)strlen(b16), 1, false, NULL), ==, 0);
	json_t *m = h_expect_chat_at(__FILE__, __LINE__, bob, room, "alice", NULL, 3000);
	H_CHECK(m && json_string_length(json_object_get(m, "body")) == 16384);
	json_decref(m);
	H_CHECK_INT(h_publish(alice, send, b16p1, (int)strlen(b16p1), 1, false, NULL), >=, 0x80);

	/* body counted in bytes, not characters: 8192 x "é" is 16384 bytes (accepted). */
	char *e = repeat("\xc3\xa9", 8192), *e1 = repeat("\xc3\xa9", 8193);
	H_REQUIRE(e && e1);
	char *pe = malloc(16384 * 2 + 64), *pe1 = malloc(16386 * 2 + 64);
	H_REQUIRE(pe && pe1);
	sprintf(pe, "{\"type\":\"msg\",\"body\":\"%s\"}", e);
	sprintf(pe1, "{\"type\":\"msg\",\"body\":\"%s\"}", e1);
	H_CHECK_INT(h_publish(alice, send, pe, (int)strlen(pe), 1, false, NULL), ==, 0);
	m = h_expect_chat_at(__FILE__, __LINE__, bob, room, "alice", e, 3000);
	json_decref(m);
	H_CHECK_INT(h_publish(alice, send, pe1, (int)strlen(pe1), 1, false, NULL), >=, 0x80);

	/* payload: exactly 64 KiB (whitespace padding) accepted, 64 KiB + 1 refused. */
	char *p64 = padded_message(100, 65536), *p64p1 = padded_message(100, 65537);
	H_REQUIRE(p64 && p64p1);
	H_CHECK_INT(h_publish(alice, send, p64, 65536, 1, false, NULL), ==, 0);
	m = h_expect_chat_at(__FILE__, __LINE__, bob, room, "alice", NULL, 3000);
	H_CHECK(m && json_string_length(json_object_get(m, "body")) == 100);
	json_decref(m);
	H_CHECK_INT(h_publish(alice, send, p64p1, 65537, 1, false, NULL), >=, 0x80);

	/* 4 MiB: refused before any parse, and the broker stays prompt. */
	char *huge = padded_message(100, 4u << 20);
	H_REQUIRE(huge);
	H_CHECK_INT(h_publish(alice, send, huge, 4 << 20, 1, false, NULL), >=, 0x80);

	/* client_msg_id 64 bytes accepted, 65 refused; attachment name 255 / 256 bytes. */
	char buf[1024];
	char *c64 = repeat("c", 64), *c65 = repeat("c", 65), *n255 = repeat("n", 255), *n256 = repeat("n", 256);
	H_REQUIRE(c64 && c65 && n255 && n256);
	snprintf(buf, sizeof(buf), "{\"type\":\"msg\",\"body\":\"cmid64\",\"client_msg_id\":\"%s\"}", c64);
	H_CHECK_INT(h_publish_str(alice, send, buf, 1), ==, 0);
	json_decref(h_expect_chat_at(__FILE__, __LINE__, bob, room, "alice", "cmid64", 3000));
	snprintf(buf, sizeof(buf), "{\"type\":\"msg\",\"body\":\"cmid65\",\"client_msg_id\":\"%s\"}", c65);
	H_CHECK_INT(h_publish_str(alice, send, buf, 1), >=, 0x80);
	snprintf(buf, sizeof(buf), "{\"type\":\"file\",\"body\":\"n255\",\"attachment\":{\"url\":\"https://a/b\",\"name\":\"%s\"}}", n255);
	H_CHECK_INT(h_publish_str(alice, send, buf, 1), ==, 0);
	json_decref(h_expect_chat_at(__FILE__, __LINE__, bob, room, "alice", "n255", 3000));
	snprintf(buf, sizeof(buf), "{\"type\":\"file\",\"body\":\"n256\",\"attachment\":{\"url\":\"https://a/b\",\"name\":\"%s\"}}", n256);
	H_CHECK_INT(h_publish_str(alice, send, buf, 1), >=, 0x80);

	H_CHECK_NO_MESSAGE(bob, 300);
	still_serving(alice, bob, "after limits");

	free(b16); free(b16p1); free(e); free(e1); free(pe); free(pe1);
	free(p64); free(p64p1); free(huge); free(c64); free(c65); free(n255); free(n256);
	h_client_close(alice);
	h_client_close(bob);
}

static void hostile_topics_are_refused(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	char t[512];
	const char *ok = "{\"type\":\"msg\",\"body\":\"topic probe\"}";
	H_REQUIRE(alice && bob);

	char *longid = repeat("a", 65), *vlong = repeat("r", 60000);
	H_REQUIRE(longid && vlong);
	const char *fmts[] = {
		"chat/rooms//send", "chat/rooms/%s/send/extra", "chat/rooms/%s/send/", "chat/rooms/%s/messages",
		"chat/rooms/%s/", "chat/rooms/%s", "chat/rooms/%s/SEND", "$chat/rooms/%s/send", "/chat/rooms/%s/send",
		"chat//rooms/%s/send", "chat/rooms/%s//send", "Chat/rooms/%s/send", "chat/users/bob/req",
		"chat/users/alice/req/x", "chat/users/me/req", "chat/users/alice/res", "chat/users/alice/events",
		"chat/users/alice/req/", "chat/users//req", "$CONTROL/mqchat/v1/replay", "$SYS/broker/x",
	};
	for(size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++){
		subst(t, sizeof(t), fmts[i], room);
		int rc = h_publish_str(alice, t, ok, 1);
		if(rc < 0x80) h_fail(__FILE__, __LINE__, "publish to '%s' answered %d, expected a refusal", t, rc);
	}
	/* Room ids that are not names, or not alice's. */
	const char *rooms[] = { longid, "r\xc3\xa9sum\xc3\xa9", "..", "$x", other_room, "ROOM" };
	for(size_t i = 0; i < sizeof(rooms) / sizeof(rooms[0]); i++){
		snprintf(t, sizeof(t), "chat/rooms/%s/send", rooms[i]);
		int rc = h_publish_str(alice, t, ok, 1);
		if(rc < 0x80) h_fail(__FILE__, __LINE__, "publish to '%s' answered %d, expected a refusal", t, rc);
	}
	size_t vl = strlen(vlong) + 64;
	char *vt = malloc(vl);
	H_REQUIRE(vt);
	snprintf(vt, vl, "chat/rooms/%s/send", vlong);
	H_CHECK_INT(h_publish_str(alice, vt, ok, 1), >=, 0x80);
	/* Retained to a room alice is in. */
	h_topic_send(t, room);
	H_CHECK_INT(h_publish(alice, t, ok, (int)strlen(ok), 1, true, NULL), >=, 0x80);
	H_CHECK_NO_MESSAGE(bob, 300);
	still_serving(alice, bob, "after topics");
	free(longid);
	free(vlong);
	free(vt);
	h_client_close(alice);
	h_client_close(bob);
}

static void hostile_filters_are_refused(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	char t[256];
	H_REQUIRE(alice && bob);
	const char *deny[] = {
		"#", "+", "+/#", "chat/#", "chat/+/#", "chat/rooms/#", "chat/rooms/+", "chat/rooms/+/+", "chat/rooms/+/send",
		"chat/rooms/+/#", "chat/rooms/%s/send", "chat/rooms/%s/#", "chat/rooms/%s/+", "chat/rooms//messages",
		"chat/rooms/+/messages/#", "chat/users/#", "chat/users/+/res", "chat/users/+/events", "chat/users/bob/res",
		"chat/users/bob/res/#", "chat/users/alice/req", "chat/users/bob/#", "chat/users/bob/+",
		"$SYS/#", "$CONTROL/#", "$CONTROL/mqchat/v1", "$share/g/chat/rooms/+/messages", "$share/g/#",
		"+/rooms/+/messages", "chat/+/+/messages", "chat/rooms/%s/messages/extra",
	};
	for(size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++){
		subst(t, sizeof(t), deny[i], room);
		int rc = h_subscribe(alice, t, 1);
		if(rc < 0x80) h_fail(__FILE__, __LINE__, "subscribe to '%s' granted %d, expected a refusal", t, rc);
	}
	snprintf(t, sizeof(t), "chat/rooms/%s/messages", other_room);
	H_CHECK_INT(h_subscribe(alice, t, 1), >=, 0x80);
	/* (chat/users/alice/# and /+ are granted since issue 10: deliveries are checked) */
	const char *allow[] = { "chat/rooms/+/messages", "chat/users/alice/res/#", "chat/users/alice/events",
		"chat/users/alice/#", "chat/users/alice/+" };
	for(size_t i = 0; i < sizeof(allow) / sizeof(allow[0]); i++){
		H_CHECK_INT(h_subscribe(alice, allow[i], 1), ==, 1);
	}
	/* Through the wildcard alice gets her room, never bob and carol's. */
	char send[256];
	h_topic_send(send, other_room);
	H_CHECK_INT(h_publish_str(bob, send, "{\"type\":\"msg\",\"body\":\"not for alice\"}", 1), ==, 0);
	H_CHECK_NO_MESSAGE(alice, 500);
	h_topic_send(send, room);
	H_CHECK_INT(h_publish_str(bob, send, "{\"type\":\"msg\",\"body\":\"for alice\"}", 1), ==, 0);
	json_decref(H_EXPECT_CHAT(alice, room, "bob", "for alice"));
	h_client_close(alice);
	h_client_close(bob);
}

static void hostile_connects_are_refused(h_env *env)
{
	int reason;
	char *u65k = repeat("u", 65535), *p65k = repeat("p", 65535);
	H_REQUIRE(u65k && p65k);
	h_client *c = h_connect(env, u65k, "x", "x", H_PROTO_V5, &reason);
	H_CHECK(c == NULL);
	H_CHECK_INT(reason, >=, 0x80);
	h_client_close(c);
	c = h_connect(env, "alice", p65k, "alice:long", H_PROTO_V5, &reason);
	H_CHECK(c == NULL);
	H_CHECK_INT(reason, >=, 0x80);
	h_client_close(c);
	c = h_connect(env, "alice", p65k, "alice:long3", H_PROTO_V311, &reason);
	H_CHECK(c == NULL);
	H_CHECK_INT(reason, >=, 1);
	h_client_close(c);

	/* Client ids that would take over another user's (or the bridge's) session; "alicex",
	 * "alic" or "ali:ce" are nobody's and are fine since issue 10 (test_connect). */
	const char *bad_ids[] = { "bob", "bob:", "bob:phone", "mqchat-bridge", "mqchat-bridge:req" };
	for(size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++){
		c = h_connect(env, "alice", h_pw("alice"), bad_ids[i], H_PROTO_V5, &reason);
		if(c) h_fail(__FILE__, __LINE__, "alice connected with client id '%s'", bad_ids[i]);
		h_client_close(c);
	}
	/* Usernames outside the alphabet, anonymous, the service user with a user's password. */
	const char *bad_users[] = { "al/ice", "al+ice", "al#ice", "$alice", "al ice", "\xc3\xa9ve" };
	for(size_t i = 0; i < sizeof(bad_users) / sizeof(bad_users[0]); i++){
		c = h_connect(env, bad_users[i], "whatever", NULL, H_PROTO_V5, &reason);
		if(c) h_fail(__FILE__, __LINE__, "user '%s' connected", bad_users[i]);
		h_client_close(c);
	}
	c = h_connect(env, NULL, NULL, "anon", H_PROTO_V5, &reason);
	H_CHECK(c == NULL);
	h_client_close(c);
	c = h_connect(env, H_SERVICE_USER, h_pw("alice"), "mqchat-bridge:x", H_PROTO_V5, &reason);
	H_CHECK(c == NULL);
	h_client_close(c);

	/* Allowed forms still work after all that. */
	c = h_connect(env, "alice", h_pw("alice"), "alice", H_PROTO_V5, &reason);
	H_CHECK(c != NULL);
	h_client_close(c);
	c = h_connect(env, "alice", h_pw("alice"), "alice:", H_PROTO_V311, &reason);
	H_CHECK(c != NULL);
	h_client_close(c);

	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_room_listener(env, "bob", room, H_PROTO_V5);
	H_REQUIRE(alice && bob);
	still_serving(alice, bob, "after connects");
	h_client_close(alice);
	h_client_close(bob);
	free(u65k);
	free(p65k);
}

/* Everything accepted above is in the database; nothing refused is. */
static void database_holds_exactly_the_accepted(h_env *env)
{
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE body = 'topic probe'", (char *)NULL), ==, 0);
	H_CHECK_INT(h_db_wait_int(env, 1, 5000, "SELECT count(*) FROM messages WHERE body = 'spoof' AND sender = 'alice'"
			" AND room_id = ?1", room, (char *)NULL), ==, 1);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE body IN ('cmid65','n256')", (char *)NULL), ==, 0);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE sender <> 'alice' AND sender <> 'bob'", (char *)NULL), ==, 0);
}

int main(void)
{
	h_env *env = h_env_new("hostile_payloads");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room, "alice", "bob", (char *)NULL)
			|| h_room_create(env, other_room, "bob", "carol", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_no_limits(env);
	h_env_start(env);

	H_RUN(env, malformed_and_hostile_json_is_refused);
	H_RUN(env, spoofed_fields_are_overwritten);
	H_RUN(env, limits_exactly_and_one_over);
	H_RUN(env, hostile_topics_are_refused);
	H_RUN(env, hostile_filters_are_refused);
	H_RUN(env, hostile_connects_are_refused);
	H_RUN(env, database_holds_exactly_the_accepted);
	return h_env_finish(env);
}
