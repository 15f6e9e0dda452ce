/*
 * MOSQ_EVT_CONTROL on $CONTROL/mqchat/v1: what the bridge tells the plugin.
 *
 *   {"op":"room","room":R,"version":V,"enabled":B,"members":[...],"acl_from":X,"acl_to":Y}
 *       R's full new state, sent after the bridge committed it and before it answers the
 *       requester (same connection, so the broker sees this first). Applied at once.
 *       acl_from/acl_to (optional): meta.acl_version before and after the bridge's
 *       transaction, so the reload thread need not re-read a change it was told about.
 *   {"op":"stored","upto":N}     every message with id <= N is committed: drop the copies.
 *   {"op":"replay","after":M}    resend every kept message with id > M to this client,
 *                                then {"op":"replay.done","count":K} on
 *                                $CONTROL/mqchat/v1/replay.
 *
 * Only the service user may publish here (acl.c denies everyone else; checked again).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static int log_push(struct control_log *log, struct room_update *u)
{
	if(log->len == log->cap){
		size_t cap = log->cap ? log->cap * 2 : 16;
		struct room_update *items = realloc(log->items, cap * sizeof(*items));
		if(!items) return -1;
		log->items = items;
		log->cap = cap;
	}
	log->items[log->len++] = *u;
	return 0;
}

static int parse_room(json_t *j, struct room_update *u, char *reason, size_t reasonlen)
{
	json_t *room = json_object_get(j, "room"), *members = json_object_get(j, "members");
	json_t *version = json_object_get(j, "version"), *enabled = json_object_get(j, "enabled");
	memset(u, 0, sizeof(*u));
	if(!json_is_string(room) || !mqc_name_valid(json_string_value(room), json_string_length(room))){
		snprintf(reason, reasonlen, "room: expected a room id");
		return -1;
	}
	if(!json_is_integer(version) || !json_is_boolean(enabled) || !json_is_array(members)){
		snprintf(reason, reasonlen, "expected integer version, boolean enabled, array members");
		return -1;
	}
	size_t n = json_array_size(members);
	u->members = calloc(n ? n : 1, sizeof(char *));
	u->room = strdup(json_string_value(room));
	if(!u->members || !u->room) goto nomem;
	for(size_t i = 0; i < n; i++){
		json_t *m = json_array_get(members, i);
		if(!json_is_string(m) || !mqc_name_valid(json_string_value(m), json_string_length(m))){
			snprintf(reason, reasonlen, "members[%zu]: expected a user id", i);
			room_update__free(u);
			return -1;
		}
		if(!(u->members[u->nmembers] = strdup(json_string_value(m)))) goto nomem;
		u->nmembers++;
	}
	u->version = json_integer_value(version);
	u->enabled = json_is_true(enabled);
	return 0;
nomem:
	room_update__free(u);
	snprintf(reason, reasonlen, "out of memory");
	return -1;
}

static void handle_room(struct mqchat *st, json_t *j)
{
	char reason[256];
	struct room_update u;
	if(parse_room(j, &u, reason, sizeof(reason))){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: bad room update ignored: %s", reason);
		return;
	}
	int rc = cache__apply(st->cache, &u);
	if(rc < 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: control: out of memory applying room %s; "
				"the next reload will bring it", u.room);
		room_update__free(&u);
		return;
	}
	atomic_fetch_add(&st->ctl_seq, 1);
	/* Kept only while a snapshot read is under way or waiting to be swapped in: that
	 * snapshot may predate this update, and the swap replays the log onto it. */
	if(!atomic_load(&st->reading) && !atomic_load(&st->next_cache)){
		plugin__ctl_log_clear(st);
		room_update__free(&u);
	}else if(log_push(&st->ctl_log, &u)){
		room_update__free(&u);
	}

	json_t *from = json_object_get(j, "acl_from"), *to = json_object_get(j, "acl_to");
	if(json_is_integer(from) && json_is_integer(to)){
		int64_t known = json_integer_value(from);
		atomic_compare_exchange_strong(&st->known_acl_version, &known, json_integer_value(to));
	}
}

static void handle_replay(struct mqchat *st, const struct mosquitto *client, json_t *j)
{
	json_t *after = json_object_get(j, "after");
	const char *cid = mosquitto_client_id(client);
	if(!json_is_integer(after) || json_integer_value(after) < 0 || !cid){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: replay needs a non-negative integer 'after'");
		return;
	}
	uint64_t from = (uint64_t)json_integer_value(after);
	size_t n = replay__send(&st->replay, cid, from);
	char buf[96];
	int len = snprintf(buf, sizeof(buf), "{\"op\":\"replay.done\",\"count\":%zu}", n);
	char *payload = mosquitto_malloc((size_t)len + 1);
	if(payload){
		memcpy(payload, buf, (size_t)len + 1);
		if(mosquitto_broker_publish(cid, MQCHAT_REPLAY_DONE_TOPIC, len, payload, 1, false, NULL)){
			mosquitto_free(payload);
		}
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: bridge %s asked for messages after %" PRIu64
			": resent %zu (%zu kept, %llu dropped for space since start)",
			cid, from, n, st->replay.count, (unsigned long long)st->replay.dropped);
}

int control__handle(int event, void *event_data, void *userdata)
{
	(void)event;
	struct mqchat *st = userdata;
	struct mosquitto_evt_control *ed = event_data;
	json_error_t jerr;

	plugin__swap_if_ready(st);
	const char *user = mosquitto_client_username(ed->client);
	if(!user || strcmp(user, st->opt.service_user) != 0){
		plugin__log_client(st, "refused control message from %s: only the service user may send it",
				user ? user : "(anonymous)");
		return MOSQ_ERR_ACL_DENIED;
	}
	json_t *j = json_loadb(ed->payload, ed->payloadlen, JSON_REJECT_DUPLICATES, &jerr);
	const char *op = json_string_value(json_object_get(j, "op"));
	if(!op){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: message without an op ignored (%s)",
				j ? "no op" : jerr.text);
		json_decref(j);
		return MOSQ_ERR_SUCCESS;
	}
	if(!strcmp(op, "room")){
		handle_room(st, j);
	}else if(!strcmp(op, "stored")){
		json_t *upto = json_object_get(j, "upto");
		if(json_is_integer(upto) && json_integer_value(upto) >= 0){
			replay__ack(&st->replay, (uint64_t)json_integer_value(upto));
		}
	}else if(!strcmp(op, "replay")){
		handle_replay(st, ed->client, j);
	}else{
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: unknown op '%s' ignored", op);
	}
	json_decref(j);
	return MOSQ_ERR_SUCCESS;
}
