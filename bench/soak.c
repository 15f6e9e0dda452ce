/*
 * mqchat-soak: the load side of bench/soak.sh (docs/benchmarks.md "Soak").
 *
 * For --duration seconds: a steady QoS 1 chat load (tests/lib/load.c: every message has a
 * unique client_msg_id, an unacknowledged one is sent again after reconnecting), victims
 * that each make one history request of their room every --victim-gap-ms and time the
 * round trip, and optionally one user flooding rooms.list at QoS 0 as fast as its socket
 * takes it. bench/soak.sh meanwhile kills the bridge, restarts the broker and stalls the
 * writer. At the end every acknowledged message must be stored exactly once (by count and
 * by id): the exit status says whether it was.
 *
 *   mqchat-soak --port P --db DB --password PW --rooms-file F [--senders N (200)]
 *               [--rate MSGS/S (5000)] [--duration S (600)] [--victims K (4)]
 *               [--victim-gap-ms MS (100)] [--flooder USER] [--drain-s S (180)]
 *
 * The rooms file is mqchat-seed's: "room member member ...". Sender i is the first member
 * of room i; victim k the second member of room k. (Each sender is a libmosquitto client
 * with a thread of its own: a few hundred is what this machine's two cores take next to
 * the broker and the bridge; bench/loadgen.c is the one for thousands of connections.)
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "load.h"

#define MAX_ROOMS 100000
#define VICTIM_TIMEOUT_MS 10000

static const char *password;
static int port;
static atomic_bool stop;

static const char *pw_of(const char *user)
{
	(void)user;
	return password;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while(nanosleep(&ts, &ts) == -1 && errno == EINTR){}
}

/* ------------------------------------------------------------------ victims */

struct victim {
	pthread_t thread;
	char user[65], room[65];
	int gap_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int want;         /* the request number an answer is awaited for, -1: none */
	bool got;
	int64_t *rtt;     /* us */
	size_t n, cap;
	long unanswered, reconnects;
};

static void on_victim_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	(void)m;
	(void)props;
	struct victim *v = obj;
	char tag[32];
	pthread_mutex_lock(&v->mu);
	snprintf(tag, sizeof(tag), "\"req_id\":\"%d\"", v->want);
	if(v->want >= 0 && msg->payloadlen > 0 && strstr(msg->payload, tag)){
		v->got = true;
		pthread_cond_signal(&v->cv);
	}
	pthread_mutex_unlock(&v->mu);
}

static void *victim_main(void *arg)
{
	struct victim *v = arg;
	char cid[96], req[256], res[128];
	int k = 0;
	snprintf(res, sizeof(res), "chat/users/%s/res", v->user);
	while(!atomic_load(&stop)){
		snprintf(cid, sizeof(cid), "%s:victim%ld", v->user, v->reconnects);
		struct mosquitto *m = mosquitto_new(cid, true, v);
		mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
		mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
		mosquitto_username_pw_set(m, v->user, password);
		mosquitto_message_v5_callback_set(m, on_victim_message);
		if(mosquitto_connect(m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS || mosquitto_loop_start(m)){
			mosquitto_destroy(m);
			v->reconnects++;
			sleep_ms(500);
			continue;
		}
		mosquitto_subscribe(m, NULL, res, 0);
		sleep_ms(100);
		bool alive = true;
		while(alive && !atomic_load(&stop)){
			k++;
			snprintf(req, sizeof(req), "{\"op\":\"history\",\"req_id\":\"%d\",\"room\":\"%s\",\"limit\":20}", k, v->room);
			pthread_mutex_lock(&v->mu);
			v->want = k;
			v->got = false;
			pthread_mutex_unlock(&v->mu);
			int64_t t0 = now_us();
			char topic[128];
			snprintf(topic, sizeof(topic), "chat/users/%s/req", v->user);
			if(alive && mosquitto_publish(m, NULL, topic, (int)strlen(req), req, 0, false) != MOSQ_ERR_SUCCESS) alive = false;
			pthread_mutex_lock(&v->mu);
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += VICTIM_TIMEOUT_MS / 1000;
			while(alive && !v->got){
				if(pthread_cond_timedwait(&v->cv, &v->mu, &until) == ETIMEDOUT) break;
			}
			bool got = v->got;
			v->want = -1;
			pthread_mutex_unlock(&v->mu);
			if(got){
				if(v->n == v->cap){
					v->cap = v->cap ? v->cap * 2 : 4096;
					v->rtt = realloc(v->rtt, v->cap * sizeof(*v->rtt));
				}
				v->rtt[v->n++] = now_us() - t0;
			}else{
				v->unanswered++;
				alive = false; /* reconnect: the broker may have restarted */
			}
			sleep_ms(v->gap_ms);
		}
		mosquitto_disconnect(m);
		mosquitto_loop_stop(m, true);
		mosquitto_destroy(m);
		v->reconnects++;
	}
	return NULL;
}

/* ------------------------------------------------------------------ the flooder */

struct flooder {
	pthread_t thread;
	const char *user;
	atomic_long sent, connects;
};

static void *flood_main(void *arg)
{
	struct flooder *f = arg;
	const char *req = "{\"op\":\"rooms.list\"}";
	char topic[128], cid[96];
	snprintf(topic, sizeof(topic), "chat/users/%s/req", f->user);
	/* The attacker's CPU is not the service's: lowest priority. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	while(!atomic_load(&stop)){
		snprintf(cid, sizeof(cid), "%s:flood", f->user);
		struct mosquitto *m = mosquitto_new(cid, true, f);
		mosquitto_username_pw_set(m, f->user, password);
		if(mosquitto_connect(m, "127.0.0.1", port, 30) == MOSQ_ERR_SUCCESS){
			atomic_fetch_add(&f->connects, 1);
			while(!atomic_load(&stop)){
				for(int i = 0; i < 50; i++){
					if(mosquitto_publish(m, NULL, topic, (int)strlen(req), req, 0, false)) break;
					atomic_fetch_add(&f->sent, 1);
				}
				if(mosquitto_loop(m, 0, 1) != MOSQ_ERR_SUCCESS) break;
			}
		}
		mosquitto_destroy(m);
		sleep_ms(20); /* and comes straight back */
	}
	return NULL;
}

/* ------------------------------------------------------------------ main */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const int64_t *v, size_t n, double p)
{
	return n ? (double)v[(size_t)((double)(n - 1) * p)] : -1;
}

int main(int argc, char **argv)
{
	const char *db = NULL, *rooms_file = NULL, *flooder_user = NULL;
	int senders = 200, rate = 5000, duration = 600, nvictims = 4, gap_ms = 100, drain_s = 180;
	for(int i = 1; i + 1 < argc; i += 2){
		const char *a = argv[i], *v = argv[i + 1];
		if(!strcmp(a, "--port")) port = atoi(v);
		else if(!strcmp(a, "--db")) db = v;
		else if(!strcmp(a, "--password")) password = v;
		else if(!strcmp(a, "--rooms-file")) rooms_file = v;
		else if(!strcmp(a, "--senders")) senders = atoi(v);
		else if(!strcmp(a, "--rate")) rate = atoi(v);
		else if(!strcmp(a, "--duration")) duration = atoi(v);
		else if(!strcmp(a, "--victims")) nvictims = atoi(v);
		else if(!strcmp(a, "--victim-gap-ms")) gap_ms = atoi(v);
		else if(!strcmp(a, "--flooder")) flooder_user = v;
		else if(!strcmp(a, "--drain-s")) drain_s = atoi(v);
		else{
			fprintf(stderr, "mqchat-soak: unknown option %s (see bench/soak.c)\n", a);
			return 2;
		}
	}
	if(!port || !db || !password || !rooms_file || senders < 1 || nvictims < 0){
		fprintf(stderr, "usage: mqchat-soak --port P --db DB --password PW --rooms-file F [...] (see bench/soak.c)\n");
		return 2;
	}
	mosquitto_lib_init();

	/* rooms: "room member member ..." */
	FILE *rf = fopen(rooms_file, "r");
	if(!rf){
		perror(rooms_file);
		return 2;
	}
	static char line[4096];
	char **room = calloc(MAX_ROOMS, sizeof(char *)), **first = calloc(MAX_ROOMS, sizeof(char *)),
		**second = calloc(MAX_ROOMS, sizeof(char *));
	int nrooms = 0;
	while(nrooms < MAX_ROOMS && fgets(line, sizeof(line), rf)){
		char *save, *r = strtok_r(line, " \n", &save), *m1 = strtok_r(NULL, " \n", &save), *m2 = strtok_r(NULL, " \n", &save);
		if(!r || !m1 || !m2) continue;
		room[nrooms] = strdup(r);
		first[nrooms] = strdup(m1);
		second[nrooms] = strdup(m2);
		nrooms++;
	}
	fclose(rf);
	if(senders > nrooms) senders = nrooms;
	if(nvictims > nrooms) nvictims = nrooms;
	const char **users = calloc((size_t)senders + 1, sizeof(char *));
	const char **rooms = calloc((size_t)senders + 1, sizeof(char *));
	for(int i = 0; i < senders; i++){
		users[i] = first[i];
		rooms[i] = room[i];
	}

	h_load_opts o = { .port = port, .db = db, .password = pw_of, .rooms = rooms, .users = users, .rate = rate,
		.tag = "soak", .measure_lag = true };
	h_load *l = h_load_start(&o);
	if(!l){
		fprintf(stderr, "mqchat-soak: cannot start the load\n");
		return 1;
	}
	struct victim *vs = calloc((size_t)(nvictims ? nvictims : 1), sizeof(*vs));
	for(int k = 0; k < nvictims; k++){
		snprintf(vs[k].user, sizeof(vs[k].user), "%s", second[k]);
		snprintf(vs[k].room, sizeof(vs[k].room), "%s", room[k]);
		vs[k].gap_ms = gap_ms;
		vs[k].want = -1;
		pthread_mutex_init(&vs[k].mu, NULL);
		pthread_cond_init(&vs[k].cv, NULL);
		pthread_create(&vs[k].thread, NULL, victim_main, &vs[k]);
	}
	struct flooder fl = { .user = flooder_user };
	if(flooder_user) pthread_create(&fl.thread, NULL, flood_main, &fl);

	int64_t t0 = now_us();
	for(int s = 0; s < duration; s++){
		sleep_ms(1000);
		if((s + 1) % 30 == 0){
			h_load_result r;
			h_load_result_get(l, &r);
			fprintf(stderr, "# soak t=%ds acked %ld unacked %ld refusals %ld\n", s + 1, r.acked, r.unacked, r.refusals);
		}
	}
	double secs = (double)(now_us() - t0) / 1e6;
	atomic_store(&stop, true);
	for(int k = 0; k < nvictims; k++) pthread_join(vs[k].thread, NULL);
	if(flooder_user) pthread_join(fl.thread, NULL);
	h_load_stop(l, drain_s * 1000);

	h_load_result r;
	h_load_result_get(l, &r);
	long missing = -1, dups = -1;
	h_load_check(l, drain_s * 1000, &missing, &dups);

	/* all victims together */
	size_t nr = 0;
	long unanswered = 0, reconnects = 0;
	for(int k = 0; k < nvictims; k++){
		nr += vs[k].n;
		unanswered += vs[k].unanswered;
		reconnects += vs[k].reconnects;
	}
	int64_t *all = malloc((nr ? nr : 1) * sizeof(*all));
	size_t at = 0;
	for(int k = 0; k < nvictims; k++){
		memcpy(all + at, vs[k].rtt, vs[k].n * sizeof(*all));
		at += vs[k].n;
	}
	qsort(all, nr, sizeof(*all), cmp_i64);

	printf("# soak %.0f s at %d msg/s: %ld acknowledged, %ld stored (%ld missing by id, %ld stored twice), "
			"%ld never acknowledged, %ld refusals (no PUBACK, sent again)\n", secs, rate, r.acked, r.acked - missing,
			missing, dups, r.unacked, r.refusals);
	printf("# victims: %zu history round trips, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; %ld unanswered "
			"within %d s, %ld reconnects\n", nr, pct(all, nr, 0.5) / 1e3, pct(all, nr, 0.99) / 1e3, pct(all, nr, 0.999) / 1e3,
			nr ? (double)all[nr - 1] / 1e3 : -1, unanswered, VICTIM_TIMEOUT_MS / 1000, reconnects);
	printf("# publish -> stored lag: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%ld samples)\n", r.lag_p50_ms, r.lag_p99_ms,
			r.lag_max_ms, r.lag_samples);
	if(flooder_user) printf("# flooder %s: %ld requests sent, %ld connections\n", flooder_user, atomic_load(&fl.sent),
			atomic_load(&fl.connects));
	printf("{\"acked\":%ld,\"stored\":%ld,\"missing\":%ld,\"duplicates\":%ld,\"unacked\":%ld,\"refusals\":%ld,"
			"\"victim_p50_ms\":%.2f,\"victim_p99_ms\":%.2f,\"victim_p999_ms\":%.2f,\"victim_max_ms\":%.2f,\"victim_n\":%zu,"
			"\"victim_unanswered\":%ld,\"lag_p50_ms\":%.1f,\"lag_p99_ms\":%.1f,\"lag_max_ms\":%.1f}\n", r.acked,
			r.acked - missing, missing, dups, r.unacked, r.refusals, pct(all, nr, 0.5) / 1e3, pct(all, nr, 0.99) / 1e3,
			pct(all, nr, 0.999) / 1e3, nr ? (double)all[nr - 1] / 1e3 : -1, nr, unanswered, r.lag_p50_ms, r.lag_p99_ms,
			r.lag_max_ms);
	h_load_free(l);
	mosquitto_lib_cleanup();
	return missing == 0 && dups == 0 ? 0 : 1;
}
