/*
 * serve.c: the request thread. It owns the request connection (client id
 * "<client id>:req", a persistent session) and a database connection of its own, and
 * answers every request the plugin forwards on $CONTROL/mqchat/v1/req/{user}
 * (docs/protocol.md), publishing around each answer what requests.h says: the room
 * controls to $CONTROL/mqchat/v1 first (the plugin knows a change before anyone learns of
 * it: same connection, in order), then the events and the answer.
 *
 * What a request must see (docs/protocol.md "Consistency"): every message its sender
 * published before it, every message of the room it names that was stamped before it
 * (so a message its requester received live is in the history it asks for), and in the
 * rooms it reads only once what of them was taken is committed. The plugin marks a
 * request with two (epoch, seq): "mqchat-after", its sender's newest message not yet
 * confirmed, which the request always waits for; and "mqchat-seen", the newest message of
 * the room the request names, which it waits for only while the store connection is
 * reading (then it is at most a window away), and at most SOFT_MAX_MS. Then the
 * consistency hook (before_op) lets it read a room only once what was taken of that room
 * before is committed. A request that must
 * wait is parked, never waited for: the thread goes on answering others, and retries the
 * parked ones whenever ingest reports progress. A user's later requests queue behind its
 * parked one (answers keep their order). After PARK_MAX_MS a request is answered anyway,
 * and logged: the store is stuck.
 *
 * <prefix>/users/+/req is subscribed only so that the broker finds a subscriber for a
 * request (MQTT 5 PUBACK 0x00, not 0x10); the plugin refuses every delivery of the raw
 * request to it.
 *
 * Flow control: at most OUT_MAX answers unacknowledged by the broker; past it the thread
 * stops reading requests (the broker holds them). At most PARK_LIMIT parked; past it a
 * request is answered without waiting (logged).
 *
 * A lost database connection (PostgreSQL: the server restarted or went away): the loss is
 * logged once and the thread reconnects before the next request, backing off up to
 * DB_RETRY_MAX_MS; meanwhile requests are parked like any that must wait (in order, up to
 * PARK_MAX_MS, then answered with the error requests.c gives any database failure), not
 * lost. A request after DB_IDLE_PING_MS without one pings first, so a connection that died
 * while idle is found and replaced before the request runs. A request that meets the loss
 * itself is answered with that error and not run again: it may have been cut off in its
 * COMMIT, whose outcome is unknown.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <mqtt_protocol.h>

#include "bridge.h"
#include "mqchat_store.h"
#include "serve.h"

#define PARK_MAX_MS 10000
#define SOFT_MAX_MS 250
#define PARK_LIMIT 10000
#define OUT_MAX 2000
#define READ_BURST 256
#define DB_BUSY_MS 5000
#define DB_RETRY_MIN_MS 100
#define DB_RETRY_MAX_MS 1000
#define DB_IDLE_PING_MS 1000 /* a request after this long without one pings first */

/* A message the store connection must have taken before the request is answered. */
struct mark {
	bool on;
	uint64_t epoch, seq;
};

struct parked {
	struct parked *next;
	char user[MQC_NAME_MAX + 1];
	void *payload;
	size_t len;
	mosquitto_property *props;  /* the request's, owned */
	struct mark hard, soft;     /* waits for the store connection to take them (see the top) */
	int64_t soft_until_ms;
	uint64_t arrival;           /* received lsn it must see; 0 until its mark was taken */
	uint64_t since_ns;
	int64_t deadline_ms;
};

/* ------------------------------------------------------------------ answers */

static bool response_under(const char *want, const char *own, size_t max_suffix)
{
	size_t ol = strlen(own);
	if(strncmp(want, own, ol)) return false;
	if(want[ol] == '\0') return true;
	return want[ol] == '/' && want[ol + 1] && strlen(want + ol + 1) <= max_suffix;
}

static char *own_res(struct serve *sv, const char *user)
{
	size_t n = sv->topics.users_len + strlen(user) + 8;
	char *own = malloc(n);
	if(own && mqc_topic_user_make(&sv->topics, user, "res", own, n) < 0){
		free(own);
		own = NULL;
	}
	return own;
}

/* A response topic the request names and that will not be honoured (not the user's own
 * res topic or below it, at most MQC_MAX_RES_TOPIC bytes below): a copy of it, else NULL. */
static char *refused_response_topic(struct serve *sv, const char *user, const mosquitto_property *props)
{
	char *want = NULL;
	mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &want, false);
	if(!want) return NULL;
	char *own = own_res(sv, user);
	bool ok = own && response_under(want, own, MQC_MAX_RES_TOPIC) && mosquitto_pub_topic_check(want) == MOSQ_ERR_SUCCESS;
	free(own);
	if(ok){
		free(want);
		return NULL;
	}
	return want;
}

/* The answer goes to the request's MQTT 5 response topic (checked by run()), else to
 * .../res/<res> when the request named one ("res", for MQTT 3.1.1 clients), else to
 * <prefix>/users/{user}/res (DESIGN.md "Requests"). */
static char *response_topic(struct serve *sv, const char *user, const mosquitto_property *props, const char *res)
{
	char *want = NULL;
	mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &want, false);
	if(want) return want;
	char *own = own_res(sv, user);
	if(!own || !res) return own;
	size_t n = strlen(own) + strlen(res) + 2;
	char *t = malloc(n);
	if(t) snprintf(t, n, "%s/%s", own, res);
	if(t && mosquitto_pub_topic_check(t) != MOSQ_ERR_SUCCESS){
		free(t);
		return own;
	}
	free(own);
	return t;
}

static void publish(struct serve *sv, const char *topic, const json_t *j, const mosquitto_property *props)
{
	if(link__publish_json(&sv->link, topic, j, props, NULL) == 0) sv->outstanding++;
}

static void publish_events(struct serve *sv, const json_t *events)
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
		char topic[MQC_TOPIC_PREFIX_MAX + MQC_NAME_MAX + 32];
		if(mqc_topic_user_make(&sv->topics, u, "events", topic, sizeof(topic)) < 0) continue;
		publish(sv, topic, ev, NULL);
	}
}

static void answer(struct serve *sv, const char *user, const mosquitto_property *props, struct req_out *out)
{
	mosquitto_property *rprops = NULL;
	void *corr = NULL;
	uint16_t corrlen = 0;

	/* The plugin must know a membership change before anyone learns of it. */
	size_t i;
	json_t *c;
	json_array_foreach(out->controls, i, c) publish(sv, BRIDGE_CONTROL_TOPIC, c, NULL);
	publish_events(sv, out->events);

	char *topic = response_topic(sv, user, props, out->res);
	free(out->res);
	out->res = NULL;
	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corrlen, false);
	if(corr && mosquitto_property_add_binary(&rprops, MQTT_PROP_CORRELATION_DATA, corr, corrlen)){
		bridge__log(BLOG_ERROR, "mqtt", "out of memory copying correlation data for %s", user);
	}
	if(!topic){
		bridge__log(BLOG_ERROR, "mqtt", "out of memory building the response topic for %s; no answer sent", user);
	}else if(out->response){
		publish(sv, topic, out->response, rprops);
	}
	free(topic);
	free(corr);
	mosquitto_property_free_all(&rprops);
	json_decref(out->response);
	json_decref(out->controls);
	json_decref(out->events);
}

/* ------------------------------------------------------------------ the database connection */

/* After the database was used: a lost connection is logged once and reconnected later. */
static void db_check(struct serve *sv)
{
	if(sv->db_lost || mqc_db_fault_last(sv->db) != MQC_DBF_LOST) return;
	sv->db_lost = true;
	sv->db_lost_at = sv->db_retry_at = bridge__mono_ms();
	sv->db_retry_ms = 0;
	bridge__log(BLOG_ERROR, "requests", "lost the database %s (%s); reconnecting, requests wait for it (up to %d "
			"ms each)", mqc_db_name(sv->db), mqc_db_errmsg(sv->db), PARK_MAX_MS);
}

/* Whether the lost connection works again (one try when its time has come). */
static bool db_back(struct serve *sv)
{
	int64_t now = bridge__mono_ms();
	if(now < sv->db_retry_at) return false;
	/* The ping also proves the new connection, and clears the loss it replaced (a later
	 * db_check must not see it again). */
	if(mqc_db_reconnect(sv->db) || mqc_exec(sv->db, MQC_Q_PING)){
		sv->db_retry_ms = sv->db_retry_ms ? sv->db_retry_ms * 2 : DB_RETRY_MIN_MS;
		if(sv->db_retry_ms > DB_RETRY_MAX_MS) sv->db_retry_ms = DB_RETRY_MAX_MS;
		sv->db_retry_at = now + sv->db_retry_ms;
		bridge__log_repeated(&sv->db_log, BLOG_WARN, "requests", "still no connection to database %s for %" PRId64
				" ms (%s); retrying every %" PRId64 " ms", mqc_db_name(sv->db), now - sv->db_lost_at,
				mqc_db_errmsg(sv->db), sv->db_retry_ms);
		return false;
	}
	bridge__log(BLOG_INFO, "requests", "the database is back (%s, the request thread's connection, after %" PRId64
			" ms)", mqc_db_name(sv->db), now - sv->db_lost_at);
	sv->db_lost = false;
	return true;
}

/* ------------------------------------------------------------------ running and parking */

/* requests_before_fn: whether the op may read now (see the top of this file). */
static bool before_op(void *arg, const char *user, enum req_sees sees, const char *room)
{
	(void)user;
	struct serve *sv = arg;
	if(sv->cur_late || sees == REQ_WRITES) return true;
	if(sees == REQ_NEEDS_MESSAGE){
		/* until it is taken and committed, or the request's deadline */
		ingest__want_commit(sv->ing, ingest__received_lsn(sv->ing));
		return false;
	}
	if(ingest__committed_lsn(sv->ing) >= sv->cur_arrival) return true;
	if(sees == REQ_SEES_ROOM && !ingest__room_pending(sv->ing, room)) return true;
	ingest__want_commit(sv->ing, sv->cur_arrival);
	return false;
}


/* What the plugin adds to a forwarded request, as user properties (its own come after
 * any of the client's, so the last of each name wins): the marks "mqchat-after" (hard) and
 * "mqchat-seen" (soft), "<epoch>:<seq>" each, and "mqchat-login" (how the requester's
 * session logged in). Any out-parameter may be NULL. */
static void read_plugin_props(const mosquitto_property *props, struct mark *hard, struct mark *soft, bool *token)
{
	char *name = NULL, *value = NULL;
	const mosquitto_property *p = props;
	bool skip = false; /* after the first match, search on from the one after it */
	if(hard) memset(hard, 0, sizeof(*hard));
	if(soft) memset(soft, 0, sizeof(*soft));
	if(token) *token = false;
	while((p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, skip))){
		skip = true;
		struct mark *m = !strcmp(name, "mqchat-after") ? hard : !strcmp(name, "mqchat-seen") ? soft : NULL;
		unsigned long long e, q;
		if(m && sscanf(value, "%llu:%llu", &e, &q) == 2){
			m->on = true;
			m->epoch = e;
			m->seq = q;
		}
		if(token && !strcmp(name, "mqchat-login")) *token = !strcmp(value, "token");
		free(name);
		free(value);
		name = value = NULL;
	}
}

/* Runs one request. True if answered, false if it must wait (nothing was changed). */
static bool run(struct serve *sv, const char *user, const void *payload, size_t len,
		const mosquitto_property *props, uint64_t arrival, bool late)
{
	struct req_out out;
	sv->cur_arrival = arrival;
	sv->cur_late = late;
	char *bad = refused_response_topic(sv, user, props);
	if(bad){
		/* not silence: the error goes where an answer may go, and the request is not run */
		char msg[400];
		snprintf(msg, sizeof(msg), "response topic '%.200s' refused: answers go to %s/users/%s/res or below it "
				"(at most %d bytes below res/, no wildcards)", bad, sv->cfg->prefix, user, MQC_MAX_RES_TOPIC);
		bridge__log_repeated(&sv->topic_log, BLOG_INFO, "mqtt", "request from %s names response topic '%.200s'; "
				"answered with an error on its own res topic", user, bad);
		free(bad);
		memset(&out, 0, sizeof(out));
		out.response = requests__refusal(payload, len, "invalid", msg);
		/* the correlation data only, not the refused response topic: the error takes the default one */
		mosquitto_property *keep = NULL;
		void *corr = NULL;
		uint16_t corrlen = 0;
		mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corrlen, false);
		if(corr) mosquitto_property_add_binary(&keep, MQTT_PROP_CORRELATION_DATA, corr, corrlen);
		free(corr);
		answer(sv, user, keep, &out);
		mosquitto_property_free_all(&keep);
		return true;
	}
	/* A connection to a server idle for a while may have died with a restart: a ping
	 * finds out before the request, not in it. Without a connection: wait for it, until
	 * late (then the error answer). */
	if(!sv->db_lost && mqc_db_engine(sv->db) == MQC_ENGINE_PG && bridge__mono_ms() - sv->db_used_ms >= DB_IDLE_PING_MS
			&& mqc_exec(sv->db, MQC_Q_PING)){
		db_check(sv);
	}
	if(sv->db_lost && !db_back(sv) && !late) return false;
	uint64_t t0 = stat_now_ns();
	bool token;
	read_plugin_props(props, NULL, NULL, &token);
	requests__set_token_login(sv->req, token);
	int rc = requests__handle(sv->req, user, payload, len, &out);
	sv->db_used_ms = bridge__mono_ms();
	db_check(sv);
	if(rc == REQ_DEFERRED) return false;
	stat_add(&sv->stats[out.op_index >= 0 ? (unsigned)out.op_index : SERVE_STAT_OTHER], stat_now_ns() - t0);
	if(rc){
		bridge__log(BLOG_ERROR, "requests", "out of memory handling a request from %s; no answer sent "
				"(a change it asked for may have been committed)", user);
		return true;
	}
	answer(sv, user, props, &out);
	return true;
}

static void parked_free(struct parked *p)
{
	free(p->payload);
	mosquitto_property_free_all(&p->props);
	free(p);
}

static bool user_parked(const struct serve *sv, const char *user)
{
	for(const struct parked *p = sv->head; p; p = p->next){
		if(!strcmp(p->user, user)) return true;
	}
	return false;
}

static void update_watch(struct serve *sv)
{
	bool any = false;
	for(const struct parked *p = sv->head; p && !any; p = p->next) any = p->hard.on || p->soft.on;
	ingest__watch_seen(sv->ing, any);
}

static void park(struct serve *sv, const char *user, const void *payload, size_t len, const mosquitto_property *props,
		const struct mark *hard, const struct mark *soft, uint64_t arrival)
{
	struct parked *p = calloc(1, sizeof(*p));
	if(!p || !(p->payload = malloc(len ? len : 1)) || (props && mosquitto_property_copy_all(&p->props, props))){
		bridge__log(BLOG_ERROR, "requests", "out of memory parking a request from %s; answering it now", user);
		if(p) parked_free(p);
		run(sv, user, payload, len, props, arrival, true);
		return;
	}
	snprintf(p->user, sizeof(p->user), "%s", user);
	if(len) memcpy(p->payload, payload, len);
	p->len = len;
	p->hard = *hard;
	p->soft = *soft;
	p->arrival = arrival;
	p->since_ns = stat_now_ns();
	p->deadline_ms = bridge__mono_ms() + PARK_MAX_MS;
	p->soft_until_ms = bridge__mono_ms() + SOFT_MAX_MS;
	if(sv->tail) sv->tail->next = p;
	else sv->head = p;
	sv->tail = p;
	sv->nparked++;
	if(hard->on || soft->on) ingest__watch_seen(sv->ing, true);
}

static bool marks_pending(struct serve *sv, struct mark *hard, struct mark *soft, int64_t soft_until, int64_t now);

/* Retries the parked requests in order; a user's requests stay behind its first one that
 * still has to wait. */
static void run_parked(struct serve *sv)
{
	struct parked **pp = &sv->head, *prev = NULL;
	char blocked[16][MQC_NAME_MAX + 1];
	size_t nblocked = 0;
	bool overflow = false;
	int64_t now = bridge__mono_ms();
	while(*pp){
		struct parked *p = *pp;
		bool wait = overflow;
		for(size_t i = 0; i < nblocked && !wait; i++) wait = !strcmp(blocked[i], p->user);
		bool late = now >= p->deadline_ms;
		if(!wait && !late && (p->hard.on || p->soft.on)){
			if(marks_pending(sv, &p->hard, &p->soft, p->soft_until_ms, now)) wait = true;
			else p->arrival = ingest__received_lsn(sv->ing);
		}
		if(!wait){
			if(late){
				sv->answered_late++;
				bridge__log_repeated(&sv->late_log, BLOG_WARN, "requests", "answering a request from %s that waited "
						"%d ms for the store (%s); it may miss messages sent before it (%" PRIu64 " so since start)",
						p->user, PARK_MAX_MS, sv->db_lost ? "no database connection" : p->hard.on
						? "its sender's message never arrived" : "no commit", sv->answered_late);
			}
			if(run(sv, p->user, p->payload, p->len, p->props, p->arrival, late)){
				stat_add(&sv->stats[SERVE_STAT_WAIT], stat_now_ns() - p->since_ns);
				*pp = p->next;
				if(sv->tail == p) sv->tail = prev;
				sv->nparked--;
				parked_free(p);
				continue;
			}
			wait = true;
		}
		/* stays: so do the user's later requests */
		if(nblocked < sizeof(blocked) / sizeof(blocked[0])) snprintf(blocked[nblocked++], sizeof(blocked[0]), "%s", p->user);
		else overflow = true; /* too many users waiting to track: keep every later one waiting too */
		prev = p;
		pp = &p->next;
	}
	update_watch(sv);
}


/* Whether a request must still wait for its marks; a mark that is satisfied is cleared.
 * The soft one is given up while the store connection is not reading (its writer is
 * stuck, or it is reconnecting) and after soft_until. */
static bool marks_pending(struct serve *sv, struct mark *hard, struct mark *soft, int64_t soft_until, int64_t now)
{
	if(hard->on && ingest__seen(sv->ing, hard->epoch, hard->seq)) hard->on = false;
	if(soft->on && (ingest__seen(sv->ing, soft->epoch, soft->seq) || !ingest__reading(sv->ing) || now >= soft_until)){
		soft->on = false;
	}
	return hard->on || soft->on;
}

static void on_request(struct serve *sv, const char *user, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	struct mark hard, soft;
	int64_t now = bridge__mono_ms();
	read_plugin_props(props, &hard, &soft, NULL);
	bool marked = marks_pending(sv, &hard, &soft, now + SOFT_MAX_MS, now);
	uint64_t arrival = ingest__received_lsn(sv->ing);
	bool behind = sv->head && user_parked(sv, user);
	if(!marked && !behind && run(sv, user, msg->payload, (size_t)msg->payloadlen, props, arrival, false)) return;
	if(sv->nparked >= PARK_LIMIT){
		sv->refused_busy++;
		bridge__log_repeated(&sv->full_log, BLOG_WARN, "requests", "%d requests wait for the store already; answering "
				"the one from %s without waiting (%" PRIu64 " so since start)", PARK_LIMIT, user, sv->refused_busy);
		run(sv, user, msg->payload, (size_t)msg->payloadlen, props, arrival, true);
		return;
	}
	park(sv, user, msg->payload, (size_t)msg->payloadlen, props, &hard, &soft, arrival);
	/* The mark may have been taken between the check and park() turning watching on (no
	 * wake-up then): look again now rather than at the next commit. */
	if(marked) run_parked(sv);
}

/* ------------------------------------------------------------------ the connection */

static void serve_ready(void *obj)
{
	struct serve *sv = obj;
	sv->outstanding = 0;
	json_t *j = json_pack("{s:s, s:s}", "op", "hello", "role", "requests");
	if(!j || link__publish_json(&sv->link, BRIDGE_CONTROL_TOPIC, j, NULL, NULL)){
		bridge__log(BLOG_ERROR, "mqtt", "could not say hello on the request connection; reconnecting");
		sv->link.failure_logged = true;
		mosquitto_disconnect_v5(sv->link.mosq, MQTT_RC_UNSPECIFIED, NULL);
	}else{
		bridge__log(BLOG_INFO, "requests", "request connection ready");
	}
	json_decref(j);
}

static void serve_message(void *obj, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	struct serve *sv = obj;
	const char *user;
	if(!strcmp(msg->topic, BRIDGE_USED_TOPIC)){
		if(requests__token_used(sv->req, msg->payload, (size_t)msg->payloadlen)){
			bridge__log_repeated(&sv->topic_log, BLOG_WARN, "mqtt", "ignored a malformed token use report from the plugin");
		}
		return;
	}
	if(!mqc_topic_below(msg->topic, BRIDGE_REQ_TOPIC, &user)){
		bridge__log(BLOG_WARN, "mqtt", "ignored a message on unexpected topic %s (request connection)", msg->topic);
		return;
	}
	if(!mqc_name_valid(user, strlen(user))){
		bridge__log(BLOG_WARN, "mqtt", "request on %s ignored: the user level is not a valid user id", msg->topic);
		return;
	}
	on_request(sv, user, msg, props);
}

static void serve_published(void *obj, int mid)
{
	(void)mid;
	struct serve *sv = obj;
	if(sv->outstanding) sv->outstanding--;
}

static void serve_lost(void *obj)
{
	struct serve *sv = obj;
	sv->outstanding = 0;
}

static const struct link_ops serve_ops = {
	.ready = serve_ready,
	.message = serve_message,
	.published = serve_published,
	.lost = serve_lost,
};

/* ------------------------------------------------------------------ the thread */

static void stats_report(struct serve *sv)
{
	int64_t now = bridge__mono_ms();
	unsigned lines = 0;
	bridge__log(BLOG_INFO, "stats", "request timing over the last %.1f s, in-bridge time of requests__handle "
			"per op; counters reset", (double)(now - sv->stats_since_ms) / 1000.0);
	for(unsigned i = 0; i < SERVE_STAT_SLOTS; i++){
		struct op_stat *st = &sv->stats[i];
		if(!st->n) continue;
		bridge__log(BLOG_INFO, "stats", "%s %s n=%" PRIu64 " p50=%.1fus p99=%.1fus max=%.1fus",
				i == SERVE_STAT_WAIT ? "wait" : "op",
				i == SERVE_STAT_WAIT ? "before-request" : i == SERVE_STAT_OTHER ? "other" : requests__op_name((int)i),
				st->n, stat_quantile(st, 0.50) / 1000.0, stat_quantile(st, 0.99) / 1000.0, (double)st->max_ns / 1000.0);
		lines++;
	}
	if(!lines) bridge__log(BLOG_INFO, "stats", "no requests in this interval");
	memset(sv->stats, 0, sizeof(sv->stats));
	sv->stats_since_ms = now;
}

static bool keep_reading(void *obj)
{
	struct serve *sv = obj;
	return sv->outstanding < OUT_MAX;
}

static void *serve_main(void *arg)
{
	struct serve *sv = arg;
	while(!atomic_load(&sv->stop)){
		if(atomic_exchange(&sv->stats_wanted, false)) stats_report(sv);
		link__maybe_connect(&sv->link);
		if(sv->head) run_parked(sv);

		int64_t wait = 1000, lw = link__timeout_ms(&sv->link), now = bridge__mono_ms();
		if(lw >= 0 && lw < wait) wait = lw;
		for(const struct parked *p = sv->head; p; p = p->next){
			/* the first deadline; a soft mark's is the nearest while one waits */
			int64_t d = (p->soft.on ? p->soft_until_ms : p->deadline_ms) - now;
			if(d < wait) wait = d < 0 ? 0 : d;
			if(!p->soft.on) break;
		}
		if(sv->db_lost && sv->head && sv->db_retry_at - now < wait){
			wait = sv->db_retry_at > now ? sv->db_retry_at - now : 0; /* the next reconnect */
		}
		short events;
		bool reading = sv->outstanding < OUT_MAX;
		int sock = link__fd(&sv->link, reading, &events);
		struct pollfd fds[3] = {
			{ .fd = sv->wake_fd, .events = POLLIN },
			{ .fd = ingest__progress_fd(sv->ing), .events = POLLIN },
			{ .fd = sock, .events = events },
		};
		int n = poll(fds, 3, (int)wait);
		if(n < 0 && errno != EINTR){
			bridge__log(BLOG_ERROR, "requests", "poll: %s", strerror(errno));
			continue;
		}
		if(n > 0 && (fds[0].revents & POLLIN)){
			uint64_t v;
			while(read(sv->wake_fd, &v, sizeof(v)) > 0){}
		}
		if(n > 0 && (fds[1].revents & POLLIN)){
			ingest__progress_clear(sv->ing);
			if(sv->head) run_parked(sv);
		}
		if(sock >= 0) link__io(&sv->link, n > 0 ? fds[2].revents : 0, reading, READ_BURST, keep_reading);
		if(!sv->db_lost || db_back(sv)){
			requests__flush_used(sv->req, false);
			db_check(sv);
		}
	}
	requests__flush_used(sv->req, true);
	/* Answer what waits (the store thread commits what it holds next), then leave. */
	while(sv->head){
		struct parked *p = sv->head;
		sv->head = p->next;
		run(sv, p->user, p->payload, p->len, p->props, p->arrival, true);
		parked_free(p);
	}
	sv->tail = NULL;
	sv->nparked = 0;
	stats_report(sv);
	link__disconnect(&sv->link, 2000);
	return NULL;
}

int serve__start(struct serve *sv, const struct bridge_config *cfg, const char *where, struct ingest *ing)
{
	char reason[512], cid[512];
	memset(sv, 0, sizeof(*sv));
	sv->cfg = cfg;
	sv->ing = ing;
	sv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	sv->stats_since_ms = bridge__mono_ms();
	sv->topic_log.limit = 20;
	if(sv->wake_fd < 0){
		bridge__log(BLOG_ERROR, "requests", "eventfd: %s", strerror(errno));
		return -1;
	}
	if(mqc_db_open(where, MQC_OPEN_READWRITE, DB_BUSY_MS, &sv->db, reason, sizeof(reason))){
		bridge__log(BLOG_ERROR, "requests", "request connection to the database: %s", reason);
		return -1;
	}
	sv->busy_polls = DB_BUSY_MS * 5;
	ingest__busy_poll(sv->db, &sv->busy_polls);
	if(!(sv->req = requests__new(sv->db, cfg->prefix))) return -1;
	requests__set_before(sv->req, before_op, sv);
	char sub[256];
	if(mqc_topics_init(&sv->topics, cfg->prefix) || mqc_topic_user_make(&sv->topics, "+", "req", sub, sizeof(sub)) < 0){
		bridge__log(BLOG_ERROR, "requests", "topic prefix '%s' is not one topic level of [A-Za-z0-9._-]", cfg->prefix);
		return -1;
	}
	snprintf(cid, sizeof(cid), "%s:req", cfg->client_id);
	if(link__init(&sv->link, "requests", cfg, cid, sub, &serve_ops, sv)) return -1;
	if(pthread_create(&sv->thread, NULL, serve_main, sv) != 0){
		bridge__log(BLOG_ERROR, "requests", "cannot start the request thread");
		return -1;
	}
	sv->thread_started = true;
	return 0;
}

static void wake(struct serve *sv)
{
	uint64_t one = 1;
	ssize_t w = write(sv->wake_fd, &one, sizeof(one));
	(void)w;
}

void serve__stats(struct serve *sv)
{
	atomic_store(&sv->stats_wanted, true);
	wake(sv);
}

void serve__stop(struct serve *sv)
{
	if(sv->thread_started){
		atomic_store(&sv->stop, true);
		wake(sv);
		pthread_join(sv->thread, NULL);
		sv->thread_started = false;
	}
	link__free(&sv->link);
	if(sv->req) requests__free(sv->req);
	mqc_db_close(sv->db);
	if(sv->wake_fd >= 0) close(sv->wake_fd);
	memset(sv, 0, sizeof(*sv));
	sv->wake_fd = -1;
}
