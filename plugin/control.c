/*
 * MOSQ_EVT_CONTROL on $CONTROL/mqchat/v1: what the bridge tells the plugin.
 *
 *   {"op":"room","room":R,"version":V,"enabled":B,"members":[...],"acl_from":X,"acl_to":Y}
 *       R's full new state, sent after the bridge committed it and before it answers the
 *       requester (same connection, so the broker sees this first). Applied at once.
 *       acl_from/acl_to (optional): meta.acl_version before and after the bridge's
 *       transaction, so the reload thread need not re-read a change it was told about.
 *   {"op":"hello","role":"store","epoch":E,"seq":S}, {"op":"stored","epoch":E,"seq":N},
 *   {"op":"resend","epoch":E,"from":N}
 *       the store connection: what it has committed, and a gap it saw (feed.c).
 *   {"op":"hello","role":"requests"}
 *       the request connection: message.c forwards requests to this client id.
 *   {"op":"token",...}, {"op":"token.revoke",...}
 *       a device token made or revoked (token.c).
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

/* An unsigned JSON integer member, or false. */
static bool get_u64(json_t *j, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(j, key);
	if(!json_is_integer(v) || json_integer_value(v) < 0) return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static void handle_hello(struct mqchat *st, const struct mosquitto *client, json_t *j)
{
	const char *role = json_string_value(json_object_get(j, "role"));
	const char *cid = mosquitto_client_id(client);
	uint64_t epoch = 0, seq = 0;
	if(role && !strcmp(role, "store")){
		if(!get_u64(j, "epoch", &epoch) || !get_u64(j, "seq", &seq)){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: hello from %s needs integer epoch and seq",
					cid ? cid : "?");
			return;
		}
		feed__hello(&st->feed, client, epoch, seq);
	}else if(role && !strcmp(role, "requests") && cid){
		char *dup = strdup(cid);
		if(!dup) return;
		free(st->req_cid);
		st->req_cid = dup;
		st->req_client = client;
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: bridge request connection %s: forwarding requests to it", cid);
	}else{
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: hello with unknown role '%s' ignored", role ? role : "");
	}
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
	}else if(!strcmp(op, "stored") || !strcmp(op, "resend")){
		uint64_t epoch, n;
		bool stored = op[0] == 's';
		if(!get_u64(j, "epoch", &epoch) || !get_u64(j, stored ? "seq" : "from", &n)){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: %s needs integer epoch and %s", op,
					stored ? "seq" : "from");
		}else if(stored){
			feed__stored(&st->feed, epoch, n);
		}else{
			feed__resend(&st->feed, epoch, n);
		}
	}else if(!strcmp(op, "token") || !strcmp(op, "token.revoke")){
		token__control(st, j, op[5] == '.');
	}else if(!strcmp(op, "hello")){
		handle_hello(st, ed->client, j);
	}else{
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: unknown op '%s' ignored", op);
	}
	json_decref(j);
	return MOSQ_ERR_SUCCESS;
}
