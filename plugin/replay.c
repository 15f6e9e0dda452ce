/*
 * The replay buffer: a copy of every stamped message until the bridge says it is stored.
 *
 * libmosquitto acknowledges a message to the broker before the bridge has committed it,
 * so a bridge killed with SIGKILL would lose what it had acknowledged but not committed.
 * The bridge acks stored ids on $CONTROL (control.c -> replay__ack) and, when it
 * (re)connects, asks for everything after its highest stored id (replay__send).
 *
 * Entries are appended in id order (ids grow on the broker's one thread), so the buffer is
 * a ring: acks pop from the front, and a full buffer drops its oldest copies.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static struct replay_entry *at(struct replay *r, size_t i)
{
	return &r->ring[(r->head + i) & (r->cap - 1)];
}

static void pop_front(struct replay *r)
{
	struct replay_entry *e = at(r, 0);
	r->bytes -= e->len + strlen(e->topic);
	free(e->topic);
	free(e->payload);
	r->head = (r->head + 1) & (r->cap - 1);
	r->count--;
}

static int grow(struct replay *r)
{
	size_t cap = r->cap ? r->cap * 2 : 1024;
	struct replay_entry *ring = malloc(cap * sizeof(*ring));
	if(!ring) return -1;
	for(size_t i = 0; i < r->count; i++) ring[i] = *at(r, i);
	free(r->ring);
	r->ring = ring;
	r->cap = cap;
	r->head = 0;
	return 0;
}

int replay__add(struct replay *r, uint64_t id, const char *topic, const char *payload, uint32_t len)
{
	size_t tlen = strlen(topic);
	if(r->max_bytes == 0) return 0; /* buffer switched off */
	while(r->count && r->bytes + len + tlen > r->max_bytes){
		if(r->dropped == 0){
			mosquitto_log_printf(MOSQ_LOG_WARNING,
					"mqchat: replay buffer full (%zu bytes): dropping the oldest unconfirmed messages; "
					"they are still in the bridge's session queue, but a bridge crash now could lose them. "
					"Is mqchat-bridge running?", r->max_bytes);
		}
		r->dropped++;
		pop_front(r);
	}
	if(r->count == r->cap && grow(r)) return -1;

	struct replay_entry e = { .id = id, .len = len };
	e.topic = strdup(topic);
	e.payload = malloc(len ? len : 1);
	if(!e.topic || !e.payload){
		free(e.topic);
		free(e.payload);
		return -1;
	}
	memcpy(e.payload, payload, len);
	*at(r, r->count) = e;
	r->count++;
	r->bytes += len + tlen;
	return 0;
}

void replay__ack(struct replay *r, uint64_t upto)
{
	while(r->count && at(r, 0)->id <= upto) pop_front(r);
}

size_t replay__send(struct replay *r, const char *clientid, uint64_t after)
{
	size_t sent = 0;
	for(size_t i = 0; i < r->count; i++){
		struct replay_entry *e = at(r, i);
		if(e->id <= after) continue;
		/* mosquitto_broker_publish_copy uses plain calloc in 2.0.11; the broker frees the
		 * payload with its own allocator, so allocate with it. */
		char *copy = mosquitto_malloc(e->len ? e->len : 1);
		if(!copy) break;
		memcpy(copy, e->payload, e->len);
		if(mosquitto_broker_publish(clientid, e->topic, (int)e->len, copy, 1, false, NULL) == MOSQ_ERR_SUCCESS){
			sent++;
		}else{
			mosquitto_free(copy);
		}
	}
	return sent;
}

void replay__free(struct replay *r)
{
	while(r->count) pop_front(r);
	free(r->ring);
	memset(r, 0, sizeof(*r));
}
