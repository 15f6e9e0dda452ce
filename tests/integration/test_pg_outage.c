/*
 * PostgreSQL only (issue 11): the database server goes away and comes back, on a server of
 * this test's own (scripts/pg.sh start; the shared one of the other tests stays up).
 *
 *  - restarted (fast shutdown) and crashed (immediate) under a steady QoS 1 load counted
 *    by message: every acknowledged message is stored exactly once, the bridge says it lost
 *    the database and resumes by itself, requests are answered again;
 *  - while the server is down the plugin keeps serving its last snapshot: a user logs in
 *    with a password and a device token and sends, and what it sent is stored after;
 *  - the plugin started while the server is down: mosquitto does not start, and its log
 *    names the database and the reason;
 *  - an admin change reaches the broker by NOTIFY, not by the poll: a participant added with
 *    mqchat-admin can subscribe to the room within a fraction of the poll interval
 *    (plugin_opt_reload_interval_ms is set to 30 s here; the time is printed; its figure on this
 *    machine is in docs/benchmarks.md).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_client.h"
#include "durability.h"

static char pgdir[256];

/* Runs scripts/pg.sh with the given arguments; its stdout's first line into out (if not NULL). */
static int pg_sh(char *out, size_t outlen, const char *args)
{
	const char *src = getenv("MQCHAT_SOURCE_DIR");
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "bash %s/scripts/pg.sh %s", src ? src : ".", args);
	FILE *p = popen(cmd, "r");
	if(!p) return -1;
	char line[512] = "";
	if(!fgets(line, sizeof(line), p)) line[0] = '\0';
	int rc = pclose(p);
	line[strcspn(line, "\n")] = '\0';
	if(out) snprintf(out, outlen, "%s", line);
	return rc == 0 ? 0 : -1;
}

static int pg_halt(const char *mode)
{
	char args[400];
	snprintf(args, sizeof(args), "halt %s %s >/dev/null 2>&1", pgdir, mode);
	return pg_sh(NULL, 0, args);
}

static int pg_resume(void)
{
	char args[400];
	snprintf(args, sizeof(args), "resume %s >/dev/null 2>&1", pgdir);
	return pg_sh(NULL, 0, args);
}

/* A history request of u0's in the load's room, answered ok. */
static void history_answered(h_env *env, const char *what)
{
	api_user a;
	if(!API_OPEN(env, &a, "u0", H_PROTO_V5)) return;
	json_t *r = API_OK(&a, "{s:s,s:s,s:i}", "op", "history", "room", room, "limit", 1);
	if(!r) h_fail(__FILE__, __LINE__, "%s: history was not answered ok", what);
	json_decref(r);
	h_client_close(a.c);
}

static void outage_under_load(h_env *env, const char *mode)
{
	char tag[32];
	snprintf(tag, sizeof(tag), "pg-%s", mode);
	size_t mark = h_file_size(env->bridge_log), bmark = h_file_size(env->broker_log);
	h_load *l = durability_load(env, 300, tag);
	H_REQUIRE(l);
	h_sleep_ms(2000);
	H_REQUIRE_INT(pg_halt(mode), ==, 0);
	h_sleep_ms(3000);
	H_REQUIRE_INT(pg_resume(), ==, 0);
	h_sleep_ms(4000);
	h_load_stop(l, 30000);
	char what[64];
	snprintf(what, sizeof(what), "PostgreSQL %s-stopped under load", mode);
	check_load(l, what, 60000);
	h_load_free(l);
	H_CHECK(h_log_wait(env->bridge_log, mark, "lost the database", 0));
	H_CHECK(h_log_wait(env->bridge_log, mark, "database is back", 10000));
	H_CHECK(h_log_wait(env->broker_log, bmark, "lost the database", 0));
	H_CHECK(h_log_wait(env->broker_log, bmark, "database is back", 10000));
	history_answered(env, what);
}

static void restarted_under_load(h_env *env) { outage_under_load(env, "fast"); }
static void crashed_under_load(h_env *env) { outage_under_load(env, "immediate"); }

/* The server away: logins (password and token) and sends go on from the last snapshot. */
static void plugin_serves_while_down(h_env *env)
{
	char out[256], token[128] = "";
	H_REQUIRE_INT(h_admin(env, NULL, out, sizeof(out), "--db", env->db, "token", "add", "u1", "phone", (char *)NULL), ==, 0);
	sscanf(out, "%127s", token);
	H_REQUIRE(strncmp(token, "mqt_", 4) == 0);
	h_sleep_ms(500); /* the snapshot with the token */
	H_REQUIRE_INT(pg_halt("fast"), ==, 0);
	h_sleep_ms(500);
	h_client *pw = h_login(env, "u0", H_PROTO_V5);
	int reason = 0;
	h_client *tk = h_connect(env, "u1", token, "u1:phone", H_PROTO_V5, &reason);
	H_CHECK(pw != NULL);
	H_CHECK(tk != NULL);
	char topic[128];
	h_topic_send(topic, room);
	if(pw) H_CHECK_INT(h_publish_str(pw, topic, "{\"type\":\"msg\",\"body\":\"sent while the database was down\"}", 1), ==, 0);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM messages WHERE body = 'sent while the database was down'",
				(char *)NULL), ==, -1); /* the server is down: the harness cannot read either */
	H_REQUIRE_INT(pg_resume(), ==, 0);
	H_CHECK_INT(h_db_wait_int(env, 1, 15000, "SELECT count(*) FROM messages WHERE body = 'sent while the database was down'",
				(char *)NULL), ==, 1);
	if(pw) h_client_close(pw);
	if(tk) h_client_close(tk);
}

/* An admin change seen by the broker through NOTIFY: a new participant may subscribe. */
static void admin_change_by_notify(h_env *env)
{
	char group[65], topic[128];
	int64_t took[5];
	H_REQUIRE_INT(h_room_create(env, group, "--name", "notify", "u2", "u3", "u6", (char *)NULL), ==, 0);
	h_topic_messages(topic, group);
	for(int i = 0; i < 5; i++){
		const char *who = i % 2 ? "u5" : "u4";
		h_client *c = h_login(env, who, H_PROTO_V5);
		H_REQUIRE(c);
		H_CHECK_INT(h_subscribe(c, topic, 1), ==, 0x87); /* not a participant yet */
		int64_t t0 = h_now_ms();
		H_REQUIRE_INT(h_admin(env, NULL, NULL, 0, "--db", env->db, "room", "add", group, who, (char *)NULL), ==, 0);
		int64_t done = h_now_ms();
		int granted = -1;
		while(h_now_ms() - done < 10000){
			granted = h_subscribe(c, topic, 1);
			if(granted >= 0 && granted < 0x80) break;
			h_sleep_ms(2);
		}
		took[i] = h_now_ms() - done;
		H_CHECK_INT(granted, ==, 1);
		fprintf(stderr, "admin room add %s: mqchat-admin took %lld ms, the broker allowed the subscription %lld ms after it exited\n",
				who, (long long)(done - t0), (long long)took[i]);
		/* well inside the 30 s poll: the change came by NOTIFY */
		H_CHECK_INT(took[i], <, 5000);
		H_REQUIRE_INT(h_admin(env, NULL, NULL, 0, "--db", env->db, "room", "remove", group, who, (char *)NULL), ==, 0);
		h_client_close(c);
	}
	/* The bound, on the median of five: one slow round on a busy machine is not
	 * the mechanism failing. (While the reload thread waited a whole 50 ms slice for the
	 * broker to take the previous offer, four of five took 51-54 ms here.) */
	int64_t sorted[5];
	memcpy(sorted, took, sizeof(sorted));
	for(int i = 1; i < 5; i++)
		for(int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--){ int64_t t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t; }
	fprintf(stderr, "admin change to the broker by NOTIFY: min %lld / median %lld / max %lld ms\n",
			(long long)sorted[0], (long long)sorted[2], (long long)sorted[4]);
	H_CHECK_INT(sorted[2], <=, 50);
}

/* Last: the plugin started with the server down. */
static void plugin_start_while_down(h_env *env)
{
	H_REQUIRE_INT(h_bridge_stop(env), ==, 0);
	H_REQUIRE_INT(h_broker_stop(env), ==, 0);
	H_REQUIRE_INT(pg_halt("fast"), ==, 0);
	size_t mark = h_file_size(env->broker_log);
	H_CHECK_INT(h_broker_start(env), ==, -1);
	char needle[H_PATH_MAX + 64];
	snprintf(needle, sizeof(needle), "cannot connect to database %s", env->db);
	H_CHECK(h_log_wait(env->broker_log, mark, needle, 2000));
	H_CHECK(h_log_wait(env->broker_log, mark, "Connection refused", 0));
	H_REQUIRE_INT(pg_resume(), ==, 0);
	H_CHECK_INT(h_broker_start(env), ==, 0);
	H_CHECK_INT(h_bridge_start(env), ==, 0);
}

int main(void)
{
	if(!getenv("MQCHAT_TEST_ENGINE") || strcmp(getenv("MQCHAT_TEST_ENGINE"), "postgresql")){
		fprintf(stderr, "test_pg_outage runs on PostgreSQL only (MQCHAT_TEST_ENGINE=postgresql)\n");
		return 1;
	}
	h_env *env = h_env_new("pg_outage");
	/* A server of this test's own, which it stops and starts. */
	char url[512], base[512];
	snprintf(pgdir, sizeof(pgdir), "/tmp/mqchat-pg-outage-XXXXXX");
	if(!mkdtemp(pgdir) || pg_sh(url, sizeof(url), (snprintf(base, sizeof(base), "start %s 2>/dev/null", pgdir), base))){
		h_fail(__FILE__, __LINE__, "cannot start a PostgreSQL server in %s", pgdir);
		return h_env_finish(env);
	}
	char *slash = strrchr(url, '/');
	*slash = '\0';
	snprintf(env->db, sizeof(env->db), "%s/mqchat", url);
	{
		char sql[600];
		snprintf(sql, sizeof(sql), "psql -q %s/postgres -c 'CREATE DATABASE mqchat' >/dev/null", url);
		if(system(sql) != 0 || h_admin(env, NULL, NULL, 0, "--db", env->db, "init", (char *)NULL)){
			h_fail(__FILE__, __LINE__, "cannot make the database %s", env->db);
			return h_env_finish(env);
		}
	}
	for(int i = 0; senders[i]; i++) h_user(env, senders[i]);
	if(h_room_create(env, room, "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", (char *)NULL)){
		h_failures++;
		return h_env_finish(env);
	}
	h_env_no_limits(env);
	h_env_plugin_opt(env, "unconfirmed_max_messages", "20000");
	h_env_plugin_opt(env, "reload_interval_ms", "30000");
	h_env_start(env);

	H_RUN(env, admin_change_by_notify);
	H_RUN(env, restarted_under_load);
	H_RUN(env, crashed_under_load);
	H_RUN(env, plugin_serves_while_down);
	H_RUN(env, plugin_start_while_down);

	int rc = h_env_finish(env);
	char args[400];
	snprintf(args, sizeof(args), "stop %s >/dev/null 2>&1", pgdir);
	pg_sh(NULL, 0, args);
	return rc;
}
