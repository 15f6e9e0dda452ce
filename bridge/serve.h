/*
 * The request connection and its thread (serve.c): answers the requests the plugin
 * forwards, on a connection and a database connection of its own, so requests never wait
 * behind the message stream and storing never waits for requests (docs/architecture.md
 * "The bridge's threads").
 */
#ifndef MQCHAT_BRIDGE_SERVE_H
#define MQCHAT_BRIDGE_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "ingest.h"
#include "link.h"
#include "requests.h"
#include "stats.h"
#include "topic.h"

/* Per-op timing slots: every op (requests__op_name), unknown ops, and the time requests
 * waited (parked) for what they must see. */
#define SERVE_STAT_OTHER REQ_OPS
#define SERVE_STAT_WAIT (REQ_OPS + 1)
#define SERVE_STAT_SLOTS (REQ_OPS + 2)

struct parked;

struct serve {
	struct link link;
	const struct bridge_config *cfg;
	mqc_topics topics;          /* <prefix>/users/... (store/topic.h) */
	struct ingest *ing;
	mqc_db *db;
	int busy_polls;             /* ingest__busy_poll's bound for db */
	bool db_lost;               /* db's connection was lost: reconnect before the next request */
	int64_t db_lost_at, db_retry_at, db_retry_ms; /* when it was lost, when to try next, the backoff */
	int64_t db_used_ms;         /* when a request last ran (monotonic ms) */
	struct requests *req;
	struct parked *head, *tail; /* requests waiting, in arrival order */
	size_t nparked;
	unsigned outstanding;       /* answers published, not yet acknowledged by the broker */
	/* the request being answered, for the consistency hook */
	uint64_t cur_arrival;
	bool cur_late;

	pthread_t thread;
	bool thread_started;
	atomic_bool stop, stats_wanted;
	int wake_fd;                /* serve__stop and serve__stats write it */
	struct op_stat stats[SERVE_STAT_SLOTS];
	int64_t stats_since_ms;
	uint64_t answered_late, refused_busy;
	struct log_repeat late_log, full_log, topic_log, db_log;
};

/* Opens its database connection to `where` (a SQLite path or a postgresql:// URI),
 * prepares the request API and starts the thread. 0, or -1 (logged). */
int serve__start(struct serve *sv, const struct bridge_config *cfg, const char *where, struct ingest *ing);
/* Asks the thread to log its request timing (SIGUSR1). */
void serve__stats(struct serve *sv);
/* Stops the thread (it disconnects cleanly) and frees everything. Safe after a failed start. */
void serve__stop(struct serve *sv);

#endif
