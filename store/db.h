/*
 * db.h: the database, whichever engine holds it (SQLite embedded, PostgreSQL past one machine).
 *
 * Every statement the programs run is a named entry of the statement table, one per engine:
 * schema/<engine>/q_*.sql, embedded at build time (store/gen_queries.c), so no SQL text lives
 * in C. A caller asks for a statement by its id (MQC_Q_*, queries_embedded.h), binds its
 * parameters (1-based, as ?1 / $1 in the SQL), steps it, reads its columns:
 *
 *     mqc_stmt *s = mqc_q(db, MQC_Q_ROOM_STATE);
 *     mqc_bind_text(s, 1, room, -1);
 *     rc = mqc_step(s);            // MQC_ROW, MQC_DONE or MQC_ERR
 *     ... mqc_col_int64(s, 0) ...
 *     mqc_reset(s);
 *
 * Statements are prepared once per connection, on first use, and belong to the connection.
 * A connection belongs to one thread at a time. Column text stays valid until the next
 * step or reset of the same statement.
 *
 * Errors: mqc_db_errmsg says what went wrong, mqc_db_fault what kind of failure it was, so
 * callers can tell a refused change (constraint) from a database that is away (lost) and
 * one that is busy.
 */
#ifndef MQCHAT_DB_H
#define MQCHAT_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queries_embedded.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mqc_db mqc_db;
typedef struct mqc_stmt mqc_stmt;

typedef enum mqc_engine {
	MQC_ENGINE_SQLITE = 0,
	MQC_ENGINE_PG = 1,
} mqc_engine;

typedef enum mqc_open_mode {
	MQC_OPEN_READONLY,  /* the plugin: never writes, never migrates; refuses a schema it does not know */
	MQC_OPEN_READWRITE, /* the bridge: refuses a database that is not at the current version */
	MQC_OPEN_MIGRATE,   /* mqchat-admin init/migrate: creates the file and applies pending migrations */
} mqc_open_mode;

/* mqc_step's answers. */
enum { MQC_ERR = 1, MQC_ROW = 100, MQC_DONE = 101 };

/* What kind of failure the last error was. */
typedef enum mqc_db_fault {
	MQC_DBF_NONE = 0,
	MQC_DBF_CONSTRAINT, /* the database refused the change: unique, check, foreign key, trigger */
	MQC_DBF_BUSY,       /* locked by another writer / a serialization failure: try again */
	MQC_DBF_LOST,       /* the connection to the server is gone (PostgreSQL): reconnect */
	MQC_DBF_FULL,       /* the disk is full */
	MQC_DBF_OTHER,
} mqc_db_fault;

/* Which engine a --db / plugin_opt_db value names: "postgresql://..." or "postgres://..."
 * (a libpq URI) is PostgreSQL, anything else a SQLite file path. */
mqc_engine mqc_db_engine_of(const char *where);

/* The schema version this build knows for an engine (its last schema/<engine>/NNN_*.sql). */
int mqc_schema_version_of(mqc_engine e);

/* Opens the database named by where in the given mode. SQLite: WAL, foreign keys on, a
 * busy timeout of busy_ms, synchronous=NORMAL for writers. PostgreSQL: one libpq connection
 * (connect_timeout from busy_ms, at least 2 s). Returns 0 and *db, or -1 with reason (the
 * database, without any password, and what went wrong, e.g. "database /x.db is at schema
 * version 7, this build knows up to 2: upgrade mqchat"). */
int mqc_db_open(const char *where, mqc_open_mode mode, int busy_ms, mqc_db **db,
		char *reason, size_t reasonlen);
void mqc_db_close(mqc_db *db);

/* Applies every migration newer than the database's version, each in its own transaction
 * together with the version update. A no-op when up to date; refuses (-1, reason) a
 * database newer than the code. *applied (may be NULL) gets the count. */
int mqc_db_migrate(mqc_db *db, int *applied, char *reason, size_t reasonlen);

/* The database's schema version (0: not initialised), or -1 with mqc_db_errmsg. */
int mqc_db_version(mqc_db *db);

mqc_engine mqc_db_engine(const mqc_db *db);
/* The database for log lines: the SQLite path, or the PostgreSQL URI without its password. */
const char *mqc_db_name(const mqc_db *db);
const char *mqc_db_errmsg(mqc_db *db);
mqc_db_fault mqc_db_fault_last(mqc_db *db);
/* Rows changed by the last INSERT/UPDATE/DELETE stepped to MQC_DONE on this connection. */
int64_t mqc_db_changes(mqc_db *db);
/* Whether a transaction is open on the connection. */
bool mqc_db_in_txn(mqc_db *db);

/* The statement id on this connection, prepared on first use, reset and unbound. NULL when
 * it cannot be prepared (mqc_db_errmsg says why; with PostgreSQL, the connection may be lost). */
mqc_stmt *mqc_q(mqc_db *db, mqc_qid id);
/* Runs a statement without parameters to completion (BEGIN, COMMIT, ...). 0, or -1. */
int mqc_exec(mqc_db *db, mqc_qid id);
/* Runs a script of several statements (a migration). 0, or -1. */
int mqc_exec_script(mqc_db *db, const char *sql);

/* Parameters are numbered from 1. Text of len -1 (up to the NUL) is not copied: it must
 * stay valid until the statement is reset; text of len >= 0 is copied. */
void mqc_bind_int64(mqc_stmt *s, int i, int64_t v);
void mqc_bind_text(mqc_stmt *s, int i, const char *v, int len);
void mqc_bind_null(mqc_stmt *s, int i);
int mqc_step(mqc_stmt *s);
/* Ends the statement (its rows, its result) and clears its parameters. */
void mqc_reset(mqc_stmt *s);
/* Columns are numbered from 0. NULL reads as 0 / NULL. */
int64_t mqc_col_int64(mqc_stmt *s, int c);
const char *mqc_col_text(mqc_stmt *s, int c);
int mqc_col_bytes(mqc_stmt *s, int c);
bool mqc_col_null(mqc_stmt *s, int c);
mqc_db *mqc_stmt_db(mqc_stmt *s);

/* Waiting for changes made by anyone (PostgreSQL: LISTEN mqchat_acl, which the schema's
 * trigger on meta notifies at every acl_version change). mqc_db_listen starts listening;
 * mqc_db_wait waits up to timeout_ms for a notification: 1 one (or more) came, 0 none, -1
 * the connection failed. SQLite has no notifications: listen answers -1 and callers poll. */
int mqc_db_listen(mqc_db *db);
int mqc_db_wait(mqc_db *db, int timeout_ms);

/* PostgreSQL: reconnects a lost connection (statements are prepared again on first use).
 * 0 when the connection works again, -1 (mqc_db_errmsg). SQLite: always 0. */
int mqc_db_reconnect(mqc_db *db);

/* SQLite only (a no-op answering 0 for PostgreSQL): the WAL checkpoint of a writer.
 * restart selects RESTART over PASSIVE. *wal_frames / *copied may be NULL. */
int mqc_db_checkpoint(mqc_db *db, bool restart, int *wal_frames, int *copied);
/* SQLite only: a busy handler (NULL: the busy timeout). */
void mqc_db_busy_handler(mqc_db *db, int (*fn)(void *, int), void *arg);

#ifdef __cplusplus
}
#endif

#endif
