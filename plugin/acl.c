/*
 * MOSQ_EVT_ACL_CHECK: who may publish, subscribe to and receive which topic
 * (docs/architecture.md "Authorization"). Deny by default.
 *
 * Hot path: READ runs for every delivery to every subscriber. It does two hash lookups
 * (user, room) and a binary search, never SQLite, never a lock, never an allocation.
 *
 * SUCCESS or ACL_DENIED (PUBACK/SUBACK 0x87: never, for this message) are the answers;
 * anything else disconnects the client, which is what MQCHAT_RETRY_LATER is for: a send
 * the client should make again later (a limit, the store behind; see retry_later).
 */
#include <string.h>

#include "plugin.h"

static bool is_service(const struct mqchat *st, const char *user)
{
	return strcmp(user, st->opt.service_user) == 0;
}

/* The room if user is an active participant of it, else NULL. */
static struct cache_room *member_room(const struct mqchat *st, const char *user,
		const char *room, size_t roomlen)
{
	struct cache_room *r = cache__room(st->cache, room, roomlen);
	if(!r) return NULL;
	struct cache_user *u = cache__user(st->cache, user, strlen(user));
	return u && !u->disabled && cache__is_member(r, u) ? r : NULL;
}

/* A known user who is not disabled (still connected while the tick has not kicked it). */
static bool user_active(const struct mqchat *st, const char *user)
{
	struct cache_user *u = cache__user(st->cache, user, strlen(user));
	return u && !u->disabled;
}

/* "<prefix>/users/{me}/res", ".../res/<anything>" and ".../events": what a user reads. */
static bool own_inbox(const struct mqchat *st, const char *user, const char *topic)
{
	const char *u, *rest;
	size_t ulen;
	if(!mqc_topic_user(&st->topics, topic, &u, &ulen, &rest)) return false;
	if(ulen != strlen(user) || memcmp(u, user, ulen) != 0 || !user_active(st, user)) return false;
	return !strcmp(rest, "events") || !strcmp(rest, "res") || !strncmp(rest, "res/", 4);
}

static int check_read(struct mqchat *st, const char *user, const char *topic)
{
	const char *room, *leaf;
	size_t roomlen;
	if(mqc_topic_room(&st->topics, topic, &room, &roomlen, &leaf)){
		if(strcmp(leaf, "messages") != 0) return MOSQ_ERR_ACL_DENIED;
		return member_room(st, user, room, roomlen) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	return own_inbox(st, user, topic) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

static int check_subscribe(struct mqchat *st, const struct mosquitto *client, const char *user, const char *filter)
{
	const char *room, *leaf, *u, *rest;
	size_t roomlen, ulen;
	int rc = MOSQ_ERR_ACL_DENIED;
	if(mqc_topic_room(&st->topics, filter, &room, &roomlen, &leaf)){
		if(strcmp(leaf, "messages") != 0) return MOSQ_ERR_ACL_DENIED;
		/* The wildcard is allowed; each delivery through it is checked by check_read. */
		if(roomlen == 1 && room[0] == '+') rc = MOSQ_ERR_SUCCESS;
		else if(!mqc_name_valid(room, roomlen)) return MOSQ_ERR_ACL_DENIED;
		else if(!member_room(st, user, room, roomlen)) return MOSQ_ERR_ACL_DENIED;
		else rc = MOSQ_ERR_SUCCESS;
	}else if(own_inbox(st, user, filter)){
		/* Wildcards below res/ only ever match own topics. "$share/..." and anything with
		 * a wildcard above the user level falls through to deny. Each filter costs the
		 * broker memory for the session's life: their length below res/ is bounded. */
		mqc_topic_user(&st->topics, filter, &u, &ulen, &rest);
		if(!strncmp(rest, "res/", 4) && strlen(rest + 4) > st->opt.max_res_topic){
			plugin__log_client(st, "refused subscription of %s (%s) to a %zu-byte filter below res/: over "
					"max_res_topic %u", user, mosquitto_client_id(client), strlen(rest + 4), st->opt.max_res_topic);
			return MOSQ_ERR_ACL_DENIED;
		}
		rc = MOSQ_ERR_SUCCESS;
	}else if(mqc_topic_user(&st->topics, filter, &u, &ulen, &rest) && ulen == strlen(user) && !memcmp(u, user, ulen)
			&& (!strcmp(rest, "#") || !strcmp(rest, "+")) && user_active(st, user)){
		/* The first filter anyone writes: "<prefix>/users/{me}/#" (or /+). Granted; each
		 * delivery through it is still checked (check_read: res, res/..., events only, so a
		 * user's own requests on .../req never come back to it). */
		rc = MOSQ_ERR_SUCCESS;
	}
	/* sub_count is the size of the session's subscription array (slots of removed ones
	 * are reused): the most filters it held at once. */
	if(rc == MOSQ_ERR_SUCCESS && st->opt.max_subscriptions
			&& mosquitto_client_sub_count(client) >= (int)st->opt.max_subscriptions){
		plugin__log_client(st, "refused subscription of %s (%s) to '%s': it has %d, max_subscriptions is %u",
				user, mosquitto_client_id(client), filter, mosquitto_client_sub_count(client), st->opt.max_subscriptions);
		return MOSQ_ERR_ACL_DENIED;
	}
	return rc;
}

void plugin__pending_clear(struct mqchat *st)
{
	json_decref(st->pending.msg);
	memset(&st->pending, 0, sizeof(st->pending));
}

/* Refuses a PUBLISH that may be sent again later (a limit, the store behind): QoS 1 and
 * 2 close the connection without an acknowledgement, so the client library sends it again
 * after reconnecting; QoS 0 (nothing promised) is dropped. See MQCHAT_RETRY_LATER. */
static int retry_later(const struct mosquitto_evt_acl_check *ed)
{
	return ed->qos ? MQCHAT_RETRY_LATER : MOSQ_ERR_ACL_DENIED;
}

/* The same for a publish over one of the user's rates; a user flooding at QoS 0 far over
 * it is disconnected too (limits__flooding). */
static int over_rate(struct mqchat *st, const struct mosquitto_evt_acl_check *ed, struct user_state *us,
		const char *user)
{
	int64_t now = mqc_now_ms();
	if(ed->qos) return MQCHAT_RETRY_LATER;
	if(!limits__flooding(us, now)) return MOSQ_ERR_ACL_DENIED;
	limits__penalize(us, now);
	plugin__log_repeated(&st->flood_log, MOSQ_LOG_NOTICE, "mqchat: disconnecting %s (%s): more than %d QoS 0 "
			"publishes over its rates in a second; its connections are refused for %lld ms", user,
			mosquitto_client_id(ed->client), LIMIT_FLOOD, (long long)us->penalty_ms);
	return MQCHAT_RETRY_LATER;
}

static const char *verdict_name(enum limit_verdict v)
{
	switch(v){
		case LIMIT_SEND_RATE: return "send_rate";
		case LIMIT_BYTE_RATE: return "send_bytes_rate";
		case LIMIT_REQUEST_RATE: return "request_rate";
		default: return "none";
	}
}

static int check_send(struct mqchat *st, struct mosquitto_evt_acl_check *ed, const char *user,
		const char *room, size_t roomlen)
{
	char reason[256];
	const char *cid = mosquitto_client_id(ed->client);

	if(ed->retain){
		plugin__log_client(st, "refused retained publish to %s from %s (%s): retained messages are not allowed",
				ed->topic, user, cid);
		return MOSQ_ERR_ACL_DENIED;
	}
	struct cache_room *r = member_room(st, user, room, roomlen);
	if(!r){
		plugin__log_client(st, "refused publish to %s from %s (%s): not a participant of the room",
				ed->topic, user, cid);
		return MOSQ_ERR_ACL_DENIED;
	}
	if(!r->enabled){
		plugin__log_client(st, "refused publish to %s from %s (%s): the room is disabled", ed->topic, user, cid);
		return MOSQ_ERR_ACL_DENIED;
	}

	if(ed->payloadlen > st->opt.limits.max_payload){
		plugin__log_client(st, "dropped invalid message to %s from %s (%s), %u bytes: over max_payload %zu",
				ed->topic, user, cid, ed->payloadlen, st->opt.limits.max_payload);
		return MOSQ_ERR_ACL_DENIED;
	}
	if(!feed__admit(&st->feed, ed->payloadlen)){
		plugin__log_client(st, "refused publish to %s from %s (%s): %zu messages wait for the bridge to store "
				"them%s", ed->topic, user, cid, st->feed.count,
				ed->qos ? "; closing without an acknowledgement, the client sends it again" : "; dropped (QoS 0)");
		return retry_later(ed);
	}

	struct user_state *us = limits__user(st, user);
	enum limit_verdict v = us ? limits__send(st, us, ed->payloadlen, mqc_now_ms()) : LIMIT_OK;
	if(v != LIMIT_OK){
		plugin__log_client(st, "refused publish to %s from %s (%s), %u bytes: over %s (%u/s, burst %u)%s",
				ed->topic, user, cid, ed->payloadlen, verdict_name(v),
				v == LIMIT_SEND_RATE ? st->opt.send_rate : st->opt.send_bytes_rate,
				v == LIMIT_SEND_RATE ? st->opt.send_burst : st->opt.send_bytes_burst,
				ed->qos ? "; closing without an acknowledgement, the client sends it again" : "; dropped (QoS 0)");
		return over_rate(st, ed, us, user);
	}
	json_t *msg = NULL;
	mqc_msg_err err = mqc_msg_parse(ed->payload, ed->payloadlen, &st->opt.limits, &msg, reason, sizeof(reason));
	if(err != MQC_MSG_OK){
		plugin__log_client(st, "dropped invalid message to %s from %s (%s), %u bytes: %s",
				ed->topic, user, cid, ed->payloadlen, reason);
		return MOSQ_ERR_ACL_DENIED;
	}
	/* A client_msg_id names one message: the same bytes again are a resend (acknowledged,
	 * delivered once: message.c), other bytes under the same id within dedupe_window_s are
	 * a client bug that would otherwise vanish silently. */
	const char *cmid = json_string_value(json_object_get(msg, "client_msg_id"));
	uint64_t digest = 0, seen_digest = 0, resend_of = 0;
	if(cmid){
		digest = limits__digest(ed->payload, ed->payloadlen);
		resend_of = limits__dedupe_seen(&st->dedupe, user, room, roomlen, cmid, mqc_now_ms(), &seen_digest);
		if(resend_of && seen_digest != digest){
			plugin__log_client(st, "refused publish to %s from %s (%s): client_msg_id '%.64s' was already used for "
					"another message in the last %u s", ed->topic, user, cid, cmid, st->opt.dedupe_window_s);
			json_decref(msg);
			return MOSQ_ERR_ACL_DENIED;
		}
	}
	/* Handed to message.c, which runs next for this same PUBLISH (nothing runs between
	 * the two, so the dedupe lookup made here still holds there). */
	plugin__pending_clear(st);
	st->pending.resend_of = resend_of;
	st->pending.digest = digest;
	st->pending.client = ed->client;
	st->pending.payload = ed->payload;
	st->pending.payloadlen = ed->payloadlen;
	st->pending.msg = msg;
	st->pending.user = us;
	st->pending.room = r;
	return MOSQ_ERR_SUCCESS;
}

static int check_write(struct mqchat *st, struct mosquitto_evt_acl_check *ed, const char *user)
{
	const char *topic = ed->topic, *room, *leaf, *u, *rest;
	size_t roomlen, ulen;

	if(mqc_topic_room(&st->topics, topic, &room, &roomlen, &leaf)){
		if(strcmp(leaf, "send") == 0 && mqc_name_valid(room, roomlen)){
			return check_send(st, ed, user, room, roomlen);
		}
	}else if(mqc_topic_user(&st->topics, topic, &u, &ulen, &rest)){
		if(ulen == strlen(user) && memcmp(u, user, ulen) == 0 && strcmp(rest, "req") == 0 && !ed->retain
				&& user_active(st, user)){
			/* The bridge refuses requests over 64 KiB; refusing them here keeps a client
			 * from making the bridge read megabytes on its single thread. */
			if(ed->payloadlen > MQC_MAX_REQUEST){
				plugin__log_client(st, "refused a %u-byte request from %s (%s): over %d bytes",
						ed->payloadlen, user, mosquitto_client_id(ed->client), MQC_MAX_REQUEST);
				return MOSQ_ERR_ACL_DENIED;
			}
			struct user_state *us = limits__user(st, user);
			if(us && limits__request(st, us, mqc_now_ms()) != LIMIT_OK){
				plugin__log_client(st, "refused a request from %s (%s): over request_rate (%u/s, burst %u)%s",
						user, mosquitto_client_id(ed->client), st->opt.request_rate, st->opt.request_burst,
						ed->qos ? "; closing without an acknowledgement, the client sends it again" : "; dropped (QoS 0)");
				return over_rate(st, ed, us, user);
			}
			return MOSQ_ERR_SUCCESS;
		}
	}
	plugin__log_client(st, "refused publish to '%s' from %s (%s): not allowed", topic, user,
			mosquitto_client_id(ed->client));
	return MOSQ_ERR_ACL_DENIED;
}

/* The service user: the whole <prefix>/ tree and its control topic, never a retained
 * message, never a chat message of its own (it is not a participant). */
static int check_service(struct mqchat *st, struct mosquitto_evt_acl_check *ed)
{
	const char *t = ed->topic, *room, *leaf, *u, *rest;
	size_t roomlen, ulen;
	bool in_tree = strncmp(t, st->opt.prefix, st->prefix_len) == 0 && t[st->prefix_len] == '/';

	switch(ed->access){
	case MOSQ_ACL_WRITE:
		if(!strcmp(t, MQCHAT_CONTROL_TOPIC)) return MOSQ_ERR_SUCCESS;
		if(!in_tree || ed->retain) return MOSQ_ERR_ACL_DENIED;
		if(mqc_topic_room(&st->topics, t, &room, &roomlen, &leaf) && !strcmp(leaf, "send")) return MOSQ_ERR_ACL_DENIED;
		return MOSQ_ERR_SUCCESS;
	case MOSQ_ACL_READ:
		/* Nobody receives the raw client input on .../send and .../req: message.c stamps
		 * and forwards it. The broker releasing a QoS 2 send runs this check (for the
		 * bridge's subscription to .../send): the moment it can no longer be resent. */
		if(mqc_topic_room(&st->topics, t, &room, &roomlen, &leaf) && !strcmp(leaf, "send")){
			if(ed->qos == 2) qos2__released(st, t, ed->payload, ed->payloadlen);
			return MOSQ_ERR_ACL_DENIED;
		}
		if(mqc_topic_user(&st->topics, t, &u, &ulen, &rest) && !strcmp(rest, "req")) return MOSQ_ERR_ACL_DENIED;
		/* What the plugin sent the bridge itself (the broker checks it again when a
		 * session with queued messages reconnects). */
		if(!strncmp(t, MQCHAT_CONTROL_TOPIC "/", sizeof(MQCHAT_CONTROL_TOPIC))) return MOSQ_ERR_SUCCESS;
		return in_tree ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	case MOSQ_ACL_SUBSCRIBE:
		return in_tree ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	default:
		return MOSQ_ERR_SUCCESS;
	}
}

int acl__check(int event, void *event_data, void *userdata)
{
	(void)event;
	struct mqchat *st = userdata;
	struct mosquitto_evt_acl_check *ed = event_data;

	plugin__swap_if_ready(st);
	if(ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;

	const char *user = mosquitto_client_username(ed->client);
	if(!user || !ed->topic) return MOSQ_ERR_ACL_DENIED;
	/* a revoked or expired credential's connection, not yet closed (one compare when none) */
	if(st->ncondemned && tick__condemned(st, ed->client)) return MOSQ_ERR_ACL_DENIED;
	if(is_service(st, user)) return check_service(st, ed);

	switch(ed->access){
	case MOSQ_ACL_READ:
		return check_read(st, user, ed->topic);
	case MOSQ_ACL_SUBSCRIBE:
		return check_subscribe(st, ed->client, user, ed->topic);
	case MOSQ_ACL_WRITE:
		return check_write(st, ed, user);
	default:
		return MOSQ_ERR_ACL_DENIED;
	}
}
