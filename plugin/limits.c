/*
 * Per-user guards, all in memory on the broker thread:
 *
 *  - dedupe: client_msg_id is the client's idempotency key (DESIGN.md "A message"). A
 *    client that did not get its PUBACK (a reconnect, a lost packet) sends again; within
 *    dedupe_window_s the same (sender, room, client_msg_id) is delivered once. The entries
 *    form a FIFO by time; the oldest go when they expire or when there are dedupe_max.
 *  - fair share: token buckets per user for sends (send_rate messages/s, send_burst deep),
 *    for the bytes of sends (send_bytes_rate, send_bytes_burst) and for requests
 *    (request_rate, request_burst), so one user cannot take the broker's or the bridge's
 *    time, nor fill other users' session queues. acl.c decides what an empty bucket means.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

struct dedupe_entry {
	char *key;          /* "sender\x01room\x01client_msg_id" */
	size_t keylen;
	uint64_t id;        /* the id the first copy was stamped with */
	uint64_t digest;    /* limits__digest of its payload: a resend is the same bytes */
	int64_t expires_ms;
};

/* Builds the dedupe key into buf; 0, or -1 if it does not fit (it always does: names are
 * <= 64 and client_msg_id <= 64 bytes). */
static int make_key(char *buf, size_t buflen, size_t *len, const char *user, const char *room,
		size_t roomlen, const char *cmid)
{
	int n = snprintf(buf, buflen, "%s\x01%.*s\x01%s", user, (int)roomlen, room, cmid);
	if(n < 0 || (size_t)n >= buflen) return -1;
	*len = (size_t)n;
	return 0;
}

static void expire(struct dedupe *d, int64_t now)
{
	while(d->count && (d->count > d->max || d->ring[d->head]->expires_ms <= now)){
		struct dedupe_entry *e = d->ring[d->head];
		strmap__del(&d->map, e->key, e->keylen);
		free(e->key);
		free(e);
		d->head = (d->head + 1) & (d->cap - 1);
		d->count--;
	}
}

uint64_t limits__digest(const void *data, size_t len)
{
	/* FNV-1a, 64 bits: tells a resend from another message with the same key (a
	 * client can only collide with itself) */
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ULL;
	for(size_t i = 0; i < len; i++){
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t limits__dedupe_seen(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, int64_t now, uint64_t *digest)
{
	char key[256];
	size_t len;
	if(!d->max || make_key(key, sizeof(key), &len, user, room, roomlen, cmid)) return 0;
	expire(d, now);
	struct dedupe_entry *e = strmap__get(&d->map, key, len);
	if(e && digest) *digest = e->digest;
	return e ? e->id : 0;
}

void limits__dedupe_add(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, uint64_t id, uint64_t digest, int64_t now)
{
	char key[256];
	size_t len;
	int err;
	if(!d->max || make_key(key, sizeof(key), &len, user, room, roomlen, cmid)) return;
	if(d->count == d->cap){
		size_t cap = d->cap ? d->cap * 2 : 1024;
		struct dedupe_entry **ring = malloc(cap * sizeof(*ring));
		if(!ring) return; /* not remembered: a resend would be delivered again, nothing worse */
		for(size_t i = 0; i < d->count; i++) ring[i] = d->ring[(d->head + i) & (d->cap - 1)];
		free(d->ring);
		d->ring = ring;
		d->cap = cap;
		d->head = 0;
	}
	struct dedupe_entry *e = calloc(1, sizeof(*e));
	if(!e || !(e->key = malloc(len + 1))){
		free(e);
		return;
	}
	memcpy(e->key, key, len + 1);
	e->keylen = len;
	e->id = id;
	e->digest = digest;
	e->expires_ms = now + (int64_t)d->window_s * 1000;
	strmap__put(&d->map, e->key, len, e, &err);
	if(err){
		free(e->key);
		free(e);
		return;
	}
	d->ring[(d->head + d->count) & (d->cap - 1)] = e;
	d->count++;
	expire(d, now);
}

void limits__dedupe_free(struct dedupe *d)
{
	d->max = 0;
	while(d->count){
		struct dedupe_entry *e = d->ring[d->head];
		free(e->key);
		free(e);
		d->head = (d->head + 1) & (d->cap - 1);
		d->count--;
	}
	free(d->ring);
	strmap__free(&d->map);
	memset(d, 0, sizeof(*d));
}

struct user_state *limits__user(struct mqchat *st, const char *user)
{
	size_t len = strlen(user);
	struct user_state *u = strmap__get(&st->users_state, user, len);
	if(u) return u;
	int err;
	u = calloc(1, sizeof(*u));
	if(!u || !(u->name = strdup(user))){
		free(u);
		return NULL;
	}
	u->send_tokens = st->opt.send_burst;
	u->byte_tokens = st->opt.send_bytes_burst;
	u->req_tokens = st->opt.request_burst;
	u->last_ms = mqc_now_ms();
	strmap__put(&st->users_state, u->name, len, u, &err);
	if(err){
		free(u->name);
		free(u);
		return NULL;
	}
	return u;
}

static void refill(const struct mqchat *st, struct user_state *u, int64_t now)
{
	double dt = (double)(now - u->last_ms) / 1000.0;
	if(dt <= 0) return;
	u->last_ms = now;
	u->send_tokens += dt * st->opt.send_rate;
	if(u->send_tokens > st->opt.send_burst) u->send_tokens = st->opt.send_burst;
	u->byte_tokens += dt * st->opt.send_bytes_rate;
	if(u->byte_tokens > st->opt.send_bytes_burst) u->byte_tokens = st->opt.send_bytes_burst;
	u->req_tokens += dt * st->opt.request_rate;
	if(u->req_tokens > st->opt.request_burst) u->req_tokens = st->opt.request_burst;
}

enum limit_verdict limits__send(struct mqchat *st, struct user_state *u, uint32_t len, int64_t now)
{
	refill(st, u, now);
	if(st->opt.send_rate && u->send_tokens < 1.0) return LIMIT_SEND_RATE;
	if(st->opt.send_bytes_rate && u->byte_tokens < (double)len) return LIMIT_BYTE_RATE;
	if(st->opt.send_rate) u->send_tokens -= 1.0;
	if(st->opt.send_bytes_rate) u->byte_tokens -= (double)len;
	return LIMIT_OK;
}

enum limit_verdict limits__request(struct mqchat *st, struct user_state *u, int64_t now)
{
	refill(st, u, now);
	if(!st->opt.request_rate) return LIMIT_OK;
	if(u->req_tokens < 1.0) return LIMIT_REQUEST_RATE;
	u->req_tokens -= 1.0;
	return LIMIT_OK;
}

bool limits__flooding(struct user_state *u, int64_t now)
{
	if(now - u->over_since_ms >= 1000){
		u->over_since_ms = now;
		u->over_count = 0;
	}
	return ++u->over_count > LIMIT_FLOOD;
}

void limits__penalize(struct user_state *u, int64_t now)
{
	bool again = u->penalty_until_ms && now - u->penalty_until_ms < 60000;
	u->penalty_ms = again && u->penalty_ms ? u->penalty_ms * 2 : 1000;
	if(u->penalty_ms > 60000) u->penalty_ms = 60000;
	u->penalty_until_ms = now + u->penalty_ms;
}

void limits__free(struct mqchat *st)
{
	STRMAP_FOREACH(&st->users_state, s){
		struct user_state *u = s->val;
		free(u->name);
		free(u);
	}
	strmap__free(&st->users_state);
	STRMAP_FOREACH(&st->conns, s){
		struct conn *c = s->val;
		free(c->cid);
		free(c);
	}
	strmap__free(&st->conns);
}
