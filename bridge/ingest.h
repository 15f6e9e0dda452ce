/*
 * Storing chat messages: stamped messages the plugin sends the store connection are kept
 * in an in-memory batch and committed in one transaction by a writer thread
 * (docs/architecture.md "Durability", "The bridge's threads").
 *
 * Two batches exist: the one the store thread fills (ingest__add) and the one the writer
 * thread commits, on a database connection of its own. The store thread hands the filling
 * batch over when the writer is idle (ingest__pump); while the writer commits, the next
 * batch grows, so batches are as large as the commit time makes them (group commit), up
 * to batch_max.
 *
 * Messages arrive in the plugin's order, numbered (epoch, seq) without gaps (store.c takes
 * only the next one). Each committed batch saves the (epoch, seq) of its last message as
 * the watermark, in the same transaction: everything up to it is on disk, and that is
 * what store.c may confirm to the plugin.
 *
 * Threads:
 *   - the store thread (the caller of ingest__new) calls everything but the functions
 *     marked [any thread];
 *   - the request thread (serve.c) only calls the [any thread] ones, to wait for what a
 *     request must see (docs/protocol.md "Consistency");
 *   - the writer and checkpointer threads are internal.
 * Local sequence numbers (lsn) count the messages ingest__add took since start, 1, 2, ...
 * in order; "received" is the last one taken, "committed" the last one on disk.
 *
 * A failed commit is rolled back; the writer keeps its batch and retries with backoff (a
 * lost connection to PostgreSQL: reconnects, at least every second). The watermark only
 * moves with a commit, so nothing is confirmed that is not on disk.
 */
#ifndef MQCHAT_BRIDGE_INGEST_H
#define MQCHAT_BRIDGE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

#include "stats.h"

struct ingest;

/* What the writer did since the last ingest__stats_take. */
struct ingest_stats {
	struct op_stat commit_ns;   /* duration of each successful commit (BEGIN to COMMIT) */
	struct op_stat commit_size; /* messages in each */
	uint64_t messages;
};

/* Opens the writer's own connection to the database `where` (a SQLite path or a
 * postgresql:// URI, as db was opened with), prepares every statement, reads the saved
 * watermark and starts the writer thread, and for SQLite the checkpointer thread. db is the
 * caller's connection (read at start only). NULL on failure (logged). */
struct ingest *ingest__new(mqc_db *db, const char *where, int batch_max, int batch_ms);
/* Stops the threads and frees both batches without committing them: call ingest__flush
 * first. */
void ingest__free(struct ingest *ing);

/* The watermark saved with the last commit (at start: in the database): every message up
 * to seq of epoch is committed. (0, 0) for a new database. */
void ingest__watermark(struct ingest *ing, uint64_t *epoch, uint64_t *seq);

/* The (epoch, seq) of the last message taken, (0, 0) before the first. */
void ingest__taken(const struct ingest *ing, uint64_t *epoch, uint64_t *seq);

/* Takes message seq of epoch (the next in order: store.c checks) into the filling batch.
 * An invalid message is logged, counted and dropped, but taken: its seq is passed. -1 when
 * out of memory: not taken (the caller asks for it again later). */
int ingest__add(struct ingest *ing, uint64_t epoch, uint64_t seq, const void *payload, size_t len);

/* Hands the filling batch to the writer when the writer is idle and the batch is due (full,
 * batch_ms old, or a request waits for it), or when the watermark is behind what was taken
 * (a batch of only invalid messages). Never waits: one uncontended mutex. */
void ingest__pump(struct ingest *ing, int64_t now_ms);

/* Commits everything taken so far and waits for it. 0 on success or nothing to do; -1 if a
 * commit failed (logged; the writer keeps the batch and retries with backoff). */
int ingest__flush(struct ingest *ing);

/* Milliseconds until ingest__pump has work of its own (the filling batch's deadline), or
 * -1 when only the writer can make progress (then ingest__fd wakes the caller). */
int64_t ingest__timeout_ms(struct ingest *ing, int64_t now_ms);

/* Readable when the writer finished a commit attempt or a request asked for a commit;
 * ingest__fd_clear empties it. */
int ingest__fd(const struct ingest *ing);
void ingest__fd_clear(struct ingest *ing);

/* True while the filling batch is full and the writer busy: the caller stops reading. */
bool ingest__blocked(struct ingest *ing);

/* True once a commit failed and has not succeeded since (the store is stuck, or
 * reconnecting). */
bool ingest__failing(struct ingest *ing);

/* Copies the writer's counters into *out and resets them. */
void ingest__stats_take(struct ingest *ing, struct ingest_stats *out);

/* Messages waiting in either batch. */
size_t ingest__pending(struct ingest *ing);

/* ---------------------------------------------------------- [any thread] */

/* Makes db wait for the writer's lock the way the writer waits for others: polling every
 * 200 us, *polls times at most (SQLite's own handler sleeps up to 100 ms between tries;
 * nothing for PostgreSQL, whose writers wait for row locks). polls must outlive db. */
void ingest__busy_poll(mqc_db *db, const int *polls);

/* True if a message of `room` may be waiting in either batch (a small hash of rooms: never
 * false when one waits, rarely true when none does). */
bool ingest__room_pending(const struct ingest *ing, const char *room);
uint64_t ingest__received_lsn(const struct ingest *ing);
uint64_t ingest__committed_lsn(const struct ingest *ing);
/* Whether message seq of epoch was taken (epoch is the plugin's current one as far as the
 * store connection knows). */
bool ingest__seen(const struct ingest *ing, uint64_t epoch, uint64_t seq);
/* Asks the store thread to hand over what was taken up to lsn now rather than after
 * batch_ms; the caller waits for ingest__committed_lsn on ingest__progress_fd. */
void ingest__want_commit(struct ingest *ing, uint64_t lsn);
/* Readable after every commit, and after every message taken while watching is set
 * (ingest__watch_seen: a request waits for ingest__seen). Owned by the request thread:
 * it alone reads (ingest__progress_clear). */
int ingest__progress_fd(const struct ingest *ing);
void ingest__progress_clear(struct ingest *ing);
void ingest__watch_seen(struct ingest *ing, bool on);
/* Whether the store connection is reading the plugin's messages now (connected, fed, not
 * stopped by a full batch): set by the store thread every loop. */
void ingest__set_reading(struct ingest *ing, bool on);
bool ingest__reading(const struct ingest *ing);

#endif
