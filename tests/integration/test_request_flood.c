/*
 * One user flooding requests does not hurt the others (issue 8): a steady chat load and a
 * victim making requests are measured twice in one run, without and with mallory sending
 * rooms.list as fast as her socket takes it (QoS 0, the cheapest thing to flood with).
 * With the flood, every one of the victim's requests is answered (none slower than a
 * second: a liveness bound, not a speed figure), every message of the chat load is stored,
 * mallory gets at most what request_rate allows (and is disconnected for flooding far over
 * it), and the bridge's memory stays bounded. The round trips and lags are printed; their
 * ratio (flood / calm) is a speed figure and is measured by bench/request_flood.sh, in
 * alternating rounds, not asserted here (one CI run saw 5.2 ms against 1.6 ms on a loaded
 * 2-core machine).
 *
 * On the code before issue 8 every other user's request timed out during such a flood and
 * nothing was stored (the requests shared the bridge's one connection and thread with the
 * message stream, and nothing limited a user's requests).
 */
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "harness.h"
#include "load.h"

#define PHASE_REQUESTS 200

static char room[65];
static const char *senders[] = { "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", NULL };

struct flood {
	h_env *env;
	pthread_t thread;
	atomic_bool stop;
	atomic_long sent, answers, reconnects;
};

static void on_flood_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	(void)m;
	(void)msg;
	struct flood *f = obj;
	atomic_fetch_add(&f->answers, 1);
}

static void *flood_main(void *arg)
{
	struct flood *f = arg;
	/* The attacker's CPU is not ours: at the lowest priority this thread stands for a client
	 * on another machine, rather than taking one of this machine's two cores from the
	 * broker and the bridge. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	const char *req = "{\"op\":\"rooms.list\"}";
	while(!atomic_load(&f->stop)){
		struct mosquitto *m = mosquitto_new("mallory:flood", true, f);
		mosquitto_username_pw_set(m, "mallory", h_pw("mallory"));
		mosquitto_message_callback_set(m, on_flood_message);
		if(mosquitto_connect(m, "127.0.0.1", f->env->port, 30) == MOSQ_ERR_SUCCESS){
			mosquitto_subscribe(m, NULL, "chat/users/mallory/res", 0);
			while(!atomic_load(&f->stop)){
				for(int i = 0; i < 50; i++){
					if(mosquitto_publish(m, NULL, "chat/users/mallory/req", (int)strlen(req), req, 0, false)) break;
					atomic_fetch_add(&f->sent, 1);
				}
				if(mosquitto_loop(m, 0, 1) != MOSQ_ERR_SUCCESS) break;
			}
		}
		atomic_fetch_add(&f->reconnects, 1);
		mosquitto_destroy(m);
		h_sleep_ms(50);
	}
	return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

/* PHASE_REQUESTS history requests from bob, one at a time; the p99 round trip in us, the
 * slowest in *max_us. */
static long long victim_p99(h_client *bob, int *unanswered, long long *max_us)
{
	static long long rtt[PHASE_REQUESTS];
	char req[256];
	int n = 0;
	*unanswered = 0;
	for(int i = 0; i < PHASE_REQUESTS; i++){
		snprintf(req, sizeof(req), "{\"op\":\"history\",\"req_id\":\"v%d\",\"room\":\"%s\",\"limit\":20}", i, room);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if(h_publish_str(bob, "chat/users/bob/req", req, 0)){
			(*unanswered)++;
			continue;
		}
		json_t *a = h_wait_json(bob, 5000, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if(!a || !json_is_true(json_object_get(a, "ok"))){
			(*unanswered)++;
		}else{
			rtt[n++] = (t1.tv_sec - t0.tv_sec) * 1000000LL + (t1.tv_nsec - t0.tv_nsec) / 1000;
		}
		json_decref(a);
		h_sleep_ms(20); /* ~45 requests/s, under this env's request_rate (60) */
	}
	if(!n) return -1;
	qsort(rtt, (size_t)n, sizeof(rtt[0]), cmp_ll);
	if(max_us) *max_us = rtt[n - 1];
	fprintf(stderr, "  history round trip p50 %lld us, p90 %lld us, p99 %lld us, max %lld us\n", rtt[(n - 1) / 2],
			rtt[(size_t)((double)(n - 1) * 0.9)], rtt[(size_t)((double)(n - 1) * 0.99)], rtt[n - 1]);
	return rtt[(size_t)((double)(n - 1) * 0.99)];
}

static void flood_does_not_hurt_others(h_env *env)
{
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	H_REQUIRE(bob);
	H_REQUIRE_INT(h_subscribe(bob, "chat/users/bob/res", 1), ==, 1);
	long rss0 = h_rss_kb(env->bridge_pid);
	int idle_lost;
	victim_p99(bob, &idle_lost, NULL); /* idle, for the record */

	/* without the flood */
	h_load_opts o = { .port = env->port, .db = env->db, .password = h_pw, .room = room, .users = senders, .rate = 300, .tag = "calm", .measure_lag = true };
	h_load *l = h_load_start(&o);
	H_REQUIRE(l);
	h_sleep_ms(1000);
	int lost_a = 0, lost_b = 0;
	long long max_a, max_b;
	long long p99_a = victim_p99(bob, &lost_a, &max_a);
	h_load_stop(l, 10000);
	h_load_result ra;
	h_load_result_get(l, &ra);

	/* with it */
	struct flood f = { .env = env };
	size_t mark = h_file_size(env->broker_log);
	H_REQUIRE(pthread_create(&f.thread, NULL, flood_main, &f) == 0);
	o.tag = "flood";
	h_load *lb = h_load_start(&o);
	H_REQUIRE(lb);
	h_sleep_ms(1000);
	int64_t t0 = h_now_ms();
	long long p99_b = victim_p99(bob, &lost_b, &max_b);
	int64_t flood_ms = h_now_ms() - t0 + 1000;
	h_load_stop(lb, 10000);
	atomic_store(&f.stop, true);
	pthread_join(f.thread, NULL);
	h_load_result rb;
	h_load_result_get(lb, &rb);
	long rss1 = h_rss_kb(env->bridge_pid);

	fprintf(stderr, "victim history p99: %lld us calm, %lld us under the flood (%d and %d unanswered)\n",
			p99_a, p99_b, lost_a, lost_b);
	fprintf(stderr, "publish -> stored lag p99: %.1f ms calm, %.1f ms under the flood (%ld / %ld samples)\n",
			ra.lag_p99_ms, rb.lag_p99_ms, ra.lag_samples, rb.lag_samples);
	fprintf(stderr, "mallory: %ld requests sent, %ld answered, %ld connections; bridge RSS %ld -> %ld kB\n",
			atomic_load(&f.sent), atomic_load(&f.answers), atomic_load(&f.reconnects), rss0, rss1);
	H_CHECK_INT(lost_a, ==, 0);
	H_CHECK_INT(lost_b, ==, 0);
	H_CHECK(p99_a > 0 && p99_b > 0);
	/* liveness, not speed: before issue 8 every one of these timed out */
	H_CHECK_INT(max_b, <, 1000 * 1000);
	H_CHECK(rb.lag_samples > 0);
	/* request_rate 60/s, burst 100: mallory gets no more, and flooding far over it she is
	 * disconnected (and comes back: she keeps trying) */
	H_CHECK_INT(atomic_load(&f.sent), >, 10000);
	H_CHECK_INT(atomic_load(&f.answers), <=, 100 * atomic_load(&f.reconnects) + 60 * flood_ms / 1000 + 20);
	H_CHECK_INT(atomic_load(&f.reconnects), >, 1);
	H_CHECK(h_log_wait(env->broker_log, mark, "over request_rate", 0));
	H_CHECK(h_log_wait(env->broker_log, mark, "QoS 0 publishes over its rates in a second", 0));
	H_CHECK(h_log_wait(env->broker_log, mark, "it flooded, its connections are refused", 0));
	if(!h_sanitized()) H_CHECK_INT(rss1 - rss0, <, 64 * 1024);
	long missing, dups;
	H_CHECK_INT(h_load_check(l, 10000, &missing, &dups), ==, 0);
	H_CHECK_INT(h_load_check(lb, 10000, &missing, &dups), ==, 0);
	h_load_free(l);
	h_load_free(lb);
	h_client_close(bob);
}

int main(void)
{
	h_env *env = h_env_new("request_flood");
	for(int i = 0; senders[i]; i++) h_user(env, senders[i]);
	h_user(env, "bob");
	h_user(env, "mallory");
	if(h_room_create(env, room, "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "bob", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_plugin_opt(env, "request_rate", "60");
	h_env_start(env);
	H_RUN(env, flood_does_not_hurt_others);
	return h_env_finish(env);
}
