/*
 * Storing chat messages: stamped messages from <prefix>/rooms/{room}/messages are kept in
 * an in-memory batch and committed in one transaction (docs/architecture.md "Durability").
 *
 * Contract with the caller (bridge/main.c):
 *   - single-threaded; db stays open for the life of the struct, and no other transaction
 *     is open on it when an ingest__ function runs (ingest opens and closes its own);
 *   - the batch is committed when batch_max messages wait, when ingest__timeout_ms says its
 *     time is up (then call ingest__tick), before every request (ingest__flush), and at exit;
 *   - a failed commit is rolled back and the batch kept; ingest__tick retries it with
 *     backoff. ingest__stored_upto only moves after a commit succeeded, so the caller never
 *     acknowledges to the plugin what is not on disk.
 */
#ifndef MQCHAT_BRIDGE_INGEST_H
#define MQCHAT_BRIDGE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct ingest;

/* Prepares every statement and reads the highest stored id. NULL on failure (logged). */
struct ingest *ingest__new(sqlite3 *db, int batch_max, int batch_ms);
/* Frees the batch without committing it: call ingest__flush first. */
void ingest__free(struct ingest *ing);

/* Parses one stamped message received on topic, whose room level is room[0..roomlen).
 * An invalid message is logged and dropped. Commits when the batch is full.
 * Returns 1 if this call committed a batch, else 0. */
int ingest__add(struct ingest *ing, const char *topic, const char *room, size_t roomlen,
		const void *payload, size_t len);

/* Commits the batch now (no-op when empty). 0 on success or nothing to do; -1 if the
 * commit failed (logged; the batch is kept and retried by ingest__tick). */
int ingest__flush(struct ingest *ing);

/* Commits when the batch's deadline (or its retry time after a failure) has come.
 * Returns 1 if it committed, 0 if nothing was due, -1 if a due commit failed again. */
int ingest__tick(struct ingest *ing, int64_t now_ms);

/* Milliseconds until ingest__tick has work, or -1 when the batch is empty. */
int64_t ingest__timeout_ms(const struct ingest *ing, int64_t now_ms);

/* True while commits fail and the batch is full: the caller stops reading the network
 * (the broker keeps the rest queued) until a retry succeeds. */
bool ingest__blocked(const struct ingest *ing);

/* The highest message id that is on disk or was deliberately dropped after reaching the
 * database (room unknown, refused by a constraint): what "stored upto" may say. Starts at
 * the highest id in the database. */
uint64_t ingest__stored_upto(const struct ingest *ing);

/* SELECT max(id) FROM messages (0 when empty, or on error, logged): what the bridge asks
 * the plugin to replay after. */
uint64_t ingest__max_id(struct ingest *ing);

/* The replay watermark: every message with an id <= it is committed, and the plugin may
 * have dropped its copies. It is NOT max(id): while a replay runs, newer messages from the
 * broker's session queue are committed before older replayed ones, so max(id) can pass
 * ids that are not stored yet. It moves only when the bridge acknowledges ("stored"), and
 * is saved before the acknowledgement is sent. A bridge asks for replay after it. */
uint64_t ingest__acked(struct ingest *ing);
/* Saves upto as the watermark (never lowering it). 0, or -1: do not acknowledge. */
int ingest__set_acked(struct ingest *ing, uint64_t upto);

/* Messages waiting in the batch. */
size_t ingest__pending(const struct ingest *ing);

#endif
