/*
 * The integration test harness: a real mosquitto with mqchat_plugin.so, a real
 * mqchat-bridge and a fresh database, per test process, plus a libmosquitto client.
 *
 * One h_env per test binary: its own temp dir, its own free loopback port, its own
 * database, so `ctest -j` never collides. The programs under test come from the
 * environment CTest sets (tests/CMakeLists.txt): $MQCHAT_ADMIN, $MQCHAT_PLUGIN,
 * $MQCHAT_BRIDGE; $MQCHAT_ASAN_PRELOAD (sanitizer build) is preloaded into mosquitto only.
 *
 * Ownership: h_env owns every process it starts and every client it connects;
 * h_env_finish() closes and frees all of them, kills only its own children, and removes
 * the temp dir unless a check failed (then it prints the dir and the logs).
 *
 * Threads: every client runs its own libmosquitto network thread; the message queue and
 * the ack records are guarded by the client's mutex. Everything else is single-threaded.
 */
#ifndef MQCHAT_HARNESS_H
#define MQCHAT_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>
#include <mosquitto.h>

#define H_PATH_MAX 4096
#define H_SERVICE_USER "mqchat-bridge" /* the bridge's default user and client id */
#define H_PROTO_V311 4
#define H_PROTO_V5 5

typedef struct h_client h_client;

typedef struct h_env {
	char dir[1024];              /* the temp dir; everything below lives in it */
	char db[H_PATH_MAX];          /* a SQLite file, or a postgresql:// URI (MQCHAT_TEST_ENGINE) */
	char files[H_PATH_MAX];       /* where the plugin's own files go: <files>.spool, <files>.idlease */
	char pg_server[H_PATH_MAX];   /* PostgreSQL: the server's maintenance database, "" for SQLite */
	char pg_name[64];             /* PostgreSQL: this test's database */
	char conf[H_PATH_MAX];
	char broker_log[H_PATH_MAX];
	char bridge_log[H_PATH_MAX];
	char bridge_pwfile[H_PATH_MAX];
	char service_password[33];
	const char *admin, *plugin, *bridge; /* program paths from the environment */
	int port;
	pid_t broker_pid;            /* 0 when not running */
	pid_t bridge_pid;
	size_t bridge_log_mark;      /* size of bridge_log when the bridge was last started */
	h_client *clients;           /* every client still open */
	char extra_opts[2048];       /* more plugin_opt_* lines (h_env_plugin_opt) */
	char broker_extra[1024];     /* more mosquitto.conf lines (h_env_broker_conf) */
	char bridge_args[8][64];     /* more bridge flags (h_env_bridge_arg), "" = none */
} h_env;

/* A received message. Free with h_msg_free. payload is NUL-terminated (len excludes it). */
typedef struct h_msg {
	char *topic;
	char *payload;
	int len;
	int qos;
	bool retain;
	bool corr_kept;     /* received after h_client_keep_correlation: an h_msg_corr */
	struct h_msg *next;
} h_msg;

/* ------------------------------------------------------------ failures and checks */

/* The number of failed checks so far in this process. */
extern int h_failures;
void h_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define H_CHECK(cond) do { if(!(cond)) h_fail(__FILE__, __LINE__, "check failed: %s", #cond); } while(0)
#define H_REQUIRE(cond) do { if(!(cond)) { h_fail(__FILE__, __LINE__, "required: %s", #cond); return; } } while(0)
#define H_CHECK_INT(a, op, b) do { long long h_a_ = (long long)(a), h_b_ = (long long)(b); \
	if(!(h_a_ op h_b_)) h_fail(__FILE__, __LINE__, "check failed: %s %s %s (%lld vs %lld)", \
		#a, #op, #b, h_a_, h_b_); } while(0)
#define H_REQUIRE_INT(a, op, b) do { long long h_a_ = (long long)(a), h_b_ = (long long)(b); \
	if(!(h_a_ op h_b_)) { h_fail(__FILE__, __LINE__, "required: %s %s %s (%lld vs %lld)", \
		#a, #op, #b, h_a_, h_b_); return; } } while(0)
#define H_CHECK_STR(a, b) do { const char *h_a_ = (a), *h_b_ = (b); \
	if(!h_a_ || !h_b_ || strcmp(h_a_, h_b_)) h_fail(__FILE__, __LINE__, \
		"check failed: %s == %s (\"%s\" vs \"%s\")", #a, #b, h_a_ ? h_a_ : "(null)", \
		h_b_ ? h_b_ : "(null)"); } while(0)
#define H_REQUIRE_STR(a, b) do { const char *h_a_ = (a), *h_b_ = (b); \
	if(!h_a_ || !h_b_ || strcmp(h_a_, h_b_)) { h_fail(__FILE__, __LINE__, \
		"required: %s == %s (\"%s\" vs \"%s\")", #a, #b, h_a_ ? h_a_ : "(null)", \
		h_b_ ? h_b_ : "(null)"); return; } } while(0)

/* Runs one case: prints its name and whether its checks passed. */
#define H_RUN(env, fn) h_run_case(#fn, fn, env)
void h_run_case(const char *name, void (*fn)(h_env *), h_env *env);

/* ------------------------------------------------------------ the environment */

/* Makes the temp dir, initialises the database with $MQCHAT_ADMIN, picks a free port and
 * writes mosquitto.conf. Starts nothing. Exits the process (status 1) if the setup fails:
 * no test can run without it. */
h_env *h_env_new(const char *test_name);

/* Adds "plugin_opt_<key> <value>" to the broker's config from its next start on.
 * E.g. send_rate 0 for tests that send faster than the default per-sender rate limit. */
void h_env_plugin_opt(h_env *env, const char *key, const char *value);
/* No per-user rate limits (send_rate, send_bytes_rate, request_rate 0): for tests that
 * send faster than one user may. */
void h_env_no_limits(h_env *env);
/* Adds a line to mosquitto.conf from the broker's next start on ("persistence true": the
 * harness sets persistence_location to the temp dir). */
void h_env_broker_conf(h_env *env, const char *line);
/* Passes "--flag value" to every later start of the bridge (four at most). */
void h_env_bridge_arg(h_env *env, const char *flag, const char *value);

/* Stops the bridge and the broker (SIGTERM; a non-zero exit status counts as a failure,
 * so sanitizer reports fail the test), closes every client, removes the temp dir when
 * every check passed (else prints it and the logs). Returns the process exit status. */
int h_env_finish(h_env *env);

/* Runs $MQCHAT_ADMIN with the NULL-terminated arguments, stdin_data on its stdin (may be
 * NULL). Its stdout goes to out (may be NULL; NUL-terminated, truncated to outlen).
 * Returns its exit status (-1 if it could not run). Prints its output when it fails. */
int h_admin(h_env *env, const char *stdin_data, char *out, size_t outlen, ...)
	__attribute__((sentinel));

/* user add NAME --iterations 1000, password on stdin. Returns 0 or -1. */
int h_user_add(h_env *env, const char *name, const char *password);

/* The password the helpers below give a user: "pw-<name>-s3cret". */
const char *h_pw(const char *name);
/* h_user_add with h_pw(name); exits the process if it fails (no test can go on). */
void h_user(h_env *env, const char *name);
/* h_connect as name with h_pw(name) and a fresh client id "<name>:<n>"; NULL on failure
 * (printed with the CONNACK code). A refusal is retried for up to 5 s: the plugin's
 * password-hash budget refuses logins past it and expects clients to come back. */
h_client *h_login(h_env *env, const char *name, int protocol);
/* h_login, then a QoS 1 subscription to room's messages topic: a member listening to the
 * room. NULL if either failed (logged). */
h_client *h_room_listener(h_env *env, const char *name, const char *room, int protocol);

/* room create: members are NULL-terminated user names (2: a direct room, more: a group).
 * Writes the new room id into id (at least 65 bytes). Returns 0 or -1. */
int h_room_create(h_env *env, char *id, ...) __attribute__((sentinel));

/* The broker: started with fork/exec, ready when the port accepts. 0 or -1. */
int h_broker_start(h_env *env);
int h_broker_stop(h_env *env);   /* SIGTERM and wait; 0 if it exited with status 0 */
int h_broker_kill9(h_env *env);
int h_broker_restart(h_env *env);

/* The bridge: ready when its log says "bridge: ready". 0 or -1. */
int h_bridge_start(h_env *env);
int h_bridge_stop(h_env *env);
int h_bridge_kill9(h_env *env);
int h_bridge_restart(h_env *env);

/* Broker then bridge, or exits the process. */
void h_env_start(h_env *env);

/* Log files: the size now (a mark), the text from a mark, and whether a line with needle
 * was written after the mark (polling up to timeout_ms). */
size_t h_file_size(const char *path);
char *h_file_read_from(const char *path, size_t offset);
bool h_log_wait(const char *path, size_t offset, const char *needle, int timeout_ms);
bool h_log_contains(const char *path, const char *needle);

/* Prints the broker and bridge logs to stderr. */
void h_dump_logs(const h_env *env);

/* True in the AddressSanitizer build: its quarantine keeps freed memory (256 MB), so a
 * process's RSS says nothing about what it holds. */
bool h_sanitized(void);
/* The resident set size of a process in kB (VmRSS), -1 if it cannot be read. */
long h_rss_kb(pid_t pid);

/* ------------------------------------------------------------ the database */

/* The tests run on the engine MQCHAT_TEST_ENGINE names: "sqlite" (unset: the default) or
 * "postgresql", on the server whose URI MQCHAT_TEST_PG gives (scripts/test.sh starts one);
 * each test environment gets a database of its own, dropped when the test passes.
 * The SQL tests pass is written for SQLite; for PostgreSQL ?N / ? become $N, CAST(... AS
 * INTEGER) becomes BIGINT and booleans read as 1/0. */
bool h_db_is_pg(const h_env *env);

/* Holds the database's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the tables the
 * bridge's writer changes locked EXCLUSIVE) on a connection of its own until h_db_unlock:
 * the bridge's writer cannot commit meanwhile (a stalled disk, another writer). NULL if
 * the lock could not be taken. */
void *h_db_lock(h_env *env);
void h_db_unlock(void *lock);

/* Runs sql (one row, first column an integer) with the NULL-terminated text parameters
 * bound to ?1, ?2, ... Returns the value, or -1 on any error (printed). */
long long h_db_int(h_env *env, const char *sql, ...) __attribute__((sentinel));
/* Runs one statement that returns no rows (text arguments, NULL-terminated) on a
 * connection of its own, as an operator would. 0, or -1 (printed). */
int h_db_exec(h_env *env, const char *sql, ...) __attribute__((sentinel));
/* Runs a script of statements without parameters, as an operator would. 0, or -1 (printed). */
int h_db_script(h_env *env, const char *sql);
/* Calls row for each row of sql (at most 16 columns, as text, NULL for NULL) until it
 * returns nonzero. 0, or -1 on an error (printed). */
int h_db_rows(h_env *env, int (*row)(void *arg, int ncols, const char *const *cols), void *arg,
		const char *sql, ...) __attribute__((sentinel));

/* The same for a text column, copied into out. Returns 0, 1 if no row, -1 on error. */
int h_db_text(h_env *env, char *out, size_t outlen, const char *sql, ...) __attribute__((sentinel));

/* Polls h_db_int until it returns want or timeout_ms passes. Returns the last value. */
long long h_db_wait_int(h_env *env, long long want, int timeout_ms, const char *sql, ...)
	__attribute__((sentinel));

/* ------------------------------------------------------------ clients */

/* Connects user/password (either may be NULL) with client_id (NULL: the username) using
 * protocol H_PROTO_V311 or H_PROTO_V5, and waits for the CONNACK.
 * Returns the connected client, or NULL with *reason set to the CONNACK code (v3: 1..5,
 * v5: >= 0x80) or -1 if the connection closed or timed out without one. */
h_client *h_connect(h_env *env, const char *user, const char *password, const char *client_id,
		int protocol, int *reason);

/* Disconnects, stops the thread, frees the client and its queue. NULL is fine. */
void h_client_close(h_client *c);

/* Subscribes and waits for the SUBACK. Returns the granted QoS (0..2) or the failure
 * code (0x80 in v3, a v5 reason code >= 0x80), or -1 on timeout / error. */
int h_subscribe(h_client *c, const char *filter, int qos);

/* Publishes. QoS 0: returns 0 once handed to the library. QoS 1: waits for the PUBACK and
 * returns 0 if accepted (any v5 success code < 0x80, e.g. 0x10; always in v3), else the
 * v5 failure reason code (>= 0x80), -2 if the connection was closed instead,
 * -1 on timeout / error. props (v5 only, may be NULL) stay owned by the caller. */
int h_publish(h_client *c, const char *topic, const void *payload, int len, int qos, bool retain,
		const mosquitto_property *props);
/* QoS 1 publish returning the PUBACK reason code as the broker sent it (0x00, 0x10, 0x87...). */
int h_publish_raw_rc(h_client *c, const char *topic, const char *payload);
/* The same with a NUL-terminated payload. */
int h_publish_str(h_client *c, const char *topic, const char *payload, int qos);

/* Waits up to timeout_ms for the next queued message; NULL if none came. */
h_msg *h_wait_message(h_client *c, int timeout_ms);
/* Waits for the next message and parses its payload as a JSON object (NULL if none came
 * or it is not JSON; the topic goes to topic_out if not NULL, at least 256 bytes). */
json_t *h_wait_json(h_client *c, int timeout_ms, char *topic_out);
/* Waits for a stamped chat message on chat/rooms/<room>/messages with "from" == from and
 * "body" == body (body NULL: any). Records a failure at file:line and returns NULL if it
 * does not come within timeout_ms, or if the next message is another one; else returns
 * the parsed message (the caller json_decref()s it). */
json_t *h_expect_chat_at(const char *file, int line, h_client *c, const char *room, const char *from,
		const char *body, int timeout_ms);
#define H_EXPECT_CHAT(c, room, from, body) h_expect_chat_at(__FILE__, __LINE__, (c), (room), (from), (body), 5000)

/* Returns NULL if no message arrives within window_ms, else the message (a failure the
 * caller reports). */
h_msg *h_expect_no_message(h_client *c, int window_ms);
void h_msg_free(h_msg *m);
/* Fails the current check (no return) if c receives anything within window_ms. */
#define H_CHECK_NO_MESSAGE(c, window_ms) do { h_msg *h_m_ = h_expect_no_message((c), (window_ms)); \
	if(h_m_) { h_fail(__FILE__, __LINE__, "unexpected message on %s: %.200s", h_m_->topic, h_m_->payload); \
		h_msg_free(h_m_); } } while(0)
/* Drops every queued message; returns how many. */
int h_drain(h_client *c, int settle_ms);
/* True while the network connection is up. */
bool h_client_connected(h_client *c);

/* ------------------------------------------------------------ small helpers */

int64_t h_now_ms(void);
/* Runs a shell command (a client written in another language: node, python3), echoes
 * its last stdout line to stderr and returns that line parsed as JSON (NULL if it is not). */
json_t *h_run_json(const char *cmd);
/* A TCP port on 127.0.0.1 nothing listens on now (for an extra listener). */
int h_free_port(void);
void h_sleep_ms(int ms);
/* "chat/rooms/<room>/send" and ".../messages" into a static-free buffer of 256 bytes. */
void h_topic_send(char *out, const char *room);
void h_topic_messages(char *out, const char *room);

/* ------------------------------------------------------------ MQTT 5 correlation data (appended) */

/* From now on, messages c receives keep the MQTT 5 correlation data they carried, for
 * h_msg_correlation. Call it right after connecting, before subscribing. */
void h_client_keep_correlation(h_client *c);
/* The correlation data of m, copied into out (NUL-terminated, truncated to outlen).
 * Returns its length, or -1 if m carried none. Only for messages received by a client
 * after h_client_keep_correlation(c). */
int h_msg_correlation(const h_msg *m, char *out, size_t outlen);

#endif
