/*
 * Durability (issue 2, DESIGN.md "Delivery and durability"): messages sent while the
 * bridge is stopped are stored when it comes back; a bridge killed with SIGKILL while
 * messages flow loses nothing and stores nothing twice.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char room_ab[65];
static const char *const count_sql = "SELECT count(*) FROM messages WHERE room_id = ?1";

/* Sends n messages "<tag>-<i>" as alice at QoS 1 (each PUBACKed). Returns how many were accepted. */
static int send_n(h_client *alice, const char *tag, int from, int n)
{
	char topic[256], payload[128];
	int ok = 0;

	h_topic_send(topic, room_ab);
	for(int i = from; i < from + n; i++) {
		snprintf(payload, sizeof(payload), "{\"type\":\"msg\",\"body\":\"%s-%d\"}", tag, i);
		if(h_publish_str(alice, topic, payload, 1) == 0) ok++;
	}
	return ok;
}

/* Every body "<tag>-0" .. "<tag>-<n-1>" is stored exactly once. */
static void check_all_stored(h_env *env, const char *tag, int n)
{
	char like[64], body[64];
	int missing = 0, doubled = 0;

	snprintf(like, sizeof(like), "%s-%%", tag);
	H_CHECK_INT(h_db_wait_int(env, n, 20000, "SELECT count(*) FROM messages WHERE body LIKE ?1", like, (char *)NULL), ==, n);
	for(int i = 0; i < n; i++) {
		snprintf(body, sizeof(body), "%s-%d", tag, i);
		long long c = h_db_int(env, "SELECT count(*) FROM messages WHERE body = ?1", body, (char *)NULL);
		if(c == 0) missing++;
		if(c > 1) doubled++;
	}
	if(missing || doubled) h_fail(__FILE__, __LINE__, "%s: %d of %d missing, %d stored more than once", tag, missing, n, doubled);
}

static void stopped_bridge_catches_up(h_env *env)
{
	const int n = 200;
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	h_client *bob = h_login(env, "bob", H_PROTO_V5);
	char topic[256];

	H_REQUIRE(alice && bob);
	h_topic_messages(topic, room_ab);
	H_REQUIRE_INT(h_subscribe(bob, topic, 1), ==, 1);
	H_REQUIRE_INT(h_bridge_stop(env), ==, 0);
	H_CHECK_INT(send_n(alice, "stopped", 0, n), ==, n);
	/* Delivery to the participants does not wait for the bridge. */
	H_CHECK_INT(h_drain(bob, 1000), ==, n);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE body LIKE 'stopped-%'", (char *)NULL), ==, 0);
	H_REQUIRE_INT(h_bridge_start(env), ==, 0);
	check_all_stored(env, "stopped", n);
	h_client_close(alice);
	h_client_close(bob);
}

static void sigkill_while_flowing(h_env *env)
{
	const int rounds = 4, per = 150;
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	int sent = 0;

	H_REQUIRE(alice);
	for(int r = 0; r < rounds; r++) {
		/* Half a round, SIGKILL, the other half while it is dead, start it, go on: the
		 * kill lands while the bridge is receiving and committing. */
		sent += send_n(alice, "killed", sent, per / 2);
		H_REQUIRE_INT(h_bridge_kill9(env), ==, 0);
		sent += send_n(alice, "killed", sent, per / 2);
		H_REQUIRE_INT(h_bridge_start(env), ==, 0);
	}
	H_CHECK_INT(sent, ==, rounds * per);
	check_all_stored(env, "killed", sent);
	h_client_close(alice);
}

static void sigkill_right_after_receiving(h_env *env)
{
	/* The harshest timing: the bridge has the messages (the broker's queue for it is
	 * empty) but may not have committed them when it dies. Only the plugin's feed
	 * (which keeps every message until it is confirmed) can save them. */
	const int n = 300;
	h_client *alice = h_login(env, "alice", H_PROTO_V5);

	H_REQUIRE(alice);
	H_CHECK_INT(send_n(alice, "burst", 0, n), ==, n);
	H_REQUIRE_INT(h_bridge_kill9(env), ==, 0);
	H_REQUIRE_INT(h_bridge_start(env), ==, 0);
	check_all_stored(env, "burst", n);
	H_CHECK_INT(h_db_int(env, count_sql, room_ab, (char *)NULL), ==,
			h_db_int(env, "SELECT msg_count FROM rooms WHERE id = ?1", room_ab, (char *)NULL));
	h_client_close(alice);
}

int main(void)
{
	h_env *env = h_env_new("bridge_restart");

	h_user(env, "alice");
	h_user(env, "bob");
	if(h_room_create(env, room_ab, "alice", "bob", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	/* This test sends faster than the default per-sender rate (plugin_opt_send_rate). */
	h_env_no_limits(env);
	h_env_start(env);

	H_RUN(env, stopped_bridge_catches_up);
	H_RUN(env, sigkill_while_flowing);
	H_RUN(env, sigkill_right_after_receiving);
	return h_env_finish(env);
}
