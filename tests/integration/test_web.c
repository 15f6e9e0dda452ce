/*
 * The browser client (web/, issue 10) in real headless Chromium, served by Mosquitto
 * itself (http_dir on a websockets listener bound to the loopback interface), against the
 * real plugin and bridge: tests/web/web_chat.mjs logs alice and bob in, pages back through
 * 200 seeded messages, exchanges messages both ways, watches unread badges change, sees a
 * group appear and disappear live, an error shown in words, and catches up after the
 * network comes back. Screenshots of both: web-shots/web-alice.png, web-bob.png (in the
 * test's working directory).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "harness.h"

static char room[65];
static int ws_port;

static void chat_in_two_browsers(h_env *env)
{
	/* 200 messages from alice before anyone opens the room */
	h_client *a = h_login(env, "alice", H_PROTO_V5);
	H_REQUIRE(a != NULL);
	char topic[256], body[128];
	h_topic_send(topic, room);
	for(int i = 1; i <= 200; i++){
		snprintf(body, sizeof(body), "{\"type\":\"msg\",\"body\":\"seed %d\",\"client_msg_id\":\"seed-%d\"}", i, i);
		H_REQUIRE_INT(h_publish_str(a, topic, body, 1), ==, 0);
	}
	h_client_close(a);
	H_REQUIRE_INT(h_db_wait_int(env, 200, 10000, "SELECT count(*) FROM messages", (char *)NULL), ==, 200);

	mkdir("web-shots", 0755);
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "cd '%s' && node tests/web/web_chat.mjs http://127.0.0.1:%d/ '%s' '%s' %s \"$OLDPWD/web-shots\"",
			getenv("MQCHAT_SOURCE_DIR"), ws_port, h_pw("alice"), h_pw("bob"), room);
	json_t *j = h_run_json(cmd);
	H_REQUIRE(j != NULL);
	static const char *want[] = { "wrong_password_said", "unread_badge_shown", "history_paged_to_200",
		"seed_first_message_shown", "badge_cleared_on_read", "direct_with_bob_is_theirs", "direct_created", "alice_to_bob", "bob_to_alice",
		"image_inline", "badge_counts_up", "group_appears_live", "group_disappears_live", "error_in_words",
		"offline_shown", "caught_up_after_reconnect", NULL };
	for(int i = 0; want[i]; i++){
		if(!json_is_true(json_object_get(j, want[i]))) h_fail(__FILE__, __LINE__, "browser check %s failed", want[i]);
	}
	if(json_object_get(j, "exception")) h_fail(__FILE__, __LINE__, "the browser run stopped: %s",
			json_string_value(json_object_get(j, "exception")));
	H_CHECK_INT(json_array_size(json_object_get(j, "page_errors")), ==, 0);
	json_decref(j);
}

int main(void)
{
	h_env *env = h_env_new("web");
	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room, "alice", "bob", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	/* the page and MQTT.js in the http_dir, as scripts/up.sh puts them (copies: Mosquitto
	 * refuses files whose real path is outside http_dir) */
	char cmd[3 * H_PATH_MAX + 256], dir[H_PATH_MAX + 8];
	snprintf(dir, sizeof(dir), "%s/web", env->dir);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp '%s'/web/* '%s'/node_modules/mqtt/dist/mqtt.min.js '%s'/", dir,
			getenv("MQCHAT_SOURCE_DIR"), getenv("MQCHAT_SOURCE_DIR"), dir);
	if(system(cmd) != 0){
		h_failures++;
		return h_env_finish(env);
	}
	ws_port = h_free_port();
	char conf[H_PATH_MAX + 128];
	snprintf(conf, sizeof(conf), "listener %d lo\nprotocol websockets\nhttp_dir %s", ws_port, dir);
	h_env_broker_conf(env, conf);
	h_env_no_limits(env);
	h_env_start(env);
	H_RUN(env, chat_in_two_browsers);
	return h_env_finish(env);
}
