/*
 * Storing chat messages in batches (docs/architecture.md "Durability", "The bridge's
 * threads", "Messages and ids").
 *
 * The loop thread parses each stamped message from <prefix>/rooms/{room}/messages into the
 * filling batch. A writer thread, on a connection of its own, commits the batch it was
 * handed in ONE transaction (BEGIN IMMEDIATE ... COMMIT):
 *
 *   per message:   INSERT OR IGNORE INTO messages(...)   -- idempotent by id
 *   per room:      UPDATE rooms msg_count + k, last_msg_id  -- k = rows inserted for it
 *   per (room, sender):
 *                  room_sender_counts n + k               -- "count from one user" is one row
 *                  read_markers last_read_id = newest     -- sending implies having read
 *   meta feed_epoch, feed_seq                             -- the watermark: the batch's last
 *                                                            (epoch, seq), what store.c confirms
 *
 * The counters are summed per batch in a small hash table (agg below): under load a batch
 * holds several messages per room, and each counter row is then written once, not once per
 * message (perf: the counter statements were half of the statements per message).
 *
 * messages.seq numbers a room's messages 1, 2, 3, ... in id order (not the plugin's feed
 * seq). Normally a message is the newest of its room (seq = count + 1, count kept in the
 * batch's room entry). A message the plugin sends again after newer ones were stored (a
 * bridge killed between libmosquitto's PUBACK and our COMMIT, messages kept over a broker
 * restart) is older than the room's last message: it takes the seq after its predecessor
 * and the later ones shift up.
 *
 * Hazard: libmosquitto has already acknowledged every message in a batch. Nothing here may
 * drop a message it could still store: a failed commit rolls back, keeps the batch and
 * retries; the watermark moves only with a COMMIT.
 *
 * Checkpoints run on a third thread with a third connection (the checkpointer): every
 * 100 ms a PASSIVE checkpoint copies what is in the WAL back into the database without
 * stopping the writer. That alone never lets the WAL file start over while the writer
 * commits back to back (it grew to 3.3 GB in a 20 s run, and growing the file, the kernel
 * zeroing new pages, took 12 % of the bridge), so once the WAL passes 256 MB the
 * checkpointer runs a RESTART checkpoint: it waits for the writer's transaction to end,
 * copies the few frames the last PASSIVE one left, and the next transaction writes the
 * WAL from its start. Checkpoints on the writer itself (wal_autocheckpoint) stalled it
 * for ~100 ms each (commit p99 95 ms, publish -> stored lag p50 41 ms at 19k msg/s).
 *
 * Threads: `mu` guards the hand-over (busy, work_len, attempts, last_ok, retry_now, stop)
 * and the writer's stats.
 * While busy the writer owns `work` and the store thread owns `fill`; neither touches the
 * other's batch. The watermark and committed_lsn are written by the writer only, the
 * received_* fields by the store thread only (atomics: the request thread reads them).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "mqchat_store.h"

#include "bridge.h"
#include "ingest.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 10000
#define PEND_SLOTS 65536u /* rooms' pending-message counters, by hash */
#define CHECKPOINT_EVERY_MS 100
#define CHECKPOINT_RESTART_FRAMES 65536 /* 256 MB of 4 KiB pages */

struct batch {
	mqc_stamped *m; /* each owns its root */
	size_t len, cap;
	uint64_t epoch, seq, lsn; /* of the last message taken into it (also an invalid one), 0: none */
};

/* One entry of the per-batch counter table: a room (sender NULL) or a (room, sender). */
struct agg {
	const char *room, *sender; /* point into the batch's messages; room NULL = empty slot */
	uint32_t hash;
	bool known;         /* room: it exists */
	int64_t count, last; /* room: msg_count and last_msg_id, as of this message */
	int64_t n;          /* rows inserted in this batch */
	int64_t newest;     /* (room, sender): the newest id inserted */
};

struct ingest {
	sqlite3 *db;  /* the store thread's connection (the caller's) */
	sqlite3 *wdb; /* the writer's */
	sqlite3_stmt *begin, *commit, *rollback; /* on wdb, and the rest below */
	sqlite3_stmt *room_get, *seq_before, *msg_insert, *seq_shift;
	sqlite3_stmt *room_update, *sender_count, *read_mark, *mark_set;

	/* the store thread's */
	struct batch fill;
	int batch_max, batch_ms;
	int64_t first_at;     /* when the filling batch's first message arrived (monotonic ms) */
	uint64_t handed_lsn;  /* lsn of the last message handed to the writer */
	uint64_t invalid;     /* messages dropped as invalid since start */
	struct log_repeat invalid_log;

	/* the writer's */
	struct batch work;
	struct agg *agg;
	size_t agg_cap;      /* slots, a power of two */
	size_t *agg_used;    /* indexes of used slots, to clear them */
	size_t agg_nused;
	int64_t retry_ms;
	char err[256];       /* why the last commit failed */
	struct log_repeat commit_log, ckpt_log, skip_log;
	uint64_t failures;   /* commit attempts failed in a row */

	/* shared */
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	bool busy, stop, retry_now, last_ok;
	size_t work_len;    /* work.len as handed over (work.len itself is the writer's) */
	uint64_t attempts;
	struct ingest_stats stats;
	uint64_t wm_epoch, wm_seq;           /* the saved watermark (writer; read and written under mu:
	                                      * a new epoch with an old seq would confirm what is not committed) */
	_Atomic uint64_t committed_lsn;      /* writer */
	_Atomic uint64_t recv_epoch, recv_seq, recv_lsn; /* the last message taken (store thread) */
	_Atomic uint64_t commit_target;      /* a request waits for this lsn to be committed */
	atomic_bool watching, failing, reading;
	_Atomic uint32_t pend[PEND_SLOTS];
	int efd;          /* wakes the store thread */
	int progress_efd; /* wakes the request thread */
	pthread_t writer;
	bool writer_running;

	/* the checkpointer's */
	pthread_t ckpt_thread;
	sqlite3 *ckpt_db;
	atomic_bool ckpt_stop;
	bool ckpt_running;
};

/* What happened to one message inside the transaction. */
enum store_res { S_INSERTED, S_DUPLICATE, S_SKIPPED, S_ERROR };

static uint32_t fnv1a(uint32_t h, const char *s)
{
	for(; *s; s++){
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static uint32_t pend_slot(const char *room)
{
	return fnv1a(2166136261u, room) & (PEND_SLOTS - 1);
}

/* ------------------------------------------------------------------ checkpointer */

/* Busy handler of the writer and the checkpointer: waiting for each other is short (a
 * commit, the tail of a checkpoint), so poll every 200 us rather than SQLite's default
 * sleeps of up to 100 ms; give up after *(int *)arg polls (the caller logs and retries). */
static int busy_poll(void *arg, int count)
{
	if(count >= *(const int *)arg) return 0;
	struct timespec ts = { 0, 200 * 1000L };
	nanosleep(&ts, NULL);
	return 1;
}
static const int writer_polls = 25000;    /* 5 s */

void ingest__busy_poll(sqlite3 *db, const int *polls)
{
	sqlite3_busy_handler(db, busy_poll, (void *)polls);
}
/* A RESTART holds the write lock while it waits for readers still on the old WAL (the
 * plugin's reload thread, an admin session): give up after 20 ms and try again later
 * rather than stall the writer. */
static const int restart_polls = 100;

static void *checkpointer(void *arg)
{
	struct ingest *ing = arg;
	int last_restart_log = -1;
	while(!atomic_load(&ing->ckpt_stop)){
		struct timespec ts = { 0, CHECKPOINT_EVERY_MS * 1000000L };
		while(nanosleep(&ts, &ts) == -1 && errno == EINTR){}
		int log = 0, done = 0;
		/* PASSIVE: copies what no reader still needs, never waits for the writer. */
		int rc = sqlite3_wal_checkpoint_v2(ing->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		/* After a RESTART the WAL reports its old size until the next write: restart again
		 * only when it has grown since. */
		if(rc == SQLITE_OK && log >= CHECKPOINT_RESTART_FRAMES && log != last_restart_log){
			rc = sqlite3_wal_checkpoint_v2(ing->ckpt_db, NULL, SQLITE_CHECKPOINT_RESTART, &log, &done);
			if(rc == SQLITE_OK) last_restart_log = log;
		}
		if(rc != SQLITE_OK && rc != SQLITE_BUSY){
			bridge__log_repeated(&ing->ckpt_log, BLOG_WARN, "ingest", "checkpoint failed: %s; retrying every %d ms",
					sqlite3_errmsg(ing->ckpt_db), CHECKPOINT_EVERY_MS);
		}
	}
	return NULL;
}

/* Starts the checkpointer; on any failure the writer checkpoints (wal_autocheckpoint). */
static void checkpointer_start(struct ingest *ing, const char *path)
{
	char reason[512];
	if(mqc_db_open(path, MQC_OPEN_READWRITE, 5000, &ing->ckpt_db, reason, sizeof(reason))){
		bridge__log(BLOG_WARN, "ingest", "no checkpoint connection (%s); the writer checkpoints", reason);
		return;
	}
	sqlite3_busy_handler(ing->ckpt_db, busy_poll, (void *)&restart_polls);
	if(pthread_create(&ing->ckpt_thread, NULL, checkpointer, ing) != 0){
		bridge__log(BLOG_WARN, "ingest", "no checkpoint thread; the writer checkpoints");
		sqlite3_close(ing->ckpt_db);
		ing->ckpt_db = NULL;
		return;
	}
	ing->ckpt_running = true;
	sqlite3_exec(ing->wdb, "PRAGMA wal_autocheckpoint = 0", NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ statements */

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

/* The watermark saved in the database, once at start. */
static void watermark_read(struct ingest *ing)
{
	sqlite3_stmt *st = NULL;
	uint64_t epoch = 0, seq = 0;
	int rc = sqlite3_prepare_v2(ing->db, "SELECT (SELECT value FROM meta WHERE key = 'feed_epoch'),"
			" (SELECT value FROM meta WHERE key = 'feed_seq')", -1, &st, NULL);
	if(rc == SQLITE_OK) rc = sqlite3_step(st);
	if(rc == SQLITE_ROW){
		epoch = (uint64_t)sqlite3_column_int64(st, 0);
		seq = (uint64_t)sqlite3_column_int64(st, 1);
	}else{
		bridge__log(BLOG_ERROR, "ingest", "reading the saved watermark failed: %s; asking the plugin for "
				"everything it keeps", sqlite3_errmsg(ing->db));
	}
	sqlite3_finalize(st);
	ing->wm_epoch = epoch;
	ing->wm_seq = seq;
	/* What was committed counts as taken: a request marked with an older seq of this
	 * epoch need not wait (ingest__seen), and the hello answer's first is compared to it. */
	atomic_store(&ing->recv_epoch, epoch);
	atomic_store(&ing->recv_seq, seq);
}

void ingest__watermark(struct ingest *ing, uint64_t *epoch, uint64_t *seq)
{
	pthread_mutex_lock(&ing->mu);
	*epoch = ing->wm_epoch;
	*seq = ing->wm_seq;
	pthread_mutex_unlock(&ing->mu);
}

/* ------------------------------------------------------------------ the counter table */

/* Empties the table and makes room for the entries of a batch of n messages (at most 2n). */
static int agg_reset(struct ingest *ing, size_t n)
{
	for(size_t i = 0; i < ing->agg_nused; i++) ing->agg[ing->agg_used[i]].room = NULL;
	ing->agg_nused = 0;
	size_t want = 64;
	while(want < n * 4) want *= 2;
	if(want <= ing->agg_cap) return 0;
	struct agg *a = calloc(want, sizeof(*a));
	size_t *u = malloc(want / 2 * sizeof(*u));
	if(!a || !u){
		free(a);
		free(u);
		return -1;
	}
	free(ing->agg);
	free(ing->agg_used);
	ing->agg = a;
	ing->agg_used = u;
	ing->agg_cap = want;
	return 0;
}

/* The entry of (room, sender), sender NULL for the room's own; *fresh says it is new. */
static struct agg *agg_get(struct ingest *ing, const char *room, const char *sender, bool *fresh)
{
	uint32_t h = fnv1a(2166136261u, room);
	if(sender) h = fnv1a(h * 16777619u, sender); /* the multiply stands for the separator */
	size_t mask = ing->agg_cap - 1;
	for(size_t i = h & mask;; i = (i + 1) & mask){
		struct agg *a = &ing->agg[i];
		if(!a->room){
			memset(a, 0, sizeof(*a));
			a->room = room;
			a->sender = sender;
			a->hash = h;
			ing->agg_used[ing->agg_nused++] = i;
			*fresh = true;
			return a;
		}
		if(a->hash == h && !strcmp(a->room, room)
				&& (sender ? a->sender && !strcmp(a->sender, sender) : !a->sender)){
			*fresh = false;
			return a;
		}
	}
}

/* ------------------------------------------------------------------ the writer */

/* Errors that retrying the same message can never fix: that message is skipped. */
static bool permanent(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_CONSTRAINT || rc == SQLITE_TOOBIG || rc == SQLITE_MISMATCH || rc == SQLITE_RANGE;
}

/* The room's entry, read from the database on its first message in the batch. */
static enum store_res room_entry(struct ingest *ing, const char *room, struct agg **out)
{
	bool fresh;
	struct agg *r = agg_get(ing, room, NULL, &fresh);
	*out = r;
	if(!fresh) return S_INSERTED;
	sqlite3_bind_text(ing->room_get, 1, room, -1, SQLITE_STATIC);
	int rc = sqlite3_step(ing->room_get);
	if(rc == SQLITE_ROW){
		r->known = true;
		r->count = sqlite3_column_int64(ing->room_get, 0);
		r->last = sqlite3_column_int64(ing->room_get, 1);
	}
	sqlite3_reset(ing->room_get);
	sqlite3_clear_bindings(ing->room_get);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? S_INSERTED : S_ERROR;
}

static enum store_res store_one(struct ingest *ing, const mqc_stamped *m)
{
	sqlite3_int64 id = (sqlite3_int64)m->id, seq;
	struct agg *r;
	bool fresh;
	int rc;

	if(room_entry(ing, m->room, &r) == S_ERROR) return S_ERROR;
	if(!r->known){
		bridge__log_repeated(&ing->skip_log, BLOG_WARN, "ingest", "message %" PRIu64 " from %s for unknown room %s "
				"skipped (a room deleted since)", m->id, m->from, m->room);
		return S_SKIPPED;
	}
	bool older = id <= r->last;
	if(!older){
		seq = r->count + 1;
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
					m->id, m->room, sqlite3_errmsg(ing->wdb));
			return S_SKIPPED;
		}
		return S_ERROR;
	}
	if(sqlite3_changes(ing->wdb) != 1) return S_DUPLICATE;

	if(older){
		sqlite3_bind_text(ing->seq_shift, 1, m->room, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ing->seq_shift, 2, id);
		if(exec_stmt(ing->seq_shift) != SQLITE_DONE) return S_ERROR;
	}
	r->count++;
	r->n++;
	if(id > r->last) r->last = id;
	struct agg *s = agg_get(ing, m->room, m->from, &fresh);
	s->n++;
	if(id > s->newest) s->newest = id;
	return S_INSERTED;
}

/* Writes the batch's summed counters: one statement per room and two per (room, sender). */
static int store_counters(struct ingest *ing)
{
	for(size_t i = 0; i < ing->agg_nused; i++){
		const struct agg *a = &ing->agg[ing->agg_used[i]];
		if(!a->n) continue;
		if(!a->sender){
			sqlite3_bind_text(ing->room_update, 1, a->room, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ing->room_update, 2, a->n);
			sqlite3_bind_int64(ing->room_update, 3, a->last);
			if(exec_stmt(ing->room_update) != SQLITE_DONE) return -1;
			continue;
		}
		sqlite3_bind_text(ing->sender_count, 1, a->room, -1, SQLITE_STATIC);
		sqlite3_bind_text(ing->sender_count, 2, a->sender, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ing->sender_count, 3, a->n);
		if(exec_stmt(ing->sender_count) != SQLITE_DONE) return -1;
		sqlite3_bind_text(ing->read_mark, 1, a->sender, -1, SQLITE_STATIC);
		sqlite3_bind_text(ing->read_mark, 2, a->room, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ing->read_mark, 3, a->newest);
		if(exec_stmt(ing->read_mark) != SQLITE_DONE) return -1;
	}
	return 0;
}

/* Commits ing->work (and the watermark it asks for). 0, or -1 (rolled back, logged by
 * the caller with *what and the error). *maxid: the highest id in the batch. */
static int commit(struct ingest *ing, const char **what)
{
	size_t inserted = 0, dup = 0, skipped = 0;
	struct batch *bt = &ing->work;

	*what = "allocating the counter table";
	if(agg_reset(ing, bt->len)){
		snprintf(ing->err, sizeof(ing->err), "out of memory");
		return -1;
	}
	*what = "BEGIN";
	if(exec_stmt(ing->begin) != SQLITE_DONE) goto fail;
	*what = "storing a message";
	for(size_t i = 0; i < bt->len; i++){
		switch(store_one(ing, &bt->m[i])){
			case S_INSERTED: inserted++; break;
			case S_DUPLICATE: dup++; break;
			case S_SKIPPED: skipped++; break;
			case S_ERROR: goto fail;
		}
	}
	*what = "updating the counters";
	if(store_counters(ing)) goto fail;
	if(bt->lsn){
		/* Messages were taken in the plugin's order without gaps: everything up to the
		 * batch's last one is committed once this transaction is. */
		*what = "saving the watermark";
		sqlite3_bind_int64(ing->mark_set, 1, (sqlite3_int64)bt->epoch);
		sqlite3_bind_int64(ing->mark_set, 2, (sqlite3_int64)bt->seq);
		if(exec_stmt(ing->mark_set) != SQLITE_DONE) goto fail;
	}
	*what = "COMMIT";
	if(exec_stmt(ing->commit) != SQLITE_DONE) goto fail;
	bridge__log(BLOG_DEBUG, "ingest", "committed %zu messages (%zu new, %zu already stored, %zu skipped, "
			"%zu counter rows); watermark epoch %" PRIu64 " seq %" PRIu64, bt->len, inserted, dup, skipped,
			ing->agg_nused, bt->epoch, bt->seq);
	return 0;
fail:
	/* the error, before ROLLBACK replaces it with "not an error" */
	snprintf(ing->err, sizeof(ing->err), "%s", sqlite3_errmsg(ing->wdb));
	if(!sqlite3_get_autocommit(ing->wdb)) exec_stmt(ing->rollback);
	return -1;
}

static void batch_clear(struct batch *bt)
{
	for(size_t i = 0; i < bt->len; i++) json_decref(bt->m[i].root);
	bt->len = 0;
	bt->epoch = bt->seq = bt->lsn = 0;
}

static void notify_fd(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));
	(void)n; /* EAGAIN: the counter is already non-zero, the reader will wake */
}

static void notify(struct ingest *ing)
{
	notify_fd(ing->efd);
}

static void *writer(void *arg)
{
	struct ingest *ing = arg;
	pthread_mutex_lock(&ing->mu);
	for(;;){
		while(!ing->busy && !ing->stop) pthread_cond_wait(&ing->cv_work, &ing->mu);
		if(!ing->busy) break;
		ing->retry_now = false;
		pthread_mutex_unlock(&ing->mu);

		uint64_t t0 = stat_now_ns();
		const char *what;
		int rc = commit(ing, &what);
		uint64_t took = stat_now_ns() - t0;
		size_t committed = ing->work.len;
		if(rc == 0){
			if(ing->work.lsn){
				pthread_mutex_lock(&ing->mu);
				ing->wm_epoch = ing->work.epoch;
				ing->wm_seq = ing->work.seq;
				pthread_mutex_unlock(&ing->mu);
				atomic_store(&ing->committed_lsn, ing->work.lsn);
			}
			for(size_t i = 0; i < ing->work.len; i++){
				atomic_fetch_sub_explicit(&ing->pend[pend_slot(ing->work.m[i].room)], 1, memory_order_release);
			}
			batch_clear(&ing->work);
			if(ing->failures){
				bridge__log(BLOG_INFO, "ingest", "commit succeeded again after %" PRIu64 " failed attempts", ing->failures);
			}
			ing->retry_ms = 0;
			ing->failures = 0;
			atomic_store(&ing->failing, false);
			notify_fd(ing->progress_efd);
		}else{
			ing->retry_ms = ing->retry_ms ? ing->retry_ms * 2 : RETRY_MIN_MS;
			if(ing->retry_ms > RETRY_MAX_MS) ing->retry_ms = RETRY_MAX_MS;
			ing->failures++;
			atomic_store(&ing->failing, true);
			bridge__log_repeated(&ing->commit_log, BLOG_ERROR, "ingest", "%s for a batch of %zu messages failed: %s; "
					"rolled back, keeping the batch (not confirmed to the plugin) and retrying in %" PRId64 " ms",
					what, ing->work.len, ing->err, ing->retry_ms);
		}

		pthread_mutex_lock(&ing->mu);
		if(rc == 0){
			stat_add(&ing->stats.commit_ns, took);
			stat_add(&ing->stats.commit_size, committed);
			ing->stats.messages += committed;
		}
		ing->attempts++;
		ing->retry_now = false; /* a flush during this attempt has its answer */
		ing->last_ok = rc == 0;
		if(rc == 0) ing->busy = false;
		pthread_cond_broadcast(&ing->cv_done);
		notify(ing);
		if(rc){
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += ing->retry_ms / 1000;
			until.tv_nsec += (ing->retry_ms % 1000) * 1000000L;
			if(until.tv_nsec >= 1000000000L){
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			while(!ing->retry_now && !ing->stop){
				if(pthread_cond_timedwait(&ing->cv_work, &ing->mu, &until) == ETIMEDOUT) break;
			}
			if(ing->stop) break;
		}
	}
	pthread_mutex_unlock(&ing->mu);
	return NULL;
}

/* ------------------------------------------------------------------ life cycle */

static int batch_init(struct batch *bt, size_t cap)
{
	bt->m = calloc(cap, sizeof(*bt->m));
	bt->cap = cap;
	return bt->m ? 0 : -1;
}

struct ingest *ingest__new(sqlite3 *db, int batch_max, int batch_ms)
{
	char reason[512];
	struct ingest *ing = calloc(1, sizeof(*ing));
	if(!ing){
		bridge__log(BLOG_ERROR, "ingest", "out of memory");
		return NULL;
	}
	ing->db = db;
	ing->efd = -1;
	ing->progress_efd = -1;
	ing->batch_max = batch_max;
	ing->batch_ms = batch_ms;
	pthread_mutex_init(&ing->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the retry wait ignores clock steps */
	pthread_cond_init(&ing->cv_work, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&ing->cv_done, NULL);
	size_t cap = (size_t)batch_max < 1024 ? (size_t)batch_max : 1024;
	if(batch_init(&ing->fill, cap) || batch_init(&ing->work, cap)){
		bridge__log(BLOG_ERROR, "ingest", "out of memory for a batch of %zu", cap);
		goto fail;
	}
	ing->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ing->progress_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if(ing->efd < 0 || ing->progress_efd < 0){
		bridge__log(BLOG_ERROR, "ingest", "eventfd: %s", strerror(errno));
		goto fail;
	}
	const char *path = sqlite3_db_filename(db, "main");
	if(!path || !*path){
		bridge__log(BLOG_ERROR, "ingest", "the database has no file name; the writer needs one");
		goto fail;
	}
	if(mqc_db_open(path, MQC_OPEN_READWRITE, 5000, &ing->wdb, reason, sizeof(reason))){
		bridge__log(BLOG_ERROR, "ingest", "writer connection: %s", reason);
		goto fail;
	}
	sqlite3_busy_handler(ing->wdb, busy_poll, (void *)&writer_polls);

	/* The writer's page cache and I/O (measured with perf while draining a backlog: 64 %
	 * of the bridge's time was pread/pwrite/fdatasync with SQLite's default 2 MB cache):
	 *  - a 64 MB page cache keeps the indexes' hot pages (rooms, recent leaves) in memory;
	 *  - reads through mmap copy nothing;
	 *  - if the checkpointer thread cannot start, checkpoints every 16,384 WAL pages
	 *    (64 MB) instead of 1,000: a page written by many commits is copied back once;
	 *  - after a checkpoint the WAL file is cut back to 256 MB (the RESTART threshold of
	 *    the checkpointer), not left at its peak. */
	static const char *const tuning[] = {
		"PRAGMA cache_size = -65536",
		"PRAGMA mmap_size = 1073741824",
		"PRAGMA wal_autocheckpoint = 16384",
		"PRAGMA journal_size_limit = 268435456",
	};
	for(size_t i = 0; i < sizeof(tuning) / sizeof(tuning[0]); i++){
		if(sqlite3_exec(ing->wdb, tuning[i], NULL, NULL, NULL) != SQLITE_OK){
			bridge__log(BLOG_WARN, "ingest", "`%s` failed: %s; going on without it", tuning[i], sqlite3_errmsg(ing->wdb));
		}
	}

	int rc = 0;
	sqlite3 *w = ing->wdb;
	rc |= prepare(w, &ing->begin, "BEGIN IMMEDIATE");
	rc |= prepare(w, &ing->commit, "COMMIT");
	rc |= prepare(w, &ing->rollback, "ROLLBACK");
	rc |= prepare(w, &ing->room_get, "SELECT msg_count, last_msg_id FROM rooms WHERE id = ?1");
	rc |= prepare(w, &ing->seq_before,
			"SELECT seq FROM messages WHERE room_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT 1");
	rc |= prepare(w, &ing->msg_insert,
			"INSERT OR IGNORE INTO messages(id, room_id, seq, sender, type, body, attachment, client_msg_id, ts)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
	rc |= prepare(w, &ing->seq_shift, "UPDATE messages SET seq = seq + 1 WHERE room_id = ?1 AND id > ?2");
	rc |= prepare(w, &ing->room_update,
			"UPDATE rooms SET msg_count = msg_count + ?2, last_msg_id = max(last_msg_id, ?3) WHERE id = ?1");
	rc |= prepare(w, &ing->sender_count,
			"INSERT INTO room_sender_counts(room_id, sender, n) VALUES (?1, ?2, ?3)"
			" ON CONFLICT(room_id, sender) DO UPDATE SET n = n + excluded.n");
	rc |= prepare(w, &ing->read_mark,
			"INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES (?1, ?2, ?3)"
			" ON CONFLICT(user_id, room_id) DO UPDATE SET last_read_id = max(last_read_id, excluded.last_read_id)");
	rc |= prepare(w, &ing->mark_set,
			"INSERT INTO meta(key, value) VALUES ('feed_epoch', ?1), ('feed_seq', ?2)"
			" ON CONFLICT(key) DO UPDATE SET value = excluded.value");
	if(rc) goto fail;

	watermark_read(ing);
	if(pthread_create(&ing->writer, NULL, writer, ing) != 0){
		bridge__log(BLOG_ERROR, "ingest", "cannot start the writer thread");
		goto fail;
	}
	ing->writer_running = true;
	checkpointer_start(ing, path);
	return ing;
fail:
	ingest__free(ing);
	return NULL;
}

void ingest__free(struct ingest *ing)
{
	if(!ing) return;
	if(ing->writer_running){
		pthread_mutex_lock(&ing->mu);
		ing->stop = true;
		pthread_cond_broadcast(&ing->cv_work);
		/* an idle writer exits at once; a busy one finishes its commit first */
		pthread_mutex_unlock(&ing->mu);
		pthread_join(ing->writer, NULL);
	}
	if(ing->ckpt_running){
		atomic_store(&ing->ckpt_stop, true);
		pthread_join(ing->ckpt_thread, NULL);
	}
	if(ing->ckpt_db) sqlite3_close(ing->ckpt_db);
	size_t left = ing->fill.len + ing->work.len;
	if(left){
		bridge__log(BLOG_WARN, "ingest", "discarding %zu uncommitted messages at exit "
				"(not confirmed: the plugin sends them to the next bridge)", left);
	}
	batch_clear(&ing->fill);
	batch_clear(&ing->work);
	free(ing->fill.m);
	free(ing->work.m);
	free(ing->agg);
	free(ing->agg_used);
	sqlite3_stmt *all[] = {
		ing->begin, ing->commit, ing->rollback, ing->room_get, ing->seq_before,
		ing->msg_insert, ing->seq_shift, ing->room_update, ing->sender_count, ing->read_mark, ing->mark_set,
	};
	for(size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) sqlite3_finalize(all[i]);
	if(ing->wdb) sqlite3_close(ing->wdb);
	if(ing->efd >= 0) close(ing->efd);
	if(ing->progress_efd >= 0) close(ing->progress_efd);
	pthread_cond_destroy(&ing->cv_work);
	pthread_cond_destroy(&ing->cv_done);
	pthread_mutex_destroy(&ing->mu);
	free(ing);
}

/* ------------------------------------------------------------------ the store thread's side */

/* Whether the filling batch has something the writer should see: messages, or taken
 * invalid ones whose seq the watermark must pass. */
static bool fill_has_work(const struct ingest *ing)
{
	return ing->fill.len || ing->fill.lsn > ing->handed_lsn;
}

/* With mu held and the writer idle: fill becomes the writer's batch. */
static void hand_over(struct ingest *ing)
{
	struct batch t = ing->work;
	ing->work = ing->fill;
	ing->fill = t;
	ing->fill.len = 0;
	ing->fill.epoch = ing->fill.seq = ing->fill.lsn = 0;
	ing->first_at = 0;
	ing->handed_lsn = ing->work.lsn;
	ing->work_len = ing->work.len;
	ing->busy = true;
	pthread_cond_signal(&ing->cv_work);
}

/* The message is taken (also when dropped as invalid): its seq is passed. */
static void taken(struct ingest *ing, uint64_t epoch, uint64_t seq)
{
	struct batch *bt = &ing->fill;
	uint64_t lsn = atomic_load_explicit(&ing->recv_lsn, memory_order_relaxed) + 1;
	bt->epoch = epoch;
	bt->seq = seq;
	bt->lsn = lsn;
	if(epoch != atomic_load_explicit(&ing->recv_epoch, memory_order_relaxed)){
		/* seq first (it only grows within an epoch), so a reader never pairs a new epoch
		 * with an old, larger seq (ingest__seen) */
		atomic_store(&ing->recv_seq, 0);
		atomic_store(&ing->recv_epoch, epoch);
	}
	atomic_store(&ing->recv_seq, seq);
	atomic_store(&ing->recv_lsn, lsn);
	if(atomic_load_explicit(&ing->watching, memory_order_relaxed)) notify_fd(ing->progress_efd);
}

void ingest__taken(const struct ingest *ing, uint64_t *epoch, uint64_t *seq)
{
	*epoch = atomic_load(&ing->recv_epoch);
	*seq = atomic_load(&ing->recv_seq);
}

int ingest__add(struct ingest *ing, uint64_t epoch, uint64_t seq, const void *payload, size_t len)
{
	char reason[256];
	mqc_stamped m;

	if(mqc_stamped_parse(payload, len, &m, reason, sizeof(reason))){
		ing->invalid++;
		bridge__log_repeated(&ing->invalid_log, BLOG_ERROR, "ingest", "LOST: message seq %" PRIu64 " from the plugin "
				"is not a stamped message (%s); dropped (%" PRIu64 " such since start)", seq, reason, ing->invalid);
		taken(ing, epoch, seq);
		return 0;
	}
	struct batch *bt = &ing->fill;
	if(bt->len == bt->cap){
		size_t cap = bt->cap * 2;
		mqc_stamped *nb = realloc(bt->m, cap * sizeof(*nb));
		if(!nb){
			/* Not taken: the plugin keeps it and store.c asks for it again. */
			bridge__log(BLOG_ERROR, "ingest", "out of memory growing the batch past %zu; message %" PRIu64
					" (seq %" PRIu64 ") not taken for now", bt->cap, m.id, seq);
			json_decref(m.root);
			return -1;
		}
		bt->m = nb;
		bt->cap = cap;
	}
	if(!bt->len) ing->first_at = bridge__mono_ms();
	bt->m[bt->len++] = m;
	atomic_fetch_add_explicit(&ing->pend[pend_slot(m.room)], 1, memory_order_relaxed);
	taken(ing, epoch, seq);
	bridge__log(BLOG_DEBUG, "ingest", "queued message %" PRIu64 " (seq %" PRIu64 ") from %s in room %s (%zu waiting)",
			m.id, seq, m.from, m.room, bt->len);
	return 0;
}

void ingest__pump(struct ingest *ing, int64_t now_ms)
{
	pthread_mutex_lock(&ing->mu);
	if(!ing->busy && fill_has_work(ing)){
		bool due = !ing->fill.len || ing->fill.len >= (size_t)ing->batch_max || now_ms >= ing->first_at + ing->batch_ms
			|| atomic_load_explicit(&ing->commit_target, memory_order_relaxed) > ing->handed_lsn;
		if(due) hand_over(ing);
	}
	pthread_mutex_unlock(&ing->mu);
}

int ingest__flush(struct ingest *ing)
{
	int rc = 0;
	pthread_mutex_lock(&ing->mu);
	for(;;){
		if(ing->busy){
			uint64_t a = ing->attempts;
			ing->retry_now = true;
			pthread_cond_signal(&ing->cv_work);
			while(ing->attempts == a) pthread_cond_wait(&ing->cv_done, &ing->mu);
			if(!ing->last_ok){
				rc = -1;
				break;
			}
			continue;
		}
		if(!fill_has_work(ing)) break;
		hand_over(ing);
	}
	pthread_mutex_unlock(&ing->mu);
	return rc;
}

int64_t ingest__timeout_ms(struct ingest *ing, int64_t now_ms)
{
	pthread_mutex_lock(&ing->mu);
	bool busy = ing->busy;
	pthread_mutex_unlock(&ing->mu);
	if(busy || !fill_has_work(ing)) return -1;
	if(!ing->fill.len || atomic_load(&ing->commit_target) > ing->handed_lsn) return 0;
	int64_t due = ing->first_at + ing->batch_ms;
	return due > now_ms ? due - now_ms : 0;
}

int ingest__fd(const struct ingest *ing)
{
	return ing->efd;
}

void ingest__fd_clear(struct ingest *ing)
{
	uint64_t v;
	while(read(ing->efd, &v, sizeof(v)) > 0){}
}

bool ingest__blocked(struct ingest *ing)
{
	if(ing->fill.len < (size_t)ing->batch_max) return false;
	pthread_mutex_lock(&ing->mu);
	bool busy = ing->busy;
	pthread_mutex_unlock(&ing->mu);
	return busy;
}

bool ingest__failing(struct ingest *ing)
{
	return atomic_load(&ing->failing);
}

bool ingest__room_pending(const struct ingest *ing, const char *room)
{
	return atomic_load_explicit(&ing->pend[pend_slot(room)], memory_order_acquire) != 0;
}

uint64_t ingest__received_lsn(const struct ingest *ing)
{
	return atomic_load(&ing->recv_lsn);
}

uint64_t ingest__committed_lsn(const struct ingest *ing)
{
	return atomic_load(&ing->committed_lsn);
}

bool ingest__seen(const struct ingest *ing, uint64_t epoch, uint64_t seq)
{
	for(;;){
		uint64_t e = atomic_load(&ing->recv_epoch);
		uint64_t s = atomic_load(&ing->recv_seq);
		if(atomic_load(&ing->recv_epoch) == e) return e == epoch && seq <= s;
	}
}

void ingest__want_commit(struct ingest *ing, uint64_t lsn)
{
	uint64_t cur = atomic_load(&ing->commit_target);
	while(cur < lsn && !atomic_compare_exchange_weak(&ing->commit_target, &cur, lsn)){
	}
	notify(ing);
}

int ingest__progress_fd(const struct ingest *ing)
{
	return ing->progress_efd;
}

void ingest__progress_clear(struct ingest *ing)
{
	uint64_t v;
	while(read(ing->progress_efd, &v, sizeof(v)) > 0){}
}

void ingest__watch_seen(struct ingest *ing, bool on)
{
	atomic_store(&ing->watching, on);
}

void ingest__set_reading(struct ingest *ing, bool on)
{
	if(atomic_load_explicit(&ing->reading, memory_order_relaxed) == on) return;
	atomic_store(&ing->reading, on);
	notify_fd(ing->progress_efd); /* a request waiting softly need not wait any more */
}

bool ingest__reading(const struct ingest *ing)
{
	return atomic_load(&ing->reading);
}

void ingest__stats_take(struct ingest *ing, struct ingest_stats *out)
{
	pthread_mutex_lock(&ing->mu);
	*out = ing->stats;
	memset(&ing->stats, 0, sizeof(ing->stats));
	pthread_mutex_unlock(&ing->mu);
}

size_t ingest__pending(struct ingest *ing)
{
	pthread_mutex_lock(&ing->mu);
	size_t n = ing->fill.len + (ing->busy ? ing->work_len : 0);
	pthread_mutex_unlock(&ing->mu);
	return n;
}
