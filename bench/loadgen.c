/*
 * mqchat-loadgen: the load generator of every benchmark scenario (docs/benchmarks.md).
 *
 * One process, one thread, thousands of MQTT connections: each is a libmosquitto client
 * whose socket sits in one epoll set; the loop calls mosquitto_loop_read/loop_write/
 * loop_misc itself (never mosquitto_loop, whose select() cannot take fds above 1023).
 * The TCP connect is blocking (mosquitto_connect): on loopback it takes microseconds, and
 * libmosquitto 2.0's connect_async leaves the socket in a "connect pending" state that only
 * mosquitto_loop can clear. At most --connect-window connections wait for their CONNACK at
 * a time, so the broker's listen backlog never overflows (a dropped SYN costs 1 s).
 *
 * Every message body is "<ts_ns>:<publisher>:<seq>:<padding>" (ts_ns from CLOCK_MONOTONIC
 * in this process, seq counting from 1 per publisher). A delivery is measured when its
 * ts_ns falls in the measurement window (after --warmup, for --duration); so is a send.
 * expected = sum over publishers of (sent in window x subscribed connections of its room);
 * duplicates are deliveries whose seq is not above the last one that connection saw from
 * that publisher; lost = expected - (delivered - duplicates).
 *
 * Modes: mqchat publishes {"type":"msg","body":...} to <prefix>/rooms/{room}/send and
 * subscribes <prefix>/rooms/{room}/messages; raw publishes the same payload straight to
 * .../messages (the baselines: bare mosquitto, or mosquitto with an acl_file).
 * --connect-only connects every user once, reports connects/s and failures, and exits.
 * --sink-user adds one connection that subscribes --sink-filter and only counts (the
 * "QoS 1 subscriber that only counts" ceiling of scenario 2).
 * --db PATH|postgresql://... polls the messages table (read-only, in a second thread; a
 * SQLite file, or libpq on the URI) and reports the publish->stored lag of each row from the
 * ts_ns in its body (scenario 2).
 * SIGINT or SIGTERM ends a run early: what was measured so far is reported, the window
 * ending at the signal (rates over that shorter window); no drain.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sqlite3.h>

/* ------------------------------------------------------------ options */

struct opts {
	const char *host;
	int port;
	unsigned users;
	const char *users_file;
	const char *user_prefix;
	unsigned first_user;     /* users are <prefix><first_user>..<prefix><first_user+N-1> */
	const char *password;
	const char *rooms_file;
	unsigned rooms_max;      /* use only the first N rooms of the file (0: all) */
	unsigned publishers;
	unsigned size;
	int qos;
	double rate;             /* messages/s in total; 0 with saturate */
	bool saturate;
	unsigned window;         /* per publisher, messages in flight (QoS 1: unacked; QoS 0: own echo not back) */
	double duration, warmup, drain;
	bool raw;
	const char *prefix;
	int subs_per_room;       /* -1: every member subscribes */
	bool connect_only;
	unsigned connect_window;
	int keepalive;
	const char *sink_user, *sink_password, *sink_filter;
	const char *db_path;
	unsigned db_poll_ms;
	const char *sent_file;
	const char *label;
	int broker_pid;          /* read its CPU time over the measurement window */
	const char *ready_file;   /* created once every connection is up and subscribed */
	unsigned connect_retries; /* rounds of retrying refused connects (not with --connect-only) */
	unsigned reconnect_ms;    /* reconnect a dropped connection after this long (0: it stays down) */
	const char *passwords_file; /* "user password" lines: the users, each with its own password */
	unsigned retry_ms;        /* --connect-retries: this long between rounds (500) */
	double retry_for_s;       /* --connect-only: retry refused connects for this long (0: not) */
	bool client_msg_id;       /* each message carries client_msg_id "<pub>-<seq>" */
	bool nodelay;             /* TCP_NODELAY on every connection (no Nagle wait on a trickle) */
};

static struct opts O = {
	.host = "127.0.0.1", .port = 1883, .user_prefix = "u", .password = "", .size = 64, .qos = 0,
	.window = 0, .duration = 10, .warmup = 2, .drain = 5, .prefix = "chat", .subs_per_room = -1,
	.connect_window = 64, .keepalive = 60, .sink_filter = NULL, .db_poll_ms = 2, .label = "", .retry_ms = 500,
};

static void usage(void)
{
	fprintf(stderr,
		"usage: mqchat-loadgen [options]\n"
		"  --host H --port P            broker (127.0.0.1:1883)\n"
		"  --users N | --users-file F   users <prefix>0..N-1, or one name per line\n"
		"  --user-prefix P              (u)\n"
		"  --first-user F               users are <prefix>F..<prefix>F+N-1 (0); members of the\n"
		"                               rooms file outside that range are not connected\n"
		"  --password P                 the same for all users (--password-file F reads it)\n"
		"  --rooms-file F [--rooms R]   lines 'room member member ...' (use the first R rooms)\n"
		"  --publishers K               publisher k sends to room k%%R as its member (k/R)%%M\n"
		"  --size BYTES                 message body length (64)\n"
		"  --qos 0|1                    publish and subscribe QoS (0)\n"
		"  --rate MSGS/S | --saturate   total send rate, or as fast as the window allows\n"
		"  --window W                   per publisher in flight (QoS 1: unacked, QoS 0: own echo\n"
		"                               not yet back; 0 = QoS 0 sends whenever the socket drains)\n"
		"  --duration S --warmup S --drain S   (10, 2, 5)\n"
		"  --mode mqchat|raw            publish to .../send, or straight to .../messages\n"
		"  --topic-prefix P             (chat)\n"
		"  --subscribers-per-room S     only the first S members of each room subscribe\n"
		"  --connect-only               connect every user, report connects/s, exit\n"
		"  --connect-window N           CONNACKs outstanding at once (64)\n"
		"  --sink-user U --sink-password P [--sink-filter F]   one counting subscriber\n"
		"  --db PATH|URI [--db-poll-ms MS]  measure publish->stored lag from the messages table\n"
		"                               (a SQLite file or a postgresql:// URI)\n"
		"  --sent-file F                write 'publisher sent acknowledged' lines at the end\n"
		"  --label L                    put into the JSON line\n"
		"  --connect-retries N          retry refused connects N rounds, 0.5 s apart (the plugin's\n"
		"                               password-hash budget refuses first logins past it)\n"
		"  --ready-file F               create F when connected and subscribed (--publishers 0\n"
		"                               holds idle connections for --warmup + --duration)\n"
		"  --broker-pid PID             report that process's CPU time over the measurement window\n"
		"  --reconnect-ms MS            a connection the broker closes comes back after MS (as paho and\n"
		"                               MQTT.js do after 1 s), and libmosquitto sends its unacknowledged\n"
		"                               QoS 1 publishes again (0: it stays down)\n"
		"  --passwords-file F           lines 'user password': the users, each with its own password\n"
		"                               (device tokens, say)\n"
		"  --retry-ms MS                time between --connect-retries rounds (500)\n"
		"  --retry-for S                with --connect-only: retry refused connects every --retry-ms\n"
		"                               for up to S seconds, and report when the last one got in\n"
		"  --nodelay                    TCP_NODELAY on every connection (a latency probe at a low rate)\n"
		"  --client-msg-id              every message carries client_msg_id \"<pub>-<seq>\" (the plugin's\n"
		"                               dedupe key, so a resend after a lost PUBACK is delivered once)\n");
}

/* ------------------------------------------------------------ time, histogram */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Log-linear histogram of microseconds: exact below 2048, then 1024 sub-buckets per
 * power of two (0.1 % resolution), up to 2^40 us. */
#define H_SUB 1024
#define H_N ((40 - 10) * H_SUB + 2 * H_SUB)

struct hist {
	uint64_t n[H_N];
	uint64_t count;
	uint64_t max;
};

static unsigned h_index(uint64_t v)
{
	if(v < 2 * H_SUB) return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 11 */
	unsigned shift = e - 10;
	if(e >= 40) return H_N - 1;
	return shift * H_SUB + (unsigned)(v >> shift);
}

static uint64_t h_value(unsigned idx)
{
	if(idx < 2 * H_SUB) return idx;
	unsigned shift = idx / H_SUB - 1;
	return (uint64_t)(idx - shift * H_SUB) << shift;
}

static void h_add(struct hist *h, uint64_t us)
{
	h->n[h_index(us)]++;
	h->count++;
	if(us > h->max) h->max = us;
}

static uint64_t h_pct(const struct hist *h, double p)
{
	if(!h->count) return 0;
	uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->count);
	uint64_t seen = 0;
	if(want < 1) want = 1;
	for(unsigned i = 0; i < H_N; i++){
		seen += h->n[i];
		if(seen >= want) return h_value(i);
	}
	return h->max;
}

/* ------------------------------------------------------------ state */

struct room {
	char *id;
	unsigned *members;   /* user indexes */
	unsigned nmembers;
	unsigned subscribed; /* connections whose SUBACK granted this room */
	char *send_topic, *msg_topic;
};

struct pub;

struct conn {
	struct mosquitto *mosq;
	unsigned idx;
	int fd;
	bool started, connected, failed, dead, out_armed;
	int connack_rc;
	int64_t t_start;
	unsigned *rooms;      /* rooms this connection subscribes */
	unsigned nrooms, rooms_cap;
	int sub_mid;
	bool subscribed;
	uint32_t *last_seq;   /* per publisher; NULL until the first delivery */
	struct pub **pubs;
	unsigned npubs;
	bool is_sink;
	int64_t reconnect_at; /* --reconnect-ms: when to come back (0: not waiting) */
	bool reconnecting;    /* reconnect_due started a connect; its CONNACK is not a first connect */
};

struct pub {
	unsigned idx;
	struct conn *c;
	unsigned room;
	uint32_t seq;
	unsigned inflight;
	bool echo;            /* its connection subscribes its room: QoS 0 window counts own echoes */
	uint64_t sent_total, sent_window, acked;
};

static struct room *rooms;
static unsigned nrooms;
static char **names;
static char **pwds; /* --passwords-file: per user, else NULL */
static unsigned nusers;
static struct conn *conns;
static struct conn sink;
static struct pub *pubs;
static int ep;
static char *payload_buf;
static size_t body_off; /* where the body starts in payload_buf */
static size_t cmid_off; /* where client_msg_id's value starts in it (--client-msg-id), or 0 */

static int64_t t_window_start, t_window_end;
static uint64_t delivered, dups, delivered_all, gaps, sink_delivered, sink_window;
static uint64_t sink_recv_window; /* sink deliveries received while the window was open */
static struct hist lat, sink_lat, store_lat;
static uint64_t connects_ok, connects_failed, connects_refused[256], dropped, reconnects;
static unsigned outstanding_connects;
static volatile sig_atomic_t stop_flag;

/* ------------------------------------------------------------ input files */

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if(!d){
		fprintf(stderr, "mqchat-loadgen: out of memory\n");
		exit(1);
	}
	return d;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if(!p){
		fprintf(stderr, "mqchat-loadgen: out of memory (%zu x %zu)\n", n, sz);
		exit(1);
	}
	return p;
}

static int user_index(const char *name)
{
	/* Users are either <prefix><n> (fast path) or looked up linearly in a users file. */
	size_t pl = strlen(O.user_prefix);
	if(!O.users_file && !strncmp(name, O.user_prefix, pl) && name[pl]){
		char *end;
		unsigned long v = strtoul(name + pl, &end, 10);
		if(!*end && v >= O.first_user && v - O.first_user < nusers) return (int)(v - O.first_user);
		return -1;
	}
	for(unsigned i = 0; i < nusers; i++) if(!strcmp(names[i], name)) return (int)i;
	return -1;
}

static int load_users(void)
{
	if(O.users_file){
		FILE *f = fopen(O.users_file, "r");
		char line[256];
		unsigned cap = 0;
		if(!f){
			fprintf(stderr, "mqchat-loadgen: cannot open users file %s: %s\n", O.users_file, strerror(errno));
			return -1;
		}
		while(fgets(line, sizeof(line), f)){
			size_t nl = strcspn(line, " \t\r\n");
			char *pw = NULL;
			if(O.passwords_file && line[nl] == ' '){
				pw = line + nl + 1;
				pw[strcspn(pw, "\r\n")] = '\0';
			}
			line[nl] = '\0';
			if(!line[0]) continue;
			if(nusers == cap){
				cap = cap ? cap * 2 : 1024;
				names = realloc(names, cap * sizeof(*names));
				pwds = realloc(pwds, cap * sizeof(*pwds));
				if(!names || !pwds) return -1;
			}
			pwds[nusers] = pw ? xstrdup(pw) : NULL;
			names[nusers++] = xstrdup(line);
		}
		fclose(f);
	}else{
		nusers = O.users;
		names = xcalloc(nusers, sizeof(*names));
		for(unsigned i = 0; i < nusers; i++){
			char b[80];
			snprintf(b, sizeof(b), "%s%u", O.user_prefix, O.first_user + i);
			names[i] = xstrdup(b);
		}
	}
	if(!nusers){
		fprintf(stderr, "mqchat-loadgen: no users (--users N or --users-file F)\n");
		return -1;
	}
	return 0;
}

static int load_rooms(void)
{
	if(!O.rooms_file) return 0;
	FILE *f = fopen(O.rooms_file, "r");
	char *line = NULL;
	size_t cap = 0;
	unsigned rcap = 0, lineno = 0;
	if(!f){
		fprintf(stderr, "mqchat-loadgen: cannot open rooms file %s: %s\n", O.rooms_file, strerror(errno));
		return -1;
	}
	while(getline(&line, &cap, f) > 0){
		char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
		lineno++;
		if(!tok) continue;
		if(O.rooms_max && nrooms == O.rooms_max) break;
		if(nrooms == rcap){
			rcap = rcap ? rcap * 2 : 256;
			rooms = realloc(rooms, rcap * sizeof(*rooms));
			if(!rooms) return -1;
		}
		struct room *r = &rooms[nrooms++];
		memset(r, 0, sizeof(*r));
		r->id = xstrdup(tok);
		unsigned mcap = 0;
		while((tok = strtok_r(NULL, " \t\r\n", &save))){
			int u = user_index(tok);
			if(u < 0 && !O.users_file && !strncmp(tok, O.user_prefix, strlen(O.user_prefix))) continue; /* another process's user */
			if(u < 0){
				fprintf(stderr, "mqchat-loadgen: %s:%u: member %s is not one of the %u users\n",
						O.rooms_file, lineno, tok, nusers);
				free(line);
				fclose(f);
				return -1;
			}
			if(r->nmembers == mcap){
				mcap = mcap ? mcap * 2 : 8;
				r->members = realloc(r->members, mcap * sizeof(unsigned));
				if(!r->members) return -1;
			}
			r->members[r->nmembers++] = (unsigned)u;
		}
		char t[512];
		snprintf(t, sizeof(t), "%s/rooms/%s/send", O.prefix, r->id);
		r->send_topic = xstrdup(t);
		snprintf(t, sizeof(t), "%s/rooms/%s/messages", O.prefix, r->id);
		r->msg_topic = xstrdup(t);
	}
	free(line);
	fclose(f);
	return 0;
}

/* ------------------------------------------------------------ epoll bookkeeping */

static void conn_arm(struct conn *c)
{
	if(c->dead || c->fd < 0) return;
	bool want = mosquitto_want_write(c->mosq);
	if(want == c->out_armed) return;
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
	if(epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->out_armed = want;
}

static void conn_dead(struct conn *c, const char *why, int rc)
{
	if(c->dead) return;
	c->dead = true;
	if(c->fd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	c->fd = -1;
	if(c->reconnecting){
		/* closed before the reconnect's CONNACK (refused): try again later */
		c->reconnecting = false;
		if(!stop_flag) c->reconnect_at = now_ns() + (int64_t)O.reconnect_ms * 1000000;
		return;
	}
	if(!c->connected && c->started && !c->failed){
		/* Closed before any CONNACK: count it as a failed connect. */
		c->failed = true;
		connects_failed++;
		if(outstanding_connects) outstanding_connects--;
	}else if(c->connected && !stop_flag && !O.connect_only){
		dropped++;
		if(dropped <= 5) fprintf(stderr, "mqchat-loadgen: %s lost its connection (%s: %s)%s\n",
				mosquitto_userdata(c->mosq) == c ? names[c->idx] : "?", why, mosquitto_strerror(rc),
				O.reconnect_ms && c->npubs ? "; reconnecting" : "");
		if(O.reconnect_ms && c->npubs && !c->is_sink) c->reconnect_at = now_ns() + (int64_t)O.reconnect_ms * 1000000;
	}
	c->connected = false;
}

/* --reconnect-ms: the same libmosquitto object connects again; on its CONNACK it sends its
 * unacknowledged QoS 1 publishes again (message__retry_check), as a real client does. */
static void reconnect_due(int64_t now)
{
	if(!O.reconnect_ms) return;
	for(unsigned i = 0; i < nusers; i++){
		struct conn *c = &conns[i];
		if(!c->reconnect_at || now < c->reconnect_at) continue;
		c->reconnect_at = 0;
		int rc = mosquitto_reconnect(c->mosq);
		if(rc){
			c->reconnect_at = now + (int64_t)O.reconnect_ms * 1000000;
			continue;
		}
		c->fd = mosquitto_socket(c->mosq);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
		if(epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev)){
			c->reconnect_at = now + (int64_t)O.reconnect_ms * 1000000;
			continue;
		}
		c->out_armed = true;
		c->dead = false;
		c->reconnecting = true;
		reconnects++;
	}
}

/* ------------------------------------------------------------ callbacks */

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
	(void)m;
	struct conn *c = ud;
	if(c->reconnecting){
		/* a reconnect (reconnect_due): not a first connect, not counted in the connect figures */
		c->reconnecting = false;
		if(rc == 0) c->connected = true;
		else c->reconnect_at = now_ns() + (int64_t)O.reconnect_ms * 1000000;
		return;
	}
	if(outstanding_connects) outstanding_connects--;
	c->connack_rc = rc;
	if(rc == 0){
		c->connected = true;
		connects_ok++;
	}else{
		c->failed = true;
		connects_failed++;
		connects_refused[rc & 255]++;
	}
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted)
{
	(void)m;
	struct conn *c = ud;
	if(mid != c->sub_mid) return;
	c->subscribed = true;
	if(c->is_sink) return;
	for(int i = 0; i < n && (unsigned)i < c->nrooms; i++){
		if(granted[i] <= 2) rooms[c->rooms[i]].subscribed++;
	}
}

static void on_publish(struct mosquitto *m, void *ud, int mid)
{
	(void)m;
	(void)mid;
	struct conn *c = ud;
	if(O.qos == 0) return; /* libmosquitto reports QoS 0 publishes once written */
	/* Acks come back in order per connection; credit the first publisher with inflight. */
	for(unsigned i = 0; i < c->npubs; i++){
		if(c->pubs[i]->inflight){
			c->pubs[i]->inflight--;
			c->pubs[i]->acked++;
			return;
		}
	}
}

/* Parses "<ts_ns>:<pub>:<seq>:" out of the "body" of a payload. */
static bool parse_body(const char *p, size_t len, int64_t *ts, uint32_t *pub, uint32_t *seq)
{
	static const char key[] = "\"body\":\"";
	const char *b = memmem(p, len, key, sizeof(key) - 1);
	if(!b) return false;
	b += sizeof(key) - 1;
	const char *end = p + len;
	uint64_t v[3] = { 0, 0, 0 };
	for(int k = 0; k < 3; k++){
		if(b >= end || *b < '0' || *b > '9') return false;
		while(b < end && *b >= '0' && *b <= '9') v[k] = v[k] * 10 + (uint64_t)(*b++ - '0');
		if(b >= end || *b != ':') return false;
		b++;
	}
	*ts = (int64_t)v[0];
	*pub = (uint32_t)v[1];
	*seq = (uint32_t)v[2];
	return true;
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
	(void)m;
	struct conn *c = ud;
	int64_t ts;
	uint32_t p, seq;
	int64_t now = now_ns();

	if(!parse_body(msg->payload, (size_t)msg->payloadlen, &ts, &p, &seq) || p >= O.publishers) return;
	bool in_window = ts >= t_window_start && ts < t_window_end;
	uint64_t us = now > ts ? (uint64_t)(now - ts) / 1000 : 0;
	if(c->is_sink){
		sink_delivered++;
		if(now >= t_window_start && now < t_window_end) sink_recv_window++;
		if(in_window){
			sink_window++;
			h_add(&sink_lat, us);
		}
		return;
	}
	delivered_all++;
	if(O.qos == 0 && pubs[p].echo && c == pubs[p].c && pubs[p].inflight) pubs[p].inflight--; /* own echo */
	if(!in_window) return;
	delivered++;
	h_add(&lat, us);
	if(!c->last_seq) c->last_seq = xcalloc(O.publishers, sizeof(uint32_t));
	if(seq <= c->last_seq[p]) dups++;
	else{
		if(seq > c->last_seq[p] + 1 && c->last_seq[p]) gaps++;
		c->last_seq[p] = seq;
	}
}

/* ------------------------------------------------------------ connections */

static int conn_start(struct conn *c, const char *user, const char *password, unsigned idx)
{
	int rc;
	c->idx = idx;
	c->fd = -1;
	c->mosq = mosquitto_new(user, true, c);
	if(!c->mosq){
		fprintf(stderr, "mqchat-loadgen: mosquitto_new(%s) failed\n", user);
		return -1;
	}
	if(!O.raw || (password && *password)){
		if(mosquitto_username_pw_set(c->mosq, user, password)) return -1;
	}else{
		/* raw mode against bare mosquitto: anonymous, unless a password was given */
		if(mosquitto_username_pw_set(c->mosq, user, NULL)) return -1;
	}
	if(O.nodelay) mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(c->mosq, on_connect);
	mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
	mosquitto_message_callback_set(c->mosq, on_message);
	mosquitto_publish_callback_set(c->mosq, on_publish);
	c->started = true;
	c->t_start = now_ns();
	if(c == &sink){
		/* The counting subscriber gets what mqchat-bridge asks for: MQTT 5 with a Receive
		 * Maximum of 65535, so the broker's max_inflight_messages (20) does not throttle it
		 * and the ceiling compares like with like. */
		mosquitto_property *props = NULL;
		mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
		if(mosquitto_property_add_int16(&props, MQTT_PROP_RECEIVE_MAXIMUM, 65535)) return -1;
		rc = mosquitto_connect_bind_v5(c->mosq, O.host, O.port, O.keepalive, NULL, props);
		mosquitto_property_free_all(&props);
	}else{
		rc = mosquitto_connect(c->mosq, O.host, O.port, O.keepalive);
	}
	if(rc){
		fprintf(stderr, "mqchat-loadgen: connect %s to %s:%d: %s; counted as a failed connect\n",
				user, O.host, O.port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		c->failed = true;
		c->dead = true;
		connects_failed++;
		return 0;
	}
	c->fd = mosquitto_socket(c->mosq);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if(epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev)){
		fprintf(stderr, "mqchat-loadgen: epoll_ctl(%d): %s\n", c->fd, strerror(errno));
		return -1;
	}
	c->out_armed = false;
	outstanding_connects++;
	conn_arm(c);
	return 0;
}

static void conn_io(struct conn *c, uint32_t events)
{
	int rc;
	if(c->dead) return;
	if(events & (EPOLLIN | EPOLLERR | EPOLLHUP)){
		/* loop_read handles one packet per call when nothing is queued: keep reading until
		 * the socket is drained (errno EAGAIN), at most 256 packets so others get a turn. */
		for(int k = 0; k < 256; k++){
			errno = 0;
			rc = mosquitto_loop_read(c->mosq, 1);
			if(rc){
				conn_dead(c, "read", rc);
				return;
			}
			if(errno == EAGAIN || errno == EWOULDBLOCK) break;
		}
	}
	if(events & EPOLLOUT){
		rc = mosquitto_loop_write(c->mosq, 1);
		if(rc){
			conn_dead(c, "write", rc);
			return;
		}
	}
	if(O.connect_only && (c->connected || c->failed)){
		/* Measured: leave at once, so file descriptors stay bounded by the connect window
		 * (libmosquitto 2.0 holds three per client: the socket and an interrupt pair). */
		if(c->fd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		if(c->connected) mosquitto_disconnect(c->mosq);
		mosquitto_destroy(c->mosq);
		c->mosq = NULL;
		c->fd = -1;
		c->dead = true;
		return;
	}
	conn_arm(c);
}

static void poll_once(int timeout_ms)
{
	struct epoll_event evs[512];
	int n = epoll_wait(ep, evs, 512, timeout_ms);
	for(int i = 0; i < n; i++) conn_io(evs[i].data.ptr, evs[i].events);
}

static void misc_all(void)
{
	for(unsigned i = 0; i < nusers; i++){
		struct conn *c = &conns[i];
		if(!c->dead && c->started && mosquitto_loop_misc(c->mosq) == MOSQ_ERR_SUCCESS) conn_arm(c);
	}
	if(sink.started && !sink.dead){
		mosquitto_loop_misc(sink.mosq);
		conn_arm(&sink);
	}
}

/* ------------------------------------------------------------ publishing */

static int pub_send(struct pub *p, int64_t now)
{
	struct room *r = &rooms[p->room];
	char head[64];
	int hl = snprintf(head, sizeof(head), "%" PRId64 ":%u:%u:", now, p->idx, p->seq + 1);
	size_t body_len = O.size > (unsigned)hl ? O.size : (unsigned)hl;
	memcpy(payload_buf + body_off, head, (size_t)hl);
	if(cmid_off){
		char id[24];
		snprintf(id, sizeof(id), "%08u-%010u", p->idx % 100000000u, p->seq + 1);
		memcpy(payload_buf + cmid_off, id, 19);
	}
	/* padding after the head is already 'x' from setup; close the JSON after body_len */
	size_t total = body_off + body_len;
	payload_buf[total] = '"';
	payload_buf[total + 1] = '}';
	int rc = mosquitto_publish(p->c->mosq, NULL, O.raw ? r->msg_topic : r->send_topic, (int)(total + 2),
			payload_buf, O.qos, false);
	/* restore padding where the terminator was written */
	payload_buf[total] = 'x';
	payload_buf[total + 1] = 'x';
	if(rc){
		conn_dead(p->c, "publish", rc);
		return -1;
	}
	p->seq++;
	p->sent_total++;
	if(now >= t_window_start && now < t_window_end) p->sent_window++;
	if(O.qos == 1 || (O.window && p->echo)) p->inflight++;
	return 0;
}

static bool pub_ready(struct pub *p)
{
	if(p->c->dead || !p->c->connected) return false;
	if(O.qos == 1) return p->inflight < O.window;
	if(O.window && p->echo && p->inflight >= O.window) return false;
	return !mosquitto_want_write(p->c->mosq);
}

/* ------------------------------------------------------------ the DB lag poller */

static atomic_bool db_stop;
static atomic_uint_fast64_t db_rows;
static atomic_uint_fast64_t db_rows_window; /* rows first seen while the window was open */

/* One row seen by the poller: counted, and its lag taken from the stamp in its body. */
static void db_row_seen(int64_t now, const char *body)
{
	atomic_fetch_add(&db_rows, 1);
	if(now >= t_window_start && now < t_window_end) atomic_fetch_add(&db_rows_window, 1);
	if(!body) return;
	char *end;
	long long ts = strtoll(body, &end, 10);
	if(*end != ':') return;
	if(ts >= t_window_start && ts < t_window_end) h_add(&store_lat, now > ts ? (uint64_t)(now - ts) / 1000 : 0);
}

/* The poller on PostgreSQL: the same two queries, prepared on one libpq connection (every
 * poll is one round trip; a committed batch is seen by the next poll, as with SQLite). */
static void db_poller_pg(void)
{
	PGconn *conn = PQconnectdb(O.db_path);
	PGresult *r = NULL;
	int64_t after = 0;
	if(PQstatus(conn) != CONNECTION_OK){
		fprintf(stderr, "mqchat-loadgen: cannot read %s: %s; no stored lag measured\n", O.db_path, PQerrorMessage(conn));
		goto done;
	}
	r = PQexec(conn, "SELECT coalesce(max(id), 0) FROM messages");
	if(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) after = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	r = PQprepare(conn, "poll", "SELECT id, body FROM messages WHERE id > $1::bigint ORDER BY id", 1, NULL);
	if(PQresultStatus(r) != PGRES_COMMAND_OK){
		fprintf(stderr, "mqchat-loadgen: cannot read %s: %s; no stored lag measured\n", O.db_path,
				PQresultErrorMessage(r));
		goto done;
	}
	PQclear(r);
	r = NULL;
	while(!atomic_load(&db_stop)){
		char a[24];
		const char *param = a;
		snprintf(a, sizeof(a), "%" PRId64, after);
		int64_t now = now_ns(); /* as with SQLite: the time the query's snapshot is taken */
		r = PQexecPrepared(conn, "poll", 1, &param, NULL, NULL, 0);
		if(PQresultStatus(r) != PGRES_TUPLES_OK){
			fprintf(stderr, "mqchat-loadgen: polling %s: %s", O.db_path, PQresultErrorMessage(r));
			if(PQstatus(conn) != CONNECTION_OK) PQreset(conn);
		}else{
			for(int t = 0; t < PQntuples(r); t++){
				after = strtoll(PQgetvalue(r, t, 0), NULL, 10);
				db_row_seen(now, PQgetisnull(r, t, 1) ? NULL : PQgetvalue(r, t, 1));
			}
		}
		PQclear(r);
		r = NULL;
		usleep(O.db_poll_ms * 1000);
	}
done:
	PQclear(r);
	PQfinish(conn);
}

static void *db_poller(void *arg)
{
	(void)arg;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t after = 0;
	if(!strncmp(O.db_path, "postgresql://", 13) || !strncmp(O.db_path, "postgres://", 11)){
		db_poller_pg();
		return NULL;
	}
	if(sqlite3_open_v2(O.db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK
			|| sqlite3_busy_timeout(db, 1000) != SQLITE_OK
			|| sqlite3_prepare_v2(db, "SELECT id, body FROM messages WHERE id > ? ORDER BY id", -1, &st, NULL) != SQLITE_OK){
		fprintf(stderr, "mqchat-loadgen: cannot read %s: %s; no stored lag measured\n", O.db_path,
				db ? sqlite3_errmsg(db) : "out of memory");
		goto done;
	}
	/* Only rows stored from now on count: start after the current newest id. */
	{
		sqlite3_stmt *mx = NULL;
		if(sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM messages", -1, &mx, NULL) == SQLITE_OK
				&& sqlite3_step(mx) == SQLITE_ROW) after = sqlite3_column_int64(mx, 0);
		sqlite3_finalize(mx);
	}
	while(!atomic_load(&db_stop)){
		sqlite3_bind_int64(st, 1, after);
		int64_t now = now_ns();
		while(sqlite3_step(st) == SQLITE_ROW){
			after = sqlite3_column_int64(st, 0);
			db_row_seen(now, (const char *)sqlite3_column_text(st, 1));
		}
		sqlite3_reset(st);
		usleep(O.db_poll_ms * 1000);
	}
done:
	sqlite3_finalize(st);
	if(db) sqlite3_close(db);
	return NULL;
}

/* ------------------------------------------------------------ main */

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
		+ (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of a process in seconds, from /proc/PID/stat; -1 if unreadable. */
static double proc_cpu_s(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if(!f) return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	if(!p) return -1;
	unsigned long ut = 0, stime = 0;
	/* after ") ": state(3) ... utime is field 14, stime 15 */
	if(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime) != 2) return -1;
	return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void on_signal(int s)
{
	(void)s;
	stop_flag = 1;
}

static int parse_args(int argc, char **argv)
{
	for(int i = 1; i < argc; i++){
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if(!v){ fprintf(stderr, "mqchat-loadgen: %s needs a value\n", a); return -1; } i++; } while(0)
		if(!strcmp(a, "--host")){ NEEDV(); O.host = v; }
		else if(!strcmp(a, "--port")){ NEEDV(); O.port = atoi(v); }
		else if(!strcmp(a, "--users")){ NEEDV(); O.users = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--users-file")){ NEEDV(); O.users_file = v; }
		else if(!strcmp(a, "--user-prefix")){ NEEDV(); O.user_prefix = v; }
		else if(!strcmp(a, "--first-user")){ NEEDV(); O.first_user = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--password")){ NEEDV(); O.password = v; }
		else if(!strcmp(a, "--password-file")){
			NEEDV();
			FILE *f = fopen(v, "r");
			char b[512];
			if(!f || !fgets(b, sizeof(b), f)){
				fprintf(stderr, "mqchat-loadgen: cannot read password file %s\n", v);
				if(f) fclose(f);
				return -1;
			}
			fclose(f);
			b[strcspn(b, "\r\n")] = '\0';
			O.password = xstrdup(b);
		}
		else if(!strcmp(a, "--rooms-file")){ NEEDV(); O.rooms_file = v; }
		else if(!strcmp(a, "--rooms")){ NEEDV(); O.rooms_max = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--members")){ NEEDV(); /* members come from the rooms file; accepted for symmetry */ }
		else if(!strcmp(a, "--publishers")){ NEEDV(); O.publishers = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--size")){ NEEDV(); O.size = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--qos")){ NEEDV(); O.qos = atoi(v); }
		else if(!strcmp(a, "--rate")){ NEEDV(); O.rate = atof(v); }
		else if(!strcmp(a, "--saturate")) O.saturate = true;
		else if(!strcmp(a, "--window")){ NEEDV(); O.window = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--duration")){ NEEDV(); O.duration = atof(v); }
		else if(!strcmp(a, "--warmup")){ NEEDV(); O.warmup = atof(v); }
		else if(!strcmp(a, "--drain")){ NEEDV(); O.drain = atof(v); }
		else if(!strcmp(a, "--mode")){
			NEEDV();
			if(!strcmp(v, "raw")) O.raw = true;
			else if(!strcmp(v, "mqchat")) O.raw = false;
			else{ fprintf(stderr, "mqchat-loadgen: --mode %s: expected mqchat or raw\n", v); return -1; }
		}
		else if(!strcmp(a, "--topic-prefix")){ NEEDV(); O.prefix = v; }
		else if(!strcmp(a, "--subscribers-per-room")){ NEEDV(); O.subs_per_room = atoi(v); }
		else if(!strcmp(a, "--connect-only")) O.connect_only = true;
		else if(!strcmp(a, "--connect-window")){ NEEDV(); O.connect_window = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--keepalive")){ NEEDV(); O.keepalive = atoi(v); }
		else if(!strcmp(a, "--sink-user")){ NEEDV(); O.sink_user = v; }
		else if(!strcmp(a, "--sink-password")){ NEEDV(); O.sink_password = v; }
		else if(!strcmp(a, "--sink-filter")){ NEEDV(); O.sink_filter = v; }
		else if(!strcmp(a, "--db")){ NEEDV(); O.db_path = v; }
		else if(!strcmp(a, "--db-poll-ms")){ NEEDV(); O.db_poll_ms = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--sent-file")){ NEEDV(); O.sent_file = v; }
		else if(!strcmp(a, "--label")){ NEEDV(); O.label = v; }
		else if(!strcmp(a, "--broker-pid")){ NEEDV(); O.broker_pid = atoi(v); }
		else if(!strcmp(a, "--ready-file")){ NEEDV(); O.ready_file = v; }
		else if(!strcmp(a, "--connect-retries")){ NEEDV(); O.connect_retries = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--reconnect-ms")){ NEEDV(); O.reconnect_ms = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--client-msg-id")) O.client_msg_id = true;
		else if(!strcmp(a, "--nodelay")) O.nodelay = true;
		else if(!strcmp(a, "--passwords-file")){ NEEDV(); O.passwords_file = v; O.users_file = v; }
		else if(!strcmp(a, "--retry-ms")){ NEEDV(); O.retry_ms = (unsigned)strtoul(v, NULL, 10); }
		else if(!strcmp(a, "--retry-for")){ NEEDV(); O.retry_for_s = atof(v); }
		else if(!strcmp(a, "--help") || !strcmp(a, "-h")){ usage(); exit(0); }
		else{
			fprintf(stderr, "mqchat-loadgen: unknown option %s\n", a);
			usage();
			return -1;
		}
#undef NEEDV
	}
	if(O.qos != 0 && O.qos != 1){
		fprintf(stderr, "mqchat-loadgen: --qos %d: expected 0 or 1\n", O.qos);
		return -1;
	}
	if(O.port <= 0 || O.port > 65535){
		fprintf(stderr, "mqchat-loadgen: --port %d is not a port\n", O.port);
		return -1;
	}
	if(!O.connect_only && O.publishers && !O.saturate && O.rate <= 0){
		fprintf(stderr, "mqchat-loadgen: give --rate MSGS/S or --saturate\n");
		return -1;
	}
	/* QoS 1 needs a window in both modes (a rate run without one would never send). */
	if(O.qos == 1 && !O.window) O.window = O.saturate ? 64 : 1000;
	if(O.size > 1 << 20){
		fprintf(stderr, "mqchat-loadgen: --size %u is over 1 MiB\n", O.size);
		return -1;
	}
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max){
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nusers + 64){
		fprintf(stderr, "mqchat-loadgen: open files limit %llu is below %u users: raise ulimit -n\n",
				(unsigned long long)rl.rlim_cur, nusers);
	}
}

/* Connects every user (connect window permitting), then waits for every CONNACK. */
static double connect_all(double *elapsed_out)
{
	int64_t t0 = now_ns(), last_misc = t0;
	unsigned next = 0;
	while(next < nusers || outstanding_connects){
		while(next < nusers && outstanding_connects < O.connect_window){
			if(conn_start(&conns[next], names[next], pwds && pwds[next] ? pwds[next] : O.password, next)) exit(1);
			next++;
		}
		poll_once(next < nusers ? 0 : 10);
		int64_t now = now_ns();
		if(now - last_misc > 1000000000LL){
			misc_all();
			last_misc = now;
		}
		if(now - t0 > 600 * 1000000000LL){
			fprintf(stderr, "mqchat-loadgen: %u CONNACKs still missing after 600 s; giving up on them\n",
					outstanding_connects);
			break;
		}
		if(stop_flag) break;
	}
	double el = (double)(now_ns() - t0) / 1e9;
	*elapsed_out = el;
	return el > 0 ? (double)connects_ok / el : 0;
}

/* Retries every refused or failed connection, up to O.connect_retries rounds 0.5 s apart.
 * Only the first pass counts for the connect figures. */
static void retry_failed(void)
{
	for(unsigned round = 0; round < O.connect_retries && !stop_flag; round++){
		unsigned n = 0;
		int64_t until = now_ns() + (int64_t)O.retry_ms * 1000000LL;
		while(now_ns() < until) poll_once(10);
		outstanding_connects = 0;
		for(unsigned i = 0; i < nusers; i++){
			struct conn *c = &conns[i];
			if(!c->failed) continue;
			if(c->fd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			mosquitto_destroy(c->mosq);
			unsigned *r = c->rooms, nr = c->nrooms, rc_ = c->rooms_cap, np = c->npubs;
			struct pub **pp = c->pubs;
			memset(c, 0, sizeof(*c));
			c->rooms = r; c->nrooms = nr; c->rooms_cap = rc_; c->pubs = pp; c->npubs = np;
			while(outstanding_connects >= O.connect_window) poll_once(10);
			if(conn_start(c, names[i], pwds && pwds[i] ? pwds[i] : O.password, i)) exit(1);
			n++;
		}
		if(!n) return;
		int64_t t0 = now_ns();
		while(outstanding_connects && now_ns() - t0 < 30 * 1000000000LL) poll_once(10);
		unsigned still = 0;
		for(unsigned i = 0; i < nusers; i++) if(conns[i].failed) still++;
		fprintf(stderr, "mqchat-loadgen: retry round %u: %u reconnected, %u still refused\n", round + 1, n - still, still);
		if(!still) return;
	}
}

static int subscribe_all(void)
{
	int64_t t0 = now_ns();
	unsigned want = 0, got;
	for(unsigned i = 0; i < nusers; i++){
		struct conn *c = &conns[i];
		if(!c->connected || c->dead || !c->nrooms) continue;
		char **topics = xcalloc(c->nrooms, sizeof(char *));
		for(unsigned k = 0; k < c->nrooms; k++) topics[k] = rooms[c->rooms[k]].msg_topic;
		int rc = mosquitto_subscribe_multiple(c->mosq, &c->sub_mid, (int)c->nrooms, topics, O.qos, 0, NULL);
		free(topics);
		if(rc){
			conn_dead(c, "subscribe", rc);
			continue;
		}
		conn_arm(c);
		want++;
		if(want % 256 == 0) poll_once(0);
	}
	if(sink.connected){
		char *f = (char *)(O.sink_filter ? O.sink_filter : "chat/rooms/+/messages");
		if(mosquitto_subscribe_multiple(sink.mosq, &sink.sub_mid, 1, &f, O.qos, 0, NULL) == 0) want++;
		conn_arm(&sink);
	}
	for(;;){
		got = 0;
		for(unsigned i = 0; i < nusers; i++) if(conns[i].subscribed) got++;
		if(sink.subscribed) got++;
		if(got >= want || stop_flag) break;
		if(now_ns() - t0 > 60 * 1000000000LL){
			fprintf(stderr, "mqchat-loadgen: only %u of %u SUBACKs after 60 s; going on\n", got, want);
			break;
		}
		poll_once(10);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 1;
	pthread_t db_thread;
	bool db_started = false;

	if(parse_args(argc, argv)) return 2;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	mosquitto_lib_init();
	if(load_users() || load_rooms()) return 2;
	raise_nofile();
	if((ep = epoll_create1(EPOLL_CLOEXEC)) < 0){
		perror("epoll_create1");
		return 1;
	}
	conns = xcalloc(nusers, sizeof(*conns));

	/* Subscriptions: the first S members of each room (all with S < 0). */
	for(unsigned r = 0; r < nrooms && !O.connect_only; r++){
		unsigned s = O.subs_per_room < 0 ? rooms[r].nmembers : (unsigned)O.subs_per_room;
		for(unsigned j = 0; j < rooms[r].nmembers && j < s; j++){
			struct conn *c = &conns[rooms[r].members[j]];
			if(c->nrooms == c->rooms_cap){
				c->rooms_cap = c->rooms_cap ? c->rooms_cap * 2 : 4;
				c->rooms = realloc(c->rooms, c->rooms_cap * sizeof(unsigned));
				if(!c->rooms) return 1;
			}
			c->rooms[c->nrooms++] = r;
		}
	}
	/* Publishers: k sends to room k % R as its member (k / R) % M. */
	if(O.publishers && !nrooms && !O.connect_only){
		fprintf(stderr, "mqchat-loadgen: --publishers needs --rooms-file\n");
		return 2;
	}
	if(O.connect_only) O.publishers = 0;
	pubs = xcalloc(O.publishers, sizeof(*pubs));
	for(unsigned k = 0; k < O.publishers; k++){
		struct room *r = &rooms[k % nrooms];
		if(!r->nmembers){
			fprintf(stderr, "mqchat-loadgen: room %s has no members to publish as\n", r->id);
			return 2;
		}
		struct conn *c = &conns[r->members[(k / nrooms) % r->nmembers]];
		pubs[k].idx = k;
		pubs[k].room = k % nrooms;
		pubs[k].c = c;
		c->pubs = realloc(c->pubs, (c->npubs + 1) * sizeof(*c->pubs));
		if(!c->pubs) return 1;
		c->pubs[c->npubs++] = &pubs[k];
		for(unsigned j = 0; j < c->nrooms; j++) if(c->rooms[j] == pubs[k].room) pubs[k].echo = true;
	}
	/* One payload buffer: {"type":"msg","body":"<head><padding>"}, or with --client-msg-id
	 * {"type":"msg","client_msg_id":"PPPPPPPP-SSSSSSSSSS","body":"..."} (fixed width, patched
	 * per message) */
	{
		static const char pre[] = "{\"type\":\"msg\",\"body\":\"";
		static const char pre_id[] = "{\"type\":\"msg\",\"client_msg_id\":\"00000000-0000000000\",\"body\":\"";
		const char *pr = O.client_msg_id ? pre_id : pre;
		size_t plen = strlen(pr);
		size_t cap = plen + 1 + O.size + 128;
		payload_buf = xcalloc(cap, 1);
		memcpy(payload_buf, pr, plen);
		body_off = plen;
		cmid_off = O.client_msg_id ? strlen("{\"type\":\"msg\",\"client_msg_id\":\"") : 0;
		memset(payload_buf + body_off, 'x', cap - body_off - 1);
	}

	int64_t storm_t0 = now_ns();
	double connect_elapsed = 0, cps = connect_all(&connect_elapsed);
	if(O.connect_only && O.retry_for_s > 0){
		/* a reconnect storm: the refused come back every retry_ms, as clients do */
		uint64_t first_ok = connects_ok, first_failed = connects_failed;
		int64_t last_in = now_ns(), deadline = storm_t0 + (int64_t)(O.retry_for_s * 1e9);
		unsigned rounds = 0;
		for(;;){
			unsigned still = 0;
			for(unsigned i = 0; i < nusers; i++) if(conns[i].failed) still++;
			if(!still || now_ns() >= deadline || stop_flag) break;
			uint64_t before = connects_ok;
			O.connect_retries = 1;
			retry_failed();
			rounds++;
			if(connects_ok > before) last_in = now_ns();
		}
		unsigned still = 0;
		for(unsigned i = 0; i < nusers; i++) if(conns[i].failed) still++;
		double all_in = (double)(last_in - storm_t0) / 1e9;
		printf("{\"label\":\"%s\",\"kind\":\"storm\",\"users\":%u,\"in\":%u,\"out\":%u,\"last_in_s\":%.3f,"
				"\"first_pass_in\":%" PRIu64 ",\"first_pass_refused\":%" PRIu64 ",\"retry_rounds\":%u,\"attempts\":%" PRIu64 "}\n",
				O.label, nusers, nusers - still, still, all_in, first_ok, first_failed, rounds, connects_ok + connects_failed);
		printf("# %s: %u/%u in, the last after %.2f s; %u still out after %.0f s; %u retry rounds, %" PRIu64 " attempts\n",
				O.label, nusers - still, nusers, all_in, still, O.retry_for_s, rounds, connects_ok + connects_failed);
		fflush(stdout);
		for(unsigned i = 0; i < nusers; i++){
			if(conns[i].connected && !conns[i].dead) mosquitto_disconnect(conns[i].mosq);
		}
		rc = 0;
		goto out;
	}
	if(O.connect_only){
		printf("{\"label\":\"%s\",\"kind\":\"connect\",\"users\":%u,\"connected\":%" PRIu64 ",\"failed\":%" PRIu64
				",\"elapsed_s\":%.3f,\"connects_per_s\":%.1f,\"attempts_per_s\":%.1f,\"refused_not_authorised\":%" PRIu64
				",\"refused_other\":%" PRIu64 "}\n",
				O.label, nusers, connects_ok, connects_failed, connect_elapsed, cps,
				connect_elapsed > 0 ? (double)(connects_ok + connects_failed) / connect_elapsed : 0,
				connects_refused[5], connects_failed - connects_refused[5]);
		printf("# %s: %" PRIu64 "/%u connected in %.2f s = %.0f connects/s; %" PRIu64 " failed (%.0f attempts/s)\n",
				O.label, connects_ok, nusers, connect_elapsed, cps, connects_failed,
				connect_elapsed > 0 ? (double)(connects_ok + connects_failed) / connect_elapsed : 0);
		fflush(stdout);
		for(unsigned i = 0; i < nusers; i++){
			if(conns[i].connected && !conns[i].dead) mosquitto_disconnect(conns[i].mosq);
		}
		rc = 0;
		goto out;
	}
	if(O.sink_user){
		if(conn_start(&sink, O.sink_user, O.sink_password ? O.sink_password : "", 0)) return 1;
		sink.is_sink = true;
		int64_t t0 = now_ns();
		while(!sink.connected && !sink.failed && !sink.dead && now_ns() - t0 < 10 * 1000000000LL) poll_once(10);
		if(!sink.connected){
			fprintf(stderr, "mqchat-loadgen: sink user %s could not connect (CONNACK %d)\n", O.sink_user, sink.connack_rc);
			return 1;
		}
	}
	uint64_t first_failed = connects_failed;
	if(connects_failed && O.connect_retries) retry_failed();
	{
		unsigned still = 0;
		int code = 0;
		for(unsigned i = 0; i < nusers; i++) if(conns[i].failed){ still++; code = conns[i].connack_rc; }
		if(still) fprintf(stderr, "mqchat-loadgen: %u of %u users could not connect (a refusal code: %d); "
				"running without them\n", still, nusers, code);
	}
	subscribe_all();
	if(O.ready_file){
		FILE *rf = fopen(O.ready_file, "w");
		if(rf) fclose(rf);
		else fprintf(stderr, "mqchat-loadgen: cannot create %s: %s\n", O.ready_file, strerror(errno));
	}

	int64_t t0 = now_ns();
	t_window_start = t0 + (int64_t)(O.warmup * 1e9);
	t_window_end = t_window_start + (int64_t)(O.duration * 1e9);
	int64_t t_drain_end = t_window_end + (int64_t)(O.drain * 1e9);
	double cpu0 = 0, cpu1 = 0, bcpu0 = -1, bcpu1 = -1;
	if(O.db_path){
		if(pthread_create(&db_thread, NULL, db_poller, NULL) == 0) db_started = true;
	}
	int64_t last_misc = t0, last_delivery_change = t0, last_reconnect_check = t0;
	uint64_t last_delivered_seen = 0, total_sent = 0;
	unsigned rr = 0;
	bool cpu0_taken = false;
	int64_t stopped_at = 0; /* SIGINT/SIGTERM before the window's end: the window ends there */
	for(;;){
		int64_t now = now_ns();
		if(!cpu0_taken && now >= t_window_start){
			cpu0 = cpu_s();
			if(O.broker_pid) bcpu0 = proc_cpu_s(O.broker_pid);
			cpu0_taken = true;
		}
		if(now >= t_window_end && cpu1 == 0){
			cpu1 = cpu_s();
			if(O.broker_pid) bcpu1 = proc_cpu_s(O.broker_pid);
		}
		if(stop_flag){
			if(now < t_window_end){
				stopped_at = now;
				cpu1 = cpu_s();
				if(O.broker_pid) bcpu1 = proc_cpu_s(O.broker_pid);
			}
			break;
		}
		if(now < t_window_end && O.publishers){
			/* How many to send this turn: by rate, or up to 8 per ready publisher. */
			uint64_t budget;
			if(O.saturate) budget = (uint64_t)O.publishers * 8;
			else{
				double due = O.rate * (double)(now - t0) / 1e9;
				budget = due > (double)total_sent ? (uint64_t)(due - (double)total_sent) : 0;
			}
			unsigned idle = 0;
			while(budget && idle < O.publishers){
				struct pub *p = &pubs[rr];
				rr = (rr + 1) % O.publishers;
				if(!pub_ready(p)){
					idle++;
					continue;
				}
				idle = 0;
				if(pub_send(p, now) == 0){
					total_sent++;
					budget--;
				}
				conn_arm(p->c);
			}
		}else if(now >= t_window_end){
			/* Draining: stop when every QoS 1 publish is acked and deliveries stopped for 0.5 s,
			 * or at the drain deadline. */
			uint64_t d = delivered_all + sink_delivered + atomic_load(&db_rows);
			if(d != last_delivered_seen){
				last_delivered_seen = d;
				last_delivery_change = now;
			}
			bool acked = true;
			for(unsigned k = 0; k < O.publishers && O.qos == 1; k++){
				const struct conn *pc = pubs[k].c;
				if(pubs[k].inflight && (!pc->dead || pc->reconnect_at || pc->reconnecting)) acked = false;
			}
			if((acked && now - last_delivery_change > 500000000LL) || now >= t_drain_end) break;
			if(!O.publishers && now >= t_window_end) break;
		}
		if(now - last_misc > 1000000000LL){
			misc_all();
			last_misc = now;
		}
		if(O.reconnect_ms && now - last_reconnect_check > 10000000LL){
			reconnect_due(now);
			last_reconnect_check = now;
		}
		poll_once(1);
	}
	if(cpu1 == 0) cpu1 = cpu_s();
	if(db_started){
		usleep(50 * 1000);
		atomic_store(&db_stop, true);
		pthread_join(db_thread, NULL);
	}

	uint64_t sent_window = 0, sent_total = 0, expected = 0, acked = 0;
	for(unsigned k = 0; k < O.publishers; k++){
		sent_window += pubs[k].sent_window;
		sent_total += pubs[k].sent_total;
		acked += pubs[k].acked;
		expected += pubs[k].sent_window * rooms[pubs[k].room].subscribed;
	}
	uint64_t unique = delivered - dups;
	uint64_t lost = expected > unique ? expected - unique : 0;
	double dur = O.duration;
	if(stopped_at) dur = stopped_at > t_window_start ? (double)(stopped_at - t_window_start) / 1e9 : 1e-3;
	double bcpu = bcpu0 >= 0 && bcpu1 >= 0 ? bcpu1 - bcpu0 : -1;
	uint64_t ndeliv = delivered ? delivered : sink_window;
	double bcpu_per = bcpu >= 0 && ndeliv ? bcpu * 1e6 / (double)ndeliv : -1;
	printf("{\"label\":\"%s\",\"kind\":\"run\",\"mode\":\"%s\",\"qos\":%d,\"users\":%u,\"rooms\":%u,\"publishers\":%u,"
			"\"size\":%u,\"duration_s\":%.1f,\"sent\":%" PRIu64 ",\"sent_total\":%" PRIu64 ",\"acked_total\":%" PRIu64
			",\"delivered\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"duplicates\":%" PRIu64
			",\"gaps\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"deliveries_per_s\":%.1f"
			",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64 ",\"max_us\":%" PRIu64
			",\"sink_delivered\":%" PRIu64 ",\"sink_per_s\":%.1f,\"sink_p99_us\":%" PRIu64 ",\"sink_recv_per_s\":%.1f"
			",\"stored_rows\":%" PRIu64 ",\"stored_lag_p50_us\":%" PRIu64 ",\"stored_lag_p99_us\":%" PRIu64
			",\"stored_lag_p999_us\":%" PRIu64 ",\"stored_lag_n\":%" PRIu64 ",\"stored_in_window\":%" PRIu64
			",\"connect_s\":%.3f,\"connects_per_s\":%.1f,\"connect_failures\":%" PRIu64 ",\"dropped\":%" PRIu64
			",\"reconnects\":%" PRIu64 ",\"client_cpu_s\":%.2f,\"broker_cpu_s\":%.2f,\"broker_cpu_us_per_delivery\":%.3f}\n",
			O.label, O.raw ? "raw" : "mqchat", O.qos, nusers, nrooms, O.publishers, O.size, dur, sent_window, sent_total, acked,
			delivered, expected, lost, dups, gaps, (double)sent_window / dur, (double)delivered / dur,
			h_pct(&lat, 50), h_pct(&lat, 99), h_pct(&lat, 99.9), lat.max,
			sink_window, (double)sink_window / dur, h_pct(&sink_lat, 99), (double)sink_recv_window / dur,
			(uint64_t)atomic_load(&db_rows), h_pct(&store_lat, 50), h_pct(&store_lat, 99), h_pct(&store_lat, 99.9), store_lat.count,
			(uint64_t)atomic_load(&db_rows_window),
			connect_elapsed, cps, first_failed, dropped, reconnects, cpu1 - cpu0, bcpu, bcpu_per);
	printf("# %s %s qos%d: sent %" PRIu64 " (%.0f msg/s), delivered %" PRIu64 " of %" PRIu64 " (%.0f/s), lost %" PRIu64
			", dup %" PRIu64 ", latency p50/p99/p99.9 %" PRIu64 "/%" PRIu64 "/%" PRIu64 " us, connect %.2f s (%.0f/s), loadgen cpu %.0f%%, broker cpu %.0f%% = %.2f us/delivery\n",
			O.label, O.raw ? "raw" : "mqchat", O.qos, sent_window, (double)sent_window / dur, delivered, expected,
			(double)delivered / dur, lost, dups, h_pct(&lat, 50), h_pct(&lat, 99), h_pct(&lat, 99.9),
			connect_elapsed, cps, 100.0 * (cpu1 - cpu0) / dur, 100.0 * bcpu / dur, bcpu_per);
	if(dropped) printf("# %s: %" PRIu64 " connections closed by the broker, %" PRIu64 " reconnects\n", O.label, dropped, reconnects);
	fflush(stdout);
	if(O.sent_file){
		FILE *f = fopen(O.sent_file, "w");
		if(!f){
			fprintf(stderr, "mqchat-loadgen: cannot write %s: %s\n", O.sent_file, strerror(errno));
		}else{
			/* "publisher sent acknowledged": acks come in order on one connection, so seq
			 * 1..acknowledged were acknowledged; the rest were sent on a connection the
			 * broker closed without acknowledging them ("try again later"). */
			for(unsigned k = 0; k < O.publishers; k++){
				fprintf(f, "%u %" PRIu64 " %" PRIu64 "\n", k, pubs[k].sent_total, O.qos ? pubs[k].acked : pubs[k].sent_total);
			}
			fclose(f);
		}
	}
	rc = 0;
out:
	for(unsigned i = 0; i < nusers; i++){
		if(conns[i].mosq){
			if(conns[i].connected && !conns[i].dead) mosquitto_disconnect(conns[i].mosq);
			mosquitto_destroy(conns[i].mosq);
		}
	}
	if(sink.mosq) mosquitto_destroy(sink.mosq);
	mosquitto_lib_cleanup();
	return rc;
}
