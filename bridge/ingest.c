/*
 * Storing chat messages in batches (docs/architecture.md "Durability", "The bridge's
 * threads", "Messages and ids").
 *
 * The loop thread parses each stamped message from <prefix>/rooms/{room}/messages into the
 * filling batch. A writer thread, on a connection of its own, commits the batch it was
 * handed in ONE transaction (begin_write ... commit):
 *
 *   SELECT the batch's rooms' msg_count, last_msg_id          -- one statement
 *   INSERT the new messages                                    -- idempotent by id
 *   per room:      UPDATE rooms msg_count + k, last_msg_id     -- k = rows inserted for it
 *   per (room, sender):
 *                  room_sender_counts n + k                    -- "count from one user" is one row
 *                  read_markers last_read_id = newest          -- sending implies having read
 *                                                                 (marker_raise)
 *   meta feed_epoch, feed_seq                                  -- the watermark: the batch's last
 *                                                                 (epoch, seq), what store.c confirms
 *
 * On PostgreSQL every statement is a round trip to the server, so there the new messages
 * go in chunks, one INSERT per CHUNK_ROWS of them, and the rooms' and the senders' counts
 * in one statement each: a batch costs a number of statements that does not grow with its
 * messages. Those statements take their rows as one parameter, a JSON array that this file
 * writes (struct jbuf). On SQLite, in process, one statement per message, room and
 * (room, sender) is cheaper than writing and parsing the JSON (`rowwise`, see store_one);
 * everything else is the same for both.
 *
 * The counters are summed per batch in a small hash table (agg below): under load a batch
 * holds several messages per room, and each counter row is then written once, not once per
 * message (perf: the counter statements were half of the statements per message).
 *
 * messages.seq numbers a room's messages 1, 2, 3, ... in id order (not the plugin's feed
 * seq). Normally a message is the newest of its room (seq = count + 1, count kept in the
 * batch's room entry) and joins the chunk. The rare ones go one at a time, after the chunk
 * so far is inserted (they read and shift what is stored):
 *   - a message the plugin sends again after newer ones were stored (a bridge killed
 *     between libmosquitto's PUBACK and our COMMIT, messages kept over a broker restart)
 *     is older than the room's last message: it takes the seq after its predecessor and
 *     the later ones shift up;
 *   - a message stored already (sent again after its commit) is found before anything is
 *     written, by one SELECT of the batch's ids not newer than their room's last message
 *     (the only ones that can be stored: last_msg_id moves with every insert), and is
 *     neither inserted nor counted again. That also makes a batch safe to commit again
 *     when its COMMIT's outcome is unknown (the connection to PostgreSQL lost during it):
 *     if it committed, the second run finds every message of it stored.
 * A chunk that inserts fewer rows than it was given (a message newer than its room's last
 * one was stored: the database was changed behind the bridge's back) fails the batch.
 *
 * Hazard: libmosquitto has already acknowledged every message in a batch. Nothing here may
 * drop a message it could still store: a failed commit rolls back, keeps the batch and
 * retries; the watermark moves only with a COMMIT. A batch that failed is retried
 * "carefully", one message at a time (no chunk) and, on PostgreSQL, each inside a
 * savepoint: a message the database refuses (a constraint) is then skipped and logged
 * instead of failing every retry (an error aborts a PostgreSQL transaction; SQLite's
 * leaves it as it was, so there the savepoint statements are empty).
 *
 * A lost connection (PostgreSQL: the server restarted or went away; mqc_db_fault_last
 * MQC_DBF_LOST) is logged once; the writer reconnects, backing off up to LOST_RETRY_MAX_MS,
 * and commits the same batch again. Nothing is confirmed to the plugin meanwhile.
 *
 * Checkpoints (SQLite only: PostgreSQL checkpoints by itself, and there is no checkpointer
 * thread) run on a third thread with a third connection (the checkpointer): every
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
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
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
#define LOST_RETRY_MAX_MS 1000 /* reconnecting: the server may be back any moment */
#define PEND_SLOTS 65536u /* rooms' pending-message counters, by hash */
#define CHECKPOINT_EVERY_MS 100
#define CHECKPOINT_RESTART_FRAMES 65536 /* 256 MB of 4 KiB pages */
#define CHUNK_ROWS 1024          /* new messages per INSERT at most */
#define CHUNK_BYTES (1u << 20)   /* ... and about this much JSON */

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
	int64_t db_last;    /* room: last_msg_id as read at the start of the transaction */
	int64_t n;          /* rows inserted in this batch */
	int64_t newest;     /* (room, sender): the newest id inserted */
};

/* A JSON text being written: a statement's parameter. */
struct jbuf {
	char *p;     /* NUL-terminated */
	size_t len, cap;
	bool oom;    /* an append failed: the text is incomplete */
};

/* A message id that may be stored already, and its index in the batch. */
struct cand {
	int64_t id;
	size_t i;
};

struct ingest {
	mqc_db *db;   /* the store thread's connection (the caller's) */
	mqc_db *wdb;  /* the writer's */
	char *where;  /* the database as given (path or URI), to open the other connections */

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
	unsigned char *stored; /* per message of work: found stored before the transaction wrote */
	size_t stored_cap;
	struct cand *cand;
	size_t cand_cap;
	struct jbuf rooms, ids, chunk; /* the statements' JSON parameters */
	size_t chunk_rows;
	bool rowwise;        /* SQLite: one statement per message, room, (room, sender) (see store_one) */
	bool careful;        /* the last attempt failed: one message at a time (see the top) */
	bool lost;           /* the connection was lost and no commit succeeded since */
	bool reconnect;      /* reconnect before the next attempt */
	int64_t lost_at;     /* when (monotonic ms) */
	mqc_db_fault fault;  /* the kind of the last failure */
	bool own_err;        /* err was written here, not taken from the database */
	int64_t retry_ms;
	char err[256];       /* why the last commit failed */
	struct log_repeat commit_log, ckpt_log, skip_log, lost_log;
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
	mqc_db *ckpt_db;
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

void ingest__busy_poll(mqc_db *db, const int *polls)
{
	mqc_db_busy_handler(db, busy_poll, (void *)polls);
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
		int rc = mqc_db_checkpoint(ing->ckpt_db, false, &log, &done);
		/* After a RESTART the WAL reports its old size until the next write: restart again
		 * only when it has grown since. */
		if(rc == 0 && log >= CHECKPOINT_RESTART_FRAMES && log != last_restart_log){
			rc = mqc_db_checkpoint(ing->ckpt_db, true, &log, &done);
			if(rc == 0) last_restart_log = log;
		}
		if(rc != 0 && mqc_db_fault_last(ing->ckpt_db) != MQC_DBF_BUSY){
			bridge__log_repeated(&ing->ckpt_log, BLOG_WARN, "ingest", "checkpoint failed: %s; retrying every %d ms",
					mqc_db_errmsg(ing->ckpt_db), CHECKPOINT_EVERY_MS);
		}
	}
	return NULL;
}

/* Starts the checkpointer (SQLite only); on any failure the writer checkpoints
 * (wal_autocheckpoint). */
static void checkpointer_start(struct ingest *ing)
{
	char reason[512];
	if(mqc_db_open(ing->where, MQC_OPEN_READWRITE, 5000, &ing->ckpt_db, reason, sizeof(reason))){
		bridge__log(BLOG_WARN, "ingest", "no checkpoint connection (%s); the writer checkpoints", reason);
		return;
	}
	mqc_db_busy_handler(ing->ckpt_db, busy_poll, (void *)&restart_polls);
	if(pthread_create(&ing->ckpt_thread, NULL, checkpointer, ing) != 0){
		bridge__log(BLOG_WARN, "ingest", "no checkpoint thread; the writer checkpoints");
		mqc_db_close(ing->ckpt_db);
		ing->ckpt_db = NULL;
		return;
	}
	ing->ckpt_running = true;
	if(mqc_exec(ing->wdb, MQC_Q_SESSION_NO_AUTOCHECKPOINT)){
		bridge__log(BLOG_WARN, "ingest", "the writer's own checkpoints stay on: %s", mqc_db_errmsg(ing->wdb));
	}
}

/* ------------------------------------------------------------------ statements */

/* Steps a statement that returns no row to its end and resets it. 0, or -1. */
static int exec_stmt(mqc_stmt *st)
{
	int rc;
	do rc = mqc_step(st); while(rc == MQC_ROW);
	mqc_reset(st);
	return rc == MQC_DONE ? 0 : -1;
}

/* The watermark saved in the database, once at start. */
static void watermark_read(struct ingest *ing)
{
	uint64_t epoch = 0, seq = 0;
	mqc_stmt *st = mqc_q(ing->db, MQC_Q_INGEST_WATERMARK_GET);
	int rc = st ? mqc_step(st) : MQC_ERR;
	if(rc == MQC_ROW){
		epoch = (uint64_t)mqc_col_int64(st, 0);
		seq = (uint64_t)mqc_col_int64(st, 1);
	}else{
		bridge__log(BLOG_ERROR, "ingest", "reading the saved watermark failed: %s; asking the plugin for "
				"everything it keeps", mqc_db_errmsg(ing->db));
	}
	mqc_reset(st);
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

/* ------------------------------------------------------------------ JSON parameters */

static bool jb_reserve(struct jbuf *b, size_t n)
{
	if(b->oom) return false;
	if(b->len + n + 1 <= b->cap) return true;
	size_t cap = b->cap ? b->cap : 4096;
	while(cap < b->len + n + 1) cap *= 2;
	char *p = realloc(b->p, cap);
	if(!p){
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void jb_reset(struct jbuf *b)
{
	b->len = 0;
	b->oom = false;
	if(jb_reserve(b, 0)) b->p[0] = '\0';
}

static void jb_raw(struct jbuf *b, const char *s, size_t n)
{
	if(!jb_reserve(b, n)) return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void jb_char(struct jbuf *b, char c)
{
	jb_raw(b, &c, 1);
}

static void jb_int(struct jbuf *b, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRId64, v);
	jb_raw(b, num, (size_t)n);
}

/* s as a JSON string, null for NULL. s is valid UTF-8 without NUL (jansson parsed it):
 * only '"', '\' and the control characters need escaping. */
static void jb_str(struct jbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	if(!s){
		jb_raw(b, "null", 4);
		return;
	}
	jb_char(b, '"');
	const char *run = s;
	for(; *s; s++){
		unsigned char c = (unsigned char)*s;
		if(c >= 0x20 && c != '"' && c != '\\') continue;
		jb_raw(b, run, (size_t)(s - run));
		if(c == '"' || c == '\\'){
			char e[2] = { '\\', (char)c };
			jb_raw(b, e, 2);
		}else{
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			jb_raw(b, e, 6);
		}
		run = s + 1;
	}
	jb_raw(b, run, (size_t)(s - run));
	jb_char(b, '"');
}

static void jb_free(struct jbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------ the counter table */

/* Empties the table and makes room for the entries of a batch of n messages (at most 2n),
 * and for the batch's per-message flags. */
static int agg_reset(struct ingest *ing, size_t n)
{
	for(size_t i = 0; i < ing->agg_nused; i++) ing->agg[ing->agg_used[i]].room = NULL;
	ing->agg_nused = 0;
	if(n > ing->stored_cap){
		unsigned char *s = realloc(ing->stored, n);
		struct cand *c = realloc(ing->cand, n * sizeof(*c));
		if(s) ing->stored = s;
		if(c) ing->cand = c;
		if(!s || !c) return -1;
		ing->stored_cap = ing->cand_cap = n;
	}
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

/* The entry of (room, sender), sender NULL for the room's own. With create, a missing one
 * is made (*fresh says so; room and sender must then outlive the batch); without, NULL. */
static struct agg *agg_lookup(struct ingest *ing, const char *room, const char *sender, bool create, bool *fresh)
{
	uint32_t h = fnv1a(2166136261u, room);
	if(sender) h = fnv1a(h * 16777619u, sender); /* the multiply stands for the separator */
	size_t mask = ing->agg_cap - 1;
	for(size_t i = h & mask;; i = (i + 1) & mask){
		struct agg *a = &ing->agg[i];
		if(!a->room){
			if(!create) return NULL;
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
			if(fresh) *fresh = false;
			return a;
		}
	}
}

static struct agg *agg_get(struct ingest *ing, const char *room, const char *sender, bool *fresh)
{
	return agg_lookup(ing, room, sender, true, fresh);
}

/* ------------------------------------------------------------------ the writer */

/* A failure this file found (not the database's): its reason goes to ing->err. */
static void own_err(struct ingest *ing, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void own_err(struct ingest *ing, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ing->err, sizeof(ing->err), fmt, ap);
	va_end(ap);
	ing->own_err = true;
}

/* Reads every room of the batch with one statement into the table (known, count, last). */
static int rooms_read(struct ingest *ing)
{
	struct batch *bt = &ing->work;
	size_t nrooms = 0;
	bool fresh;

	jb_reset(&ing->rooms);
	jb_char(&ing->rooms, '[');
	for(size_t i = 0; i < bt->len; i++){
		agg_get(ing, bt->m[i].room, NULL, &fresh);
		if(!fresh) continue;
		if(nrooms++) jb_char(&ing->rooms, ',');
		jb_str(&ing->rooms, bt->m[i].room);
	}
	jb_char(&ing->rooms, ']');
	if(!nrooms) return 0;
	if(ing->rooms.oom){
		own_err(ing, "out of memory listing %zu rooms", nrooms);
		return -1;
	}
	mqc_stmt *st = mqc_q(ing->wdb, MQC_Q_INGEST_ROOMS_GET);
	if(!st) return -1;
	mqc_bind_text(st, 1, ing->rooms.p, -1);
	int rc;
	while((rc = mqc_step(st)) == MQC_ROW){
		const char *id = mqc_col_text(st, 0);
		struct agg *r = id ? agg_lookup(ing, id, NULL, false, NULL) : NULL;
		if(!r) continue; /* not one we asked for */
		r->known = true;
		r->count = mqc_col_int64(st, 1);
		r->last = r->db_last = mqc_col_int64(st, 2);
	}
	mqc_reset(st);
	return rc == MQC_DONE ? 0 : -1;
}

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id ? 1 : x->i < y->i ? -1 : x->i > y->i;
}

/* Flags (ing->stored) the batch's messages that are stored already: only one not newer
 * than its room's last message can be, so usually there is nothing to ask. */
static int stored_find(struct ingest *ing)
{
	struct batch *bt = &ing->work;
	size_t n = 0;

	if(!bt->len) return 0;
	memset(ing->stored, 0, bt->len);
	jb_reset(&ing->ids);
	jb_char(&ing->ids, '[');
	for(size_t i = 0; i < bt->len; i++){
		const struct agg *r = agg_lookup(ing, bt->m[i].room, NULL, false, NULL);
		int64_t id = (int64_t)bt->m[i].id;
		if(!r || !r->known || id > r->db_last) continue;
		if(n) jb_char(&ing->ids, ',');
		jb_int(&ing->ids, id);
		ing->cand[n].id = id;
		ing->cand[n].i = i;
		n++;
	}
	jb_char(&ing->ids, ']');
	if(!n) return 0;
	if(ing->ids.oom){
		own_err(ing, "out of memory listing %zu message ids", n);
		return -1;
	}
	qsort(ing->cand, n, sizeof(*ing->cand), cand_cmp);
	mqc_stmt *st = mqc_q(ing->wdb, MQC_Q_INGEST_STORED_IDS);
	if(!st) return -1;
	mqc_bind_text(st, 1, ing->ids.p, -1);
	size_t k = 0;
	int rc;
	while((rc = mqc_step(st)) == MQC_ROW){
		int64_t id = mqc_col_int64(st, 0);
		while(k < n && ing->cand[k].id < id) k++;
		for(; k < n && ing->cand[k].id == id; k++) ing->stored[ing->cand[k].i] = 1;
	}
	mqc_reset(st);
	return rc == MQC_DONE ? 0 : -1;
}

/* One message inserted (or about to be, in the chunk): its room's and sender's counters. */
static void counted(struct ingest *ing, struct agg *r, const mqc_stamped *m)
{
	int64_t id = (int64_t)m->id;
	bool fresh;
	r->count++;
	r->n++;
	if(id > r->last) r->last = id;
	struct agg *s = agg_get(ing, m->room, m->from, &fresh);
	s->n++;
	if(id > s->newest) s->newest = id;
}

static void chunk_start(struct ingest *ing)
{
	jb_reset(&ing->chunk);
	jb_char(&ing->chunk, '[');
	ing->chunk_rows = 0;
}

/* Inserts the chunk's messages (none: nothing to do) and starts the next. 0, or -1. */
static int chunk_flush(struct ingest *ing)
{
	if(!ing->chunk_rows) return 0;
	jb_char(&ing->chunk, ']');
	if(ing->chunk.oom){
		own_err(ing, "out of memory writing the statement for %zu messages", ing->chunk_rows);
		return -1;
	}
	mqc_stmt *st = mqc_q(ing->wdb, MQC_Q_INGEST_MSGS_INSERT);
	if(!st) return -1;
	mqc_bind_text(st, 1, ing->chunk.p, -1);
	if(exec_stmt(st)) return -1;
	int64_t got = mqc_db_changes(ing->wdb);
	if(got != (int64_t)ing->chunk_rows){
		own_err(ing, "%zu of %zu messages newer than their room's last message were stored already (the "
				"database was changed by someone else)", ing->chunk_rows - (size_t)(got > 0 ? got : 0), ing->chunk_rows);
		return -1;
	}
	chunk_start(ing);
	return 0;
}

/* Appends a new message to the chunk, with seq. */
static enum store_res chunk_add(struct ingest *ing, const mqc_stamped *m, int64_t seq)
{
	struct jbuf *b = &ing->chunk;
	mqc_msg_row row; /* the message's row (store/message.c) */
	char *att;
	if(mqc_msg_row_of(m, &row, &att)){
		own_err(ing, "out of memory serialising the attachment of message %" PRIu64, m->id);
		return S_ERROR;
	}
	if(ing->chunk_rows) jb_char(b, ',');
	jb_char(b, '[');
	jb_int(b, row.id);
	jb_char(b, ',');
	jb_str(b, row.room);
	jb_char(b, ',');
	jb_int(b, seq);
	jb_char(b, ',');
	jb_str(b, row.sender);
	jb_char(b, ',');
	jb_str(b, row.type);
	jb_char(b, ',');
	jb_str(b, row.body);
	jb_char(b, ',');
	jb_str(b, row.attachment);
	jb_char(b, ',');
	jb_str(b, row.client_msg_id);
	jb_char(b, ',');
	jb_int(b, row.ts);
	jb_char(b, ']');
	free(att);
	ing->chunk_rows++;
	return S_INSERTED;
}

/* A message on its own: older than its room's last one (its seq from its predecessor, the
 * later ones shift), the same id again in one batch, any message of a careful attempt, and
 * on SQLite every message. */
static enum store_res store_alone(struct ingest *ing, struct agg *r, const mqc_stamped *m)
{
	mqc_db *w = ing->wdb;
	int64_t id = (int64_t)m->id, seq;
	mqc_stmt *st;
	int rc;

	bool older = id <= r->last;
	if(!older){
		seq = r->count + 1;
	}else{
		if(!(st = mqc_q(w, MQC_Q_INGEST_SEQ_BEFORE))) return S_ERROR;
		mqc_bind_text(st, 1, m->room, -1);
		mqc_bind_int64(st, 2, id);
		rc = mqc_step(st);
		seq = rc == MQC_ROW ? mqc_col_int64(st, 0) + 1 : 1;
		mqc_reset(st);
		if(rc == MQC_ERR) return S_ERROR;
	}

	mqc_msg_row row; /* the message's row (store/message.c) */
	char *att;
	if(mqc_msg_row_of(m, &row, &att)){
		own_err(ing, "out of memory serialising the attachment of message %" PRIu64, m->id);
		return S_ERROR;
	}
	/* Empty statements on SQLite, whose failed statement leaves the transaction as it was. */
	bool sp = ing->careful;
	if(sp && mqc_exec(w, MQC_Q_INGEST_MSG_SAVEPOINT)){
		free(att);
		return S_ERROR;
	}
	if(!(st = mqc_q(w, MQC_Q_INGEST_MSG_INSERT))){
		free(att);
		return S_ERROR;
	}
	mqc_bind_int64(st, 1, row.id);
	mqc_bind_text(st, 2, row.room, -1);
	mqc_bind_int64(st, 3, seq);
	mqc_bind_text(st, 4, row.sender, -1);
	mqc_bind_text(st, 5, row.type, -1);
	mqc_bind_text(st, 6, row.body, -1);
	mqc_bind_text(st, 7, row.attachment, -1);
	mqc_bind_text(st, 8, row.client_msg_id, -1);
	mqc_bind_int64(st, 9, row.ts);
	rc = exec_stmt(st);
	free(att);
	if(rc){
		/* Retrying the same message can never get past a constraint: skip it, where the
		 * transaction survives the error (inside the savepoint; SQLite). */
		if(mqc_db_fault_last(w) == MQC_DBF_CONSTRAINT && (sp || mqc_db_engine(w) == MQC_ENGINE_SQLITE)){
			bridge__log(BLOG_ERROR, "ingest", "message %" PRIu64 " in room %s refused by the database: %s; skipped",
					m->id, m->room, mqc_db_errmsg(w));
			if(sp && (mqc_exec(w, MQC_Q_INGEST_MSG_SAVEPOINT_UNDO) || mqc_exec(w, MQC_Q_INGEST_MSG_SAVEPOINT_RELEASE))){
				return S_ERROR;
			}
			return S_SKIPPED;
		}
		return S_ERROR;
	}
	bool inserted = mqc_db_changes(w) == 1;
	if(inserted && older){
		if(!(st = mqc_q(w, MQC_Q_INGEST_SEQ_SHIFT))) return S_ERROR;
		mqc_bind_text(st, 1, m->room, -1);
		mqc_bind_int64(st, 2, id);
		if(exec_stmt(st)) return S_ERROR;
	}
	if(sp && mqc_exec(w, MQC_Q_INGEST_MSG_SAVEPOINT_RELEASE)) return S_ERROR;
	if(!inserted) return S_DUPLICATE;
	counted(ing, r, m);
	return S_INSERTED;
}

/* Message i of the batch: into the chunk (the common case) or on its own. */
static enum store_res store_one(struct ingest *ing, size_t i)
{
	const mqc_stamped *m = &ing->work.m[i];
	struct agg *r = agg_lookup(ing, m->room, NULL, false, NULL); /* rooms_read made every room's */

	if(!r || !r->known){
		bridge__log_repeated(&ing->skip_log, BLOG_WARN, "ingest", "message %" PRIu64 " from %s for unknown room %s "
				"skipped (a room deleted since)", m->id, m->from, m->room);
		return S_SKIPPED;
	}
	if(ing->stored[i]) return S_DUPLICATE;
	/* SQLite (rowwise): a statement is a function call, not a round trip, and writing the
	 * JSON and having SQLite parse it cost more than it saved: with 300,000 messages over
	 * 1,000 rooms, 25 us of CPU per message with chunks, 16 with one INSERT per message as
	 * before the chunks. */
	if(!ing->rowwise && !ing->careful && (int64_t)m->id > r->last){
		enum store_res res = chunk_add(ing, m, r->count + 1);
		if(res != S_INSERTED) return res;
		counted(ing, r, m);
		if((ing->chunk_rows >= CHUNK_ROWS || ing->chunk.len >= CHUNK_BYTES) && chunk_flush(ing)) return S_ERROR;
		return S_INSERTED;
	}
	/* It reads and shifts what is stored: the chunk so far goes first. */
	if(chunk_flush(ing)) return S_ERROR;
	return store_alone(ing, r, m);
}

/* Writes the batch's summed counters: for each room its count and last id, for each (room,
 * sender) its count and then the sender's read marker (marker_raise, one each). SQLite (rowwise):
 * one statement per room and per (room, sender) as well; PostgreSQL: the rooms' and the
 * senders' counts in one statement each, a JSON array of rows (1,000 rooms: 3,000 round
 * trips fewer per batch). */
static int store_counters(struct ingest *ing)
{
	mqc_db *w = ing->wdb;
	size_t nrooms = 0, npairs = 0;
	mqc_stmt *st;

	jb_reset(&ing->rooms);
	jb_reset(&ing->ids);
	jb_char(&ing->rooms, '[');
	jb_char(&ing->ids, '[');
	for(size_t i = 0; i < ing->agg_nused; i++){
		const struct agg *a = &ing->agg[ing->agg_used[i]];
		if(!a->n) continue;
		if(!a->sender){
			if(!ing->rowwise){
				struct jbuf *b = &ing->rooms;
				if(nrooms++) jb_char(b, ',');
				jb_char(b, '[');
				jb_str(b, a->room);
				jb_char(b, ',');
				jb_int(b, a->n);
				jb_char(b, ',');
				jb_int(b, a->last);
				jb_char(b, ']');
				continue;
			}
			if(!(st = mqc_q(w, MQC_Q_INGEST_ROOM_UPDATE))) return -1;
			mqc_bind_text(st, 1, a->room, -1);
			mqc_bind_int64(st, 2, a->n);
			mqc_bind_int64(st, 3, a->last);
			if(exec_stmt(st)) return -1;
			continue;
		}
		if(!ing->rowwise){
			struct jbuf *b = &ing->ids;
			if(npairs++) jb_char(b, ',');
			jb_char(b, '[');
			jb_str(b, a->room);
			jb_char(b, ',');
			jb_str(b, a->sender);
			jb_char(b, ',');
			jb_int(b, a->n);
			jb_char(b, ']');
		}else{
			if(!(st = mqc_q(w, MQC_Q_INGEST_SENDER_COUNT))) return -1;
			mqc_bind_text(st, 1, a->room, -1);
			mqc_bind_text(st, 2, a->sender, -1);
			mqc_bind_int64(st, 3, a->n);
			if(exec_stmt(st)) return -1;
		}
	}
	jb_char(&ing->rooms, ']');
	jb_char(&ing->ids, ']');
	if(ing->rooms.oom || ing->ids.oom){
		own_err(ing, "out of memory listing the counters of %zu rooms", nrooms);
		return -1;
	}
	if(nrooms){
		if(!(st = mqc_q(w, MQC_Q_INGEST_ROOMS_UPDATE))) return -1;
		mqc_bind_text(st, 1, ing->rooms.p, -1);
		if(exec_stmt(st)) return -1;
	}
	if(npairs){
		if(!(st = mqc_q(w, MQC_Q_INGEST_SENDER_COUNTS))) return -1;
		mqc_bind_text(st, 1, ing->ids.p, -1);
		if(exec_stmt(st)) return -1;
	}
	/* The senders' read markers last, after the rooms' rows are locked by their update:
	 * store/rooms.c locks the room before it sets a joining user's marker, and the other
	 * order deadlocked on PostgreSQL (40P01: a user re-added while a batch with its earlier
	 * message committed; room.members.add answered "busy"). */
	for(size_t i = 0; i < ing->agg_nused; i++){
		const struct agg *a = &ing->agg[ing->agg_used[i]];
		if(!a->n || !a->sender) continue;
		if(!(st = mqc_q(w, MQC_Q_MARKER_RAISE))) return -1;
		mqc_bind_text(st, 1, a->sender, -1);
		mqc_bind_text(st, 2, a->room, -1);
		mqc_bind_int64(st, 3, a->newest);
		if(exec_stmt(st)) return -1;
	}
	return 0;
}

/* Commits ing->work (and the watermark it asks for). 0, or -1 (rolled back, logged by
 * the caller with *what, ing->err and ing->fault). */
static int commit(struct ingest *ing, const char **what)
{
	size_t inserted = 0, dup = 0, skipped = 0;
	struct batch *bt = &ing->work;
	mqc_db *w = ing->wdb;
	mqc_stmt *st;

	ing->own_err = false;
	*what = "allocating the counter table";
	if(agg_reset(ing, bt->len)){
		own_err(ing, "out of memory");
		goto fail;
	}
	*what = "BEGIN";
	if(mqc_exec(w, MQC_Q_BEGIN_WRITE)) goto fail;
	*what = "reading the batch's rooms";
	if(rooms_read(ing)) goto fail;
	*what = "looking for messages stored already";
	if(stored_find(ing)) goto fail;
	*what = "storing a message";
	chunk_start(ing);
	for(size_t i = 0; i < bt->len; i++){
		switch(store_one(ing, i)){
			case S_INSERTED: inserted++; break;
			case S_DUPLICATE: dup++; break;
			case S_SKIPPED: skipped++; break;
			case S_ERROR: goto fail;
		}
	}
	if(chunk_flush(ing)) goto fail;
	*what = "updating the counters";
	if(store_counters(ing)) goto fail;
	if(bt->lsn){
		/* Messages were taken in the plugin's order without gaps: everything up to the
		 * batch's last one is committed once this transaction is. */
		*what = "saving the watermark";
		if(!(st = mqc_q(w, MQC_Q_INGEST_WATERMARK_SET))) goto fail;
		mqc_bind_int64(st, 1, (int64_t)bt->epoch);
		mqc_bind_int64(st, 2, (int64_t)bt->seq);
		if(exec_stmt(st)) goto fail;
	}
	*what = "COMMIT";
	if(mqc_exec(w, MQC_Q_COMMIT)) goto fail;
	bridge__log(BLOG_DEBUG, "ingest", "committed %zu messages (%zu new, %zu already stored, %zu skipped, "
			"%zu counter rows%s); watermark epoch %" PRIu64 " seq %" PRIu64, bt->len, inserted, dup, skipped,
			ing->agg_nused, ing->careful && !ing->rowwise ? ", one at a time" : "", bt->epoch, bt->seq);
	return 0;
fail:
	/* the error and its kind, before ROLLBACK replaces them */
	if(ing->own_err){
		ing->fault = MQC_DBF_OTHER;
	}else{
		snprintf(ing->err, sizeof(ing->err), "%s", mqc_db_errmsg(w));
		ing->fault = mqc_db_fault_last(w);
	}
	if(mqc_db_in_txn(w)) mqc_exec(w, MQC_Q_ROLLBACK);
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

/* One attempt at the batch: reconnects first after a lost connection. */
static int attempt(struct ingest *ing, const char **what)
{
	if(ing->reconnect){
		*what = "waiting for the server";
		if(mqc_db_reconnect(ing->wdb)){
			snprintf(ing->err, sizeof(ing->err), "%s", mqc_db_errmsg(ing->wdb));
			ing->fault = MQC_DBF_LOST;
			return -1;
		}
		ing->reconnect = false;
		bridge__log(BLOG_INFO, "ingest", "the database is back (%s, the writer's connection, after %" PRId64 " ms); "
				"committing the batch of %zu messages again", mqc_db_name(ing->wdb), bridge__mono_ms() - ing->lost_at,
				ing->work.len);
	}
	return commit(ing, what);
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
		int rc = attempt(ing, &what);
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
			ing->careful = false;
			ing->lost = false;
			atomic_store(&ing->failing, false);
			notify_fd(ing->progress_efd);
		}else if(ing->fault == MQC_DBF_LOST){
			/* Reconnect and run the same batch again, soon: a COMMIT cut off may have
			 * committed, and the second run then finds its messages stored. */
			ing->failures++;
			ing->reconnect = true;
			atomic_store(&ing->failing, true);
			if(!ing->lost){
				ing->lost = true;
				ing->lost_at = bridge__mono_ms();
				ing->retry_ms = 0;
				bridge__log(BLOG_ERROR, "ingest", "lost the database %s (%s: %s); reconnecting, keeping the batch of "
						"%zu messages (not confirmed to the plugin) to commit it again",
						mqc_db_name(ing->wdb), what, ing->err, ing->work.len);
			}else{
				ing->retry_ms = ing->retry_ms ? ing->retry_ms * 2 : RETRY_MIN_MS;
				if(ing->retry_ms > LOST_RETRY_MAX_MS) ing->retry_ms = LOST_RETRY_MAX_MS;
				bridge__log_repeated(&ing->lost_log, BLOG_WARN, "ingest", "still no connection to database %s for %"
						PRId64 " ms (%s: %s); retrying every %" PRId64 " ms", mqc_db_name(ing->wdb),
						bridge__mono_ms() - ing->lost_at, what, ing->err, ing->retry_ms);
			}
		}else{
			ing->retry_ms = ing->retry_ms ? ing->retry_ms * 2 : RETRY_MIN_MS;
			if(ing->retry_ms > RETRY_MAX_MS) ing->retry_ms = RETRY_MAX_MS;
			ing->failures++;
			atomic_store(&ing->failing, true);
			bridge__log_repeated(&ing->commit_log, BLOG_ERROR, "ingest", "%s for a batch of %zu messages failed: %s; "
					"rolled back, keeping the batch (not confirmed to the plugin) and retrying in %" PRId64 " ms%s",
					what, ing->work.len, ing->err, ing->retry_ms, ing->careful || ing->rowwise ? "" : ", one message at a time");
			ing->careful = true;
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

/* Every statement the writer runs: prepared at start, so a broken statement table shows
 * now and not at the first message that needs it. */
static const mqc_qid writer_stmts[] = {
	MQC_Q_BEGIN_WRITE, MQC_Q_COMMIT, MQC_Q_ROLLBACK, MQC_Q_INGEST_ROOMS_GET, MQC_Q_INGEST_STORED_IDS,
	MQC_Q_INGEST_MSGS_INSERT, MQC_Q_INGEST_MSG_INSERT, MQC_Q_INGEST_SEQ_BEFORE, MQC_Q_INGEST_SEQ_SHIFT,
	MQC_Q_INGEST_ROOM_UPDATE, MQC_Q_INGEST_SENDER_COUNT, MQC_Q_INGEST_ROOMS_UPDATE, MQC_Q_INGEST_SENDER_COUNTS,
	MQC_Q_MARKER_RAISE, MQC_Q_INGEST_WATERMARK_SET,
	MQC_Q_INGEST_MSG_SAVEPOINT, MQC_Q_INGEST_MSG_SAVEPOINT_UNDO, MQC_Q_INGEST_MSG_SAVEPOINT_RELEASE,
};

struct ingest *ingest__new(mqc_db *db, const char *where, int batch_max, int batch_ms)
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
	if(batch_init(&ing->fill, cap) || batch_init(&ing->work, cap) || !(ing->where = strdup(where))){
		bridge__log(BLOG_ERROR, "ingest", "out of memory for a batch of %zu", cap);
		goto fail;
	}
	ing->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ing->progress_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if(ing->efd < 0 || ing->progress_efd < 0){
		bridge__log(BLOG_ERROR, "ingest", "eventfd: %s", strerror(errno));
		goto fail;
	}
	if(mqc_db_open(where, MQC_OPEN_READWRITE, 5000, &ing->wdb, reason, sizeof(reason))){
		bridge__log(BLOG_ERROR, "ingest", "writer connection: %s", reason);
		goto fail;
	}
	mqc_db_busy_handler(ing->wdb, busy_poll, (void *)&writer_polls);

	/* The writer's page cache and I/O (SQLite; these statements are empty for PostgreSQL.
	 * Measured with perf while draining a backlog: 64 % of the bridge's time was
	 * pread/pwrite/fdatasync with SQLite's default 2 MB cache):
	 *  - a 64 MB page cache keeps the indexes' hot pages (rooms, recent leaves) in memory;
	 *  - reads through mmap copy nothing;
	 *  - if the checkpointer thread cannot start, checkpoints every 16,384 WAL pages
	 *    (64 MB) instead of 1,000: a page written by many commits is copied back once;
	 *  - after a checkpoint the WAL file is cut back to 256 MB (the RESTART threshold of
	 *    the checkpointer), not left at its peak. */
	static const mqc_qid tuning[] = {
		MQC_Q_INGEST_CACHE_SIZE, MQC_Q_INGEST_MMAP_SIZE, MQC_Q_SESSION_AUTOCHECKPOINT, MQC_Q_SESSION_JOURNAL_LIMIT,
	};
	for(size_t i = 0; i < sizeof(tuning) / sizeof(tuning[0]); i++){
		if(mqc_exec(ing->wdb, tuning[i])){
			bridge__log(BLOG_WARN, "ingest", "a setting of the writer's connection failed: %s; going on without it",
					mqc_db_errmsg(ing->wdb));
		}
	}
	for(size_t i = 0; i < sizeof(writer_stmts) / sizeof(writer_stmts[0]); i++){
		if(!mqc_q(ing->wdb, writer_stmts[i])){
			bridge__log(BLOG_ERROR, "ingest", "cannot prepare the writer's statement %s: %s",
					mqc_q_names[writer_stmts[i]], mqc_db_errmsg(ing->wdb));
			goto fail;
		}
	}

	ing->rowwise = mqc_db_engine(ing->wdb) == MQC_ENGINE_SQLITE;
	watermark_read(ing);
	if(pthread_create(&ing->writer, NULL, writer, ing) != 0){
		bridge__log(BLOG_ERROR, "ingest", "cannot start the writer thread");
		goto fail;
	}
	ing->writer_running = true;
	if(mqc_db_engine(ing->wdb) == MQC_ENGINE_SQLITE) checkpointer_start(ing);
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
	if(ing->ckpt_db) mqc_db_close(ing->ckpt_db);
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
	free(ing->stored);
	free(ing->cand);
	jb_free(&ing->rooms);
	jb_free(&ing->ids);
	jb_free(&ing->chunk);
	if(ing->wdb) mqc_db_close(ing->wdb);
	free(ing->where);
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
