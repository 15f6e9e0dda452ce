/*
 * mqchat-ctlbench: how long a membership change takes to reach the delivery path
 * (issue 4, scenario 5), against a running broker with the plugin.
 *
 * Each round, as the service user it publishes a room's new state on $CONTROL/mqchat/v1
 * (QoS 1) adding the watcher, waits for the PUBACK, and at once has the sender publish to
 * the room: the watcher (subscribed through chat/rooms/+/messages) must get it. Then a
 * second change removes the watcher and the sender publishes again: the watcher must not
 * get that one. The round ends when the sender sees its own echo of it: the broker has
 * then made every delivery decision for that message (the plugin's publishes are routed
 * in the broker's next loop pass, with the membership of that moment).
 *
 * The broker applies a control message before it answers the PUBACK, so the control RTT
 * bounds the time from "change sent" to "change visible". A plain QoS 1 publish of the
 * same size by the same client, measured in the same run, is the baseline.
 *
 * Usage: mqchat-ctlbench PORT SERVICE_USER SERVICE_PW ROOM SENDER WATCHER PASSWORD START_VERSION ROUNDS
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

struct cl {
	struct mosquitto *m;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int acked_mid;
	int connected;
	char last[256];
	int got;
};

static int64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void on_connect(struct mosquitto *m, void *o, int rc)
{
	(void)m;
	struct cl *c = o;
	pthread_mutex_lock(&c->mu);
	c->connected = rc == 0 ? 1 : -1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void on_publish(struct mosquitto *m, void *o, int mid)
{
	(void)m;
	struct cl *c = o;
	pthread_mutex_lock(&c->mu);
	c->acked_mid = mid;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void on_message(struct mosquitto *m, void *o, const struct mosquitto_message *msg)
{
	(void)m;
	struct cl *c = o;
	pthread_mutex_lock(&c->mu);
	snprintf(c->last, sizeof(c->last), "%.*s", msg->payloadlen, (const char *)msg->payload);
	c->got++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static int wait_until(struct cl *c, int (*pred)(struct cl *, const void *), const void *arg, int ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if(dl.tv_nsec >= 1000000000L){
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	int ok;
	while(!(ok = pred(c, arg)) && pthread_cond_timedwait(&c->cv, &c->mu, &dl) == 0){}
	if(!ok) ok = pred(c, arg);
	pthread_mutex_unlock(&c->mu);
	return ok;
}

static int p_connected(struct cl *c, const void *a) { (void)a; return c->connected != 0; }
static int p_acked(struct cl *c, const void *a) { return c->acked_mid == *(const int *)a; }
static int p_has(struct cl *c, const void *a) { return strstr(c->last, (const char *)a) != NULL; }

static struct cl *client(int port, const char *user, const char *pw, const char *id)
{
	struct cl *c = calloc(1, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->m = mosquitto_new(id, true, c);
	mosquitto_username_pw_set(c->m, user, pw);
	mosquitto_connect_callback_set(c->m, on_connect);
	mosquitto_publish_callback_set(c->m, on_publish);
	mosquitto_message_callback_set(c->m, on_message);
	if(mosquitto_connect(c->m, "127.0.0.1", port, 60) || mosquitto_loop_start(c->m)
			|| !wait_until(c, p_connected, NULL, 5000) || c->connected < 0){
		fprintf(stderr, "ctlbench: %s cannot connect\n", user);
		exit(1);
	}
	return c;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void report(const char *what, int64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp64);
	printf("%-34s p50 %6" PRId64 " us  p99 %6" PRId64 " us  max %6" PRId64 " us  (n=%d)\n", what,
			v[n / 2], v[(n * 99) / 100], v[n - 1], n);
}

static int publish_acked(struct cl *c, const char *topic, const char *payload, int64_t *rtt)
{
	int mid;
	int64_t t0 = now_us();
	if(mosquitto_publish(c->m, &mid, topic, (int)strlen(payload), payload, 1, false)) return -1;
	if(!wait_until(c, p_acked, &mid, 5000)) return -1;
	*rtt = now_us() - t0;
	return 0;
}

int main(int argc, char **argv)
{
	if(argc != 10){
		fprintf(stderr, "usage: %s PORT SERVICE_USER SERVICE_PW ROOM SENDER WATCHER PASSWORD START_VERSION ROUNDS\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]);
	const char *svc = argv[2], *svcpw = argv[3], *room = argv[4], *sender = argv[5], *watcher = argv[6];
	const char *pw = argv[7];
	long long version = atoll(argv[8]);
	int rounds = atoi(argv[9]);
	char topic_send[256], payload[512], marker[64];
	int violations = 0, missed = 0;

	mosquitto_lib_init();
	struct cl *s = client(port, svc, svcpw, svc);
	struct cl *snd = client(port, sender, pw, sender);
	struct cl *w = client(port, watcher, pw, watcher);
	mosquitto_subscribe(w->m, NULL, "chat/rooms/+/messages", 0);
	snprintf(topic_send, sizeof(topic_send), "chat/rooms/%s/send", room);
	/* The wildcard: the sender may not be a participant yet when it subscribes. */
	mosquitto_subscribe(snd->m, NULL, "chat/rooms/+/messages", 0);

	int64_t *ctl = calloc((size_t)rounds * 2, sizeof(int64_t));
	int64_t *base = calloc((size_t)rounds, sizeof(int64_t));
	int64_t *vis = calloc((size_t)rounds, sizeof(int64_t));
	int nctl = 0;
	struct timespec pause = {0, 200000};
	nanosleep(&pause, NULL);

	for(int i = 0; i < rounds; i++){
		int64_t rtt;
		/* Baseline: the same client, a QoS 1 publish of similar size that no plugin op handles. */
		snprintf(payload, sizeof(payload),
				"{\"event\":\"bench\",\"room\":\"%s\",\"version\":%lld,\"enabled\":true,\"members\":[\"%s\",\"%s\"]}",
				room, version, sender, watcher);
		if(publish_acked(s, "chat/users/ctlbench-nobody/events", payload, &base[i])) return 1;

		snprintf(payload, sizeof(payload),
				"{\"op\":\"room\",\"room\":\"%s\",\"version\":%lld,\"enabled\":true,\"members\":[\"%s\",\"%s\"]}",
				room, ++version, sender, watcher);
		if(publish_acked(s, "$CONTROL/mqchat/v1", payload, &rtt)) return 1;
		ctl[nctl++] = rtt;
		int64_t t_ack = now_us();
		snprintf(marker, sizeof(marker), "in-%d-", i);
		snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"%s\"}", marker);
		mosquitto_publish(snd->m, NULL, topic_send, (int)strlen(payload), payload, 0, false);
		if(!wait_until(w, p_has, marker, 2000)){
			missed++;
		}else{
			vis[i] = now_us() - t_ack;
			if(strstr(w->last, "out-")) violations++;
		}

		snprintf(payload, sizeof(payload),
				"{\"op\":\"room\",\"room\":\"%s\",\"version\":%lld,\"enabled\":true,\"members\":[\"%s\"]}",
				room, ++version, sender);
		if(publish_acked(s, "$CONTROL/mqchat/v1", payload, &rtt)) return 1;
		ctl[nctl++] = rtt;
		snprintf(marker, sizeof(marker), "out-%d\"", i);
		snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"out-%d\"}", i);
		mosquitto_publish(snd->m, NULL, topic_send, (int)strlen(payload), payload, 0, false);
		if(!wait_until(snd, p_has, marker, 2000)) missed++;
	}
	/* One last message the watcher may see, to flush anything it should not have. */
	snprintf(payload, sizeof(payload),
			"{\"op\":\"room\",\"room\":\"%s\",\"version\":%lld,\"enabled\":true,\"members\":[\"%s\",\"%s\"]}",
			room, ++version, sender, watcher);
	int64_t rtt;
	publish_acked(s, "$CONTROL/mqchat/v1", payload, &rtt);
	mosquitto_publish(snd->m, NULL, topic_send, 30, "{\"type\":\"msg\",\"body\":\"last\"}", 0, false);
	wait_until(w, p_has, "\"last\"", 2000);

	report("plain QoS 1 publish RTT (baseline)", base, rounds);
	report("control message RTT (applied)", ctl, nctl);
	report("change acked -> next delivery", vis, rounds - missed);
	/* Every round the watcher gets in-i; out-i must never arrive: got counts both. */
	int extra = w->got - (rounds - missed) - 1;
	printf("rounds %d, deliveries after an add missed %d, deliveries after a remove leaked %d\n",
			rounds, missed, extra > 0 ? extra : violations);
	printf("next_version %lld\n", version + 1);
	return (missed || extra > 0 || violations) ? 1 : 0;
}
