/*
 * An acknowledgement means kept (issue 8, docs/architecture.md "Durability"), under a
 * steady QoS 1 load counted by message (tests/lib/load.h):
 *
 *  - the broker stopped with SIGTERM and started again while the bridge is 5 s behind:
 *    the plugin's spool keeps what was not confirmed;
 *  - the broker drops messages on their way to the bridge (a tiny queue and Receive
 *    Maximum): the bridge sees the gap in the plugin's seq and asks for them again;
 *  - the broker killed (SIGKILL) with messages unconfirmed: they are lost, and the next
 *    start says so, with the exact count (the live record, feed.c; the reload thread's
 *    once-a-second record alone undercounted what was stamped in the last second).
 *
 * (The 70 s writer stall is test_durability_stall.c.) Every case fails on the code before
 * issue 8: the restart lost acknowledged messages (1 of 14,461 in the run that checked it:
 * the loss is the tail the bridge had not stored, so it is small when the bridge keeps up),
 * the gap lost the dropped ones, the crash was not logged.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "durability.h"


static void broker_restart_bridge_5s_behind(h_env *env)
{
	h_load *l = durability_load(env, 800, "restart");
	H_REQUIRE(l);
	h_sleep_ms(3000);
	void *lock = h_db_lock(env);
	H_REQUIRE(lock);
	h_sleep_ms(5000);
	H_CHECK_INT(h_broker_stop(env), ==, 0);
	h_db_unlock(lock);
	H_REQUIRE_INT(h_broker_start(env), ==, 0);
	H_CHECK(h_log_wait(env->broker_log, 0, "unconfirmed messages from", 5000));
	h_sleep_ms(5000);
	h_load_stop(l, 30000);
	check_load(l, "broker restarted, bridge 5 s behind", 60000);
	h_load_free(l);
}

static void gap_is_asked_again(h_env *env)
{
	/* The broker may hold 2 messages in flight and 5 queued for the bridge, and the plugin
	 * sends up to 500 at a time. While the writer is stuck the bridge stops reading (its
	 * batches of 10 are full): the broker drops the rest on the way, and the bridge sees
	 * the gap in the seq when it reads again. */
	H_REQUIRE_INT(h_bridge_stop(env), ==, 0);
	H_REQUIRE_INT(h_broker_stop(env), ==, 0);
	h_env_broker_conf(env, "max_queued_messages 5");
	h_env_plugin_opt(env, "store_window_messages", "500");
	h_env_bridge_arg(env, "--receive-maximum", "2");
	h_env_bridge_arg(env, "--batch-max", "10");
	H_REQUIRE_INT(h_broker_start(env), ==, 0);
	H_REQUIRE_INT(h_bridge_start(env), ==, 0);
	size_t mark = h_file_size(env->bridge_log), bmark = h_file_size(env->broker_log);
	h_load *l = durability_load(env, 500, "gap");
	H_REQUIRE(l);
	h_sleep_ms(1000);
	void *lock = h_db_lock(env);
	H_REQUIRE(lock);
	h_sleep_ms(3000);
	h_db_unlock(lock);
	h_sleep_ms(2000);
	h_load_stop(l, 30000);
	check_load(l, "dropped on the way to the bridge", 60000);
	H_CHECK(h_log_wait(env->broker_log, bmark, "Outgoing messages are being dropped for client mqchat-bridge", 0));
	H_CHECK(h_log_wait(env->bridge_log, mark, "asked the plugin to send again", 0));
	h_load_free(l);
}

/* The bridge away, so what the plugin keeps is nowhere else; then the broker is killed. */
static void crash_loss_is_logged(h_env *env)
{
	H_REQUIRE_INT(h_bridge_stop(env), ==, 0);
	h_load *l = durability_load(env, 300, "crash");
	H_REQUIRE(l);
	h_sleep_ms(3000);
	h_load_stop(l, 2000);
	/* Killed at once: the reload thread's record of the last seq (every second) is behind
	 * by up to a second of messages here; the live record (feed.c) is not. */
	H_CHECK_INT(h_broker_kill9(env), ==, 0);
	size_t mark = h_file_size(env->broker_log);
	H_REQUIRE_INT(h_broker_start(env), ==, 0);
	H_REQUIRE_INT(h_bridge_start(env), ==, 0);
	H_CHECK(h_log_wait(env->broker_log, mark, "did not stop cleanly", 5000));
	H_CHECK(h_log_wait(env->broker_log, mark, "LOST: the broker's previous run", 15000));
	long missing = -1, dups = -1, logged = -1;
	h_load_check(l, 3000, &missing, &dups);
	char *log = h_file_read_from(env->broker_log, mark);
	static const char said[] = "without saving its unconfirmed messages: ";
	const char *at = log ? strstr(log, said) : NULL;
	if(at) logged = strtol(at + sizeof(said) - 1, NULL, 10);
	free(log);
	fprintf(stderr, "broker SIGKILLed with the bridge away: %ld acknowledged messages lost, %ld logged as LOST\n",
			missing, logged);
	H_CHECK_INT(missing, >, 0);
	H_CHECK_INT(logged, ==, missing);
	H_CHECK_INT(dups, ==, 0);
	h_load_free(l);
}

int main(void)
{
	h_env *env = durability_env("durability");
	h_env_broker_conf(env, "persistence true");
	h_env_start(env);
	H_RUN(env, broker_restart_bridge_5s_behind);
	H_RUN(env, crash_loss_is_logged);
	H_RUN(env, gap_is_asked_again);
	return h_env_finish(env);
}
