/*
 * Real client libraries, as they come (issue 10), and read-your-writes over WebSockets.
 *
 * Libraries: paho-mqtt 1.6.1 (MQTT 3.1.1 and 5) and MQTT.js 5.16 (TCP and WebSockets), each
 * with its default client id (paho's random one, MQTT.js's mqttjs_ + 8 hex digits):
 * connect, subscribe chat/users/<me>/# and the room, send, ask for history, find the
 * message there (tests/clients/libs_*).
 *
 * Read-your-writes over WebSockets (docs/protocol.md "Consistency"): a message
 * and a count request sent in one WebSocket frame (tests/clients/ws_same_frame.mjs builds
 * the MQTT packets by hand, so they surely share the frame), 20 times; the count includes
 * the message every time. The issue saw the count miss it 10 times out of 10 this way,
 * and 0 of 10 over TCP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"

static char room[65];
static int ws_port;

static void default_client_ids(h_env *env)
{
	const char *src = getenv("MQCHAT_SOURCE_DIR");
	char cmd[1024];
	const char *paho[] = { "311", "5" };
	for(int i = 0; i < 2; i++){
		snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/tests/clients/libs_paho.py' %d bob '%s' %s %s", src, env->port,
				h_pw("bob"), room, paho[i]);
		json_t *j = h_run_json(cmd);
		if(!j || !json_is_true(json_object_get(j, "ok"))) h_fail(__FILE__, __LINE__, "paho MQTT %s failed", paho[i]);
		json_decref(j);
	}
	char url[2][64];
	snprintf(url[0], sizeof(url[0]), "mqtt://127.0.0.1:%d", env->port);
	snprintf(url[1], sizeof(url[1]), "ws://127.0.0.1:%d", ws_port);
	for(int i = 0; i < 2; i++){
		snprintf(cmd, sizeof(cmd), "cd '%s' && node tests/clients/libs_mqttjs.mjs %s alice '%s' %s", src, url[i],
				h_pw("alice"), room);
		json_t *j = h_run_json(cmd);
		const char *cid = json_string_value(json_object_get(j, "clientId"));
		if(!j || !json_is_true(json_object_get(j, "ok"))) h_fail(__FILE__, __LINE__, "MQTT.js over %s failed", url[i]);
		else if(!cid || strncmp(cid, "mqttjs_", 7)) h_fail(__FILE__, __LINE__, "MQTT.js did not use its default client id");
		json_decref(j);
	}
}

static void message_then_count_in_one_frame(h_env *env)
{
	(void)env;
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cd '%s' && node tests/clients/ws_same_frame.mjs %d alice '%s' %s 20",
			getenv("MQCHAT_SOURCE_DIR"), ws_port, h_pw("alice"), room);
	json_t *j = h_run_json(cmd);
	H_REQUIRE(j != NULL);
	H_CHECK_INT(json_integer_value(json_object_get(j, "runs")), ==, 20);
	H_CHECK_INT(json_integer_value(json_object_get(j, "missed")), ==, 0);
	H_CHECK(!json_object_get(j, "error"));
	json_decref(j);
}

int main(void)
{
	h_env *env = h_env_new("client_libs");
	h_user(env, "alice");
	h_user(env, "bob");
	if(h_room_create(env, room, "alice", "bob", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	ws_port = h_free_port();
	char conf[128];
	/* (a websockets listener binds every interface whatever address it is given: test only) */
	snprintf(conf, sizeof(conf), "listener %d 127.0.0.1\nprotocol websockets", ws_port);
	h_env_broker_conf(env, conf);
	h_env_start(env);
	H_RUN(env, default_client_ids);
	H_RUN(env, message_then_count_in_one_frame);
	return h_env_finish(env);
}
