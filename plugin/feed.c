/*
 * feed.c: every stamped message, kept until the bridge says it is committed, and fed to
 * the bridge's store connection in order (docs/architecture.md "Durability").
 *
 * Messages are numbered without gaps: seq 1, 2, 3, ... within one run of the plugin (its
 * epoch, a random number chosen at start). The conversation with the bridge, all on
 * $CONTROL/mqchat/v1 (bridge -> plugin, control.c) and below it (plugin -> bridge, sent
 * to the store connection's client id only):
 *
 *   {"op":"hello","role":"store","epoch":E,"seq":S}   the bridge (re)connects; (E, S) is
 *                                   its saved watermark: every message up to seq S of
 *                                   epoch E is committed
 *   .../store  {"op":"hello","epoch":E2,"first":F}   the answer: our epoch, the first seq
 *                                   the messages that follow start at
 *   .../store/<seq>                 one stamped message (QoS 1)
 *   {"op":"stored","epoch":E2,"seq":N}   every message up to N is committed: drop them
 *   {"op":"resend","epoch":E2,"from":N}  the bridge saw a gap: send again from N
 *
 * Contiguity is what makes an acknowledgement safe: the bridge confirms a seq only when
 * every smaller one is committed, so dropping up to it can never drop a message the broker
 * lost on the way (the broker's per-client queue drops silently when it is full).
 *
 * Flow control: at most window_messages / window_bytes are sent and unconfirmed at a time,
 * so the broker never holds more than that for the bridge. The rest wait here. Should the
 * broker still drop some (a smaller queue or Receive Maximum than the window), the
 * bridge's resend halves what may be in flight (cwnd) and confirmations grow it again, as
 * TCP does: a small pipe is filled, not overrun round after round. Past
 * max_messages / max_bytes kept, feed__admit says no and acl.c refuses new sends without
 * acknowledging them (the client sends again later) rather than accept what could be lost.
 *
 * Broker stop: feed__spool_save writes what is kept to the spool file; the next start
 * loads it (feed__spool_load) as the first messages of its new epoch. A crash cannot save
 * anything, so it counts what it loses instead: the broker thread keeps this run's epoch,
 * last stamped and first kept seq in a shared mapping of <spool>.live (feed__live_open),
 * which survives the process, and the reload thread also records them every interval in
 * <spool>.state (feed__state_write), for a crash of the whole machine. The next start
 * says how many were lost once the bridge tells it how far it got (feed__hello).
 *
 * Everything here runs on the broker thread, except the two file functions named so.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "plugin.h"

#define ENTRY_OVERHEAD 48 /* bytes counted per kept message besides topic and payload */
#define SPOOL_MAGIC "MQCSPOOL"
#define SPOOL_VERSION 1u

static struct feed_entry *at(const struct feed *f, size_t i)
{
	return &f->ring[(f->head + i) & (f->cap - 1)];
}

static size_t entry_bytes(const struct feed_entry *e)
{
	return e->len + e->tlen + ENTRY_OVERHEAD;
}

static uint64_t last_seq(const struct feed *f)
{
	return f->first_seq + f->count - 1;
}

static void pop_front(struct feed *f)
{
	struct feed_entry *e = at(f, 0);
	if(f->first_seq <= f->sent) f->inflight_bytes -= e->len;
	f->bytes -= entry_bytes(e);
	free(e->data);
	f->head = (f->head + 1) & (f->cap - 1);
	f->count--;
	f->first_seq++;
}

static int grow(struct feed *f)
{
	size_t cap = f->cap ? f->cap * 2 : 1024;
	struct feed_entry *ring = malloc(cap * sizeof(*ring));
	if(!ring) return -1;
	for(size_t i = 0; i < f->count; i++) ring[i] = *at(f, i);
	free(f->ring);
	f->ring = ring;
	f->cap = cap;
	f->head = 0;
	return 0;
}

int feed__init(struct feed *f)
{
	uint64_t e = 0;
	while(e == 0){
		if(RAND_bytes((unsigned char *)&e, sizeof(e)) != 1) return -1;
		e &= (1ULL << 52) - 1; /* a JSON number every JSON library reads exactly */
	}
	f->epoch = e;
	f->first_seq = 1;
	atomic_store(&f->pub_first, 1);
	f->cwnd = f->window_messages;
	return 0;
}

/* Sends what the window allows to the store connection. */
static void pump(struct feed *f)
{
	if(!f->store_cid) return;
	while(f->sent < f->first_seq + f->count - 1 && f->sent + 1 - f->first_seq < f->cwnd
			&& f->inflight_bytes < f->window_bytes){
		uint64_t seq = f->sent + 1;
		struct feed_entry *e = at(f, (size_t)(seq - f->first_seq));
		char topic[sizeof(MQCHAT_STORE_TOPIC) + 24];
		snprintf(topic, sizeof(topic), "%s/%" PRIu64, MQCHAT_STORE_TOPIC, seq);
		/* The broker frees the payload with its own allocator. */
		char *copy = mosquitto_malloc(e->len ? e->len : 1);
		if(!copy) return; /* the next pump (next message or ack) tries again */
		memcpy(copy, e->data + e->tlen + 1, e->len);
		if(mosquitto_broker_publish(f->store_cid, topic, (int)e->len, copy, 1, false, NULL) != MOSQ_ERR_SUCCESS){
			mosquitto_free(copy);
			return;
		}
		f->sent = seq;
		f->inflight_bytes += e->len;
	}
}

bool feed__admit(struct feed *f, size_t len)
{
	int64_t now = mqc_now_ms();
	size_t need = len + ENTRY_OVERHEAD + MQC_NAME_MAX + 32;
	if(f->refusing){
		/* Hysteresis: accept again once a tenth of the bound is free, so a full feed does
		 * not flap between refusing and accepting on every confirmation. */
		if(f->count <= f->max_messages - f->max_messages / 10 && f->bytes + need <= f->max_bytes - f->max_bytes / 10){
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: accepting sends again: %zu messages (%zu bytes) "
					"wait for the bridge; %" PRIu64 " sends were refused over %.1f s", f->count, f->bytes,
					f->refused_now, (double)(now - f->refusing_since) / 1000.0);
			f->refusing = false;
			f->refused_now = 0;
		}else{
			f->refused_now++;
			f->refused_total++;
			return false;
		}
	}
	if(f->count < f->max_messages && f->bytes + need <= f->max_bytes) return true;
	f->refusing = true;
	f->refusing_since = now;
	f->refused_now = 1;
	f->refused_total++;
	mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: refusing sends: %zu messages (%zu bytes) are not yet confirmed "
			"stored by the bridge (bounds: unconfirmed_max_messages %zu, unconfirmed_max_bytes %zu); %s. "
			"Senders are disconnected without an acknowledgement and send again; accepting resumes by itself",
			f->count, f->bytes, f->max_messages, f->max_bytes,
			f->store_cid ? "the bridge is connected but behind (is its database writable?)" : "the bridge is not connected");
	return false;
}

int feed__add(struct feed *f, uint64_t id, const char *topic, const void *payload, uint32_t len, uint64_t *seq)
{
	size_t tlen = strlen(topic);
	if(f->count == f->cap && grow(f)) return -1;
	struct feed_entry e = { .id = id, .len = len, .tlen = (uint32_t)tlen };
	e.data = malloc(tlen + 1 + len);
	if(!e.data) return -1;
	memcpy(e.data, topic, tlen + 1);
	memcpy(e.data + tlen + 1, payload, len);
	*at(f, f->count) = e;
	f->count++;
	f->bytes += entry_bytes(&e);
	*seq = last_seq(f);
	atomic_store_explicit(&f->pub_last, *seq, memory_order_relaxed);
	if(f->live) __atomic_store_n(&f->live->last, *seq, __ATOMIC_RELAXED);
	pump(f);
	return 0;
}

/* Drops every kept message up to seq (the bridge committed them). */
static void confirm(struct feed *f, uint64_t seq)
{
	while(f->count && f->first_seq <= seq) pop_front(f);
	atomic_store_explicit(&f->pub_first, f->first_seq, memory_order_relaxed);
	if(f->live) __atomic_store_n(&f->live->first, f->first_seq, __ATOMIC_RELAXED);
	if(f->sent < f->first_seq - 1){
		f->sent = f->first_seq - 1;
		f->inflight_bytes = 0;
	}
	if(f->spool_pending && f->first_seq > f->spool_upto){
		f->spool_pending = false;
		atomic_store(&f->spool_consumed, true);
	}
}

/* Restarts sending from seq from (clamped to what is kept). */
static void rewind_to(struct feed *f, uint64_t from)
{
	if(from < f->first_seq) from = f->first_seq;
	if(from - 1 >= f->sent) return; /* not sent yet: nothing to rewind */
	f->sent = from - 1;
	f->inflight_bytes = 0;
	for(uint64_t s = f->first_seq; s <= f->sent; s++) f->inflight_bytes += at(f, (size_t)(s - f->first_seq))->len;
}

static void publish_hello(struct feed *f, const char *cid)
{
	char buf[160];
	int n = snprintf(buf, sizeof(buf), "{\"op\":\"hello\",\"epoch\":%" PRIu64 ",\"first\":%" PRIu64 ",\"kept\":%zu}",
			f->epoch, f->first_seq, f->count);
	char *p = mosquitto_malloc((size_t)n + 1);
	if(!p) return;
	memcpy(p, buf, (size_t)n + 1);
	if(mosquitto_broker_publish(cid, MQCHAT_STORE_TOPIC, n, p, 1, false, NULL) != MOSQ_ERR_SUCCESS) mosquitto_free(p);
}

void feed__hello(struct feed *f, const struct mosquitto *client, uint64_t epoch, uint64_t seq)
{
	const char *cid = mosquitto_client_id(client);
	char *dup = cid ? strdup(cid) : NULL;
	if(!dup){
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: out of memory taking the bridge's store connection; "
				"it will say hello again");
		return;
	}
	free(f->store_cid);
	f->store_cid = dup;
	f->store_client = client;

	if(epoch == f->epoch){
		if(seq + 1 < f->first_seq){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: LOST: the bridge has up to seq %" PRIu64 " of this run, but it "
					"confirmed up to %" PRIu64 " before (its database is behind): those are no longer kept", seq,
					f->first_seq - 1);
		}
		if(seq > last_seq(f)){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: the bridge says it has seq %" PRIu64 ", past the last "
					"one stamped (%" PRIu64 "); taking it as %" PRIu64, seq, last_seq(f), last_seq(f));
			seq = last_seq(f);
		}
		confirm(f, seq);
	}else if(f->crashed_epoch && epoch == f->crashed_epoch){
		/* The previous run ended without saving what it kept: what it stamped after the
		 * bridge's watermark is gone. The live record says exactly how far it stamped; the
		 * last check (the .state file, after a crash of the machine) is a lower bound. */
		if(f->crashed_exact){
			if(f->crashed_last > seq){
				mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: LOST: the broker's previous run (epoch %" PRIu64 ") stopped "
						"without saving its unconfirmed messages: %" PRIu64 " messages it had stamped (seq %" PRIu64
						"..%" PRIu64 ") never reached the database; every one of them whose PUBACK had gone out is lost",
						epoch, f->crashed_last - seq, seq + 1, f->crashed_last);
			}else{
				mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: the broker's previous run (epoch %" PRIu64 ") stopped "
						"without saving, but the bridge has every message it stamped (up to seq %" PRIu64 "): nothing lost",
						epoch, f->crashed_last);
			}
		}else if(f->crashed_last > seq){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: LOST: the broker's previous run (epoch %" PRIu64 ") stopped "
					"without saving its unconfirmed messages; at least %" PRIu64 " messages it had acknowledged "
					"(seq %" PRIu64 "..%" PRIu64 ", and any stamped after its last check) never reached the database",
					epoch, f->crashed_last - seq, seq + 1, f->crashed_last);
		}
		f->crashed_epoch = 0;
	}else if(f->crashed_epoch){
		/* The bridge's watermark is of a run before the one that crashed: that run's
		 * messages the bridge never confirmed are gone too. */
		mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: LOST: the broker's previous run (epoch %" PRIu64 ") stopped without "
				"saving its unconfirmed messages, and the bridge has none of its confirmations (it is at epoch %" PRIu64
				"): about %" PRIu64 " messages it kept at its last check are lost", f->crashed_epoch, epoch,
				f->crashed_last >= f->crashed_first ? f->crashed_last - f->crashed_first + 1 : 0);
		f->crashed_epoch = 0;
	}else if(f->spool_epoch && epoch == f->spool_epoch){
		/* The spool holds the previous run's unconfirmed messages from seq spool_first on:
		 * the bridge has committed up to seq, so nothing is missing unless it is behind. */
		if(seq + 1 < f->spool_first){
			mosquitto_log_printf(MOSQ_LOG_ERR, "mqchat: LOST: the bridge's database is behind what it confirmed: "
					"messages seq %" PRIu64 "..%" PRIu64 " of epoch %" PRIu64 " were confirmed before and are "
					"no longer kept", seq + 1, f->spool_first - 1, epoch);
		}
	}
	f->sent = f->first_seq - 1;
	f->inflight_bytes = 0;
	f->cwnd = f->window_messages;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: bridge store connection %s: it has up to seq %" PRIu64
			" of epoch %" PRIu64 "; sending %zu kept messages of epoch %" PRIu64 " from seq %" PRIu64,
			dup, seq, epoch, f->count, f->epoch, f->first_seq);
	publish_hello(f, dup);
	pump(f);
}

void feed__stored(struct feed *f, uint64_t epoch, uint64_t seq)
{
	if(epoch != f->epoch) return; /* about an earlier run: its hello said what matters */
	if(seq > last_seq(f)){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mqchat: the bridge confirmed seq %" PRIu64 ", past the last one "
				"stamped (%" PRIu64 "); ignored", seq, last_seq(f));
		return;
	}
	uint64_t before = f->first_seq;
	confirm(f, seq);
	f->cwnd += (size_t)(f->first_seq - before);
	if(f->cwnd > f->window_messages) f->cwnd = f->window_messages;
	pump(f);
}

void feed__resend(struct feed *f, uint64_t epoch, uint64_t from)
{
	if(epoch != f->epoch || !f->store_cid) return;
	if(from < f->first_seq){
		/* It asks for what it confirmed before (its database is behind, or a bug): tell it
		 * where the kept messages start, or it would ask forever. */
		plugin__log_repeated(&f->behind_log, MOSQ_LOG_ERR, "mqchat: LOST: the bridge asked for seq %" PRIu64 " on, but it "
				"had confirmed up to %" PRIu64 " and those are no longer kept; sending from seq %" PRIu64, from,
				f->first_seq - 1, f->first_seq);
		publish_hello(f, f->store_cid);
		from = f->first_seq;
	}
	uint64_t inflight = f->sent >= from ? f->sent - from + 1 : 0;
	if(!inflight){
		pump(f); /* the bridge probing after silence: nothing is missing, unless a publish failed */
		return;
	}
	size_t cwnd = inflight < f->cwnd ? (size_t)inflight : f->cwnd;
	f->cwnd = cwnd / 2 ? cwnd / 2 : 1;
	plugin__log_repeated(&f->resend_log, MOSQ_LOG_NOTICE, "mqchat: the bridge missed messages: sending again from "
			"seq %" PRIu64 " (%" PRIu64 " were in flight; now at most %zu at a time)", from, inflight, f->cwnd);
	rewind_to(f, from);
	pump(f);
}

void feed__client_gone(struct feed *f, const struct mosquitto *client)
{
	if(!f->store_cid || client != f->store_client) return;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqchat: bridge store connection %s closed: keeping %zu unconfirmed "
			"messages until it is back", f->store_cid, f->count);
	free(f->store_cid);
	f->store_cid = NULL;
	f->store_client = NULL;
	f->sent = f->first_seq - 1;
	f->inflight_bytes = 0;
}

void feed__free(struct feed *f)
{
	while(f->count) pop_front(f);
	free(f->ring);
	free(f->store_cid);
	f->ring = NULL;
	f->store_cid = NULL;
	f->cap = f->head = 0;
}

/* ------------------------------------------------------------------ files */

static uint64_t fnv64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for(size_t i = 0; i < n; i++){
		h ^= c[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static int put(FILE *fp, uint64_t *h, const void *p, size_t n)
{
	*h = fnv64(*h, p, n);
	return fwrite(p, 1, n, fp) == n ? 0 : -1;
}

/* The spool (native byte order; it is read back by the same machine):
 *   "MQCSPOOL" u32 version u32 0 u64 epoch u64 first_seq u64 count
 *   count x { u64 id, u32 topic length, u32 payload length, topic, payload }
 *   u64 FNV-1a of everything before it. */
int feed__spool_save(const struct feed *f, const char *path, char *reason, size_t reasonlen)
{
	char tmp[4096];
	uint64_t h = 14695981039346656037ULL;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if(!fp){
		snprintf(reason, reasonlen, "cannot create %s: %s", tmp, strerror(errno));
		if(fd >= 0) close(fd);
		return -1;
	}
	uint32_t version = SPOOL_VERSION, zero = 0;
	uint64_t count = f->count, first = f->first_seq, epoch = f->epoch;
	int rc = put(fp, &h, SPOOL_MAGIC, 8) | put(fp, &h, &version, 4) | put(fp, &h, &zero, 4)
		| put(fp, &h, &epoch, 8) | put(fp, &h, &first, 8) | put(fp, &h, &count, 8);
	for(size_t i = 0; i < f->count && !rc; i++){
		const struct feed_entry *e = at(f, i);
		rc |= put(fp, &h, &e->id, 8) | put(fp, &h, &e->tlen, 4) | put(fp, &h, &e->len, 4);
		rc |= put(fp, &h, e->data, e->tlen) | put(fp, &h, e->data + e->tlen + 1, e->len);
	}
	uint64_t sum = h;
	rc |= put(fp, &h, &sum, 8);
	if(!rc && (fflush(fp) != 0 || fsync(fileno(fp)) != 0)) rc = -1;
	if(rc) snprintf(reason, reasonlen, "writing %s failed: %s", tmp, strerror(errno));
	if(fclose(fp) != 0 && !rc){
		snprintf(reason, reasonlen, "closing %s failed: %s", tmp, strerror(errno));
		rc = -1;
	}
	if(!rc && rename(tmp, path) != 0){
		snprintf(reason, reasonlen, "renaming %s to %s failed: %s", tmp, path, strerror(errno));
		rc = -1;
	}
	if(rc) unlink(tmp);
	return rc ? -1 : 0;
}

static int get(FILE *fp, uint64_t *h, void *p, size_t n)
{
	if(fread(p, 1, n, fp) != n) return -1;
	*h = fnv64(*h, p, n);
	return 0;
}

int feed__spool_load(struct feed *f, const char *path, char *reason, size_t reasonlen)
{
	FILE *fp = fopen(path, "rb");
	if(!fp){
		if(errno == ENOENT) return 0;
		snprintf(reason, reasonlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	uint64_t h = 14695981039346656037ULL, epoch = 0, first = 0, count = 0, sum = 0;
	uint32_t version = 0, zero = 0;
	char magic[8];
	char *topic = NULL, *payload = NULL;
	int rc = get(fp, &h, magic, 8) | get(fp, &h, &version, 4) | get(fp, &h, &zero, 4)
		| get(fp, &h, &epoch, 8) | get(fp, &h, &first, 8) | get(fp, &h, &count, 8);
	if(rc || memcmp(magic, SPOOL_MAGIC, 8) || version != SPOOL_VERSION){
		snprintf(reason, reasonlen, "%s is not an mqchat spool file (version %u)", path, SPOOL_VERSION);
		goto fail;
	}
	for(uint64_t i = 0; i < count; i++){
		uint64_t id, seq;
		uint32_t tlen, len;
		if(get(fp, &h, &id, 8) || get(fp, &h, &tlen, 4) || get(fp, &h, &len, 4) || tlen > 4096 || len > (256u << 20)){
			snprintf(reason, reasonlen, "%s is truncated or damaged at message %" PRIu64 " of %" PRIu64, path, i, count);
			goto fail;
		}
		topic = malloc((size_t)tlen + 1);
		payload = malloc(len ? len : 1);
		if(!topic || !payload || get(fp, &h, topic, tlen) || get(fp, &h, payload, len)){
			snprintf(reason, reasonlen, "%s is truncated, damaged or too large for memory at message %" PRIu64
					" of %" PRIu64, path, i, count);
			goto fail;
		}
		topic[tlen] = '\0';
		if(feed__add(f, id, topic, payload, len, &seq)){
			snprintf(reason, reasonlen, "out of memory loading %s", path);
			goto fail;
		}
		free(topic);
		free(payload);
		topic = payload = NULL;
	}
	uint64_t want = h;
	if(fread(&sum, 1, 8, fp) != 8 || sum != want){
		snprintf(reason, reasonlen, "%s has a bad checksum (damaged or truncated)", path);
		goto fail;
	}
	fclose(fp);
	f->spool_epoch = epoch;
	f->spool_first = first;
	f->spool_upto = last_seq(f);
	f->spool_pending = f->count > 0;
	if(!f->spool_pending) atomic_store(&f->spool_consumed, true);
	return (int)(count > 0x7fffffff ? 0x7fffffff : count);
fail:
	free(topic);
	free(payload);
	fclose(fp);
	while(f->count) pop_front(f);
	f->first_seq = 1;
	atomic_store(&f->pub_first, 1);
	atomic_store(&f->pub_last, 0);
	return -1;
}

#define LIVE_MAGIC 0x6d71636865766c31ULL /* "mqchevl1" */
#define LIVE_SIZE 4096

int feed__live_read(const char *path, uint64_t *epoch, uint64_t *last, uint64_t *first)
{
	struct feed_live rec;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0) return -1;
	ssize_t n = pread(fd, &rec, sizeof(rec), 0);
	close(fd);
	if(n != (ssize_t)sizeof(rec) || rec.magic != LIVE_MAGIC || !rec.epoch) return -1;
	*epoch = rec.epoch;
	*last = rec.last;
	*first = rec.first;
	return 0;
}

int feed__live_open(struct feed *f, const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if(fd < 0) return -1;
	if(ftruncate(fd, LIVE_SIZE) != 0){
		close(fd);
		return -1;
	}
	void *p = mmap(NULL, LIVE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if(p == MAP_FAILED) return -1;
	struct feed_live *l = p;
	/* the magic last: a record is valid only once its epoch is this run's */
	__atomic_store_n(&l->magic, 0, __ATOMIC_RELAXED);
	l->epoch = f->epoch;
	l->last = last_seq(f);
	l->first = f->first_seq;
	__atomic_store_n(&l->magic, LIVE_MAGIC, __ATOMIC_RELEASE);
	f->live = l;
	return 0;
}

void feed__live_close(struct feed *f)
{
	if(!f->live) return;
	munmap(f->live, LIVE_SIZE);
	f->live = NULL;
}

/* "<epoch> <last seq> <first kept seq>\n": what a crash would lose, for the next start. */
int feed__state_write(const char *path, uint64_t epoch, uint64_t last, uint64_t first)
{
	char tmp[4096], buf[96];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if(fd < 0) return -1;
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", epoch, last, first);
	int rc = write(fd, buf, (size_t)n) == n ? 0 : -1;
	if(close(fd) != 0) rc = -1;
	if(!rc && rename(tmp, path) != 0) rc = -1;
	if(rc) unlink(tmp);
	return rc;
}

int feed__state_read(const char *path, uint64_t *epoch, uint64_t *last, uint64_t *first)
{
	FILE *fp = fopen(path, "r");
	if(!fp) return -1;
	unsigned long long e, l, fi;
	int n = fscanf(fp, "%llu %llu %llu", &e, &l, &fi);
	fclose(fp);
	if(n != 3) return -1;
	*epoch = e;
	*last = l;
	*first = fi;
	return 0;
}
