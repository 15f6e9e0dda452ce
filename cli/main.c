/*
 * mqchat: the terminal client (issue 10). libmosquitto (MQTT 5) + jansson.
 *
 *   mqchat [options] rooms | contacts | history ROOM | send ROOM TEXT | listen
 *                    | room create [--name X] USER... | chat ROOM
 *
 * Every request goes to <prefix>/users/<me>/req with a req_id and an MQTT 5 response topic
 * of this process's own (<prefix>/users/<me>/res/cli-<pid>); `--json` prints the answers'
 * JSON instead of lines. `chat ROOM` is interactive: it prints the room's last messages,
 * then every message as it comes, and sends each line typed.
 *
 * Credentials: --user or $MQCHAT_USER; the secret (a password or a device token) from
 * $MQCHAT_PASSWORD, --password-file F, or the config file (~/.config/mqchat/config, or
 * --config F: lines "user = ...", "password = ...", "host = ...", "port = ..."). Never
 * from the command line, where every user of the machine can read it (ps).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#define TIMEOUT_MS 10000

struct cfg {
	char host[256], user[128], prefix[64];
	char *secret;
	int port;
	bool json;
};

static struct {
	struct mosquitto *m;
	struct cfg *cfg;
	char res[256];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool connected, failed, subscribed;
	int connack;
	json_t *answer;       /* the answer waited for */
	char want_id[64];
	int pub_mid, pub_rc;  /* the publish waited for, and its PUBACK reason (-1 while waiting) */
	bool live;            /* print chat messages and events as they come */
	char live_room[128];  /* only this room's (chat), or all ("") */
} G = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .pub_rc = -1 };

static volatile sig_atomic_t stop_flag;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("mqchat: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static const char usage_main[] =
"usage: mqchat [options] COMMAND [ARGS]\n"
"\n"
"Commands (each takes --help):\n"
"  rooms                    my rooms, most recent first: id, unread, name, last message\n"
"  contacts                 the users I share a room with or added\n"
"  history ROOM [--limit N] the room's latest messages, oldest first\n"
"  send ROOM TEXT           send a message (TEXT may be - for standard input)\n"
"  listen                   print every message and event as it comes (Ctrl-C stops)\n"
"  room create [--name X] USER...   a direct room (one user) or a group (several)\n"
"  chat ROOM                interactive: the room's messages as they come; each line\n"
"                           typed is sent (Ctrl-D or Ctrl-C leaves)\n"
"\n"
"Options:\n"
"  --host H, --port P       the broker (default 127.0.0.1:1883; $MQCHAT_HOST, $MQCHAT_PORT)\n"
"  --user U                 my user id ($MQCHAT_USER)\n"
"  --password-file F        read the password or device token from F (first line)\n"
"  --config F               a config file (default ~/.config/mqchat/config)\n"
"  --prefix P               the topic prefix (default chat)\n"
"  --json                   print the server's JSON answers instead of lines\n"
"The secret comes from $MQCHAT_PASSWORD, --password-file or the config file's\n"
"\"password = ...\", never from the command line.\n";

/* ------------------------------------------------------------------ MQTT */

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *p)
{
	(void)m; (void)obj; (void)flags; (void)p;
	pthread_mutex_lock(&G.mu);
	G.connack = rc;
	if(rc == 0) G.connected = true;
	else G.failed = true;
	pthread_cond_broadcast(&G.cv);
	pthread_mutex_unlock(&G.mu);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *p)
{
	(void)m; (void)obj; (void)p;
	pthread_mutex_lock(&G.mu);
	if(!G.connected) G.failed = true;
	G.connected = false;
	if(rc && G.pub_rc == -1) G.pub_rc = -2;
	pthread_cond_broadcast(&G.cv);
	pthread_mutex_unlock(&G.mu);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted, const mosquitto_property *p)
{
	(void)m; (void)obj; (void)mid; (void)n; (void)granted; (void)p;
	pthread_mutex_lock(&G.mu);
	G.subscribed = true;
	pthread_cond_broadcast(&G.cv);
	pthread_mutex_unlock(&G.mu);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *p)
{
	(void)m; (void)obj; (void)p;
	pthread_mutex_lock(&G.mu);
	if(mid == G.pub_mid) G.pub_rc = reason;
	pthread_cond_broadcast(&G.cv);
	pthread_mutex_unlock(&G.mu);
}

static void print_message(const char *room, json_t *msg)
{
	if(G.cfg->json){
		char *s = json_dumps(msg, JSON_COMPACT);
		if(s) printf("%s\n", s);
		free(s);
		fflush(stdout);
		return;
	}
	time_t t = (time_t)(json_integer_value(json_object_get(msg, "ts")) / 1000);
	struct tm tm;
	char when[16];
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%H:%M", &tm);
	const char *from = json_string_value(json_object_get(msg, "from"));
	const char *body = json_string_value(json_object_get(msg, "body"));
	const char *url = json_string_value(json_object_get(json_object_get(msg, "attachment"), "url"));
	if(G.live_room[0]) printf("%s %s: %s%s%s\n", when, from ? from : "?", body ? body : "", body && url ? " " : "", url ? url : "");
	else printf("[%s] %s %s: %s%s%s\n", room, when, from ? from : "?", body ? body : "", body && url ? " " : "", url ? url : "");
	fflush(stdout);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg, const mosquitto_property *p)
{
	(void)m; (void)obj; (void)p;
	json_t *j = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL);
	if(!j) return;
	if(!strcmp(msg->topic, G.res)){
		const char *id = json_string_value(json_object_get(j, "req_id"));
		pthread_mutex_lock(&G.mu);
		if(id && !strcmp(id, G.want_id) && !G.answer){
			G.answer = j;
			j = NULL;
			pthread_cond_broadcast(&G.cv);
		}
		pthread_mutex_unlock(&G.mu);
		json_decref(j);
		return;
	}
	if(G.live){
		char pre[128];
		size_t pl = (size_t)snprintf(pre, sizeof(pre), "%s/rooms/", G.cfg->prefix);
		const char *room = !strncmp(msg->topic, pre, pl) ? msg->topic + pl : NULL;
		if(room){
			char r[128];
			snprintf(r, sizeof(r), "%.*s", (int)strcspn(room, "/"), room);
			if(!G.live_room[0] || !strcmp(r, G.live_room)) print_message(r, j);
		}else if(!G.live_room[0]){
			const char *ev = json_string_value(json_object_get(j, "event"));
			if(G.cfg->json){
				char *s = json_dumps(j, JSON_COMPACT);
				if(s) printf("%s\n", s);
				free(s);
			}else{
				printf("* %s %s (by %s)\n", ev ? ev : "event", json_string_value(json_object_get(j, "room")),
						json_string_value(json_object_get(j, "by")));
			}
			fflush(stdout);
		}
	}
	json_decref(j);
}

static bool wait_until(bool *flag, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if(ts.tv_nsec >= 1000000000L){ ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
	pthread_mutex_lock(&G.mu);
	while(!*flag && !G.failed){
		if(pthread_cond_timedwait(&G.cv, &G.mu, &ts) == ETIMEDOUT) break;
	}
	bool ok = *flag;
	pthread_mutex_unlock(&G.mu);
	return ok;
}

static void start(struct cfg *c, bool live)
{
	G.cfg = c;
	G.live = live;
	mosquitto_lib_init();
	char cid[192];
	snprintf(cid, sizeof(cid), "%s:cli-%d", c->user, (int)getpid());
	snprintf(G.res, sizeof(G.res), "%s/users/%s/res/cli-%d", c->prefix, c->user, (int)getpid());
	G.m = mosquitto_new(cid, true, NULL);
	if(!G.m) die("out of memory");
	mosquitto_int_option(G.m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(G.m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_username_pw_set(G.m, c->user, c->secret);
	mosquitto_connect_v5_callback_set(G.m, on_connect);
	mosquitto_disconnect_v5_callback_set(G.m, on_disconnect);
	mosquitto_subscribe_v5_callback_set(G.m, on_subscribe);
	mosquitto_publish_v5_callback_set(G.m, on_publish);
	mosquitto_message_v5_callback_set(G.m, on_message);
	int rc = mosquitto_connect(G.m, c->host, c->port, 60);
	if(rc) die("cannot reach %s:%d: %s", c->host, c->port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	mosquitto_loop_start(G.m);
	if(!wait_until(&G.connected, TIMEOUT_MS)){
		if(G.connack == MQTT_RC_NOT_AUTHORIZED || G.connack == MQTT_RC_BAD_USERNAME_OR_PASSWORD){
			die("%s:%d refused the login of %s: wrong user, password or token, or a client id rule (the broker's log "
					"says which)", c->host, c->port, c->user);
		}
		die("%s:%d closed the connection before letting %s in: the server is busy, try again in a moment", c->host,
				c->port, c->user);
	}
	char f1[256], f2[256], f3[256];
	snprintf(f1, sizeof(f1), "%s", G.res);
	snprintf(f2, sizeof(f2), "%s/users/%s/events", c->prefix, c->user);
	snprintf(f3, sizeof(f3), "%s/rooms/+/messages", c->prefix);
	char *subs[3] = { f1, f2, f3 };
	mosquitto_subscribe_multiple(G.m, NULL, live ? 3 : 1, subs, 1, 0, NULL);
	if(!wait_until(&G.subscribed, TIMEOUT_MS)) die("no SUBACK from %s:%d", c->host, c->port);
}

static void finish(void)
{
	mosquitto_disconnect(G.m);
	mosquitto_loop_stop(G.m, false);
	mosquitto_destroy(G.m);
	mosquitto_lib_cleanup();
}

/* Sends a request (its JSON object is stolen) and returns the answer's result; on an
 * error answer prints it in words and exits. */
static json_t *request(json_t *req)
{
	static unsigned seq;
	pthread_mutex_lock(&G.mu);
	snprintf(G.want_id, sizeof(G.want_id), "cli-%u", ++seq);
	json_decref(G.answer);
	G.answer = NULL;
	pthread_mutex_unlock(&G.mu);
	json_object_set_new(req, "req_id", json_string(G.want_id));
	char *s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	char topic[256];
	snprintf(topic, sizeof(topic), "%s/users/%s/req", G.cfg->prefix, G.cfg->user);
	mosquitto_property *props = NULL;
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, G.res);
	int rc = mosquitto_publish_v5(G.m, NULL, topic, (int)strlen(s), s, 1, false, props);
	mosquitto_property_free_all(&props);
	free(s);
	if(rc) die("cannot send the request: %s", mosquitto_strerror(rc));
	bool got = false;
	for(int i = 0; i < TIMEOUT_MS / 50 && !got; i++){
		pthread_mutex_lock(&G.mu);
		got = G.answer != NULL;
		pthread_mutex_unlock(&G.mu);
		if(!got) usleep(50000);
	}
	if(!got) die("no answer in %d s (is the bridge running?)", TIMEOUT_MS / 1000);
	pthread_mutex_lock(&G.mu);
	json_t *a = G.answer;
	G.answer = NULL;
	pthread_mutex_unlock(&G.mu);
	if(!json_is_true(json_object_get(a, "ok"))){
		json_t *e = json_object_get(a, "error");
		fprintf(stderr, "mqchat: %s: %s\n", json_string_value(json_object_get(e, "code")),
				json_string_value(json_object_get(e, "message")));
		json_decref(a);
		finish();
		exit(2);
	}
	json_t *r = json_incref(json_object_get(a, "result"));
	json_decref(a);
	return r;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if(s) printf("%s\n", s);
	free(s);
}

static const char *room_label(json_t *r, const char *me, char *buf, size_t n)
{
	const char *name = json_string_value(json_object_get(r, "name"));
	if(name) return name;
	buf[0] = '\0';
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(r, "participants"), i, p){
		const char *u = json_string_value(p);
		if(!u || !strcmp(u, me)) continue;
		size_t l = strlen(buf);
		snprintf(buf + l, n - l, "%s%s", l ? ", " : "", u);
	}
	return buf;
}

/* ------------------------------------------------------------------ commands */

static bool want_help(int argc, char **argv, const char *text)
{
	for(int i = 0; i < argc; i++){
		if(!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")){
			fputs(text, stdout);
			return true;
		}
	}
	return false;
}

static int cmd_rooms(struct cfg *c, int argc, char **argv)
{
	if(want_help(argc, argv, "usage: mqchat rooms [--json]\n  my rooms, most recent first: id, unread, name, last message\n")) return 0;
	start(c, false);
	json_t *r = request(json_pack("{s:s, s:i}", "op", "rooms.list", "limit", 100));
	if(c->json) print_json(r);
	else{
		size_t i;
		json_t *room;
		json_array_foreach(json_object_get(r, "rooms"), i, room){
			char buf[512];
			json_t *last = json_object_get(room, "last_message");
			printf("%s\t%" JSON_INTEGER_FORMAT "\t%s\t%s%s%s\n", json_string_value(json_object_get(room, "id")),
					json_integer_value(json_object_get(room, "unread")), room_label(room, c->user, buf, sizeof(buf)),
					last ? json_string_value(json_object_get(last, "from")) : "", last ? ": " : "",
					last && json_string_value(json_object_get(last, "body")) ? json_string_value(json_object_get(last, "body")) : "");
		}
	}
	json_decref(r);
	finish();
	return 0;
}

static int cmd_contacts(struct cfg *c, int argc, char **argv)
{
	if(want_help(argc, argv, "usage: mqchat contacts [--json]\n  the users I share a room with or added: user, display name\n")) return 0;
	start(c, false);
	json_t *r = request(json_pack("{s:s}", "op", "contacts.list"));
	if(c->json) print_json(r);
	else{
		size_t i;
		json_t *k;
		json_array_foreach(json_object_get(r, "contacts"), i, k){
			const char *dn = json_string_value(json_object_get(k, "display_name"));
			printf("%s\t%s\n", json_string_value(json_object_get(k, "user")), dn ? dn : "");
		}
	}
	json_decref(r);
	finish();
	return 0;
}

static int cmd_history(struct cfg *c, int argc, char **argv)
{
	if(want_help(argc, argv, "usage: mqchat history ROOM [--limit N] [--json]\n  the room's latest N (20) messages, oldest first\n")) return 0;
	const char *room = NULL;
	int limit = 20;
	for(int i = 0; i < argc; i++){
		if(!strcmp(argv[i], "--limit") && i + 1 < argc) limit = atoi(argv[++i]);
		else if(!room) room = argv[i];
		else die("history: unexpected argument %s", argv[i]);
	}
	if(!room) die("history: which room? (mqchat rooms lists them)");
	start(c, false);
	json_t *r = request(json_pack("{s:s, s:s, s:i}", "op", "history", "room", room, "limit", limit));
	if(c->json) print_json(r);
	else{
		json_t *msgs = json_object_get(r, "messages");
		snprintf(G.live_room, sizeof(G.live_room), "%s", room);
		for(size_t i = json_array_size(msgs); i-- > 0;) print_message(room, json_array_get(msgs, i));
	}
	json_decref(r);
	finish();
	return 0;
}

static char *client_msg_id(void)
{
	static char id[64];
	unsigned char b[12];
	FILE *f = fopen("/dev/urandom", "rb");
	if(!f || fread(b, 1, sizeof(b), f) != sizeof(b)) die("no randomness for a client_msg_id");
	fclose(f);
	for(size_t i = 0; i < sizeof(b); i++) sprintf(id + 2 * i, "%02x", b[i]);
	return id;
}

/* Publishes one message to room (QoS 1) and waits for its PUBACK. 0, or a message why not. */
static const char *send_one(const char *room, const char *text)
{
	json_t *msg = json_pack("{s:s, s:s, s:s}", "type", "msg", "body", text, "client_msg_id", client_msg_id());
	char *s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	char topic[256];
	snprintf(topic, sizeof(topic), "%s/rooms/%s/send", G.cfg->prefix, room);
	pthread_mutex_lock(&G.mu);
	G.pub_rc = -1;
	int rc = mosquitto_publish_v5(G.m, &G.pub_mid, topic, (int)strlen(s), s, 1, false, NULL);
	pthread_mutex_unlock(&G.mu);
	free(s);
	if(rc) return mosquitto_strerror(rc);
	for(int i = 0; i < TIMEOUT_MS / 20; i++){
		pthread_mutex_lock(&G.mu);
		int r = G.pub_rc;
		pthread_mutex_unlock(&G.mu);
		if(r == -2) return "the server closed the connection without acknowledging it (busy or over a rate): try again";
		if(r >= 0x80) return "refused (not a participant, the room is disabled, or the message is invalid)";
		if(r >= 0) return NULL;
		usleep(20000);
	}
	return "no acknowledgement in 10 s";
}

static int cmd_send(struct cfg *c, int argc, char **argv)
{
	if(want_help(argc, argv, "usage: mqchat send ROOM TEXT\n  send TEXT (- reads it from standard input) to ROOM; exits 0 once the server has it\n")) return 0;
	if(argc != 2) die("send: expected ROOM and TEXT");
	char *text = argv[1], *line = NULL;
	if(!strcmp(text, "-")){
		size_t cap = 0;
		ssize_t n = getdelim(&line, &cap, '\0', stdin);
		if(n <= 0) die("send: nothing on standard input");
		while(n && (line[n - 1] == '\n')) line[--n] = '\0';
		text = line;
	}
	start(c, false);
	const char *why = send_one(argv[0], text);
	free(line);
	finish();
	if(why) die("send: %s", why);
	return 0;
}

static void on_sig(int s)
{
	(void)s;
	stop_flag = 1;
}

static int cmd_listen(struct cfg *c, int argc, char **argv)
{
	if(want_help(argc, argv, "usage: mqchat listen [--json]\n  every message of my rooms and every event, as they come; Ctrl-C stops\n")) return 0;
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	start(c, true);
	while(!stop_flag) usleep(100000);
	finish();
	return 0;
}

static int cmd_room(struct cfg *c, int argc, char **argv)
{
	const char *help = "usage: mqchat room create [--name X] USER...\n  one USER: our direct room (made if missing); more: a new group with me\n";
	if(want_help(argc, argv, help)) return 0;
	if(argc < 1 || strcmp(argv[0], "create")) die("room: expected 'create' (mqchat room --help)");
	json_t *users = json_array();
	const char *name = NULL;
	for(int i = 1; i < argc; i++){
		if(!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
		else json_array_append_new(users, json_string(argv[i]));
	}
	if(!json_array_size(users)) die("room create: name at least one user");
	start(c, false);
	json_t *req = json_pack("{s:s, s:o}", "op", "room.create", "participants", users);
	if(name) json_object_set_new(req, "name", json_string(name));
	json_t *r = request(req);
	if(c->json) print_json(r);
	else printf("%s\n", json_string_value(json_object_get(r, "id")));
	json_decref(r);
	finish();
	return 0;
}

static int cmd_chat(struct cfg *c, int argc, char **argv)
{
	if(want_help(argc, argv, "usage: mqchat chat ROOM\n  the room's last 20 messages, then each as it comes; every line typed is sent.\n"
				"  Ctrl-D or Ctrl-C leaves.\n")) return 0;
	if(argc != 1) die("chat: expected ROOM");
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	snprintf(G.live_room, sizeof(G.live_room), "%s", argv[0]);
	start(c, false);
	json_t *r = request(json_pack("{s:s, s:s, s:i}", "op", "history", "room", argv[0], "limit", 20));
	json_t *msgs = json_object_get(r, "messages");
	for(size_t i = json_array_size(msgs); i-- > 0;) print_message(argv[0], json_array_get(msgs, i));
	json_decref(r);
	/* live from here: the room's messages (our own come back stamped) */
	char f[256];
	snprintf(f, sizeof(f), "%s/rooms/%s/messages", c->prefix, argv[0]);
	G.live = true;
	mosquitto_subscribe(G.m, NULL, f, 1);
	printf("-- in %s as %s; type a message and Enter (Ctrl-D leaves)\n", argv[0], c->user);
	fflush(stdout);
	char *line = NULL;
	size_t cap = 0;
	while(!stop_flag){
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		int n = poll(&pfd, 1, 200);
		if(n <= 0) continue;
		ssize_t len = getline(&line, &cap, stdin);
		if(len < 0) break;
		while(len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
		if(!len) continue;
		const char *why = send_one(argv[0], line);
		if(why){
			printf("-- not sent: %s\n", why);
			fflush(stdout);
		}
	}
	free(line);
	finish();
	return 0;
}

/* ------------------------------------------------------------------ configuration */

static char *trim(char *s)
{
	while(*s == ' ' || *s == '\t') s++;
	size_t n = strlen(s);
	while(n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
	return s;
}

static void read_config(struct cfg *c, const char *path, bool must)
{
	FILE *f = fopen(path, "r");
	if(!f){
		if(must) die("cannot read the config file %s: %s", path, strerror(errno));
		return;
	}
	char line[1024];
	while(fgets(line, sizeof(line), f)){
		char *l = trim(line);
		if(!*l || *l == '#') continue;
		char *eq = strchr(l, '=');
		if(!eq) continue;
		*eq = '\0';
		char *k = trim(l), *v = trim(eq + 1);
		if(!strcmp(k, "user")) snprintf(c->user, sizeof(c->user), "%s", v);
		else if(!strcmp(k, "host")) snprintf(c->host, sizeof(c->host), "%s", v);
		else if(!strcmp(k, "port")) c->port = atoi(v);
		else if(!strcmp(k, "prefix")) snprintf(c->prefix, sizeof(c->prefix), "%s", v);
		else if(!strcmp(k, "password")){ free(c->secret); c->secret = strdup(v); }
	}
	fclose(f);
}

static char *read_secret_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if(!f) die("cannot read %s: %s", path, strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	if(n <= 0) die("%s is empty", path);
	while(n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
	return line;
}

int main(int argc, char **argv)
{
	struct cfg c = { .host = "127.0.0.1", .port = 1883, .prefix = "chat" };
	const char *config = NULL, *pwfile = NULL;
	int i = 1;
	/* options before the command (and --json anywhere) */
	for(; i < argc && argv[i][0] == '-'; i++){
		const char *a = argv[i];
		if(!strcmp(a, "--help") || !strcmp(a, "-h")){ fputs(usage_main, stdout); return 0; }
		if(!strcmp(a, "--json")){ c.json = true; continue; }
		if(!strcmp(a, "--password") || !strcmp(a, "-P")) die("%s: secrets are never taken from the command line (use $MQCHAT_PASSWORD, --password-file or the config file)", a);
		if(i + 1 >= argc) die("option %s needs a value", a);
		const char *v = argv[++i];
		if(!strcmp(a, "--host")) snprintf(c.host, sizeof(c.host), "%s", v);
		else if(!strcmp(a, "--port")) c.port = atoi(v);
		else if(!strcmp(a, "--user") || !strcmp(a, "-u")) snprintf(c.user, sizeof(c.user), "%s", v);
		else if(!strcmp(a, "--password-file")) pwfile = v;
		else if(!strcmp(a, "--config")) config = v;
		else if(!strcmp(a, "--prefix")) snprintf(c.prefix, sizeof(c.prefix), "%s", v);
		else die("unknown option %s (mqchat --help)", a);
	}
	if(i >= argc){ fputs(usage_main, stderr); return 1; }
	const char *cmd = argv[i++];
	/* --json may also follow the command */
	int n = 0;
	char **rest = calloc((size_t)(argc - i + 1), sizeof(char *));
	for(; i < argc; i++){
		if(!strcmp(argv[i], "--json")) c.json = true;
		else rest[n++] = argv[i];
	}
	bool help = false;
	for(int k = 0; k < n; k++) if(!strcmp(rest[k], "--help") || !strcmp(rest[k], "-h")) help = true;
	if(!help){
		char def[1024];
		const char *home = getenv("HOME");
		if(config) read_config(&c, config, true);
		else if(home){
			snprintf(def, sizeof(def), "%s/.config/mqchat/config", home);
			read_config(&c, def, false);
		}
		if(getenv("MQCHAT_HOST")) snprintf(c.host, sizeof(c.host), "%s", getenv("MQCHAT_HOST"));
		if(getenv("MQCHAT_PORT")) c.port = atoi(getenv("MQCHAT_PORT"));
		if(getenv("MQCHAT_USER") && !c.user[0]) snprintf(c.user, sizeof(c.user), "%s", getenv("MQCHAT_USER"));
		if(getenv("MQCHAT_PASSWORD")){ free(c.secret); c.secret = strdup(getenv("MQCHAT_PASSWORD")); }
		if(pwfile){ free(c.secret); c.secret = read_secret_file(pwfile); }
		if(!c.user[0]) die("who am I? --user U, $MQCHAT_USER or \"user = U\" in the config file");
		if(!c.secret) die("no password or token: $MQCHAT_PASSWORD, --password-file F or \"password = ...\" in the config file");
	}
	int rc;
	if(!strcmp(cmd, "rooms")) rc = cmd_rooms(&c, n, rest);
	else if(!strcmp(cmd, "contacts")) rc = cmd_contacts(&c, n, rest);
	else if(!strcmp(cmd, "history")) rc = cmd_history(&c, n, rest);
	else if(!strcmp(cmd, "send")) rc = cmd_send(&c, n, rest);
	else if(!strcmp(cmd, "listen")) rc = cmd_listen(&c, n, rest);
	else if(!strcmp(cmd, "room")) rc = cmd_room(&c, n, rest);
	else if(!strcmp(cmd, "chat")) rc = cmd_chat(&c, n, rest);
	else die("unknown command '%s' (mqchat --help)", cmd);
	free(rest);
	if(c.secret) memset(c.secret, 0, strlen(c.secret));
	free(c.secret);
	return rc;
}
