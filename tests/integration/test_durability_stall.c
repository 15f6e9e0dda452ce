/*
 * An acknowledgement means kept (issue 8, docs/architecture.md "Durability"): the
 * bridge's writer stalled 70 s (the test holds the database's write lock) under a steady
 * QoS 1 load of 1,500 msg/s counted by message (tests/lib/load.h). The broker's queue for
 * the bridge must not overflow into loss, the plugin refuses sends (closing the
 * connection, no PUBACK) once its bound is reached, and after the release every
 * acknowledged message is stored once; the broker does not grow without bound.
 *
 * On the code before issue 8 this lost the messages past the broker's queue bound (the
 * bridge's next acknowledgement covered the gap) and the broker kept accepting.
 * tests/integration/test_durability.c has the broker restart, gap and crash cases.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "load.h"

#define NSENDERS 10
static char room[65];
static const char *senders[NSENDERS + 1] = { "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", NULL };

static void check_load(h_load *l, const char *what, int timeout_ms)
{
	long missing = -1, dups = -1;
	h_load_result r;
	h_load_result_get(l, &r);
	h_load_check(l, timeout_ms, &missing, &dups);
	fprintf(stderr, "%s: %ld acknowledged, %ld unacknowledged at the end, %ld sends (resends included), "
			"%ld refusals (connection closed, no PUBACK); %ld missing, %ld stored twice\n", what, r.acked,
			r.unacked, r.attempts, r.refusals, missing, dups);
	H_CHECK_INT(r.acked, >, 0);
	H_CHECK_INT(missing, ==, 0);
	H_CHECK_INT(dups, ==, 0);
}

static void writer_stalled_70s(h_env *env)
{
	h_load_opts o = { .port = env->port, .db = env->db, .password = h_pw, .room = room, .users = senders, .rate = 1500, .tag = "stall" };
	h_load *l = h_load_start(&o);
	H_REQUIRE(l);
	h_sleep_ms(3000);
	size_t mark = h_file_size(env->broker_log);
	long rss0 = h_rss_kb(env->broker_pid);
	void *lock = h_db_lock(env);
	H_REQUIRE(lock);
	long rss_max = rss0;
	for(int s = 0; s < 70; s++){
		h_sleep_ms(1000);
		long rss = h_rss_kb(env->broker_pid);
		if(rss > rss_max) rss_max = rss;
	}
	h_db_unlock(lock);
	h_sleep_ms(10000);
	h_load_stop(l, 60000);
	fprintf(stderr, "broker RSS %ld kB before the stall, at most %ld kB during it\n", rss0, rss_max);
	check_load(l, "writer stalled 70 s", 120000);
	h_load_result r;
	h_load_result_get(l, &r);
	H_CHECK_INT(r.refusals, >, 0);      /* senders saw refusals, not silent loss */
	H_CHECK_INT(r.unacked, ==, 0);      /* and every one was taken once the bridge caught up */
	/* 20,000 unconfirmed messages of ~100 bytes, plus the window in the broker's queue */
	if(!h_sanitized()) H_CHECK_INT(rss_max - rss0, <, 100 * 1024);
	H_CHECK(h_log_wait(env->broker_log, mark, "refusing sends", 0));
	H_CHECK(h_log_wait(env->broker_log, mark, "accepting sends again", 0));
	h_load_free(l);
}

int main(void)
{
	h_env *env = h_env_new("durability_stall");
	for(int i = 0; i < NSENDERS; i++) h_user(env, senders[i]);
	if(h_room_create(env, room, "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_no_limits(env);
	h_env_plugin_opt(env, "unconfirmed_max_messages", "20000");
	h_env_start(env);
	H_RUN(env, writer_stalled_70s);
	return h_env_finish(env);
}
