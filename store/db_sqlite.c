/*
 * db_sqlite.c: the SQLite engine of db.h. A connection is one sqlite3 handle; statements
 * are prepared persistent. The schema version is PRAGMA user_version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "db_int.h"
#include "reason.h"

struct sq_db {
	struct mqc_db base;
	sqlite3 *h;
	int busy_ms;
};

struct sq_stmt {
	struct mqc_stmt base;
	sqlite3_stmt *s;
};

#define H(db) (((struct sq_db *)(db))->h)
#define S(st) (((struct sq_stmt *)(st))->s)

static mqc_db_fault fault_of(int rc)
{
	switch(rc & 0xff){
		case SQLITE_CONSTRAINT: return MQC_DBF_CONSTRAINT;
		case SQLITE_BUSY: case SQLITE_LOCKED: return MQC_DBF_BUSY;
		case SQLITE_FULL: return MQC_DBF_FULL;
		default: return MQC_DBF_OTHER;
	}
}

static void fail(mqc_db *db, int rc)
{
	db__err(db, fault_of(rc), "%s", sqlite3_errmsg(H(db)));
}

static mqc_db *sq_open(const char *path, mqc_open_mode mode, int busy_ms, char *reason, size_t reasonlen)
{
	struct sq_db *db = calloc(1, sizeof(*db));
	/* Not SQLITE_OPEN_READONLY: a read-only connection cannot create the -shm file of a
	 * WAL database whose writer has closed ("attempt to write a readonly database").
	 * It opens read-write where the OS allows it and is made read-only by query_only. */
	int flags = mode == MQC_OPEN_MIGRATE ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READWRITE;
	int rc;

	if(db == NULL){
		store__say(reason, reasonlen, "database %s: out of memory", path);
		return NULL;
	}
	snprintf(db->base.name, sizeof(db->base.name), "%s", path);
	rc = sqlite3_open_v2(path, &db->h, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if(rc != SQLITE_OK){
		store__say(reason, reasonlen, "cannot open database %s: %s%s", path,
				db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc),
				mode == MQC_OPEN_MIGRATE ? "" : " (create it with mqchat-admin init)");
		sqlite3_close(db->h);
		free(db);
		return NULL;
	}
	sqlite3_extended_result_codes(db->h, 1);
	sqlite3_busy_timeout(db->h, busy_ms > 0 ? busy_ms : 0);
	db->busy_ms = busy_ms;
	return &db->base;
}

static int sq_setup(mqc_db *db, char *reason, size_t reasonlen)
{
	mqc_stmt *s;
	char jmode[32] = "";
	int rc;

	if(db->mode == MQC_OPEN_READONLY && mqc_exec(db, MQC_Q_SESSION_READ_ONLY)){
		store__say(reason, reasonlen, "database %s: cannot make the connection read-only: %s", db->name, db->err);
		return -1;
	}
	if(db->mode != MQC_OPEN_READONLY){
		/* Switching to WAL needs the database to itself, and SQLite answers BUSY at once
		 * (no busy handler) when another connection is switching too: two mqchat-admin
		 * init on a new file. Retry for the busy timeout. */
		for(int waited = 0;; waited += 10){
			s = mqc_q(db, MQC_Q_SESSION_WAL);
			rc = s ? mqc_step(s) : MQC_ERR;
			if(rc == MQC_ROW) snprintf(jmode, sizeof(jmode), "%s", mqc_col_text(s, 0) ? mqc_col_text(s, 0) : "");
			mqc_reset(s);
			if(rc != MQC_ERR || db->fault != MQC_DBF_BUSY || waited >= ((struct sq_db *)db)->busy_ms) break;
			sqlite3_sleep(10);
		}
		if(rc == MQC_ERR){
			store__say(reason, reasonlen, "database %s: cannot switch to WAL: %s", db->name, db->err);
			return -1;
		}
		/* An in-memory database answers "memory"; a file must really be in WAL. */
		if(strcmp(jmode, "wal") && strcmp(db->name, ":memory:") && db->name[0] != '\0'){
			store__say(reason, reasonlen, "database %s: journal mode is %s, WAL could not be enabled", db->name, jmode);
			return -1;
		}
		if(mqc_exec(db, MQC_Q_SESSION_SYNC)){
			store__say(reason, reasonlen, "database %s: cannot set synchronous=NORMAL: %s", db->name, db->err);
			return -1;
		}
	}
	if(mqc_exec(db, MQC_Q_SESSION_FOREIGN_KEYS)){
		store__say(reason, reasonlen, "database %s: cannot enable foreign keys: %s", db->name, db->err);
		return -1;
	}
	return 0;
}

static void sq_close(mqc_db *db)
{
	sqlite3_close(H(db));
	free(db);
}

static mqc_stmt *sq_prepare(mqc_db *db, mqc_qid id)
{
	struct sq_stmt *st = calloc(1, sizeof(*st));
	const char *sql = mqc_q_sqlite[id];
	int rc;

	if(st == NULL){
		db__err(db, MQC_DBF_OTHER, "out of memory");
		return NULL;
	}
	if(sql[0] == '\0') return &st->base;
	rc = sqlite3_prepare_v3(H(db), sql, -1, SQLITE_PREPARE_PERSISTENT, &st->s, NULL);
	if(rc != SQLITE_OK){
		db__err(db, fault_of(rc), "preparing %s: %s", mqc_q_names[id], sqlite3_errmsg(H(db)));
		free(st);
		return NULL;
	}
	return &st->base;
}

static void sq_finalize(mqc_stmt *s)
{
	sqlite3_finalize(S(s));
	free(s);
}

static int sq_exec_script(mqc_db *db, const char *sql)
{
	int rc = sqlite3_exec(H(db), sql, NULL, NULL, NULL);
	if(rc != SQLITE_OK){
		fail(db, rc);
		return -1;
	}
	return 0;
}

static void sq_bind_int64(mqc_stmt *s, int i, int64_t v) { sqlite3_bind_int64(S(s), i, v); }
/* As db.h says: len -1 keeps the caller's text (valid until reset), len >= 0 copies it. */
static void sq_bind_text(mqc_stmt *s, int i, const char *v, int len)
{
	sqlite3_bind_text(S(s), i, v, len, len < 0 ? SQLITE_STATIC : SQLITE_TRANSIENT);
}
static void sq_bind_null(mqc_stmt *s, int i) { sqlite3_bind_null(S(s), i); }

static int sq_step(mqc_stmt *s)
{
	int rc = sqlite3_step(S(s));
	if(rc == SQLITE_ROW) return MQC_ROW;
	if(rc == SQLITE_DONE){
		s->db->changes = sqlite3_changes(H(s->db));
		return MQC_DONE;
	}
	db__err(s->db, fault_of(rc), "%s: %s", mqc_q_names[s->id], sqlite3_errmsg(H(s->db)));
	return MQC_ERR;
}

static void sq_reset(mqc_stmt *s)
{
	sqlite3_reset(S(s));
	sqlite3_clear_bindings(S(s));
}

static int64_t sq_col_int64(mqc_stmt *s, int c) { return sqlite3_column_int64(S(s), c); }
static const char *sq_col_text(mqc_stmt *s, int c) { return (const char *)sqlite3_column_text(S(s), c); }
static int sq_col_bytes(mqc_stmt *s, int c) { return sqlite3_column_bytes(S(s), c); }
static bool sq_col_null(mqc_stmt *s, int c) { return sqlite3_column_type(S(s), c) == SQLITE_NULL; }
static bool sq_in_txn(mqc_db *db) { return !sqlite3_get_autocommit(H(db)); }

static int sq_version_set(mqc_db *db, int version)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", version);
	return sq_exec_script(db, sql);
}

static int sq_listen(mqc_db *db)
{
	db__err(db, MQC_DBF_OTHER, "SQLite has no notifications");
	return -1;
}

static int sq_wait(mqc_db *db, int timeout_ms)
{
	(void)timeout_ms;
	db__err(db, MQC_DBF_OTHER, "SQLite has no notifications");
	return -1;
}

static int sq_reconnect(mqc_db *db) { (void)db; return 0; }

int mqc_db_checkpoint(mqc_db *db, bool restart, int *wal_frames, int *copied)
{
	int log = 0, done = 0, rc;

	if(db->engine != MQC_ENGINE_SQLITE) return 0;
	rc = sqlite3_wal_checkpoint_v2(H(db), NULL, restart ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE,
			&log, &done);
	if(wal_frames) *wal_frames = log;
	if(copied) *copied = done;
	if(rc != SQLITE_OK){
		fail(db, rc);
		return -1;
	}
	return 0;
}

void mqc_db_busy_handler(mqc_db *db, int (*fn)(void *, int), void *arg)
{
	if(db->engine == MQC_ENGINE_SQLITE) sqlite3_busy_handler(H(db), fn, arg);
}

const struct mqc_engine_ops mqc_sqlite_ops = {
	.name = "SQLite",
	.sql = mqc_q_sqlite,
	.open = sq_open,
	.setup = sq_setup,
	.close = sq_close,
	.prepare = sq_prepare,
	.finalize = sq_finalize,
	.exec_script = sq_exec_script,
	.bind_int64 = sq_bind_int64,
	.bind_text = sq_bind_text,
	.bind_null = sq_bind_null,
	.step = sq_step,
	.reset = sq_reset,
	.col_int64 = sq_col_int64,
	.col_text = sq_col_text,
	.col_bytes = sq_col_bytes,
	.col_null = sq_col_null,
	.in_txn = sq_in_txn,
	.version_set = sq_version_set,
	.listen = sq_listen,
	.wait = sq_wait,
	.reconnect = sq_reconnect,
};
