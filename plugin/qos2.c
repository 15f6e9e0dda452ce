/*
 * qos2.c: a QoS 2 send is stamped once, also when the client sends it again.
 *
 * Mosquitto runs MOSQ_EVT_MESSAGE before it looks up the packet id of an incoming QoS 2
 * PUBLISH (handle_publish.c, 2.0.11 to 2.0.21), so a resend with DUP=1 after a reconnect
 * reaches message.c like a new message, and would be stamped, delivered and stored again.
 * The plugin never sees packet ids, so it recognises a resend by what it is:
 *
 *   - the same client id, on a later connection than the one that sent it (a client
 *     resends only after reconnecting with its session: MQTT 3.1.1 4.4, MQTT 5 4.4);
 *   - the same topic and payload (FNV-1a 64 of both);
 *   - not yet released by the broker. The broker releases a QoS 2 message to subscribers
 *     once, at PUBREL; the release runs the READ check of the bridge's subscription to
 *     .../send (acl.c check_service), which calls qos2__released. After that the client
 *     can only resend the PUBREL, never the PUBLISH, so the entry goes. The release shows
 *     only the content, not the sender: every entry with that content goes (if two clients
 *     sent the same bytes, the other's resend would be stamped again: a duplicate at
 *     worst, never a loss);
 *   - within dedupe_window_s (entries of clients that never come back expire).
 *
 * What is left: if the bridge's .../send subscription is missing (never connected since a
 * broker start without persistence), releases are not seen, and a client that sends a
 * byte-identical QoS 2 message on its next connection within the window has it taken for
 * a resend. docs/protocol.md says so.
 *
 * Broker thread only. Memory: one entry per QoS 2 send until its release, at most
 * QOS2_MAX (oldest forgotten first, logged).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define QOS2_MAX 100000

struct qos2_client {
	char *cid;          /* first member: the strmap key */
	uint32_t gen;       /* bumped at every authenticated connection with this client id */
	uint32_t valid_gen; /* entries from before it cannot be resent (clean start) */
	uint32_t live;      /* entries that point here */
};

struct qos2_ref;

struct qos2_entry {
	char *key;          /* "<client id>\x01<16 hex digits>": first member, the entries_by_key key */
	struct qos2_client *client;
	uint32_t gen;
	int64_t expires_ms;
	struct qos2_entry *older, *newer; /* age list, oldest first */
	struct qos2_entry *same;          /* the next entry with this content */
	struct qos2_ref *ref;
};

/* released map value: every entry with one content hash. */
struct qos2_ref {
	char *hkey;         /* first member: points at hbuf */
	char hbuf[17];
	struct qos2_entry *head;
};

static uint64_t content_hash(const char *topic, const void *payload, uint32_t len)
{
	uint64_t h = 14695981039346656037ULL;
	for(const unsigned char *c = (const unsigned char *)topic; *c; c++){
		h ^= *c;
		h *= 1099511628211ULL;
	}
	h ^= 0xff;
	h *= 1099511628211ULL;
	const unsigned char *p = payload;
	for(uint32_t i = 0; i < len; i++){
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static void client_maybe_free(struct qos2 *q, struct qos2_client *c)
{
	if(c->live) return;
	strmap__del(&q->clients, c->cid, strlen(c->cid));
	free(c->cid);
	free(c);
}

static void entry_drop(struct qos2 *q, struct qos2_entry *e)
{
	struct qos2_client *c = e->client;
	struct qos2_ref *r = e->ref;
	strmap__del(&q->entries_by_key, e->key, strlen(e->key));
	struct qos2_entry **pp = &r->head;
	while(*pp != e) pp = &(*pp)->same;
	*pp = e->same;
	if(!r->head){
		strmap__del(&q->released, r->hkey, 16);
		free(r);
	}
	if(e->older) e->older->newer = e->newer;
	else q->oldest = e->newer;
	if(e->newer) e->newer->older = e->older;
	else q->newest = e->older;
	c->live--;
	q->entries--;
	free(e->key);
	free(e);
	client_maybe_free(q, c);
}

static void expire(struct qos2 *q, int64_t now)
{
	bool over = q->entries > QOS2_MAX;
	while(q->oldest && (q->oldest->expires_ms <= now || q->entries > QOS2_MAX)) entry_drop(q, q->oldest);
	if(over){
		plugin__log_repeated(&q->full_log, MOSQ_LOG_WARNING, "mqchat: more than %d QoS 2 sends await release; "
				"forgot the oldest (a resend of one after a reconnect would be stamped again)", QOS2_MAX);
	}
}

static struct qos2_client *client_get(struct qos2 *q, const char *cid, bool create)
{
	size_t len = strlen(cid);
	struct qos2_client *c = strmap__get(&q->clients, cid, len);
	if(c || !create) return c;
	int err;
	c = calloc(1, sizeof(*c));
	if(!c || !(c->cid = strdup(cid))){
		free(c);
		return NULL;
	}
	strmap__put(&q->clients, c->cid, len, c, &err);
	if(err){
		free(c->cid);
		free(c);
		return NULL;
	}
	return c;
}

/* "<client id>\x01<hash>" into buf (client ids are at most 65535 bytes: MQTT). */
static char *entry_key(const char *cid, uint64_t h)
{
	size_t n = strlen(cid) + 18;
	char *key = malloc(n);
	if(key) snprintf(key, n, "%s\x01%016" PRIx64, cid, h);
	return key;
}

bool qos2__is_resend(struct mqchat *st, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t len)
{
	struct qos2 *q = &st->qos2;
	const char *cid = mosquitto_client_id(client);
	if(!cid || !q->entries) return false;
	expire(q, mqc_now_ms());
	char *key = entry_key(cid, content_hash(topic, payload, len));
	if(!key) return false; /* a resend would be stamped again, nothing worse */
	struct qos2_entry *e = strmap__get(&q->entries_by_key, key, strlen(key));
	free(key);
	/* Kept until the release: the client may reconnect and resend more than once. The
	 * same bytes again on the same connection (or after a clean start) are a new message. */
	return e && e->gen < e->client->gen && e->gen >= e->client->valid_gen;
}

void qos2__remember(struct mqchat *st, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t len)
{
	struct qos2 *q = &st->qos2;
	const char *cid = mosquitto_client_id(client);
	if(!cid) return;
	int64_t now = mqc_now_ms();
	expire(q, now);
	uint64_t h = content_hash(topic, payload, len);
	char *key = entry_key(cid, h);
	if(!key) return;
	struct qos2_entry *old = strmap__get(&q->entries_by_key, key, strlen(key));
	if(old) entry_drop(q, old); /* the same bytes sent again as a new message: this one counts */

	char hkey[17];
	snprintf(hkey, sizeof(hkey), "%016" PRIx64, h);
	struct qos2_client *c = client_get(q, cid, true);
	struct qos2_ref *r = strmap__get(&q->released, hkey, 16), *fresh = NULL;
	struct qos2_entry *e = calloc(1, sizeof(*e));
	int err;
	if(!c || !e) goto nomem;
	if(!r){
		if(!(r = fresh = calloc(1, sizeof(*r)))) goto nomem;
		memcpy(r->hbuf, hkey, sizeof(hkey));
		r->hkey = r->hbuf;
		strmap__put(&q->released, r->hkey, 16, r, &err);
		if(err) goto nomem;
	}
	e->key = key;
	e->client = c;
	e->gen = c->gen;
	e->expires_ms = now + (int64_t)q->window_s * 1000;
	strmap__put(&q->entries_by_key, e->key, strlen(e->key), e, &err);
	if(err){
		if(fresh) strmap__del(&q->released, fresh->hkey, 16);
		goto nomem;
	}
	e->ref = r;
	e->same = r->head;
	r->head = e;
	c->live++;
	q->entries++;
	e->older = q->newest;
	if(q->newest) q->newest->newer = e;
	else q->oldest = e;
	q->newest = e;
	return;
nomem:
	free(fresh);
	free(e);
	free(key);
	if(c) client_maybe_free(q, c);
}

void qos2__released(struct mqchat *st, const char *topic, const void *payload, uint32_t len)
{
	struct qos2 *q = &st->qos2;
	if(!q->entries) return;
	char hkey[17];
	snprintf(hkey, sizeof(hkey), "%016" PRIx64, content_hash(topic, payload, len));
	struct qos2_ref *r = strmap__get(&q->released, hkey, 16);
	/* The last entry's drop frees r. */
	while(r && r->head){
		bool last = !r->head->same;
		entry_drop(q, r->head);
		if(last) break;
	}
}

void qos2__connected(struct mqchat *st, const char *cid, bool clean_start)
{
	struct qos2_client *c = client_get(&st->qos2, cid, false);
	if(!c) return;
	c->gen++;
	if(clean_start) c->valid_gen = c->gen; /* no session: nothing of it can be resent */
}

void qos2__free(struct qos2 *q)
{
	while(q->oldest) entry_drop(q, q->oldest);
	STRMAP_FOREACH(&q->clients, s){
		struct qos2_client *c = s->val;
		free(c->cid);
		free(c);
	}
	strmap__free(&q->clients);
	strmap__free(&q->entries_by_key);
	strmap__free(&q->released);
	q->entries = 0;
}
