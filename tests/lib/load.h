/*
 * A steady QoS 1 (or 2) chat load for integration tests, counted by message: every
 * message has a unique client_msg_id, a message the broker did not acknowledge is sent
 * again (same id) after reconnecting, and at the end the database is checked: every
 * acknowledged message is stored exactly once (h_load_check).
 *
 * One thread paces all senders; each sender is a libmosquitto client of its own (not an
 * h_client: those belong to the test's thread). Optionally a second thread polls the
 * database and records, per message, the time from its acknowledgement to its row
 * (publish -> stored lag).
 *
 * It does not depend on the test harness: bench/soak.c uses it too.
 */
#ifndef MQCHAT_TEST_LOAD_H
#define MQCHAT_TEST_LOAD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct h_load h_load;

typedef struct h_load_opts {
	int port;                 /* the broker, on 127.0.0.1 */
	const char *db;           /* the database (read-only: lag, h_load_check) */
	const char *(*password)(const char *user);
	const char *room;         /* every sender is a participant ... */
	const char *const *rooms; /* ... or sender i sends to rooms[i] (NULL: room) */
	const char *const *users; /* the senders, NULL-terminated */
	int rate;                 /* messages per second, all senders together */
	int qos;                  /* 1 (default) or 2 */
	const char *tag;          /* client_msg_id prefix, unique in the database */
	bool measure_lag;         /* poll the database for publish -> stored lag */
} h_load_opts;

typedef struct h_load_result {
	long acked;       /* distinct messages the broker acknowledged */
	long attempts;    /* PUBLISH packets sent (resends included) */
	long refusals;    /* connections closed on us while messages were unacknowledged */
	long failed_acks; /* PUBACK with a failure reason code (>= 0x80) */
	long unacked;     /* messages never acknowledged when the load stopped */
	double lag_p50_ms, lag_p99_ms, lag_max_ms; /* with measure_lag; -1 without samples */
	long lag_samples;
} h_load_result;

h_load *h_load_start(const h_load_opts *o);
/* Stops creating messages; keeps resending the unacknowledged ones for up to drain_ms. */
void h_load_stop(h_load *l, int drain_ms);
void h_load_result_get(h_load *l, h_load_result *r);
/* Waits up to timeout_ms for every acknowledged message to be stored, then counts the ones
 * missing and the ones stored more than once. 0 when both are zero. */
int h_load_check(h_load *l, int timeout_ms, long *missing, long *dups);
void h_load_free(h_load *l);

#endif
