/*
 * MOSQ_EVT_TICK: work that must not run inside a client's own callback.
 *
 * Disconnecting a user (mosquitto_kick_client_by_username) frees its contexts; doing it
 * from a callback the broker runs for one of those contexts (its CONNECT, its PUBLISH)
 * is a use-after-free. So users disabled or removed are queued by the snapshot swap and
 * disconnected here, from the main loop. Until then acl.c refuses them everything.
 *
 * Also here: connections whose device token or JWT expired, and those of tokens revoked
 * behind the bridge's back (token.c), are closed.
 *
 * Mosquitto 2.0.11 does not fire the tick with per_listener_settings true: there, disabled
 * users keep their connection (refused every publish, subscribe and delivery) until they
 * disconnect, and an expired credential's connection stays open. mosquitto.conf.example
 * says so.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

void tick__kick_later(struct mqchat *st, const char *user)
{
	if(st->nkicks == st->kicks_cap){
		size_t cap = st->kicks_cap ? st->kicks_cap * 2 : 8;
		char **k = realloc(st->kicks, cap * sizeof(*k));
		if(!k) return; /* not disconnected, still refused everything by acl.c */
		st->kicks = k;
		st->kicks_cap = cap;
	}
	char *name = strdup(user);
	if(name) st->kicks[st->nkicks++] = name;
}

void tick__kick_cid_later(struct mqchat *st, const char *cid)
{
	if(st->nkick_cids == st->kick_cids_cap){
		size_t cap = st->kick_cids_cap ? st->kick_cids_cap * 2 : 8;
		char **k = realloc(st->kick_cids, cap * sizeof(*k));
		if(!k) return;
		st->kick_cids = k;
		st->kick_cids_cap = cap;
	}
	char *d = strdup(cid);
	if(d) st->kick_cids[st->nkick_cids++] = d;
}

void tick__condemn(struct mqchat *st, const struct mosquitto *client)
{
	if(tick__condemned(st, client)) return;
	if(st->ncondemned == st->condemned_cap){
		size_t cap = st->condemned_cap ? st->condemned_cap * 2 : 8;
		const struct mosquitto **v = realloc(st->condemned, cap * sizeof(*v));
		if(!v) return;
		st->condemned = v;
		st->condemned_cap = cap;
	}
	st->condemned[st->ncondemned++] = client;
}

bool tick__condemned(const struct mqchat *st, const struct mosquitto *client)
{
	for(size_t i = 0; i < st->ncondemned; i++) if(st->condemned[i] == client) return true;
	return false;
}

void tick__forget(struct mqchat *st, const struct mosquitto *client)
{
	for(size_t i = 0; i < st->ncondemned; i++){
		if(st->condemned[i] == client){
			st->condemned[i] = st->condemned[--st->ncondemned];
			return;
		}
	}
}

/* Connections whose device token or JWT expired are closed (checked once a second). */
static void expire(struct mqchat *st)
{
	int64_t now = mqc_now_ms();
	if(now - st->expiry_checked_ms < 1000) return;
	st->expiry_checked_ms = now;
	STRMAP_FOREACH(&st->conns, s){
		struct conn *c = s->val;
		if(!c->expires_ms || c->expires_ms > now) continue;
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: closing %s (%s): its %s expired %lld ms ago",
				c->user ? c->user->name : "?", c->cid, c->token_id ? "device token" : "JWT",
				(long long)(now - c->expires_ms));
		c->expires_ms = 0; /* once */
		tick__condemn(st, c->client);
		tick__kick_cid_later(st, c->cid);
	}
}

int tick__handle(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	struct mqchat *st = userdata;

	plugin__swap_if_ready(st);
	expire(st);
	for(size_t i = 0; i < st->nkicks; i++){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: user %s was disabled or removed, or its password changed: "
				"disconnecting it", st->kicks[i]);
		mosquitto_kick_client_by_username(st->kicks[i], false);
		free(st->kicks[i]);
	}
	st->nkicks = 0;
	/* kicking runs disconnect.c, which may not add to this list: take it first */
	size_t n = st->nkick_cids;
	char **cids = st->kick_cids;
	st->kick_cids = NULL;
	st->nkick_cids = st->kick_cids_cap = 0;
	for(size_t i = 0; i < n; i++){
		mosquitto_kick_client_by_clientid(cids[i], false);
		free(cids[i]);
	}
	free(cids);
	return MOSQ_ERR_SUCCESS;
}

void tick__free(struct mqchat *st)
{
	for(size_t i = 0; i < st->nkicks; i++) free(st->kicks[i]);
	free(st->kicks);
	st->kicks = NULL;
	st->nkicks = st->kicks_cap = 0;
	for(size_t i = 0; i < st->nkick_cids; i++) free(st->kick_cids[i]);
	free(st->kick_cids);
	st->kick_cids = NULL;
	st->nkick_cids = st->kick_cids_cap = 0;
	free(st->condemned);
	st->condemned = NULL;
	st->ncondemned = st->condemned_cap = 0;
}
