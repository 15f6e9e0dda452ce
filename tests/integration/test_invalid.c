/*
 * Invalid messages (issue 2): invalid JSON, an unknown type, a missing body, an oversize
 * payload and a retained publish are refused (MQTT 5: PUBACK reason >= 0x80), reach
 * nobody, and are never stored; a valid message after them still works.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char room_ab[65];
static const char *const count_sql = "SELECT count(*) FROM messages WHERE room_id = ?1";

struct bad {
	const char *name;
	char *payload;
	int len;
	bool retain;
};

static char *oversize_payload(size_t total)
{
	/* A well-formed message whose payload is over max_payload (65536). */
	char *p = malloc(total + 1);
	const char *head = "{\"type\":\"msg\",\"body\":\"";
	size_t hl = strlen(head);

	if(!p) return NULL;
	memcpy(p, head, hl);
	memset(p + hl, 'x', total - hl - 2);
	memcpy(p + total - 2, "\"}", 3);
	return p;
}

static void send_valid(h_env *env, h_client *alice, h_client *bob, const char *body, long long *count)
{
	char topic[256], payload[256];

	h_topic_send(topic, room_ab);
	snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"%s\"}", body);
	H_CHECK_INT(h_publish_str(alice, topic, payload, 1), ==, 0);
	json_decref(H_EXPECT_CHAT(bob, room_ab, "alice", body));
	json_decref(H_EXPECT_CHAT(alice, room_ab, "alice", body));
	*count += 1;
	H_CHECK_INT(h_db_wait_int(env, *count, 10000, count_sql, room_ab, (char *)NULL), ==, *count);
}

static void refused_and_unseen(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *alice3 = h_login(env, "alice", H_PROTO_V311);
	h_client *bob = h_login(env, "bob", H_PROTO_V311);
	char topic[256];
	long long count = 0;
	char *big = oversize_payload(65536 + 100);
	char *bigbody = oversize_payload(16384 + 200); /* body over max_body, payload under max_payload */
	struct bad cases[] = {
		{ "invalid JSON", "{\"type\":\"msg\",\"body\":", 0, false },
		{ "not JSON at all", "hello", 0, false },
		{ "a JSON array", "[\"msg\",\"hi\"]", 0, false },
		{ "an unknown type", "{\"type\":\"sticker\",\"body\":\"hi\"}", 0, false },
		{ "no type", "{\"body\":\"hi\"}", 0, false },
		{ "a missing body", "{\"type\":\"msg\"}", 0, false },
		{ "a body that is not a string", "{\"type\":\"msg\",\"body\":42}", 0, false },
		{ "an image without attachment", "{\"type\":\"image\",\"body\":\"cat\"}", 0, false },
		{ "an empty payload", "", 0, false },
		{ "an oversize payload", big, 0, false },
		{ "an oversize body", bigbody, 0, false },
		{ "a retained publish", "{\"type\":\"msg\",\"body\":\"retained\"}", 0, true },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);

	if(!alice || !alice3 || !bob || !big || !bigbody) {
		free(big);
		free(bigbody);
		H_REQUIRE(alice && alice3 && bob && big && bigbody);
	}
	h_topic_messages(topic, room_ab);
	H_CHECK_INT(h_subscribe(alice, topic, 1), ==, 1);
	H_CHECK_INT(h_subscribe(bob, topic, 1), ==, 1);
	send_valid(env, alice, bob, "before", &count);

	h_topic_send(topic, room_ab);
	for(size_t i = 0; i < n; i++) {
		int len = (int)strlen(cases[i].payload), rc;
		rc = h_publish(alice, topic, cases[i].payload, len, 1, cases[i].retain, NULL);
		if(rc < 0x80) h_fail(__FILE__, __LINE__, "%s: MQTT 5 PUBACK %d, expected a failure >= 0x80", cases[i].name, rc);
		/* The same from an MQTT 3.1.1 client, at QoS 1 and 0: no reason code to see, but
		 * it must reach nobody either. */
		h_publish(alice3, topic, cases[i].payload, len, 1, cases[i].retain, NULL);
		h_publish(alice3, topic, cases[i].payload, len, 0, cases[i].retain, NULL);
	}
	H_CHECK_NO_MESSAGE(bob, 1000);
	H_CHECK_NO_MESSAGE(alice, 100);
	/* A valid message after all of them works, and is the only new row. */
	send_valid(env, alice, bob, "after", &count);
	h_sleep_ms(500);
	H_CHECK_INT(h_db_int(env, count_sql, room_ab, (char *)NULL), ==, count);
	H_CHECK_NO_MESSAGE(bob, 300);

	/* A retained refusal leaves nothing retained: a new subscriber gets nothing. */
	h_client *late = h_login(env, "bob", H_PROTO_V5);
	if(late) {
		h_topic_messages(topic, room_ab);
		H_CHECK_INT(h_subscribe(late, topic, 1), ==, 1);
		H_CHECK_NO_MESSAGE(late, 500);
	}
	free(big);
	free(bigbody);
	h_client_close(late);
	h_client_close(alice);
	h_client_close(alice3);
	h_client_close(bob);
}

static void connection_survives_refusal(h_env *env)
{
	/* A refused message must not cost the client its connection (MQTT 5). */
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	char topic[256];
	int rc;

	H_REQUIRE(alice);
	h_topic_send(topic, room_ab);
	rc = h_publish_str(alice, topic, "{nope", 1);
	H_CHECK_INT(rc, >=, 0x80);
	H_CHECK(h_client_connected(alice));
	H_CHECK_INT(h_publish_str(alice, topic, "{\"type\":\"msg\",\"body\":\"still here\"}", 1), ==, 0);
	h_client_close(alice);
}

int main(void)
{
	h_env *env = h_env_new("invalid");

	h_user(env, "alice");
	h_user(env, "bob");
	if(h_room_create(env, room_ab, "alice", "bob", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);

	H_RUN(env, refused_and_unseen);
	H_RUN(env, connection_survives_refusal);
	return h_env_finish(env);
}
