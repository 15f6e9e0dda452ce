/*
 * What every file of mqchat-bridge shares: logging, clocks and the topics of the plugin
 * protocol (docs/architecture.md "Durability").
 *
 * Threads: the loop thread (main.c, requests.c) and ingest.c's writer and checkpointer.
 * bridge__log and bridge__mono_ms are safe from any of them (one fprintf per line).
 */
#ifndef MQCHAT_BRIDGE_H
#define MQCHAT_BRIDGE_H

#include <stdint.h>

/* Where the bridge talks to the plugin (QoS 1, JSON objects with an "op"). */
#define BRIDGE_CONTROL_TOPIC "$CONTROL/mqchat/v1"
/* Where the plugin sends {"op":"replay.done"} straight to the bridge's client id (no
 * subscription needed: the broker queues it for this client only). */
#define BRIDGE_REPLAY_DONE_TOPIC "$CONTROL/mqchat/v1/replay"

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

/* Milliseconds on the monotonic clock (for deadlines; never goes back). */
int64_t bridge__mono_ms(void);

#endif
