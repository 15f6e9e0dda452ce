/*
 * mqchat-bridge: the entry point, logging, and the MQTT side of the bridge.
 *
 * The loop thread (this file) reads the network, parses messages into ingest's filling
 * batch and answers requests on its own connection; ingest.c's writer thread commits
 * batches on another (docs/architecture.md "The bridge's threads"). A read-only request
 * (history, count, ...) therefore never waits for a commit, unless the room it reads has
 * messages still waiting: then ingest__flush first (see before_op). A writing request
 * always flushes first, so it does not wait for the writer's lock (at most for the tail of
 * a checkpoint, 20 ms).
 *
 *   <prefix>/rooms/+/messages      -> ingest.c (store in batches)
 *   <prefix>/users/+/req           -> requests.c (answer; controls and events around it)
 *   $CONTROL/mqchat/v1/replay      <- the plugin's replay.done marker
 *   $CONTROL/mqchat/v1             -> {"op":"replay"} on connect, {"op":"stored"} after commits
 *
 * The session is persistent (clean start off, session expiry 0xFFFFFFFF): while the bridge
 * is away the broker queues its QoS 1 messages. libmosquitto acknowledges a message before
 * it is committed, so the plugin also keeps a copy of each until "stored" says it is on
 * disk, and replays what is newer than the last "stored" when the bridge (re)connects
 * (that watermark is saved in the database before it is sent: ingest__acked).
 * "stored" is withheld while a replay runs: a newer id from the session queue may be
 * committed before older replayed ones arrive, and acking it would drop their copies.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "mqchat_store.h"

#include "bridge.h"
#include "config.h"
#include "ingest.h"
#include "requests.h"
#include "stats.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define REPLAY_WAIT_MS 5000
#define DB_BUSY_MS 5000
#define LOOP_MAX_WAIT_MS 1000
#define READ_BURST 4096
#define NSUBS 3 /* messages, requests, and send (see on_connect) */

/* What is timed: every op of docs/protocol.md (requests__op_name), requests with no known
 * op ("other"), and the waits for a commit before a request (before_op, "flush"). */
#define STAT_OTHER REQ_OPS
#define STAT_FLUSH (REQ_OPS + 1)
#define STAT_SLOTS (REQ_OPS + 2)

struct bridge {
	struct bridge_config cfg;
	sqlite3 *db;
	struct ingest *ing;
	struct requests *req;
	struct mosquitto *mosq;
	mosquitto_property *connect_props;

	bool tcp_up;          /* a connection exists (CONNACK may still be pending) */
	bool connected;       /* CONNACK accepted */
	bool ready;           /* both subscriptions granted */
	bool failure_logged;  /* this attempt's failure was already logged (SUBACK refusal) */
	char refusal[160];    /* why the broker refused this attempt's CONNECT, or "" */
	int sub_mid[NSUBS];
	bool sub_ok[NSUBS];
	bool replaying;
	uint64_t replay_after;  /* the saved acknowledgement watermark at this connection's CONNACK */
	int64_t replay_deadline;
	uint64_t acked;       /* the last "stored" upto sent on this connection */
	int64_t backoff_ms;
	int64_t next_connect_at;
	unsigned rand_state;

	char *sub_messages;   /* <prefix>/rooms/+/messages */
	char *sub_req;        /* <prefix>/users/+/req */
	char *sub_send;       /* <prefix>/rooms/+/send: see on_connect */

	struct op_stat stats[STAT_SLOTS]; /* since start or the last report */
	int64_t stats_since_ms;
};

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t stats_signal;
static int log_level = BLOG_INFO;

/* ------------------------------------------------------------------ logging, clocks */

void bridge__log_set_level(int level)
{
	log_level = level;
}

int bridge__log_enabled(int level)
{
	return level <= log_level;
}

void bridge__log(int level, const char *module, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	struct timespec ts;
	struct tm tm;
	char when[32], msg[2048];
	va_list ap;

	if(level > log_level) return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000,
			names[level < 0 ? 0 : level > 3 ? 3 : level], module, msg);
}

int64_t bridge__mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	if(ms <= 0) return;
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL); /* a signal cuts it short, which is what we want */
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void on_stats_signal(int sig)
{
	(void)sig;
	stats_signal = 1;
}

/* ------------------------------------------------------------------ request timing */


/* Logs one line per slot that saw requests since the last report, then starts anew. */
static void stats_report(struct bridge *b, const char *why)
{
	int64_t now = bridge__mono_ms();
	unsigned lines = 0;
	bridge__log(BLOG_INFO, "stats", "request timing (%s) over the last %.1f s, in-bridge time of requests__handle "
			"per op; counters reset", why, (double)(now - b->stats_since_ms) / 1000.0);
	for(unsigned i = 0; i < STAT_SLOTS; i++){
		struct op_stat *st = &b->stats[i];
		if(!st->n) continue;
		bridge__log(BLOG_INFO, "stats", "%s %s n=%" PRIu64 " p50=%.1fus p99=%.1fus max=%.1fus",
				i == STAT_FLUSH ? "flush" : "op",
				i == STAT_FLUSH ? "before-request" : i == STAT_OTHER ? "other" : requests__op_name((int)i), st->n,
				stat_quantile(st, 0.50) / 1000.0, stat_quantile(st, 0.99) / 1000.0, (double)st->max_ns / 1000.0);
		lines++;
	}
	if(!lines) bridge__log(BLOG_INFO, "stats", "no requests in this interval");
	struct ingest_stats is;
	ingest__stats_take(b->ing, &is);
	if(is.commit_ns.n){
		bridge__log(BLOG_INFO, "stats", "writer commits n=%" PRIu64 " messages=%" PRIu64 " size p50=%.0f p99=%.0f max=%" PRIu64
				" time p50=%.1fms p99=%.1fms max=%.1fms", is.commit_ns.n, is.messages,
				stat_quantile(&is.commit_size, 0.50), stat_quantile(&is.commit_size, 0.99), is.commit_size.max_ns,
				stat_quantile(&is.commit_ns, 0.50) / 1e6, stat_quantile(&is.commit_ns, 0.99) / 1e6, (double)is.commit_ns.max_ns / 1e6);
	}
	memset(b->stats, 0, sizeof(b->stats));
	b->stats_since_ms = now;
}

/* ------------------------------------------------------------------ publishing */

/* Publishes j (compact JSON) at QoS 1. 0, or -1 (logged: the message is dropped). */
static int publish_json(struct bridge *b, const char *topic, const json_t *j, const mosquitto_property *props)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if(!s){
		bridge__log(BLOG_ERROR, "mqtt", "out of memory serialising a message for %s; dropped", topic);
		return -1;
	}
	int rc = mosquitto_publish_v5(b->mosq, NULL, topic, (int)strlen(s), s, 1, false, props);
	if(rc != MOSQ_ERR_SUCCESS){
		bridge__log(BLOG_ERROR, "mqtt", "publishing to %s failed: %s; dropped", topic, mosquitto_strerror(rc));
	}else{
		bridge__log(BLOG_DEBUG, "mqtt", "published to %s: %s", topic, s);
	}
	free(s);
	return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

/* Whether "stored" acknowledgements may be sent (and so the watermark saved): on a ready
 * connection, outside a replay. */
static bool may_ack(const struct bridge *b)
{
	return b->ready && !b->replaying;
}

/* Tells the plugin what is on disk: the watermark the writer saved (in the transaction
 * that committed it, so a bridge that dies after the plugin dropped its copies never asks
 * for less than it promised to have). Nothing when a replay runs or nothing is new. */
static void send_ack(struct bridge *b)
{
	if(!may_ack(b)) return;
	uint64_t upto = ingest__saved_ack(b->ing);
	if(upto <= b->acked) return;
	json_t *j = json_pack("{s:s, s:I}", "op", "stored", "upto", (json_int_t)upto);
	if(j && publish_json(b, BRIDGE_CONTROL_TOPIC, j, NULL) == 0) b->acked = upto;
	json_decref(j);
}

/* ------------------------------------------------------------------ topics */

/* Matches "<prefix>/<kind>/<name>/<leaf>" and points *name at the name level. */
static bool topic_match(const char *topic, const char *prefix, const char *kind, const char *leaf,
		const char **name, size_t *namelen)
{
	size_t pl = strlen(prefix), kl = strlen(kind), ll = strlen(leaf);
	if(strncmp(topic, prefix, pl) || topic[pl] != '/') return false;
	topic += pl + 1;
	if(strncmp(topic, kind, kl) || topic[kl] != '/') return false;
	topic += kl + 1;
	const char *slash = strchr(topic, '/');
	if(!slash || slash == topic) return false;
	if(strncmp(slash + 1, leaf, ll) || slash[1 + ll] != '\0') return false;
	*name = topic;
	*namelen = (size_t)(slash - topic);
	return true;
}

/* The answer goes to the request's response topic if it is the user's own res topic or
 * below it, else to <prefix>/users/{user}/res (DESIGN.md "Requests"). */
static char *response_topic(struct bridge *b, const char *user, const mosquitto_property *props)
{
	char *want = NULL, *topic = NULL;
	size_t n = strlen(b->cfg.prefix) + strlen(user) + 16;
	char *own = malloc(n);
	if(!own) return NULL;
	snprintf(own, n, "%s/users/%s/res", b->cfg.prefix, user);

	mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &want, false);
	if(want){
		size_t ol = strlen(own);
		bool under = !strncmp(want, own, ol) && (want[ol] == '\0' || (want[ol] == '/' && want[ol + 1]));
		if(under && mosquitto_pub_topic_check(want) == MOSQ_ERR_SUCCESS){
			topic = want;
			want = NULL;
		}else{
			bridge__log(BLOG_INFO, "mqtt", "request from %s names response topic '%s', outside %s/...; "
					"answering on %s", user, want, own, own);
		}
	}
	free(want);
	if(topic){
		free(own);
		return topic;
	}
	return own;
}

static void publish_events(struct bridge *b, const json_t *events)
{
	size_t i;
	json_t *e;
	json_array_foreach(events, i, e){
		const char *u = json_string_value(json_object_get(e, "user"));
		json_t *ev = json_object_get(e, "event");
		if(!u || !mqc_name_valid(u, strlen(u)) || !json_is_object(ev)){
			bridge__log(BLOG_ERROR, "requests", "event %zu has no valid user or event object; not sent", i);
			continue;
		}
		char topic[MQC_NAME_MAX * 2 + 32];
		snprintf(topic, sizeof(topic), "%s/users/%s/events", b->cfg.prefix, u);
		publish_json(b, topic, ev, NULL);
	}
}

/* requests_before_fn: commits what must be committed before the op runs, so that a request
 * sees every message the bridge received before it in the rooms it reads (docs/protocol.md
 * "Consistency"), and waits for nothing else: a history of a quiet room is answered at
 * once however busy the writer is. A writing op waits for every batch: then the writer
 * holds no write lock, and `read` finds a message the user received a moment ago. */
static void before_op(void *arg, const char *user, enum req_sees sees, const char *room)
{
	struct bridge *b = arg;
	switch(sees){
		case REQ_SEES_ROOM: if(!ingest__room_pending(b->ing, room)) return; break;
		case REQ_SEES_MY_ROOMS: if(!ingest__pending(b->ing)) return; break;
		case REQ_WRITES: break;
	}
	uint64_t t0 = stat_now_ns();
	if(ingest__flush(b->ing, may_ack(b))){
		bridge__log(BLOG_WARN, "ingest", "answering a request from %s with %zu messages not yet stored",
				user, ingest__pending(b->ing));
	}
	stat_add(&b->stats[STAT_FLUSH], stat_now_ns() - t0);
	send_ack(b);
}

static void handle_request(struct bridge *b, const char *name, size_t namelen,
		const struct mosquitto_message *msg, const mosquitto_property *props)
{
	char user[MQC_NAME_MAX + 1];
	struct req_out out = { 0 };
	mosquitto_property *rprops = NULL;
	void *corr = NULL;
	uint16_t corrlen = 0;
	char *topic = NULL;
	int rc;

	if(!mqc_name_valid(name, namelen)){
		bridge__log(BLOG_WARN, "mqtt", "request on %s ignored: the user level is not a valid user id", msg->topic);
		return;
	}
	memcpy(user, name, namelen);
	user[namelen] = '\0';

	uint64_t t0 = stat_now_ns();
	rc = requests__handle(b->req, user, msg->payload, (size_t)msg->payloadlen, &out);
	uint64_t took = stat_now_ns() - t0;
	stat_add(&b->stats[out.op_index >= 0 ? (unsigned)out.op_index : STAT_OTHER], took);
	if(rc){
		bridge__log(BLOG_ERROR, "requests", "out of memory handling a request from %s; no answer sent "
				"(a change it asked for may have been committed)", user);
		return;
	}
	/* The plugin must know a membership change before anyone learns of it. */
	size_t i;
	json_t *c;
	json_array_foreach(out.controls, i, c) publish_json(b, BRIDGE_CONTROL_TOPIC, c, NULL);
	publish_events(b, out.events);

	topic = response_topic(b, user, props);
	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corrlen, false);
	if(corr && mosquitto_property_add_binary(&rprops, MQTT_PROP_CORRELATION_DATA, corr, corrlen)){
		bridge__log(BLOG_ERROR, "mqtt", "out of memory copying correlation data for %s", user);
	}
	if(!topic){
		bridge__log(BLOG_ERROR, "mqtt", "out of memory building the response topic for %s; no answer sent", user);
	}else if(out.response){
		publish_json(b, topic, out.response, rprops);
	}
	free(topic);
	free(corr);
	mosquitto_property_free_all(&rprops);
	json_decref(out.response);
	json_decref(out.controls);
	json_decref(out.events);
}

static void replay_finished(struct bridge *b, const char *how)
{
	if(ingest__flush(b->ing, false)){
		bridge__log(BLOG_WARN, "ingest", "replay %s but committing failed; acknowledging once it succeeds", how);
	}
	b->replaying = false;
	send_ack(b);
}

static void handle_replay_done(struct bridge *b, const struct mosquitto_message *msg)
{
	json_error_t jerr;
	json_t *j = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, &jerr);
	const char *op = json_string_value(json_object_get(j, "op"));
	if(!op || strcmp(op, "replay.done")){
		bridge__log(BLOG_WARN, "mqtt", "ignored a message on %s without op replay.done", msg->topic);
	}else if(!b->replaying){
		bridge__log(BLOG_DEBUG, "mqtt", "replay.done arrived when no replay was running; ignored");
	}else{
		json_t *count = json_object_get(j, "count");
		bridge__log(BLOG_INFO, "ingest", "replay done: the plugin resent %" JSON_INTEGER_FORMAT " messages",
				json_is_integer(count) ? json_integer_value(count) : (json_int_t)-1);
		replay_finished(b, "finished");
	}
	json_decref(j);
}

/* ------------------------------------------------------------------ MQTT callbacks */

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	(void)mosq;
	struct bridge *b = obj;
	const char *name;
	size_t namelen;

	if(topic_match(msg->topic, b->cfg.prefix, "rooms", "messages", &name, &namelen)){
		ingest__add(b->ing, msg->topic, name, namelen, msg->payload, (size_t)msg->payloadlen);
		/* The replay.done marker queues behind everything the broker holds for us: the
		 * wait for it only counts time in which nothing arrives. */
		if(b->replaying) b->replay_deadline = bridge__mono_ms() + REPLAY_WAIT_MS;
	}else if(topic_match(msg->topic, b->cfg.prefix, "users", "req", &name, &namelen)){
		handle_request(b, name, namelen, msg, props);
	}else if(!strcmp(msg->topic, BRIDGE_REPLAY_DONE_TOPIC)){
		handle_replay_done(b, msg);
	}else{
		bridge__log(BLOG_WARN, "mqtt", "ignored a message on unexpected topic %s", msg->topic);
	}
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	(void)props;
	struct bridge *b = obj;
	if(rc){
		/* logged by connection_down, with the retry delay, when mosquitto_loop fails next */
		snprintf(b->refusal, sizeof(b->refusal), "refused the connection as %s (%s)",
				b->cfg.user, mosquitto_reason_string(rc));
		return;
	}
	b->connected = true;
	b->backoff_ms = 0;
	/* "after" is the saved acknowledgement watermark, not max(id): see ingest__acked. */
	if(ingest__flush(b->ing, false)){
		bridge__log(BLOG_WARN, "ingest", "committing before the replay request failed; it stays queued");
	}
	b->replay_after = ingest__acked(b->ing);
	bridge__log(BLOG_INFO, "mqtt", "connected to %s:%d as %s, client id %s (%s session)", b->cfg.host,
			b->cfg.port, b->cfg.user, b->cfg.client_id, (flags & 1) ? "resumed" : "new");
	/* The third subscription receives nothing (the plugin refuses every delivery of raw
	 * client input on .../send). It exists so that the broker finds a subscriber for a
	 * client's send and answers an MQTT 5 PUBACK with 0x00 Success rather than 0x10
	 * "No matching subscribers", which clients would read as "nobody got it". */
	const char *subs[NSUBS] = { b->sub_messages, b->sub_req, b->sub_send };
	const int qos[NSUBS] = { 1, 1, 0 };
	for(int i = 0; i < NSUBS; i++){
		b->sub_ok[i] = false;
		int src = mosquitto_subscribe_v5(mosq, &b->sub_mid[i], subs[i], qos[i], 0, NULL);
		if(src){
			bridge__log(BLOG_ERROR, "mqtt", "subscribing to %s failed: %s; reconnecting", subs[i],
					mosquitto_strerror(src));
			mosquitto_disconnect_v5(mosq, MQTT_RC_UNSPECIFIED, NULL);
			return;
		}
	}
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted,
		const mosquitto_property *props)
{
	(void)props;
	struct bridge *b = obj;
	const char *subs[NSUBS] = { b->sub_messages, b->sub_req, b->sub_send };
	for(int i = 0; i < NSUBS; i++){
		if(mid != b->sub_mid[i]) continue;
		if(qos_count < 1 || granted[0] > 1){
			bridge__log(BLOG_ERROR, "mqtt", "broker refused the subscription to %s (reason 0x%02x): "
					"is %s the plugin's service user? disconnecting to retry", subs[i],
					qos_count < 1 ? 0x80 : granted[0], b->cfg.user);
			b->failure_logged = true;
			mosquitto_disconnect_v5(mosq, MQTT_RC_UNSPECIFIED, NULL);
			return;
		}
		if(granted[0] != 1 && i < 2){
			bridge__log(BLOG_WARN, "mqtt", "subscription to %s granted at QoS %d, not 1: messages sent "
					"while the bridge is away may be lost", subs[i], granted[0]);
		}
		b->sub_ok[i] = true;
	}
	for(int i = 0; i < NSUBS; i++){
		if(!b->sub_ok[i]) return;
	}
	if(b->ready) return;

	/* Ask for what the plugin still holds and we do not (after: see on_connect). */
	uint64_t after = b->replay_after;
	json_t *j = json_pack("{s:s, s:I}", "op", "replay", "after", (json_int_t)after);
	int prc = j ? publish_json(b, BRIDGE_CONTROL_TOPIC, j, NULL) : -1;
	json_decref(j);
	if(prc){
		/* Without a replay, acknowledging could pass messages the plugin still holds and
		 * the database lacks: reconnect and ask again. */
		bridge__log(BLOG_ERROR, "ingest", "could not ask the plugin for a replay; reconnecting");
		b->failure_logged = true;
		mosquitto_disconnect_v5(mosq, MQTT_RC_UNSPECIFIED, NULL);
		return;
	}
	b->ready = true;
	b->acked = 0;
	b->replaying = true;
	b->replay_deadline = bridge__mono_ms() + REPLAY_WAIT_MS;
	bridge__log(BLOG_INFO, "ingest", "asked the plugin to replay messages after %" PRIu64, after);
	bridge__log(BLOG_INFO, "bridge", "ready");
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
	(void)mosq;
	(void)obj;
	if(level == MOSQ_LOG_DEBUG) bridge__log(BLOG_DEBUG, "libmosquitto", "%s", str);
}

/* ------------------------------------------------------------------ connection */

/* Picks the next attempt's time; logs `failure` (the whole sentence, e.g. "cannot connect
 * to h:p: Connection refused") with the delay, or only the delay when failure is NULL
 * (already logged). */
static void schedule_reconnect(struct bridge *b, const char *failure)
{
	b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : BACKOFF_MIN_MS;
	if(b->backoff_ms > BACKOFF_MAX_MS) b->backoff_ms = BACKOFF_MAX_MS;
	/* jitter: between half and all of the backoff, so restarted bridges do not march in step */
	int64_t delay = b->backoff_ms / 2 + (int64_t)(rand_r(&b->rand_state) % (unsigned)(b->backoff_ms / 2 + 1));
	b->next_connect_at = bridge__mono_ms() + delay;
	if(failure){
		bridge__log(BLOG_WARN, "mqtt", "%s; retrying in %" PRId64 " ms", failure, delay);
	}else{
		bridge__log(BLOG_INFO, "mqtt", "retrying in %" PRId64 " ms", delay);
	}
}

static void connection_down(struct bridge *b, int rc)
{
	bool was_ready = b->ready;
	char why[128];
	snprintf(why, sizeof(why), "%s", rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	size_t wl = strlen(why);
	if(wl && why[wl - 1] == '.') why[wl - 1] = '\0';
	mosquitto_disconnect(b->mosq); /* closes the socket if libmosquitto left it open */
	b->tcp_up = b->connected = b->ready = b->replaying = false;
	char msg[512];
	if(b->refusal[0]){
		snprintf(msg, sizeof(msg), "broker %s:%d %s", b->cfg.host, b->cfg.port, b->refusal);
	}else{
		snprintf(msg, sizeof(msg), "%s %s:%d: %s", was_ready ? "lost the connection to" : "connection failed to",
				b->cfg.host, b->cfg.port, why);
	}
	schedule_reconnect(b, b->failure_logged ? NULL : msg);
	b->failure_logged = false;
	b->refusal[0] = '\0';
}

static void try_connect(struct bridge *b)
{
	int rc = mosquitto_connect_bind_v5(b->mosq, b->cfg.host, b->cfg.port, b->cfg.keepalive, NULL,
			b->connect_props);
	if(rc != MOSQ_ERR_SUCCESS){
		char msg[512];
		snprintf(msg, sizeof(msg), "cannot connect to %s:%d: %s", b->cfg.host, b->cfg.port,
				rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		schedule_reconnect(b, msg);
		return;
	}
	b->tcp_up = true;
	b->failure_logged = false;
}

/* ------------------------------------------------------------------ main */

static int64_t min_wait(int64_t a, int64_t b)
{
	if(a < 0) return b;
	if(b < 0) return a;
	return a < b ? a : b;
}

/* libmosquitto 2.0.11's mosquitto_loop() reads one packet per call while its own queues
 * are short: under load that is a select() and a wake-up per message (perf: most of the
 * bridge's time was in the kernel). Read on while the socket has bytes waiting, at most
 * READ_BURST packets, so timers and commits still get their turn. */
static int read_more(struct bridge *b)
{
	int sock = mosquitto_socket(b->mosq), avail = 0, rc = MOSQ_ERR_SUCCESS;
	for(int n = 0; n < READ_BURST && sock >= 0 && !ingest__blocked(b->ing); n++){
		/* a full batch goes to an idle writer now, not after the burst */
		ingest__pump(b->ing, bridge__mono_ms(), may_ack(b));
		if(ioctl(sock, FIONREAD, &avail) != 0 || avail <= 0) break;
		if((rc = mosquitto_loop_read(b->mosq, 1)) != MOSQ_ERR_SUCCESS) break;
	}
	return rc;
}

/* One pass of libmosquitto's I/O on what poll() reported (mosquitto_loop() minus its
 * select(), which cannot also wait for the writer's eventfd). */
static int mqtt_io(struct bridge *b, short revents, bool reading)
{
	int rc = MOSQ_ERR_SUCCESS;
	/* An error or hang-up is reported even while not reading (events without POLLIN):
	 * read then too, so libmosquitto sees it and the loop does not spin on it. */
	if((reading && (revents & POLLIN)) || (revents & (POLLHUP | POLLERR | POLLNVAL))){
		rc = mosquitto_loop_read(b->mosq, 1);
		if(rc == MOSQ_ERR_SUCCESS) rc = read_more(b);
	}
	if(rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(b->mosq)) rc = mosquitto_loop_write(b->mosq, 1);
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(b->mosq);
	return rc;
}

static void run(struct bridge *b)
{
	while(!stop_signal){
		if(ingest__must_restart(b->ing)){
			bridge__log(BLOG_ERROR, "bridge", "a message could not be kept for lack of memory; exiting "
					"(status 1) so that the next start gets it replayed by the plugin");
			return;
		}
		if(stats_signal){
			stats_signal = 0;
			stats_report(b, "SIGUSR1");
		}
		int64_t now = bridge__mono_ms();

		if(!b->tcp_up && now >= b->next_connect_at){
			try_connect(b);
			now = bridge__mono_ms();
		}

		ingest__pump(b->ing, now, may_ack(b));
		send_ack(b);
		/* not reading (writer busy, batch full) is not the plugin's silence */
		if(b->replaying && ingest__blocked(b->ing)) b->replay_deadline = now + REPLAY_WAIT_MS;
		if(b->replaying && now >= b->replay_deadline){
			bridge__log(BLOG_WARN, "ingest", "no replay.done from the plugin and no message for %d ms (a plugin "
					"without a replay buffer?); acknowledging stored messages again", REPLAY_WAIT_MS);
			replay_finished(b, "timed out");
		}

		int64_t wait = min_wait(ingest__timeout_ms(b->ing, now), LOOP_MAX_WAIT_MS);
		if(b->replaying) wait = min_wait(wait, b->replay_deadline - now);
		if(!b->tcp_up) wait = min_wait(wait, b->next_connect_at - now);
		if(wait < 0) wait = 0;

		/* Not reading while the filling batch is full and the writer busy: the broker
		 * keeps the rest, and the eventfd wakes us when the writer is done. */
		int sock = b->tcp_up ? mosquitto_socket(b->mosq) : -1;
		bool reading = sock >= 0 && !ingest__blocked(b->ing);
		struct pollfd fds[2] = {
			{ .fd = ingest__fd(b->ing), .events = POLLIN },
			{ .fd = sock, .events = (short)((reading ? POLLIN : 0) | (sock >= 0 && mosquitto_want_write(b->mosq) ? POLLOUT : 0)) },
		};
		int n = poll(fds, sock >= 0 ? 2 : 1, (int)wait);
		if(n < 0 && errno != EINTR){
			bridge__log(BLOG_ERROR, "bridge", "poll: %s", strerror(errno));
			sleep_ms(10);
			continue;
		}
		if(n > 0 && (fds[0].revents & POLLIN)) ingest__fd_clear(b->ing);
		if(sock < 0 || stop_signal) continue;
		int rc = mqtt_io(b, n > 0 ? fds[1].revents : 0, reading);
		if(rc != MOSQ_ERR_SUCCESS && !stop_signal) connection_down(b, rc);
	}
}

/* SIGTERM/SIGINT: commit, acknowledge, disconnect cleanly. Returns the exit status. */
static int shutdown_cleanly(struct bridge *b)
{
	bool restart = ingest__must_restart(b->ing);
	int status = restart ? 1 : 0;
	bridge__log(BLOG_INFO, "bridge", "%s: committing %zu waiting messages and disconnecting",
			restart ? "restart needed" : "signal", ingest__pending(b->ing));
	for(int attempt = 0; attempt < 5; attempt++){
		if(ingest__flush(b->ing, may_ack(b)) == 0) break;
		sleep_ms(200);
	}
	if(ingest__pending(b->ing)) status = 1;
	if(b->tcp_up){
		send_ack(b);
		mosquitto_disconnect_v5(b->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
		int64_t until = bridge__mono_ms() + 2000;
		while(bridge__mono_ms() < until && mosquitto_loop(b->mosq, 100, 1) == MOSQ_ERR_SUCCESS){
		}
	}
	bridge__log(BLOG_INFO, "bridge", "stopped%s", status ? " with messages not stored (the plugin replays them)" : "");
	return status;
}

static char *topic_new(const char *prefix, const char *rest)
{
	size_t n = strlen(prefix) + strlen(rest) + 1;
	char *s = malloc(n);
	if(s) snprintf(s, n, "%s%s", prefix, rest);
	return s;
}

int main(int argc, char **argv)
{
	struct bridge b = { 0 };
	char reason[512];
	int rc, status = 1;

	rc = config__load(&b.cfg, argc, argv);
	if(rc){
		config__free(&b.cfg);
		return rc > 0 ? 0 : 2;
	}
	mosquitto_lib_init();
	bridge__log_set_level(b.cfg.log_level);
	b.rand_state = (unsigned)time(NULL) ^ (unsigned)getpid();

	struct sigaction sa = { 0 };
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_stats_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	b.stats_since_ms = bridge__mono_ms();

	if(!b.cfg.password){
		bridge__log(BLOG_WARN, "config", "no password (password-file or $MQCHAT_BRIDGE_PASSWORD): "
				"connecting as %s without one", b.cfg.user);
	}
	if(mqc_db_open(b.cfg.db_path, MQC_OPEN_READWRITE, DB_BUSY_MS, &b.db, reason, sizeof(reason))){
		bridge__log(BLOG_ERROR, "bridge", "%s; exiting", reason);
		goto done;
	}
	b.ing = ingest__new(b.db, b.cfg.batch_max, b.cfg.batch_ms);
	if(!b.ing) goto done;
	b.req = requests__new(b.db, b.cfg.prefix);
	if(!b.req) goto done;
	requests__set_before(b.req, before_op, &b);
	b.sub_messages = topic_new(b.cfg.prefix, "/rooms/+/messages");
	b.sub_req = topic_new(b.cfg.prefix, "/users/+/req");
	b.sub_send = topic_new(b.cfg.prefix, "/rooms/+/send");
	if(!b.sub_messages || !b.sub_req || !b.sub_send) goto nomem;

	b.mosq = mosquitto_new(b.cfg.client_id, false, &b);
	if(!b.mosq) goto nomem;
	mosquitto_int_option(b.mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	/* Without it an answer waits behind the PUBACK of its request for the broker's delayed
	 * ACK (Nagle): every request took 40 ms more (measured by bench/scenario3.sh). */
	mosquitto_int_option(b.mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if(mosquitto_username_pw_set(b.mosq, b.cfg.user, b.cfg.password)) goto nomem;
	if(mosquitto_property_add_int32(&b.connect_props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0xFFFFFFFFu)) goto nomem;
	/* Receive Maximum: how many QoS 1 messages the broker may send before our PUBACKs. Its
	 * default (max_inflight_messages, 20) starved the bridge under load: with the broker's
	 * loop at ~25 ms per turn it sent 20 messages per turn, 800 msg/s, while 1,000 clients
	 * published 40,000 msg/s (measured by bench/scenario2.sh). mosquitto 2.0 takes the
	 * client's value instead of max_inflight_messages. */
	if(mosquitto_property_add_int16(&b.connect_props, MQTT_PROP_RECEIVE_MAXIMUM, 65535)) goto nomem;
	mosquitto_connect_v5_callback_set(b.mosq, on_connect);
	mosquitto_subscribe_v5_callback_set(b.mosq, on_subscribe);
	mosquitto_message_v5_callback_set(b.mosq, on_message);
	if(bridge__log_enabled(BLOG_DEBUG)) mosquitto_log_callback_set(b.mosq, on_log);

	bridge__log(BLOG_INFO, "bridge", "database %s, stored up to %" PRIu64 "; broker %s:%d, prefix %s, "
			"batches of up to %d messages or %d ms", b.cfg.db_path, ingest__stored_upto(b.ing), b.cfg.host,
			b.cfg.port, b.cfg.prefix, b.cfg.batch_max, b.cfg.batch_ms);
	run(&b);
	status = shutdown_cleanly(&b);
	stats_report(&b, "exit");
	goto done;

nomem:
	bridge__log(BLOG_ERROR, "bridge", "out of memory at start-up; exiting");
done:
	if(b.mosq) mosquitto_destroy(b.mosq);
	mosquitto_property_free_all(&b.connect_props);
	mosquitto_lib_cleanup();
	free(b.sub_messages);
	free(b.sub_req);
	free(b.sub_send);
	if(b.req) requests__free(b.req);
	ingest__free(b.ing);
	if(b.db) sqlite3_close(b.db);
	config__free(&b.cfg);
	return status;
}
