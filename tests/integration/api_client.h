/*
 * The request API from a test's side (docs/protocol.md "Requests"): one user's request
 * client, which publishes JSON requests on chat/users/<me>/req and collects the answers
 * from chat/users/<me>/res (and .../res/#, where MQTT 5 response topics point).
 *
 * Contract: an api_user owns one h_client that subscribes to nothing but its own res
 * tree, so every message it receives is an answer. api_call() matches the answer by its
 * unique req_id and records a failure for any other answer in between: every request
 * gets exactly one answer, and none that was not asked for. The h_client belongs to the
 * env (closed by h_env_finish); the api_user itself holds no other resources.
 *
 * Also here: sending a chat message, and waiting for an event of a user's events client.
 */
#ifndef MQCHAT_TEST_API_CLIENT_H
#define MQCHAT_TEST_API_CLIENT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mqtt_protocol.h>

#include "harness.h"

#define API_TIMEOUT_MS 10000

typedef struct api_user {
	h_client *c;
	char user[65];
	char res[256];      /* chat/users/<user>/res */
	int protocol;
	unsigned seq;       /* req_id counter */
} api_user;

/* Logs in a request client for name and subscribes to its res tree. false on failure
 * (recorded). */
static inline bool api_open_at(const char *file, int line, h_env *env, api_user *a, const char *name, int protocol)
{
	char filter[300];

	memset(a, 0, sizeof(*a));
	snprintf(a->user, sizeof(a->user), "%s", name);
	snprintf(a->res, sizeof(a->res), "chat/users/%s/res", name);
	a->protocol = protocol;
	a->c = h_login(env, name, protocol);
	if(!a->c) {
		h_fail(file, line, "%s could not log in", name);
		return false;
	}
	h_client_keep_correlation(a->c);
	snprintf(filter, sizeof(filter), "%s/#", a->res); /* also matches .../res itself */
	if(h_subscribe(a->c, filter, 1) != 1) {
		h_fail(file, line, "%s could not subscribe to %s", name, filter);
		return false;
	}
	return true;
}
#define API_OPEN(env, a, name, proto) api_open_at(__FILE__, __LINE__, (env), (a), (name), (proto))

static inline char *api_dump(const json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	return s ? s : strdup("(null)");
}

/* Sets a fresh req_id "<user>-<n>" on req unless it already has one; returns it (owned by req). */
static inline const char *api_tag(api_user *a, json_t *req)
{
	char id[128];

	if(!json_object_get(req, "req_id")) {
		snprintf(id, sizeof(id), "%s-%u", a->user, ++a->seq);
		json_object_set_new(req, "req_id", json_string(id));
	}
	return json_string_value(json_object_get(req, "req_id"));
}

/* Publishes a raw request (QoS 1, PUBACK awaited when wait_ack) with optional v5 props.
 * Returns h_publish's code. */
static inline int api_post_raw(api_user *a, const void *payload, int len, bool wait_ack, const mosquitto_property *props)
{
	char topic[300];

	snprintf(topic, sizeof(topic), "chat/users/%s/req", a->user);
	return h_publish(a->c, topic, payload, len, wait_ack ? 1 : 0, false, props);
}

/* Publishes req (stolen; a req_id is added if missing) without waiting for anything.
 * req_id_out (at least 128 bytes) receives the req_id. */
static inline int api_post(api_user *a, json_t *req, char *req_id_out)
{
	char *text;
	int rc;

	api_tag(a, req);
	snprintf(req_id_out, 128, "%s", json_string_value(json_object_get(req, "req_id")));
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if(!text) return -1;
	rc = api_post_raw(a, text, (int)strlen(text), false, NULL);
	free(text);
	return rc;
}

/* Waits for the next answer; topic_out (256 bytes) and corr_out (128 bytes) may be NULL.
 * NULL if none came (not recorded: the caller decides). */
static inline json_t *api_next_answer(api_user *a, int timeout_ms, char *topic_out, char *corr_out, int *corr_len)
{
	h_msg *m = h_wait_message(a->c, timeout_ms);
	json_t *j;
	json_error_t err;
	int cl;

	if(!m) return NULL;
	if(topic_out) snprintf(topic_out, 256, "%s", m->topic);
	cl = h_msg_correlation(m, corr_out, corr_out ? 128 : 0);
	if(corr_len) *corr_len = cl;
	j = json_loadb(m->payload, (size_t)m->len, 0, &err);
	if(!j) j = json_pack("{s:s,s:s}", "unparsable_answer", m->payload, "topic", m->topic);
	h_msg_free(m);
	return j;
}

/* Collects the answer to req_id on a->res; any other answer first is a failure. */
static inline json_t *api_collect_at(const char *file, int line, api_user *a, const char *req_id)
{
	int64_t until = h_now_ms() + API_TIMEOUT_MS;

	while(h_now_ms() < until) {
		char topic[256];
		json_t *ans = api_next_answer(a, (int)(until - h_now_ms()), topic, NULL, NULL);
		if(!ans) break;
		const char *got = json_string_value(json_object_get(ans, "req_id"));
		if(got && !strcmp(got, req_id) && !strcmp(topic, a->res)) return ans;
		char *s = api_dump(ans);
		h_fail(file, line, "%s: waiting for the answer to %s, got on %s: %.400s", a->user, req_id, topic, s);
		free(s);
		json_decref(ans);
	}
	h_fail(file, line, "%s: no answer to request %s within %d ms", a->user, req_id, API_TIMEOUT_MS);
	return NULL;
}

/* Sends req (stolen) and returns the whole answer (caller decrefs), or NULL (recorded). */
static inline json_t *api_call_at(const char *file, int line, api_user *a, json_t *req)
{
	char req_id[128];

	if(!req) {
		h_fail(file, line, "json_pack failed building a request");
		return NULL;
	}
	if(api_post(a, req, req_id) != 0) {
		h_fail(file, line, "%s: publishing request %s failed", a->user, req_id);
		return NULL;
	}
	return api_collect_at(file, line, a, req_id);
}
#define API_CALL(a, req) api_call_at(__FILE__, __LINE__, (a), (req))

/* A request that must succeed: returns a new reference to its result, or NULL (recorded). */
static inline json_t *api_ok_at(const char *file, int line, api_user *a, json_t *req)
{
	char *what = api_dump(req);
	json_t *ans = api_call_at(file, line, a, req), *res = NULL;

	if(ans && json_is_true(json_object_get(ans, "ok")) && json_object_get(ans, "result")) {
		res = json_incref(json_object_get(ans, "result"));
	} else if(ans) {
		char *s = api_dump(ans);
		h_fail(file, line, "%s: request %s failed: %s", a->user, what, s);
		free(s);
	}
	free(what);
	json_decref(ans);
	return res;
}
#define API_OK(a, ...) api_ok_at(__FILE__, __LINE__, (a), json_pack(__VA_ARGS__))

/* A request that must fail with code, and a message containing needle (NULL: any
 * non-empty message). Returns true if it did. */
static inline bool api_err_at(const char *file, int line, api_user *a, const char *code, const char *needle, json_t *req)
{
	char *what = api_dump(req);
	json_t *ans = api_call_at(file, line, a, req);
	json_t *err = json_object_get(ans, "error");
	const char *c = json_string_value(json_object_get(err, "code"));
	const char *m = json_string_value(json_object_get(err, "message"));
	bool good = ans && json_is_false(json_object_get(ans, "ok")) && c && !strcmp(c, code) && m && *m
		&& (!needle || strstr(m, needle)) && !json_object_get(ans, "result");

	if(ans && !good) {
		char *s = api_dump(ans);
		h_fail(file, line, "%s: request %s: expected error %s (message with \"%s\"), got %s", a->user, what, code,
				needle ? needle : "", s);
		free(s);
	}
	free(what);
	json_decref(ans);
	return good;
}
#define API_ERR(a, code, needle, ...) api_err_at(__FILE__, __LINE__, (a), (code), (needle), json_pack(__VA_ARGS__))

/* Fails if a receives any answer within window_ms (nothing unasked-for, nothing twice). */
#define API_NO_MORE(a, window_ms) H_CHECK_NO_MESSAGE((a)->c, (window_ms))

/* ------------------------------------------------------------ messages and events */

/* Publishes {"type":"msg","body":body} to the room's send topic at QoS 1; returns
 * h_publish's code (0 accepted, v5 reason code >= 0x80 refused). */
static inline int api_send(h_client *c, const char *room, const char *body)
{
	char topic[256];
	json_t *m = json_pack("{s:s,s:s}", "type", "msg", "body", body);
	char *text = json_dumps(m, JSON_COMPACT);
	int rc;

	h_topic_send(topic, room);
	rc = h_publish_str(c, topic, text, 1);
	free(text);
	json_decref(m);
	return rc;
}

/* Connects name with an events client subscribed to chat/users/<name>/events. */
static inline h_client *api_events_client(h_env *env, const char *name)
{
	char topic[256];
	h_client *c = h_login(env, name, H_PROTO_V5);

	if(!c) return NULL;
	snprintf(topic, sizeof(topic), "chat/users/%s/events", name);
	if(h_subscribe(c, topic, 1) != 1) {
		h_client_close(c);
		return NULL;
	}
	return c;
}

/* Waits for the next event on c and checks its name and room. Returns it (caller
 * decrefs) or NULL (recorded). */
static inline json_t *api_expect_event_at(const char *file, int line, h_client *c, const char *event, const char *room)
{
	char topic[256];
	json_t *j = h_wait_json(c, 5000, topic);
	const char *e = json_string_value(json_object_get(j, "event"));
	const char *r = json_string_value(json_object_get(j, "room"));

	if(!j) {
		h_fail(file, line, "no %s event for room %s within 5 s", event, room);
		return NULL;
	}
	if(!e || strcmp(e, event) || !r || strcmp(r, room) || !strstr(topic, "/events")) {
		char *s = api_dump(j);
		h_fail(file, line, "expected event %s for room %s, got on %s: %s", event, room, topic, s);
		free(s);
		json_decref(j);
		return NULL;
	}
	return j;
}
#define API_EXPECT_EVENT(c, event, room) api_expect_event_at(__FILE__, __LINE__, (c), (event), (room))

/* The string member key of obj copied into out (65 bytes); "" if absent. */
static inline const char *api_str(const json_t *obj, const char *key, char *out)
{
	const char *s = json_string_value(json_object_get(obj, key));

	snprintf(out, 65, "%s", s ? s : "");
	return out;
}

/* True if the JSON array arr holds the string s. */
static inline bool api_has(const json_t *arr, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v) {
		if(json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
	}
	return false;
}

#endif
