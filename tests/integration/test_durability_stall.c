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

#include "durability.h"


static void writer_stalled_70s(h_env *env)
{
	h_load *l = durability_load(env, 1500, "stall");
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
	h_env *env = durability_env("durability_stall");
	h_env_start(env);
	H_RUN(env, writer_stalled_70s);
	return h_env_finish(env);
}
