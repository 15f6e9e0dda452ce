/*
 * Two per-sender guards on chat/rooms/{room}/send, both in memory on the broker thread:
 *
 *  - dedupe: client_msg_id is the client's idempotency key (DESIGN.md "A message"). A
 *    client that did not get its PUBACK (a reconnect, a lost packet) sends again; within
 *    dedupe_window_s the same (sender, room, client_msg_id) is delivered once. The entries
 *    form a FIFO by time; the oldest go when they expire or when there are dedupe_max.
 *  - rate: a token bucket per sender (send_rate messages/s, send_burst deep), so one
 *    client cannot make the broker spend all its time on its messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

struct dedupe_entry {
	char *key;          /* "sender\x01room\x01client_msg_id" */
	size_t keylen;
	uint64_t id;        /* the id the first copy was stamped with */
	int64_t expires_ms;
};

struct rate_bucket {
	char *name;
	double tokens;
	int64_t last_ms;
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

uint64_t limits__dedupe_seen(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, int64_t now)
{
	char key[256];
	size_t len;
	if(!d->max || make_key(key, sizeof(key), &len, user, room, roomlen, cmid)) return 0;
	expire(d, now);
	struct dedupe_entry *e = strmap__get(&d->map, key, len);
	return e ? e->id : 0;
}

void limits__dedupe_add(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, uint64_t id, int64_t now)
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

bool limits__rate_allow(struct mqchat *st, const char *user, int64_t now)
{
	if(!st->opt.send_rate) return true;
	size_t len = strlen(user);
	struct rate_bucket *b = strmap__get(&st->rates, user, len);
	if(!b){
		int err;
		b = calloc(1, sizeof(*b));
		if(!b || !(b->name = strdup(user))){
			free(b);
			return true; /* no memory to track it: let it through rather than refuse */
		}
		b->tokens = st->opt.send_burst;
		b->last_ms = now;
		strmap__put(&st->rates, b->name, len, b, &err);
		if(err){
			free(b->name);
			free(b);
			return true;
		}
	}
	b->tokens += (double)(now - b->last_ms) * st->opt.send_rate / 1000.0;
	if(b->tokens > st->opt.send_burst) b->tokens = st->opt.send_burst;
	b->last_ms = now;
	if(b->tokens < 1.0) return false;
	b->tokens -= 1.0;
	return true;
}

void limits__rate_free(struct mqchat *st)
{
	STRMAP_FOREACH(&st->rates, s){
		struct rate_bucket *b = s->val;
		free(b->name);
		free(b);
	}
	strmap__free(&st->rates);
}
