/*
 * Storing chat messages in batches (docs/architecture.md "Durability", "Messages and ids").
 *
 * Each stamped message from <prefix>/rooms/{room}/messages joins an in-memory batch; the
 * batch is committed in ONE transaction (BEGIN IMMEDIATE ... COMMIT). Per message:
 *
 *   INSERT OR IGNORE INTO messages(...)         -- idempotent by id: redeliveries are no-ops
 *   only if a row was inserted:
 *     UPDATE rooms  msg_count+1, last_msg_id     -- the room's counters
 *     room_sender_counts n+1                     -- "count from one user" is one row
 *     read_markers  sender's last_read_id = id   -- sending implies having read
 *
 * seq numbers a room's messages 1, 2, 3, ... in id order. Normally a message is the newest
 * of its room (seq = msg_count+1). A message replayed by the plugin after newer ones were
 * stored (bridge killed between libmosquitto's PUBACK and our COMMIT) is older than the
 * room's last message: it takes the seq after its predecessor and the later ones shift up.
 *
 * Hazard: libmosquitto has already acknowledged every message in the batch. Nothing here
 * may drop a message it could still store: a failed commit rolls back, keeps the batch and
 * retries; stored_upto (what main.c may acknowledge to the plugin) moves only after COMMIT.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqchat_store.h"

#include "bridge.h"
#include "ingest.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 10000

struct ingest {
	sqlite3 *db;
	sqlite3_stmt *begin, *commit, *rollback;
	sqlite3_stmt *room_get, *seq_before, *msg_insert, *seq_shift;
	sqlite3_stmt *room_update, *sender_count, *read_mark, *max_id;
	sqlite3_stmt *acked_get, *acked_set;

	mqc_stamped *batch; /* each owns its root */
	size_t len, cap;
	int batch_max, batch_ms;
	int64_t first_at;   /* when the batch's first message arrived (monotonic ms) */
	int64_t retry_at;   /* 0, or when to retry a failed commit */
	int64_t retry_ms;   /* the last retry delay */
	uint64_t stored_upto;
	uint64_t ack_ceiling; /* 0, or the lowest id dropped for lack of memory: never ack it */

	/* The checkpointer: its own connection and thread, so copying the WAL back into the
	 * database (and its fdatasync, tens of ms) never runs on the bridge's loop. */
	pthread_t ckpt_thread;
	sqlite3 *ckpt_db;
	atomic_bool ckpt_stop;
	bool ckpt_running;
};

#define CHECKPOINT_EVERY_MS 500

static void *checkpointer(void *arg)
{
	struct ingest *ing = arg;
	while(!atomic_load(&ing->ckpt_stop)){
		for(int slept = 0; slept < CHECKPOINT_EVERY_MS && !atomic_load(&ing->ckpt_stop); slept += 50){
			struct timespec ts = { 0, 50 * 1000000L };
			while(nanosleep(&ts, &ts) == -1 && errno == EINTR){}
		}
		/* PASSIVE: copies what no reader still needs, never waits for the writer. */
		int log = 0, done = 0;
		int rc = sqlite3_wal_checkpoint_v2(ing->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		if(rc != SQLITE_OK && rc != SQLITE_BUSY){
			bridge__log(BLOG_WARN, "ingest", "checkpoint failed: %s; retrying in %d ms",
					sqlite3_errmsg(ing->ckpt_db), CHECKPOINT_EVERY_MS);
		}
	}
	return NULL;
}

/* Starts the checkpointer; on any failure the writer keeps SQLite's own checkpoints. */
static void checkpointer_start(struct ingest *ing)
{
	char reason[512];
	const char *path = sqlite3_db_filename(ing->db, "main");
	if(!path || !*path) return;
	if(mqc_db_open(path, MQC_OPEN_READWRITE, 1000, &ing->ckpt_db, reason, sizeof(reason))){
		bridge__log(BLOG_WARN, "ingest", "no checkpoint connection (%s); checkpoints stay on the main thread", reason);
		return;
	}
	if(pthread_create(&ing->ckpt_thread, NULL, checkpointer, ing) != 0){
		bridge__log(BLOG_WARN, "ingest", "no checkpoint thread; checkpoints stay on the main thread");
		sqlite3_close(ing->ckpt_db);
		ing->ckpt_db = NULL;
		return;
	}
	ing->ckpt_running = true;
	sqlite3_exec(ing->db, "PRAGMA wal_autocheckpoint = 0", NULL, NULL, NULL);
}

/* What happened to one message inside the transaction. */
enum store_res { S_INSERTED, S_DUPLICATE, S_SKIPPED, S_ERROR };

static int prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql)
{
	if(sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK){
		bridge__log(BLOG_ERROR, "ingest", "cannot prepare `%s`: %s", sql, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* Steps a statement that returns no row and resets it. Returns the step's result code. */
static int exec_stmt(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

struct ingest *ingest__new(sqlite3 *db, int batch_max, int batch_ms)
{
	struct ingest *ing = calloc(1, sizeof(*ing));
	if(!ing){
		bridge__log(BLOG_ERROR, "ingest", "out of memory");
		return NULL;
	}
	ing->db = db;
	ing->batch_max = batch_max;
	ing->batch_ms = batch_ms;
	ing->cap = (size_t)batch_max < 1024 ? (size_t)batch_max : 1024;
	ing->batch = calloc(ing->cap, sizeof(*ing->batch));
	if(!ing->batch){
		bridge__log(BLOG_ERROR, "ingest", "out of memory for a batch of %zu", ing->cap);
		goto fail;
	}

	/* The writer's page cache and I/O (measured with perf while draining a backlog: 64 %
	 * of the bridge's time was pread/pwrite/fdatasync with SQLite's default 2 MB cache):
	 *  - a 64 MB page cache keeps the indexes' hot pages (rooms, recent leaves) in memory;
	 *  - reads through mmap copy nothing;
	 *  - checkpoints every 16,384 WAL pages (64 MB) instead of 1,000: a page written by
	 *    many commits is copied back to the database file once per checkpoint; and, when
	 *    the checkpointer thread starts (below), not on this thread at all. */
	static const char *const tuning[] = {
		"PRAGMA cache_size = -65536",
		"PRAGMA mmap_size = 1073741824",
		"PRAGMA wal_autocheckpoint = 16384",
	};
	for(size_t i = 0; i < sizeof(tuning) / sizeof(tuning[0]); i++){
		if(sqlite3_exec(db, tuning[i], NULL, NULL, NULL) != SQLITE_OK){
			bridge__log(BLOG_WARN, "ingest", "`%s` failed: %s; going on without it", tuning[i], sqlite3_errmsg(db));
		}
	}

	int rc = 0;
	rc |= prepare(db, &ing->begin, "BEGIN IMMEDIATE");
	rc |= prepare(db, &ing->commit, "COMMIT");
	rc |= prepare(db, &ing->rollback, "ROLLBACK");
	rc |= prepare(db, &ing->room_get, "SELECT msg_count, last_msg_id FROM rooms WHERE id = ?1");
	rc |= prepare(db, &ing->seq_before,
			"SELECT seq FROM messages WHERE room_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT 1");
	rc |= prepare(db, &ing->msg_insert,
			"INSERT OR IGNORE INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
	rc |= prepare(db, &ing->seq_shift, "UPDATE messages SET seq = seq + 1 WHERE room_id = ?1 AND id > ?2");
	rc |= prepare(db, &ing->room_update,
			"UPDATE rooms SET msg_count = msg_count + 1, last_msg_id = max(last_msg_id, ?2) WHERE id = ?1");
	rc |= prepare(db, &ing->sender_count,
			"INSERT INTO room_sender_counts(room_id, sender, n) VALUES (?1, ?2, 1)"
			" ON CONFLICT(room_id, sender) DO UPDATE SET n = n + 1");
	rc |= prepare(db, &ing->read_mark,
			"INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES (?1, ?2, ?3)"
			" ON CONFLICT(user_id, room_id) DO UPDATE SET last_read_id = max(last_read_id, excluded.last_read_id)");
	rc |= prepare(db, &ing->max_id, "SELECT coalesce(max(id), 0) FROM messages");
	/* The replay watermark: the last "stored" ack sent to the plugin (see ingest__acked). */
	rc |= prepare(db, &ing->acked_get, "SELECT value FROM meta WHERE key = 'bridge_acked_upto'");
	rc |= prepare(db, &ing->acked_set,
			"INSERT INTO meta(key, value) VALUES ('bridge_acked_upto', ?1)"
			" ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)");
	if(rc) goto fail;

	ing->stored_upto = ingest__max_id(ing);
	checkpointer_start(ing);
	return ing;
fail:
	ingest__free(ing);
	return NULL;
}

static void batch_clear(struct ingest *ing)
{
	for(size_t i = 0; i < ing->len; i++) json_decref(ing->batch[i].root);
	ing->len = 0;
	ing->first_at = 0;
}

void ingest__free(struct ingest *ing)
{
	if(!ing) return;
	if(ing->ckpt_running){
		atomic_store(&ing->ckpt_stop, true);
		pthread_join(ing->ckpt_thread, NULL);
	}
	if(ing->ckpt_db) sqlite3_close(ing->ckpt_db);
	if(ing->len){
		bridge__log(BLOG_WARN, "ingest", "discarding %zu uncommitted messages at exit "
				"(not acknowledged: the plugin replays them to the next bridge)", ing->len);
	}
	batch_clear(ing);
	free(ing->batch);
	sqlite3_finalize(ing->begin);
	sqlite3_finalize(ing->commit);
	sqlite3_finalize(ing->rollback);
	sqlite3_finalize(ing->room_get);
	sqlite3_finalize(ing->seq_before);
	sqlite3_finalize(ing->msg_insert);
	sqlite3_finalize(ing->seq_shift);
	sqlite3_finalize(ing->room_update);
	sqlite3_finalize(ing->sender_count);
	sqlite3_finalize(ing->read_mark);
	sqlite3_finalize(ing->max_id);
	sqlite3_finalize(ing->acked_get);
	sqlite3_finalize(ing->acked_set);
	free(ing);
}

uint64_t ingest__max_id(struct ingest *ing)
{
	uint64_t id = 0;
	int rc = sqlite3_step(ing->max_id);
	if(rc == SQLITE_ROW){
		id = (uint64_t)sqlite3_column_int64(ing->max_id, 0);
	}else{
		bridge__log(BLOG_ERROR, "ingest", "reading the highest stored message id failed: %s; using 0",
				sqlite3_errmsg(ing->db));
	}
	sqlite3_reset(ing->max_id);
	return id;
}

uint64_t ingest__acked(struct ingest *ing)
{
	uint64_t id = 0;
	int rc = sqlite3_step(ing->acked_get);
	if(rc == SQLITE_ROW){
		id = (uint64_t)sqlite3_column_int64(ing->acked_get, 0);
	}else if(rc != SQLITE_DONE){
		bridge__log(BLOG_ERROR, "ingest", "reading the replay watermark failed: %s; asking for everything",
				sqlite3_errmsg(ing->db));
	}
	sqlite3_reset(ing->acked_get);
	return id;
}

int ingest__set_acked(struct ingest *ing, uint64_t upto)
{
	sqlite3_bind_int64(ing->acked_set, 1, (sqlite3_int64)upto);
	if(exec_stmt(ing->acked_set) != SQLITE_DONE){
		bridge__log(BLOG_ERROR, "ingest", "saving the replay watermark %" PRIu64 " failed: %s; not acknowledging",
				upto, sqlite3_errmsg(ing->db));
		return -1;
	}
	return 0;
}

/* Errors that retrying the same message can never fix: that message is skipped. */
static bool permanent(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_CONSTRAINT || rc == SQLITE_TOOBIG || rc == SQLITE_MISMATCH || rc == SQLITE_RANGE;
}

static enum store_res store_one(struct ingest *ing, const mqc_stamped *m)
{
	sqlite3_int64 id = (sqlite3_int64)m->id, count, last, seq;
	int rc;

	sqlite3_bind_text(ing->room_get, 1, m->room, -1, SQLITE_STATIC);
	rc = sqlite3_step(ing->room_get);
	if(rc == SQLITE_ROW){
		count = sqlite3_column_int64(ing->room_get, 0);
		last = sqlite3_column_int64(ing->room_get, 1);
	}
	sqlite3_reset(ing->room_get);
	sqlite3_clear_bindings(ing->room_get);
	if(rc == SQLITE_DONE){
		bridge__log(BLOG_WARN, "ingest", "message %" PRIu64 " from %s for unknown room %s skipped",
				m->id, m->from, m->room);
		return S_SKIPPED;
	}
	if(rc != SQLITE_ROW) return S_ERROR;

	bool older = id <= last;
	if(!older){
		seq = count + 1;
	}else{
		sqlite3_bind_text(ing->seq_before, 1, m->room, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ing->seq_before, 2, id);
		rc = sqlite3_step(ing->seq_before);
		seq = rc == SQLITE_ROW ? sqlite3_column_int64(ing->seq_before, 0) + 1 : 1;
		sqlite3_reset(ing->seq_before);
		sqlite3_clear_bindings(ing->seq_before);
		if(rc != SQLITE_ROW && rc != SQLITE_DONE) return S_ERROR;
	}

	char *att = m->attachment ? json_dumps(m->attachment, JSON_COMPACT) : NULL;
	if(m->attachment && !att){
		bridge__log(BLOG_ERROR, "ingest", "out of memory serialising the attachment of message %" PRIu64, m->id);
		return S_ERROR;
	}
	sqlite3_stmt *st = ing->msg_insert;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, m->room, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, seq);
	sqlite3_bind_text(st, 4, m->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, m->type, -1, SQLITE_STATIC);
	if(m->body) sqlite3_bind_text(st, 6, m->body, -1, SQLITE_STATIC);
	if(att) sqlite3_bind_text(st, 7, att, -1, free);
	if(m->client_msg_id) sqlite3_bind_text(st, 8, m->client_msg_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, m->ts);
	rc = exec_stmt(st);
	if(rc != SQLITE_DONE){
		if(permanent(rc)){
			bridge__log(BLOG_ERROR, "ingest", "message %" PRIu64 " in room %s refused by the database: %s; skipped",
					m->id, m->room, sqlite3_errmsg(ing->db));
			return S_SKIPPED;
		}
		return S_ERROR;
	}
	if(sqlite3_changes(ing->db) != 1) return S_DUPLICATE;

	if(older){
		sqlite3_bind_text(ing->seq_shift, 1, m->room, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ing->seq_shift, 2, id);
		if(exec_stmt(ing->seq_shift) != SQLITE_DONE) return S_ERROR;
	}
	sqlite3_bind_text(ing->room_update, 1, m->room, -1, SQLITE_STATIC);
	sqlite3_bind_int64(ing->room_update, 2, id);
	if(exec_stmt(ing->room_update) != SQLITE_DONE) return S_ERROR;

	sqlite3_bind_text(ing->sender_count, 1, m->room, -1, SQLITE_STATIC);
	sqlite3_bind_text(ing->sender_count, 2, m->from, -1, SQLITE_STATIC);
	if(exec_stmt(ing->sender_count) != SQLITE_DONE) return S_ERROR;

	sqlite3_bind_text(ing->read_mark, 1, m->from, -1, SQLITE_STATIC);
	sqlite3_bind_text(ing->read_mark, 2, m->room, -1, SQLITE_STATIC);
	sqlite3_bind_int64(ing->read_mark, 3, id);
	if(exec_stmt(ing->read_mark) != SQLITE_DONE) return S_ERROR;
	return S_INSERTED;
}

static void schedule_retry(struct ingest *ing, const char *what, const char *err)
{
	int64_t now = bridge__mono_ms();
	ing->retry_ms = ing->retry_ms ? ing->retry_ms * 2 : RETRY_MIN_MS;
	if(ing->retry_ms > RETRY_MAX_MS) ing->retry_ms = RETRY_MAX_MS;
	ing->retry_at = now + ing->retry_ms;
	bridge__log(BLOG_ERROR, "ingest", "%s for a batch of %zu messages failed: %s; rolled back, "
			"keeping the batch (not acknowledged) and retrying in %" PRId64 " ms",
			what, ing->len, err, ing->retry_ms);
}

static int commit(struct ingest *ing)
{
	size_t inserted = 0, dup = 0, skipped = 0;
	uint64_t maxid = 0;
	const char *what = "BEGIN";
	int64_t t0 = bridge__mono_ms();

	if(!ing->len) return 0;
	if(exec_stmt(ing->begin) != SQLITE_DONE) goto fail;
	what = "storing a message";
	for(size_t i = 0; i < ing->len; i++){
		switch(store_one(ing, &ing->batch[i])){
			case S_INSERTED: inserted++; break;
			case S_DUPLICATE: dup++; break;
			case S_SKIPPED: skipped++; break;
			case S_ERROR: goto fail;
		}
		if(ing->batch[i].id > maxid) maxid = ing->batch[i].id;
	}
	what = "COMMIT";
	if(exec_stmt(ing->commit) != SQLITE_DONE) goto fail;

	if(maxid > ing->stored_upto) ing->stored_upto = maxid;
	bridge__log(BLOG_DEBUG, "ingest", "committed %zu messages (%zu new, %zu already stored, %zu skipped) "
			"in %" PRId64 " ms; stored up to %" PRIu64,
			ing->len, inserted, dup, skipped, bridge__mono_ms() - t0, ing->stored_upto);
	if(ing->retry_at){
		bridge__log(BLOG_INFO, "ingest", "commit succeeded again after a failure");
	}
	ing->retry_at = 0;
	ing->retry_ms = 0;
	batch_clear(ing);
	return 0;
fail:;
	char err[256];
	snprintf(err, sizeof(err), "%s", sqlite3_errmsg(ing->db));
	if(!sqlite3_get_autocommit(ing->db)) exec_stmt(ing->rollback);
	schedule_retry(ing, what, err);
	return -1;
}

int ingest__add(struct ingest *ing, const char *topic, const char *room, size_t roomlen,
		const void *payload, size_t len)
{
	char reason[256];
	mqc_stamped m;

	if(mqc_stamped_parse(payload, len, &m, reason, sizeof(reason))){
		bridge__log(BLOG_WARN, "ingest", "dropped an invalid message on %s: %s", topic, reason);
		return 0;
	}
	if(strlen(m.room) != roomlen || memcmp(m.room, room, roomlen)){
		bridge__log(BLOG_WARN, "ingest", "dropped message %" PRIu64 " on %s: its room is %s, not the topic's",
				m.id, topic, m.room);
		json_decref(m.root);
		return 0;
	}
	if(ing->len == ing->cap){
		size_t cap = ing->cap * 2;
		mqc_stamped *b = realloc(ing->batch, cap * sizeof(*b));
		if(b){
			ing->batch = b;
			ing->cap = cap;
		}else if(commit(ing)){
			/* Never acknowledged to the plugin (stored_upto stays below it until exit):
			 * the plugin replays it to the next bridge. */
			bridge__log(BLOG_ERROR, "ingest", "out of memory growing the batch past %zu; message %" PRIu64
					" in room %s not stored now; no more acknowledgements until restart",
					ing->cap, m.id, m.room);
			if(!ing->ack_ceiling || m.id < ing->ack_ceiling) ing->ack_ceiling = m.id;
			json_decref(m.root);
			return 0;
		}
	}
	if(!ing->len) ing->first_at = bridge__mono_ms();
	ing->batch[ing->len++] = m;
	bridge__log(BLOG_DEBUG, "ingest", "queued message %" PRIu64 " from %s in room %s (%zu waiting)",
			m.id, m.from, m.room, ing->len);

	/* While failing, only the retry timer commits: no hammering a full disk per message. */
	if(ing->len >= (size_t)ing->batch_max && !ing->retry_at){
		return commit(ing) == 0 ? 1 : 0;
	}
	return 0;
}

int ingest__flush(struct ingest *ing)
{
	return commit(ing);
}

int ingest__tick(struct ingest *ing, int64_t now_ms)
{
	if(!ing->len) return 0;
	int64_t due = ing->retry_at ? ing->retry_at : ing->first_at + ing->batch_ms;
	if(now_ms < due) return 0;
	return commit(ing) == 0 ? 1 : -1;
}

int64_t ingest__timeout_ms(const struct ingest *ing, int64_t now_ms)
{
	if(!ing->len) return -1;
	int64_t due = ing->retry_at ? ing->retry_at : ing->first_at + ing->batch_ms;
	return due > now_ms ? due - now_ms : 0;
}

bool ingest__blocked(const struct ingest *ing)
{
	return ing->retry_at && ing->len >= (size_t)ing->batch_max;
}

uint64_t ingest__stored_upto(const struct ingest *ing)
{
	if(ing->ack_ceiling && ing->stored_upto >= ing->ack_ceiling) return ing->ack_ceiling - 1;
	return ing->stored_upto;
}

size_t ingest__pending(const struct ingest *ing)
{
	return ing->len;
}
