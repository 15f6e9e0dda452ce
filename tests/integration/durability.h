/*
 * What the durability tests share (test_durability.c, test_durability_stall.c): ten
 * senders in one room, a load of them counted by message (tests/lib/load.h), and the check
 * that every acknowledged message is stored exactly once.
 */
#ifndef MQCHAT_TEST_DURABILITY_H
#define MQCHAT_TEST_DURABILITY_H

#include "harness.h"
#include "load.h"

static char room[65];
static const char *senders[] = { "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", NULL };

/* The env (not started): the senders, their room, no per-user rates (the load is faster
 * than one person), at most 20,000 messages unconfirmed. Exits if the setup fails. */
__attribute__((unused)) static h_env *durability_env(const char *name)
{
	h_env *env = h_env_new(name);
	for(int i = 0; senders[i]; i++) h_user(env, senders[i]);
	if(h_room_create(env, room, "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", (char *)NULL)){
		h_failures++;
		exit(h_env_finish(env));
	}
	h_env_no_limits(env);
	h_env_plugin_opt(env, "unconfirmed_max_messages", "20000");
	return env;
}

static h_load *durability_load(h_env *env, int rate, const char *tag)
{
	h_load_opts o = { .port = env->port, .db = env->db, .password = h_pw, .room = room, .users = senders,
		.rate = rate, .tag = tag };
	return h_load_start(&o);
}

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

#endif
