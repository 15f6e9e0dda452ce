/*
 * token.c: device tokens in the snapshot (docs/logging-in.md).
 *
 * The snapshot holds every token by the hex SHA-256 of its secret (the CONNECT password
 * is hashed once and looked up: auth.c) and by its id (revocation). Tokens come from the
 * snapshot load (cache.c reads the tokens table) and from the bridge's control messages:
 *
 *   {"op":"token","user":U,"id":I,"hash":H,"expires_at":MS}   made by token.create
 *   {"op":"token.revoke","user":U,"id":I}                      token.revoke
 *
 * sent after the bridge committed, before it answers the requester (same connection, so
 * the broker applies them first): a revoked token is refused from the moment its owner
 * has the answer, and its connections are closed at once. A change that a snapshot being
 * read may predate is logged and replayed onto it at the swap, as room updates are.
 * Changes made behind the bridge's back (mqchat-admin, a password change or a disabled
 * user, whose triggers delete the user's tokens) reach the plugin with the next reload;
 * token__after_swap then closes the connections of tokens that are gone.
 *
 * A token's last use is told to the bridge's request connection on
 * $CONTROL/mqchat/v1/used (at most once a minute per token), which records it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define USED_REPORT_MS 60000

/* ------------------------------------------------------------------ the log */

static void update_free(struct token_update *u)
{
	free(u->user);
	free(u->id);
	free(u->hash);
	memset(u, 0, sizeof(*u));
}

void token__log_clear(struct mqchat *st)
{
	for(size_t i = 0; i < st->tok_log.len; i++) update_free(&st->tok_log.items[i]);
	st->tok_log.len = 0;
}

static int apply(struct cache *c, const struct token_update *u)
{
	/* A snapshot read at or after the change already has it, and whatever came after it
	 * (the token may have been deleted since: a password change, mqchat-admin). */
	if(u->acl_to && c->acl_version >= u->acl_to) return 0;
	if(u->revoke){
		cache__token_del(c, u->id);
		return 0;
	}
	return cache__token_add(c, u->user, u->id, u->hash, u->expires_at, true);
}

void token__replay(struct mqchat *st, struct cache *next)
{
	for(size_t i = 0; i < st->tok_log.len; i++){
		if(apply(next, &st->tok_log.items[i]) < 0){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: out of memory replaying token %s onto a new snapshot",
					st->tok_log.items[i].id);
		}
	}
	token__log_clear(st);
}

static void log_keep(struct mqchat *st, const struct token_update *u)
{
	if(!atomic_load(&st->reading) && !atomic_load(&st->next_cache)){
		token__log_clear(st);
		return;
	}
	struct token_log *log = &st->tok_log;
	if(log->len == log->cap){
		size_t cap = log->cap ? log->cap * 2 : 16;
		struct token_update *items = realloc(log->items, cap * sizeof(*items));
		if(!items) return;
		log->items = items;
		log->cap = cap;
	}
	struct token_update *k = &log->items[log->len];
	memset(k, 0, sizeof(*k));
	k->revoke = u->revoke;
	k->expires_at = u->expires_at;
	k->acl_to = u->acl_to;
	k->user = strdup(u->user);
	k->id = strdup(u->id);
	k->hash = u->hash ? strdup(u->hash) : NULL;
	if(!k->user || !k->id || (u->hash && !k->hash)){
		update_free(k);
		return;
	}
	log->len++;
}

/* ------------------------------------------------------------------ closing connections */

/* Closes every connection that logged in with token id (or, id NULL, with a token the
 * snapshot no longer has). From a control message: the kicked clients are not the one
 * whose callback this is (the bridge's), so they are closed at once; the ids are
 * collected first because each kick runs disconnect.c, which frees its conn. */
static void close_token_conns(struct mqchat *st, const char *id, bool now, const char *why)
{
	char **cids = NULL;
	size_t n = 0, cap = 0;
	STRMAP_FOREACH(&st->conns, s){
		struct conn *c = s->val;
		if(!c->token_id) continue;
		if(id ? strcmp(c->token_id, id) != 0 : cache__token_by_id(st->cache, c->token_id) != NULL) continue;
		if(n == cap){
			size_t nc = cap ? cap * 2 : 8;
			char **v = realloc(cids, nc * sizeof(*v));
			if(!v) break;
			cids = v;
			cap = nc;
		}
		if(!(cids[n] = strdup(c->cid))) break;
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: closing %s (%s): its token %s %s",
				c->user ? c->user->name : "?", c->cid, c->token_id, why);
		tick__condemn(st, c->client);
		n++;
	}
	for(size_t i = 0; i < n; i++){
		if(now) mosquitto_kick_client_by_clientid(cids[i], false);
		else tick__kick_cid_later(st, cids[i]);
		free(cids[i]);
	}
	free(cids);
}

void token__after_swap(struct mqchat *st)
{
	/* The swap may run inside a client's own CONNECT: the kicks wait for the tick. */
	close_token_conns(st, NULL, false, "was revoked (or its user disabled, or its password changed)");
}

/* ------------------------------------------------------------------ control messages */

void token__control(struct mqchat *st, json_t *j, bool revoke)
{
	struct token_update u = {0};
	u.revoke = revoke;
	u.user = (char *)json_string_value(json_object_get(j, "user"));
	u.id = (char *)json_string_value(json_object_get(j, "id"));
	u.hash = revoke ? NULL : (char *)json_string_value(json_object_get(j, "hash"));
	json_t *exp = json_object_get(j, "expires_at");
	if(!u.user || !mqc_name_valid(u.user, strlen(u.user)) || !cache__token_id_valid(u.id) || (!revoke && !cache__token_hash_valid(u.hash))
			|| (!revoke && exp && !json_is_null(exp) && !json_is_integer(exp))){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: control: bad %s message ignored (needs user, id%s)",
				revoke ? "token.revoke" : "token", revoke ? "" : ", hash and an integer or null expires_at");
		return;
	}
	u.expires_at = json_is_integer(exp) ? json_integer_value(exp) : 0;
	json_t *to0 = json_object_get(j, "acl_to");
	u.acl_to = json_is_integer(to0) ? json_integer_value(to0) : 0;
	if(apply(st->cache, &u) < 0){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: control: out of memory adding token %s of %s; the next reload "
				"brings it", u.id, u.user);
	}
	log_keep(st, &u);
	atomic_fetch_add(&st->ctl_seq, 1);
	json_t *from = json_object_get(j, "acl_from"), *to = json_object_get(j, "acl_to");
	if(json_is_integer(from) && json_is_integer(to)){
		int64_t known = json_integer_value(from);
		atomic_compare_exchange_strong(&st->known_acl_version, &known, json_integer_value(to));
	}
	if(revoke) close_token_conns(st, u.id, true, "was revoked");
}

/* ------------------------------------------------------------------ last use */

void token__used(struct mqchat *st, struct cache_token *t)
{
	int64_t now = mqc_now_ms();
	if(!st->req_cid || (t->reported_ms && now - t->reported_ms < USED_REPORT_MS)) return;
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "{\"user\":\"%s\",\"id\":\"%s\",\"at\":%" PRId64 "}", t->user->name,
			t->byid.id, now);
	if(n <= 0 || (size_t)n >= sizeof(buf)) return;
	char *p = mosquitto_malloc((size_t)n);
	if(!p) return;
	memcpy(p, buf, (size_t)n);
	if(mosquitto_broker_publish(st->req_cid, MQCHAT_USED_TOPIC, n, p, 0, false, NULL) != MOSQ_ERR_SUCCESS){
		mosquitto_free(p);
		return;
	}
	t->reported_ms = now;
}
