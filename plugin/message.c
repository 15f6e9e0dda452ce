/*
 * MOSQ_EVT_MESSAGE: a client's message on <prefix>/rooms/{room}/send becomes a stamped
 * message on <prefix>/rooms/{room}/messages.
 *
 * The ACL WRITE check (acl.c) has already checked membership and validated the payload,
 * and left the parsed message in st->pending; this event runs right after it for the same
 * PUBLISH. Here the plugin stamps id, room, from and ts, publishes the result at QoS 1
 * (so the bridge's persistent session queues it while the bridge is away), and keeps a
 * copy in the replay buffer until the bridge confirms it stored it.
 *
 * The original publish on .../send continues through the broker and is delivered to
 * nobody (no READ check allows .../send). Its topic and properties are left alone:
 * replacing them leaks in Mosquitto 2.0.11.
 */
#include <string.h>

#include "plugin.h"

static char *stamped_topic(const struct mqchat *st, const char *room, size_t roomlen)
{
	static const char leaf[] = "/messages";
	size_t len = st->rooms_prefix_len + roomlen + sizeof(leaf);
	char *t = mosquitto_malloc(len);
	if(!t) return NULL;
	memcpy(t, st->rooms_prefix, st->rooms_prefix_len);
	memcpy(t + st->rooms_prefix_len, room, roomlen);
	memcpy(t + st->rooms_prefix_len + roomlen, leaf, sizeof(leaf));
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

int message__handle(int event, void *event_data, void *userdata)
{
	(void)event;
	struct mqchat *st = userdata;
	struct mosquitto_evt_message *ed = event_data;
	const char *room, *leaf;
	size_t roomlen;

	plugin__swap_if_ready(st);
	if(!topic__room(st, ed->topic, &room, &roomlen, &leaf) || strcmp(leaf, "send") != 0){
		return MOSQ_ERR_SUCCESS;
	}
	const char *user = mosquitto_client_username(ed->client);
	if(!user || !mqc_name_valid(room, roomlen)) return MOSQ_ERR_SUCCESS;

	/* Only what our ACL WRITE check accepted (membership, enabled room, rate, valid payload:
	 * acl.c) is stamped. A send it did not see (another plugin or the broker answered the
	 * check first) is dropped, not re-validated here: this event cannot check the rest. */
	if(!st->pending.msg || st->pending.client != ed->client || st->pending.payload != ed->payload
			|| st->pending.payloadlen != ed->payloadlen){
		plugin__log_client(st, "dropped a message to %s from %s that the mqchat ACL check did not accept",
				ed->topic, user);
		plugin__pending_clear(st);
		return MOSQ_ERR_SUCCESS;
	}
	json_t *msg = st->pending.msg;
	st->pending.msg = NULL;
	plugin__pending_clear(st);

	int64_t now = mqc_now_ms();
	const char *cmid = json_string_value(json_object_get(msg, "client_msg_id"));
	if(cmid){
		uint64_t first = limits__dedupe_seen(&st->dedupe, user, room, roomlen, cmid, now);
		if(first){
			mosquitto_log_printf(MOSQ_LOG_DEBUG, "mqchat: %s resent client_msg_id '%s' to %s: already delivered as %llu",
					user, cmid, ed->topic, (unsigned long long)first);
			json_decref(msg);
			return MOSQ_ERR_SUCCESS;
		}
	}
	uint64_t id = next_id(st, now);
	if(cmid) limits__dedupe_add(&st->dedupe, user, room, roomlen, cmid, id, now);

	/* The room id is copied out of the topic: a valid name (checked above, as in acl.c). */
	char room_id[MQC_NAME_MAX + 1];
	memcpy(room_id, room, roomlen);
	room_id[roomlen] = '\0';

	size_t len = 0;
	char *payload = mqc_msg_stamp(msg, id, room_id, user, now, mosquitto_malloc, &len);
	json_decref(msg);
	char *topic = stamped_topic(st, room, roomlen);
	if(!payload || !topic){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: out of memory stamping a message to %s from %s: dropped",
				ed->topic, user);
		mosquitto_free(payload);
		mosquitto_free(topic);
		return MOSQ_ERR_SUCCESS;
	}

	if(replay__add(&st->replay, id, topic, payload, (uint32_t)len)){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: no memory to keep message %llu for replay; "
				"it relies on the bridge's session queue alone", (unsigned long long)id);
	}
	/* The broker takes the payload; the topic is copied. */
	if(mosquitto_broker_publish(NULL, topic, (int)len, payload, 1, false, NULL) != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: could not publish message %llu to %s", (unsigned long long)id, topic);
		mosquitto_free(payload);
	}
	mosquitto_free(topic);
	return MOSQ_ERR_SUCCESS;
}
