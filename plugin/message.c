/*
 * MOSQ_EVT_MESSAGE: what a client's PUBLISH becomes once acl.c accepted it.
 *
 *  - <prefix>/rooms/{room}/send: the plugin stamps id, room, from and ts, keeps a copy in
 *    the feed (feed.c) until the bridge confirms it is committed (the feed also sends it
 *    to the bridge), and publishes the stamped message on <prefix>/rooms/{room}/messages
 *    at QoS 1 for the participants. The copy is kept BEFORE the event returns: the broker
 *    acknowledges the PUBLISH right after it, and an acknowledgement means kept. If the
 *    copy cannot be kept (out of memory) the event fails, and the broker closes the
 *    connection without acknowledging (the client sends again).
 *  - <prefix>/users/{me}/req: the plugin forwards the request to the bridge's request
 *    connection on $CONTROL/mqchat/v1/req/{me} (with its properties: response topic,
 *    correlation data), marked with the seq of the newest message the user sent that the
 *    bridge has not confirmed yet, so the bridge answers only once it has that message
 *    (docs/protocol.md "Consistency"). Both publishes leave through the same queue of the
 *    broker (plugin messages go out at its next loop pass, in order), so a request never
 *    overtakes a message its sender published before it, also within one WebSocket frame.
 *
 * The original PUBLISH continues through the broker and reaches nobody: the bridge keeps
 * subscriptions to .../send and .../req only so that the broker finds a subscriber (MQTT 5
 * PUBACK 0x00, not 0x10 "no matching subscribers"), and acl.c refuses every delivery of
 * them. Its topic and properties are left alone: replacing them leaks in Mosquitto 2.0.11.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "plugin.h"

static char *stamped_topic(const struct mqchat *st, const char *room, size_t roomlen)
{
	static const char leaf[] = "/messages";
	size_t len = st->topics.rooms_len + roomlen + sizeof(leaf);
	char *t = mosquitto_malloc(len);
	if(!t) return NULL;
	/* mqc_topic_room_make's topic without its snprintf: once per message */
	memcpy(t, st->topics.rooms, st->topics.rooms_len);
	memcpy(t + st->topics.rooms_len, room, roomlen);
	memcpy(t + st->topics.rooms_len + roomlen, leaf, sizeof(leaf));
	return t;
}

static uint64_t next_id(struct mqchat *st, int64_t now)
{
	uint64_t id = mqc_id_next(&st->ids, now);
	atomic_store_explicit(&st->last_id, id, memory_order_relaxed);
	if(id >= atomic_load_explicit(&st->lease_id, memory_order_relaxed) && !st->lease_warned){
		/* The reload thread renews the lease every reload interval; being past it means
		 * the thread is stuck (disk?). Ids stay unique while the broker runs; only a
		 * restart right now could reuse some. */
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: message ids have run past the id lease in %s; is the disk writable?",
				st->opt.idlease_path);
		st->lease_warned = true;
	}
	return id;
}

static int stamp(struct mqchat *st, struct mosquitto_evt_message *ed, const char *user, const char *room,
		size_t roomlen)
{
	/* Only what our ACL WRITE check accepted (membership, enabled room, limits, valid
	 * payload: acl.c) is stamped. A send it did not see (another plugin or the broker
	 * answered the check first) is dropped, not re-validated here: this event cannot
	 * check the rest. */
	if(!st->pending.msg || st->pending.client != ed->client || st->pending.payload != ed->payload
			|| st->pending.payloadlen != ed->payloadlen){
		plugin__log_client(st, "dropped a message to %s from %s that the mqchat ACL check did not accept",
				ed->topic, user);
		plugin__pending_clear(st);
		return MOSQ_ERR_SUCCESS;
	}
	json_t *msg = st->pending.msg;
	struct user_state *us = st->pending.user;
	struct cache_room *croom = st->pending.room;
	uint64_t resend_of = st->pending.resend_of, digest = st->pending.digest;
	st->pending.msg = NULL;
	plugin__pending_clear(st);

	int64_t now = mqc_now_ms();
	const char *cmid = json_string_value(json_object_get(msg, "client_msg_id"));
	if(resend_of){ /* looked up by acl.c for this same PUBLISH */
		mosquitto_log_printf(MOSQ_LOG_DEBUG, "mqchat: %s resent client_msg_id '%s' to %s: already delivered as %" PRIu64,
				user, cmid, ed->topic, resend_of);
		json_decref(msg);
		return MOSQ_ERR_SUCCESS;
	}
	if(ed->qos == 2 && qos2__is_resend(st, ed->client, ed->topic, ed->payload, ed->payloadlen)){
		plugin__log_client(st, "%s (%s) resent a QoS 2 message to %s after reconnecting: already stamped, not again",
				user, mosquitto_client_id(ed->client), ed->topic);
		json_decref(msg);
		return MOSQ_ERR_SUCCESS;
	}
	uint64_t id = next_id(st, now);

	/* The room id is copied out of the topic: a valid name (checked in acl.c). */
	char room_id[MQC_NAME_MAX + 1];
	memcpy(room_id, room, roomlen);
	room_id[roomlen] = '\0';

	size_t len = 0;
	uint64_t seq = 0;
	char *payload = mqc_msg_stamp(msg, id, room_id, user, now, mosquitto_malloc, &len);
	char *topic = stamped_topic(st, room, roomlen);
	if(!payload || !topic || feed__add(&st->feed, id, topic, payload, (uint32_t)len, &seq)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: out of memory stamping or keeping a message to %s from %s: "
				"refused without an acknowledgement (the client sends it again)", ed->topic, user);
		json_decref(msg);
		mosquitto_free(payload);
		mosquitto_free(topic);
		return MQCHAT_RETRY_LATER;
	}
	if(cmid) limits__dedupe_add(&st->dedupe, user, room, roomlen, cmid, id, digest, now);
	if(ed->qos == 2) qos2__remember(st, ed->client, ed->topic, ed->payload, ed->payloadlen);
	json_decref(msg);
	if(us) us->last_seq = seq;
	if(croom) plugin__room_stamped(st, croom, seq);

	/* The broker takes the payload; the topic is copied. A failure here only costs the
	 * participants their live copy: the message is kept and will be stored. */
	if(mosquitto_broker_publish(NULL, topic, (int)len, payload, 1, false, NULL) != MOSQ_ERR_SUCCESS){
		plugin__log_repeated(&st->publish_log, MOSQ_LOG_ERR, "mqchat: could not publish message %" PRIu64 " to %s "
				"(it is kept and will be stored)", id, topic);
		mosquitto_free(payload);
	}
	mosquitto_free(topic);
	return MOSQ_ERR_SUCCESS;
}

/* The room a request names ("room"), if it is short enough to read and a known room:
 * only while some room has unconfirmed messages (otherwise no mark is needed at all). */
#define REQUEST_PEEK_MAX 4096
static struct cache_room *request_room(struct mqchat *st, const struct mosquitto_evt_message *ed)
{
	if(!st->nhot || ed->payloadlen > REQUEST_PEEK_MAX) return NULL;
	json_t *j = json_loadb(ed->payload, ed->payloadlen, 0, NULL);
	json_t *room = json_object_get(j, "room");
	struct cache_room *r = NULL;
	if(json_is_string(room) && mqc_name_valid(json_string_value(room), json_string_length(room))){
		r = cache__room(st->cache, json_string_value(room), json_string_length(room));
	}
	json_decref(j);
	return r;
}

static int forward_request(struct mqchat *st, struct mosquitto_evt_message *ed, const char *user)
{
	if(!st->req_cid){
		st->requests_dropped++;
		plugin__log_client(st, "request from %s (%s) not forwarded: the bridge's request connection has not "
				"said hello since the broker started (%" PRIu64 " so far)%s", user, mosquitto_client_id(ed->client),
				st->requests_dropped, ed->qos ? "; closing without an acknowledgement, the client sends it again" : "");
		return ed->qos ? MQCHAT_RETRY_LATER : MOSQ_ERR_SUCCESS;
	}
	char topic[sizeof(MQCHAT_REQ_TOPIC) + MQC_NAME_MAX + 2];
	snprintf(topic, sizeof(topic), "%s/%s", MQCHAT_REQ_TOPIC, user);

	mosquitto_property *props = NULL;
	if(ed->properties && mosquitto_property_copy_all(&props, ed->properties) != MOSQ_ERR_SUCCESS) goto nomem;
	/* The marks (bridge/serve.c), only when the bridge may not have committed them yet:
	 * the user's newest message (waited for), and the newest message of the room the
	 * request names (waited for while the bridge reads: what its requester may have
	 * received live there). */
	char mark[48];
	struct user_state *us = strmap__get(&st->users_state, user, strlen(user));
	if(us && us->last_seq >= st->feed.first_seq){
		snprintf(mark, sizeof(mark), "%" PRIu64 ":%" PRIu64, st->feed.epoch, us->last_seq);
		if(mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "mqchat-after", mark)) goto nomem;
	}
	struct cache_room *r = request_room(st, ed);
	if(r && r->last_seq >= st->feed.first_seq){
		snprintf(mark, sizeof(mark), "%" PRIu64 ":%" PRIu64, st->feed.epoch, r->last_seq);
		if(mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "mqchat-seen", mark)) goto nomem;
	}
	/* How the requester logged in, last (the bridge takes the last one: a client cannot
	 * forge it by sending its own): a device token may not make more tokens. */
	const char *cid = mosquitto_client_id(ed->client);
	const struct conn *cn = cid ? strmap__get(&st->conns, cid, strlen(cid)) : NULL;
	const char *login = cn && cn->client == ed->client && cn->token_id ? "token"
		: cn && cn->client == ed->client && cn->expires_ms ? "jwt" : "password";
	if(mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "mqchat-login", login)) goto nomem;
	char *copy = mosquitto_malloc(ed->payloadlen ? ed->payloadlen : 1);
	if(!copy) goto nomem;
	if(ed->payloadlen) memcpy(copy, ed->payload, ed->payloadlen);
	if(mosquitto_broker_publish(st->req_cid, topic, (int)ed->payloadlen, copy, 1, false, props) != MOSQ_ERR_SUCCESS){
		mosquitto_free(copy);
		goto nomem;
	}
	return MOSQ_ERR_SUCCESS;
nomem:
	mosquitto_property_free_all(&props);
	mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: out of memory forwarding a request from %s: refused without an "
			"acknowledgement", user);
	return MQCHAT_RETRY_LATER;
}

int message__handle(int event, void *event_data, void *userdata)
{
	(void)event;
	struct mqchat *st = userdata;
	struct mosquitto_evt_message *ed = event_data;
	const char *room, *leaf, *u, *rest;
	size_t roomlen, ulen;

	plugin__swap_if_ready(st);
	const char *user = mosquitto_client_username(ed->client);
	if(!user || !strcmp(user, st->opt.service_user)) return MOSQ_ERR_SUCCESS;

	if(mqc_topic_room(&st->topics, ed->topic, &room, &roomlen, &leaf)){
		if(strcmp(leaf, "send") || !mqc_name_valid(room, roomlen)) return MOSQ_ERR_SUCCESS;
		return stamp(st, ed, user, room, roomlen);
	}
	if(mqc_topic_user(&st->topics, ed->topic, &u, &ulen, &rest)){
		/* acl.c let a user publish only its own req */
		if(strcmp(rest, "req") || ulen != strlen(user) || memcmp(u, user, ulen)) return MOSQ_ERR_SUCCESS;
		return forward_request(st, ed, user);
	}
	return MOSQ_ERR_SUCCESS;
}
