/*
 * Storing chat messages: stamped messages from <prefix>/rooms/{room}/messages are kept in
 * an in-memory batch and committed in one transaction by a writer thread
 * (docs/architecture.md "Durability", "The bridge's threads").
 *
 * Two batches exist: the one the caller fills (ingest__add) and the one the writer thread
 * commits, on a database connection of its own. The caller hands the filling batch over
 * when the writer is idle (ingest__pump); while the writer commits, the next batch grows,
 * so batches are as large as the commit time makes them (group commit), up to batch_max.
 *
 * Contract with the caller (bridge/main.c, one thread):
 *   - every ingest__ function is called from that one thread; the writer thread is internal;
 *   - call ingest__pump once per loop iteration, after each message read in a burst, and
 *     whenever ingest__fd is readable (clear it then);
 *   - stop reading the network while ingest__blocked (the broker keeps the rest queued);
 *   - a failed commit is rolled back and the writer keeps its batch and retries with
 *     backoff. ingest__stored_upto only moves after a commit succeeded, and the replay
 *     watermark (ingest__saved_ack) is saved in the same transaction as a batch, so the
 *     caller never acknowledges to the plugin what is not on disk.
 */
#ifndef MQCHAT_BRIDGE_INGEST_H
#define MQCHAT_BRIDGE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "stats.h"

struct ingest;

/* What the writer did since the last ingest__stats_take. */
struct ingest_stats {
	struct op_stat commit_ns;   /* duration of each successful commit (BEGIN to COMMIT) */
	struct op_stat commit_size; /* messages in each */
	uint64_t messages;
};

/* Opens the writer's own connection to db's file, prepares every statement, reads the
 * highest stored id and starts the writer and checkpointer threads. db is the caller's
 * connection: ingest__acked reads through it. NULL on failure (logged). */
struct ingest *ingest__new(sqlite3 *db, int batch_max, int batch_ms);
/* Stops the threads and frees both batches without committing them: call ingest__flush
 * first. */
void ingest__free(struct ingest *ing);

/* Parses one stamped message received on topic, whose room level is room[0..roomlen), and
 * adds it to the filling batch. An invalid message is logged and dropped. */
void ingest__add(struct ingest *ing, const char *topic, const char *room, size_t roomlen,
		const void *payload, size_t len);

/* Hands the filling batch to the writer when the writer is idle and the batch is due (full,
 * or batch_ms old), or, with may_ack, when the watermark is behind what is stored (the
 * writer then saves it, in a transaction of its own if nothing else is waiting). Never
 * waits: one uncontended mutex. */
void ingest__pump(struct ingest *ing, int64_t now_ms, bool may_ack);

/* Commits everything added so far and waits for it (with may_ack: the watermark too).
 * 0 on success or nothing to do; -1 if a commit failed (logged; the writer keeps the batch
 * and retries with backoff). */
int ingest__flush(struct ingest *ing, bool may_ack);

/* Milliseconds until ingest__pump has work of its own (the filling batch's deadline), or
 * -1 when only the writer can make progress (then ingest__fd wakes the caller). */
int64_t ingest__timeout_ms(struct ingest *ing, int64_t now_ms);

/* Readable when the writer finished a commit attempt; ingest__fd_clear empties it. */
int ingest__fd(const struct ingest *ing);
void ingest__fd_clear(struct ingest *ing);

/* True while the filling batch is full and the writer busy: the caller stops reading. */
bool ingest__blocked(struct ingest *ing);

/* True if a message of `room` may be waiting in either batch (a small hash of rooms: never
 * false when one waits, rarely true when none does). A request reading that room must
 * flush first. */
bool ingest__room_pending(const struct ingest *ing, const char *room);

/* The highest message id that is on disk or was deliberately dropped after reaching the
 * database (room unknown, refused by a constraint). Starts at the highest id stored. */
uint64_t ingest__stored_upto(struct ingest *ing);

/* True once a message was dropped for lack of memory: it is never acknowledged, and the
 * caller should exit soon (committing the rest) so that the next bridge gets it from the
 * plugin's replay buffer before that buffer wraps. */
bool ingest__must_restart(const struct ingest *ing);

/* The highest watermark the writer has saved (meta.bridge_acked_upto), 0 before the first:
 * what the caller may say in a "stored" acknowledgement. */
uint64_t ingest__saved_ack(struct ingest *ing);

/* The replay watermark as saved in the database: every message with an id <= it is
 * committed, and the plugin may have dropped its copies. It is NOT max(id): while a replay
 * runs, newer messages from the broker's session queue are committed before older replayed
 * ones, so max(id) can pass ids that are not stored yet. A bridge asks for replay after it. */
uint64_t ingest__acked(struct ingest *ing);

/* Copies the writer's counters into *out and resets them. */
void ingest__stats_take(struct ingest *ing, struct ingest_stats *out);

/* Messages waiting in either batch. */
size_t ingest__pending(struct ingest *ing);

#endif
