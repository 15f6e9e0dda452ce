/*
 * Regression tests for the two bugs the hostile review found (both fixed):
 *  1. log injection: a JSON member name with an escaped newline or ESC was copied raw into
 *     the broker log through the refusal reason (fix: plugin__log_client escapes control
 *     bytes);
 *  2. an oversized request (24 MB on the user's own .../req) stalled the bridge's single
 *     thread for seconds (fix: the plugin refuses requests over 64 KiB, the bridge's own
 *     limit, before they reach the bridge).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char room[65];

/* KNOWN BUG 1: log injection. store/message.c:187 and :129 put the client's JSON member
 * name (an escaped "\n" or "\u001b" decodes to a raw control byte) into the refusal reason
 * with "%.64s"; plugin/acl.c:112 logs that reason through plugin__log_client
 * (plugin/plugin.c:307). A client forges whole broker log lines (or terminal escapes).
 * Mosquitto refuses control characters in topics, client ids and usernames, so this JSON
 * key is the way in. Fix: in plugin__log_client (one place) replace bytes < 0x20 and 0x7f
 * in the formatted line with '?' (or \xNN) before mosquitto_log_printf. */
static void forged_log_line_through_a_json_key(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	char send[256];
	H_REQUIRE(alice);
	h_topic_send(send, room);
	size_t mark = h_file_size(env->broker_log);
	H_CHECK_INT(h_publish_str(alice, send,
			"{\"type\":\"msg\",\"body\":\"x\",\"\\n00:00:00: mqchat: FORGED admin logged in\":1}", 1), >=, 0x80);
	H_CHECK_INT(h_publish_str(alice, send,
			"{\"type\":\"file\",\"attachment\":{\"url\":\"https://a/b\",\"\\u001b[2J\\rFORGED2\":1}}", 1), >=, 0x80);
	h_sleep_ms(300);
	char *log = h_file_read_from(env->broker_log, mark);
	H_REQUIRE(log);
	if(strstr(log, "\n00:00:00: mqchat: FORGED")){
		h_fail(__FILE__, __LINE__, "a client forged a broker log line through a JSON member name");
	}
	if(strchr(log, '\x1b')){
		h_fail(__FILE__, __LINE__, "a client wrote a raw ESC into the broker log");
	}
	free(log);
	h_client_close(alice);
}

/* Was: unbounded requests. plugin/acl.c:135 (check_write) lets a user publish a
 * payload of any size (up to the broker's 256 MB packet limit) to its own .../req. The
 * broker queues it for the bridge; the bridge answers too_large without parsing
 * (bridge/requests.c:1357), but bridge/main.c:215/380 (stat_slot) then parses the whole payload
 * anyway, on the bridge's only thread. A 24 MB array of zeros costs the bridge seconds and
 * hundreds of MB, during which it stores no message and answers no request.
 * Fixed: acl.c refuses payloadlen > MQC_MAX_REQUEST on .../req (the bridge's limit too,
 * one constant in mqchat_store.h); requests__handle reports the op it ran, so the bridge
 * parses once; and mosquitto.conf.example sets max_packet_size. */
static void oversize_request_stalls_the_bridge(h_env *env)
{
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(alice && bob);
	H_REQUIRE_INT(h_subscribe(alice, "chat/users/alice/res/#", 1), ==, 1);
	size_t n = 24u << 20;
	char *big = malloc(n + 1);
	H_REQUIRE(big);
	memcpy(big, "{\"op\":\"rooms.list\",\"pad\":[", 26);
	for(size_t i = 26; i < n - 2; i += 2) memcpy(big + i, "0,", 2);
	big[n - 3] = '0';
	big[n - 2] = ']';
	big[n - 1] = '}';
	int rc = h_publish(alice, "chat/users/alice/req", big, (int)n, 1, false, NULL);
	free(big);
	H_CHECK_INT(rc, >=, 0x80); /* refused by the plugin */
	if(rc == 0){
		/* Accepted by the broker: the bridge must still answer the next request at once. */
		int64_t t0 = h_now_ms();
		H_CHECK_INT(h_publish_str(alice, "chat/users/alice/req", "{\"op\":\"rooms.list\",\"req_id\":\"after\"}", 1), ==, 0);
		char send[256];
		h_topic_send(send, room);
		H_CHECK_INT(h_publish_str(bob, send, "{\"type\":\"msg\",\"body\":\"during big\"}", 1), ==, 0);
		int64_t answered = -1;
		for(int i = 0; i < 3; i++){
			json_t *a = h_wait_json(alice, 30000, NULL);
			if(!a) break;
			const char *rid = json_string_value(json_object_get(a, "req_id"));
			if(rid && !strcmp(rid, "after")) answered = h_now_ms() - t0;
			json_decref(a);
			if(answered >= 0) break;
		}
		fprintf(stderr, "repro: the request after a 24 MB one was answered in %lld ms\n", (long long)answered);
		if(answered < 0 || answered > 500){
			h_fail(__FILE__, __LINE__, "a 24 MB request stalled the bridge for %lld ms (want < 500)",
					(long long)answered);
		}
	}
	/* Exactly at the limit is still a request the bridge answers (too_large or not). */
	h_client_close(alice);
	h_client_close(bob);
}

int main(void)
{
	h_env *env = h_env_new("hostile_fixed");
	h_user(env, "alice");
	h_user(env, "bob");
	if(h_room_create(env, room, "alice", "bob", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_start(env);
	H_RUN(env, forged_log_line_through_a_json_key);
	H_RUN(env, oversize_request_stalls_the_bridge);
	return h_env_finish(env);
}
