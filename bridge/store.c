/*
 * store.c: the store connection, the bridge's side of the plugin's feed (plugin/feed.c,
 * docs/architecture.md "Durability").
 *
 *   connect, subscribe <prefix>/rooms/+/send (see below), then
 *   -> {"op":"hello","role":"store","epoch":E,"seq":S}   (E, S): the saved watermark
 *   <- .../store {"op":"hello","epoch":E2,"first":F}      messages follow from seq F
 *   <- .../store/<seq>                                    taken only in order (ingest.c)
 *   -> {"op":"stored","epoch":E2,"seq":N}                 after each commit
 *   -> {"op":"resend","epoch":E2,"from":N}                a gap, or silence with a tail
 *                                                         that may have been lost
 *
 * Only the next seq is taken; anything after a gap is dropped and asked for again
 * (go-back-N), so what is taken, committed and confirmed is always contiguous: the
 * watermark is the last message of a committed batch, and confirming it can never let the
 * plugin drop a message the broker lost on the way.
 *
 * The subscription to .../send receives nothing (the plugin refuses every delivery of
 * raw client input). It exists so that the broker finds a subscriber for a send and
 * answers an MQTT 5 PUBACK 0x00 rather than 0x10 "no matching subscribers", and so that
 * the plugin sees a QoS 2 send's release (plugin/qos2.c). The session is persistent so it
 * stays while the bridge is away.
 *
 * Runs on the main thread, which also drives ingest's batches.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mqtt_protocol.h>

#include "bridge.h"
#include "store.h"
#include "topic.h"

#define HELLO_WAIT_MS 5000   /* the plugin answers at once; else it is missing or old */
#define SILENCE_PROBE_MS 2000 /* no message while reading: ask whether a tail was lost */
#define RESEND_PROBE_MS 250   /* the same, while waiting for what we asked for again */
#define READ_BURST 4096

static bool plugin_says(struct store *s, const char *what, json_t *j)
{
	int rc = j ? link__publish_json(&s->link, BRIDGE_CONTROL_TOPIC, j, NULL, NULL) : -1;
	json_decref(j);
	if(rc) bridge__log(BLOG_WARN, "ingest", "could not send %s to the plugin; the connection will retry", what);
	return rc == 0;
}

static void send_hello(struct store *s)
{
	uint64_t epoch, seq;
	/* What was taken before the connection went is committed first, so the watermark says
	 * all this process has: the plugin counts what is beyond it as lost after a crash. A
	 * failing writer is not waited for (its batch is committed later; nothing is lost). */
	if(ingest__flush(s->ing)){
		bridge__log(BLOG_WARN, "ingest", "committing before hello failed; the plugin will send some messages again");
	}
	ingest__watermark(s->ing, &epoch, &seq);
	json_t *j = json_pack("{s:s, s:s, s:I, s:I}", "op", "hello", "role", "store", "epoch", (json_int_t)epoch,
			"seq", (json_int_t)seq);
	if(plugin_says(s, "hello", j)){
		s->hello_at = bridge__mono_ms();
		bridge__log(BLOG_INFO, "ingest", "told the plugin we have up to seq %" PRIu64 " of epoch %" PRIu64, seq, epoch);
	}
}

static void ask_resend(struct store *s, const char *why)
{
	int64_t now = bridge__mono_ms();
	/* one request per gap until something arrives, again after a while */
	if(s->resend_pending && s->resend_from == s->next && now - s->resend_at < RESEND_PROBE_MS) return;
	json_t *j = json_pack("{s:s, s:I, s:I}", "op", "resend", "epoch", (json_int_t)s->epoch, "from", (json_int_t)s->next);
	if(plugin_says(s, "resend", j)){
		s->resend_pending = true;
		s->resend_from = s->next;
		s->resend_at = now;
		bridge__log_repeated(&s->gap_log, BLOG_INFO, "ingest", "asked the plugin to send again from seq %" PRIu64 ": %s",
				s->next, why);
	}
}

/* The plugin's answer to hello: its epoch and where its messages start. */
static void on_hello(struct store *s, const struct mosquitto_message *msg)
{
	json_error_t jerr;
	json_t *j = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, &jerr);
	json_t *e = json_object_get(j, "epoch"), *f = json_object_get(j, "first"), *k = json_object_get(j, "kept");
	if(!json_is_integer(e) || !json_is_integer(f) || json_integer_value(f) < 1){
		bridge__log(BLOG_WARN, "ingest", "ignored a hello answer without epoch and first");
		json_decref(j);
		return;
	}
	uint64_t epoch = (uint64_t)json_integer_value(e), first = (uint64_t)json_integer_value(f), taken_epoch, taken_seq;
	ingest__taken(s->ing, &taken_epoch, &taken_seq);
	if(s->feeding && epoch == s->epoch && first > s->next){
		/* Sent again because we asked for messages it no longer keeps: it had them
		 * confirmed, so this database is behind what it said it committed. */
		bridge__log(BLOG_ERROR, "ingest", "LOST: the plugin no longer keeps seq %" PRIu64 "..%" PRIu64 " of epoch %"
				PRIu64 " (confirmed earlier, not in this database); taking from seq %" PRIu64, s->next, first - 1,
				epoch, first);
	}
	s->epoch = epoch;
	/* What this process took but has not committed yet is in its batches: not again. */
	s->next = taken_epoch == epoch && taken_seq + 1 > first ? taken_seq + 1 : first;
	s->feeding = true;
	s->resend_pending = false;
	s->last_data_at = bridge__mono_ms();
	s->acked_epoch = s->acked_seq = 0;
	bridge__log(BLOG_INFO, "ingest", "the plugin (epoch %" PRIu64 ") keeps %" JSON_INTEGER_FORMAT " unconfirmed "
			"messages from seq %" PRIu64 "; taking from seq %" PRIu64, epoch,
			json_is_integer(k) ? json_integer_value(k) : (json_int_t)-1, first, s->next);
	bridge__log(BLOG_INFO, "bridge", "ready");
	json_decref(j);
}

static void on_data(struct store *s, const char *seqs, const struct mosquitto_message *msg)
{
	char *end;
	uint64_t seq = strtoull(seqs, &end, 10);
	if(*end || end == seqs){
		bridge__log(BLOG_WARN, "ingest", "ignored a message on %s: no seq", msg->topic);
		return;
	}
	if(!s->feeding) return; /* left from before our hello: the plugin sends it again */
	s->last_data_at = bridge__mono_ms();
	if(seq < s->next){
		s->dups++;
		return;
	}
	if(seq > s->next){
		s->gaps++;
		ask_resend(s, "a gap in the plugin's messages (the broker dropped some)");
		return;
	}
	if(ingest__add(s->ing, s->epoch, seq, msg->payload, (size_t)msg->payloadlen)){
		ask_resend(s, "no memory to take a message");
		return;
	}
	s->next++;
	s->resend_pending = false;
}

static void store_ready(void *obj)
{
	struct store *s = obj;
	s->subscribed = true;
	s->feeding = false;
	send_hello(s);
}

static void store_message(void *obj, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	(void)props;
	struct store *s = obj;
	const char *seq;
	if(mqc_topic_below(msg->topic, BRIDGE_STORE_TOPIC, &seq)){
		on_data(s, seq, msg);
		return;
	}
	if(!strcmp(msg->topic, BRIDGE_STORE_TOPIC)){
		on_hello(s, msg);
		return;
	}
	bridge__log(BLOG_WARN, "mqtt", "ignored a message on unexpected topic %s (store connection)", msg->topic);
}

static void store_lost(void *obj)
{
	struct store *s = obj;
	s->subscribed = s->feeding = false;
	s->hello_at = 0;
}

static const struct link_ops store_ops = {
	.ready = store_ready,
	.message = store_message,
	.lost = store_lost,
};

int store__init(struct store *s, const struct bridge_config *cfg, struct ingest *ing)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->ing = ing;
	char sub[256];
	mqc_topics t;
	if(mqc_topics_init(&t, cfg->prefix) || mqc_topic_room_make(&t, "+", 1, "send", sub, sizeof(sub)) < 0){
		bridge__log(BLOG_ERROR, "store", "topic prefix '%s' is not one topic level of [A-Za-z0-9._-]", cfg->prefix);
		return -1;
	}
	return link__init(&s->link, "store", cfg, cfg->client_id, sub, &store_ops, s);
}

void store__free(struct store *s)
{
	link__free(&s->link);
}

/* Confirms the saved watermark to the plugin when it moved (in the plugin's epoch only:
 * a watermark of an earlier epoch was settled by the hello). */
static void confirm(struct store *s)
{
	if(!s->feeding) return;
	uint64_t epoch, seq;
	ingest__watermark(s->ing, &epoch, &seq);
	if(epoch != s->epoch || (epoch == s->acked_epoch && seq <= s->acked_seq)) return;
	json_t *j = json_pack("{s:s, s:I, s:I}", "op", "stored", "epoch", (json_int_t)epoch, "seq", (json_int_t)seq);
	if(plugin_says(s, "stored", j)){
		s->acked_epoch = epoch;
		s->acked_seq = seq;
	}
}

static bool keep_reading(void *obj)
{
	struct store *s = obj;
	/* a full batch goes to an idle writer now, not after the burst */
	ingest__pump(s->ing, bridge__mono_ms());
	return !ingest__blocked(s->ing);
}

void store__step(struct store *s, int extra_fd, short *extra_revents, int64_t max_wait_ms)
{
	int64_t now = bridge__mono_ms();
	link__maybe_connect(&s->link);
	ingest__pump(s->ing, now);
	confirm(s);

	bool blocked = ingest__blocked(s->ing);
	if(s->link.connected && s->subscribed && !s->feeding && s->hello_at && now - s->hello_at > HELLO_WAIT_MS){
		bridge__log_repeated(&s->hello_log, BLOG_WARN, "ingest", "no answer to hello from the plugin in %d ms: is "
				"mqchat_plugin.so loaded by the broker, in a version that speaks this protocol? saying hello again",
				HELLO_WAIT_MS);
		send_hello(s);
	}
	/* Silence while reading with messages possibly in flight: a tail the broker dropped
	 * would otherwise only show with the next message. Time not reading is not silence. */
	if(blocked) s->last_data_at = now;
	/* After a resend the answer follows at once: silence then means it was dropped too. */
	int64_t probe_ms = s->resend_pending ? RESEND_PROBE_MS : SILENCE_PROBE_MS;
	if(s->feeding && !blocked && now - s->last_data_at > probe_ms && now - s->resend_at > probe_ms){
		ask_resend(s, "probing after silence");
		s->last_data_at = now;
	}

	int64_t wait = ingest__timeout_ms(s->ing, now);
	int64_t lw = link__timeout_ms(&s->link);
	if(lw >= 0 && (wait < 0 || lw < wait)) wait = lw;
	if(wait < 0 || wait > max_wait_ms) wait = max_wait_ms;

	short events;
	bool reading = !blocked;
	ingest__set_reading(s->ing, reading && s->feeding);
	int sock = link__fd(&s->link, reading, &events);
	struct pollfd fds[3] = {
		{ .fd = ingest__fd(s->ing), .events = POLLIN },
		{ .fd = extra_fd, .events = POLLIN },
		{ .fd = sock, .events = events },
	};
	int n = poll(fds, 3, (int)wait);
	if(n > 0 && (fds[0].revents & POLLIN)) ingest__fd_clear(s->ing);
	if(extra_revents) *extra_revents = n > 0 ? fds[1].revents : 0;
	if(sock >= 0) link__io(&s->link, n > 0 ? fds[2].revents : 0, reading, READ_BURST, keep_reading);
	confirm(s);
}

void store__stop(struct store *s)
{
	confirm(s);
	link__disconnect(&s->link, 2000);
}
