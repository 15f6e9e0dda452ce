/*
 * What every file of mqchat-bridge shares: logging and clocks (log.c) and the topics of
 * the plugin protocol (docs/architecture.md "Durability").
 *
 * Threads: the store thread (main.c, store.c), the request thread (serve.c, requests.c)
 * and ingest.c's writer and checkpointer. bridge__log and bridge__mono_ms are safe from
 * any of them (one fprintf per line).
 */
#ifndef MQCHAT_BRIDGE_H
#define MQCHAT_BRIDGE_H

#include <stdint.h>

/* Where the bridge talks to the plugin (QoS 1, JSON objects with an "op"). */
#define BRIDGE_CONTROL_TOPIC "$CONTROL/mqchat/v1"
/* What the plugin sends one bridge connection only (no subscription needed):
 * .../store the hello answer, .../store/<seq> a message to store (store.c),
 * .../req/<user> a user's request (serve.c), .../used a token's use (serve.c). */
#define BRIDGE_STORE_TOPIC BRIDGE_CONTROL_TOPIC "/store"
#define BRIDGE_REQ_TOPIC BRIDGE_CONTROL_TOPIC "/req"
/* .../used: a device token's last use, to the request connection (serve.c). */
#define BRIDGE_USED_TOPIC BRIDGE_CONTROL_TOPIC "/used"

enum bridge_log_level {
	BLOG_ERROR = 0,
	BLOG_WARN = 1,
	BLOG_INFO = 2,
	BLOG_DEBUG = 3,
};

/* Writes "2026-11-24T16:00:00.123Z <level> <module>: <message>\n" to stderr when level is
 * at or below the configured level. module is a short word: "bridge", "mqtt", "ingest",
 * "requests", "config". */
void bridge__log(int level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void bridge__log_set_level(int level);
int bridge__log_enabled(int level);

/* A failure that may repeat many times a second (a full disk): logged at most `limit`
 * times (0: once) per LOG_REPEAT_MS, the next line logged after that saying how often it
 * happened meanwhile. One per call site (or per family of lines), used by one thread. */
#define LOG_REPEAT_MS 10000
struct log_repeat {
	int64_t last_ms;     /* when the current interval began, 0: none yet */
	unsigned lines;      /* logged in it */
	unsigned limit;
	unsigned suppressed; /* not logged since the last line that was */
};
void bridge__log_repeated(struct log_repeat *lr, int level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Milliseconds on the monotonic clock (for deadlines; never goes back). */
int64_t bridge__mono_ms(void);

#endif
