/*
 * What real client libraries do with the plugin's refusals (issue 9, docs/logging-in.md
 * "Refusals"), measured with MQTT.js (npm mqtt, tests/clients/mqttjs_retry.mjs) and
 * paho-mqtt 1.6.1 (tests/clients/paho_retry.py), default retry behaviour, 1 s period:
 *
 *  - the password-hash budget is spent (one very slow hash just ran): the plugin closes
 *    the connection without a CONNACK ("try again later"). Both libraries take that for
 *    a network failure, come back a second later, and get in once the budget refills;
 *  - a wrong password: a CONNACK 0x87 (not authorised). MQTT.js stops for good after it
 *    (reconnectOnConnackError is off by default): one attempt. Which is why a refusal
 *    that means "later" must never be a CONNACK refusal: before issue 9 the budget
 *    answered 0x87, and every MQTT.js client refused that way stayed offline.
 *    (What paho does is printed: it retries either way.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"

static void client_cmd(char *out, size_t n, const char *lib, h_env *env, const char *user, const char *pw, int secs)
{
	const char *src = getenv("MQCHAT_SOURCE_DIR");
	if(!strcmp(lib, "mqttjs")){
		snprintf(out, n, "cd '%s' && node tests/clients/mqttjs_retry.mjs %d '%s' '%s' %d", src, env->port, user, pw, secs);
	}else{
		snprintf(out, n, "/usr/bin/python3 '%s/tests/clients/paho_retry.py' %d '%s' '%s' %d", src, env->port, user, pw, secs);
	}
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for(const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
	return n;
}

static void budget_spent_they_retry(h_env *env)
{
	/* heavy's password takes ~1 s to check (2,000,000 iterations): the budget (300 ms/s,
	 * 100 ms burst) is then ~3 s in debt */
	int reason = 0;
	h_client *h = h_connect(env, "heavy", h_pw("heavy"), "heavy", H_PROTO_V5, &reason);
	H_REQUIRE(h != NULL);
	size_t mark = h_file_size(env->broker_log);
	char a[1024], b[1024];
	client_cmd(a, sizeof(a), "mqttjs", env, "mj", h_pw("mj"), 20);
	client_cmd(b, sizeof(b), "paho", env, "pa", h_pw("pa"), 20);
	char both[2200];
	/* both at once, each printing its line; paho's after MQTT.js's */
	snprintf(both, sizeof(both), "(%s) & (sleep 0.1; %s); wait", a, b);
	FILE *p = popen(both, "r");
	H_REQUIRE(p != NULL);
	char line[4096];
	json_t *js = NULL, *py = NULL;
	while(fgets(line, sizeof(line), p)){
		fprintf(stderr, "  %s", line);
		json_t *j = json_loads(line, 0, NULL);
		if(!j) continue;
		if(json_object_get(j, "closes")) js = j;
		else if(json_object_get(j, "connacks")) py = j;
		else json_decref(j);
	}
	pclose(p);
	H_REQUIRE(js && py);
	char *log = h_file_read_from(env->broker_log, mark);
	H_CHECK(count(log, "refused mj (mj:mqttjs)") >= 1 && count(log, "over budget") >= 2);
	H_CHECK(count(log, "refused pa (pa:paho)") >= 1);
	free(log);
	/* turned away at first, back by themselves, in */
	H_CHECK(json_is_true(json_object_get(js, "connected")));
	H_CHECK_INT(json_integer_value(json_object_get(js, "closes")), >=, 1);
	H_CHECK(json_is_true(json_object_get(py, "connected")));
	H_CHECK_INT(json_integer_value(json_object_get(py, "disconnects")), >=, 1);
	/* and never told "not authorised" */
	H_CHECK(json_array_size(json_object_get(js, "errors")) == 0 || !strstr(json_dumps(json_object_get(js, "errors"), 0), "135"));
	json_decref(js);
	json_decref(py);
	h_client_close(h);
}

static void wrong_password_mqttjs_stops(h_env *env)
{
	h_sleep_ms(4000); /* the budget refilled */
	size_t mark = h_file_size(env->broker_log);
	char cmd[1024];
	client_cmd(cmd, sizeof(cmd), "mqttjs", env, "mj", "not-the-password", 5);
	json_t *js = h_run_json(cmd);
	client_cmd(cmd, sizeof(cmd), "paho", env, "pa", "not-the-password", 5);
	json_t *py = h_run_json(cmd);
	H_REQUIRE(js && py);
	char *log = h_file_read_from(env->broker_log, mark);
	int mj = count(log, "refused mj (mj:mqttjs)"), pa = count(log, "refused pa (pa:paho)");
	free(log);
	fprintf(stderr, "wrong password for 5 s: MQTT.js tried %d time(s), paho %d time(s)\n", mj, pa);
	H_CHECK(json_is_false(json_object_get(js, "connected")));
	H_CHECK_INT(mj, ==, 1);
	H_CHECK(json_is_false(json_object_get(js, "reconnecting")));
	H_CHECK(json_is_false(json_object_get(py, "connected")));
	json_decref(js);
	json_decref(py);
}

int main(void)
{
	h_env *env = h_env_new("client_retry");
	h_user(env, "mj");
	h_user(env, "pa");
	const char *pw = h_pw("heavy");
	char in[128];
	snprintf(in, sizeof(in), "%s\n", pw);
	if(h_admin(env, in, NULL, 0, "--db", env->db, "user", "add", "heavy", "--iterations", "2000000", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_plugin_opt(env, "auth_hash_budget_ms", "300");
	h_env_start(env);
	H_RUN(env, budget_spent_they_retry);
	H_RUN(env, wrong_password_mqttjs_stops);
	return h_env_finish(env);
}
