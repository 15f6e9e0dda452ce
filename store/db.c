/*
 * db.c: opening a database of either engine, its migrations, and the statement calls that
 * are the same for both (db.h). The engines are db_sqlite.c and db_pg.c.
 *
 * The migrations live only in schema/<engine>/NNN_name.sql and the statements only in
 * schema/<engine>/q_*.sql, embedded at build time (store/gen_queries.c). The database's
 * schema version is the number of the last migration applied (SQLite: PRAGMA user_version;
 * PostgreSQL: the table mqchat_schema); each migration and its version update commit
 * together or not at all.
 *
 * Modes: the plugin opens READONLY (never writes, refuses a schema it does not know), the
 * bridge READWRITE (refuses anything but the current version), mqchat-admin MIGRATE
 * (creates the SQLite file; the caller then runs mqc_db_migrate). A database newer than
 * this build is refused in every mode, before anything is written to it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "reason.h"

void db__err(mqc_db *db, mqc_db_fault fault, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
	db->fault = fault;
}

mqc_engine mqc_db_engine_of(const char *where)
{
	if(where && (!strncmp(where, "postgresql://", 13) || !strncmp(where, "postgres://", 11))) return MQC_ENGINE_PG;
	return MQC_ENGINE_SQLITE;
}

static const struct mqc_engine_ops *ops_of(mqc_engine e)
{
	return e == MQC_ENGINE_PG ? &mqc_pg_ops : &mqc_sqlite_ops;
}

static const struct mqc_migration *migrations_of(mqc_engine e, int *n)
{
	*n = e == MQC_ENGINE_PG ? mqc_migration_count_pg : mqc_migration_count_sqlite;
	return e == MQC_ENGINE_PG ? mqc_migrations_pg : mqc_migrations_sqlite;
}

int mqc_schema_version_of(mqc_engine e)
{
	int n;
	const struct mqc_migration *m = migrations_of(e, &n);
	return n > 0 ? m[n - 1].version : 0;
}

/* The schema version: 0 when the version table (PostgreSQL) does not exist yet. */
static int version_get(mqc_db *db, int *version)
{
	mqc_stmt *s;
	int rc;
	int64_t exists = 0;

	*version = 0;
	s = mqc_q(db, MQC_Q_VERSION_TABLE);
	if(s == NULL) return -1;
	rc = mqc_step(s);
	if(rc == MQC_ROW) exists = mqc_col_int64(s, 0);
	mqc_reset(s);
	if(rc == MQC_ERR) return -1;
	if(!exists) return 0;
	s = mqc_q(db, MQC_Q_VERSION_GET);
	if(s == NULL) return -1;
	rc = mqc_step(s);
	if(rc == MQC_ROW) *version = (int)mqc_col_int64(s, 0);
	mqc_reset(s);
	return rc == MQC_ERR ? -1 : 0;
}

int mqc_db_version(mqc_db *db)
{
	int v = 0;
	return version_get(db, &v) ? -1 : v;
}

/* Runs a statement of the table as a script (several statements; no parameters). */
static int exec_text(mqc_db *db, mqc_qid id)
{
	if(db->empty[id]) return 0;
	return db->ops->exec_script(db, db->ops->sql[id]);
}

int mqc_db_open(const char *where, mqc_open_mode mode, int busy_ms, mqc_db **dbp,
		char *reason, size_t reasonlen)
{
	mqc_engine e = mqc_db_engine_of(where);
	const struct mqc_engine_ops *ops = ops_of(e);
	int known = mqc_schema_version_of(e), version = 0;
	mqc_db *db;

	*dbp = NULL;
	if(where == NULL){
		store__say(reason, reasonlen, "no database given");
		return -1;
	}
	if(mode != MQC_OPEN_READONLY && mode != MQC_OPEN_READWRITE && mode != MQC_OPEN_MIGRATE){
		store__say(reason, reasonlen, "database %s: unknown open mode %d", where, (int)mode);
		return -1;
	}
	db = ops->open(where, mode, busy_ms, reason, reasonlen);
	if(db == NULL) return -1;
	db->ops = ops;
	db->engine = e;
	db->mode = mode;
	for(int i = 0; i < MQC_Q_COUNT_; i++) db->empty[i] = ops->sql[i][0] == '\0';

	if(version_get(db, &version)){
		store__say(reason, reasonlen, "cannot read the schema version of database %s: %s", db->name, db->err);
		goto fail;
	}
	if(version > known){
		store__say(reason, reasonlen, "database %s is at schema version %d, this build knows up to %d: upgrade mqchat",
				db->name, version, known);
		goto fail;
	}
	if(version < 0){
		store__say(reason, reasonlen, "database %s has a negative schema version %d: not an mqchat database", db->name, version);
		goto fail;
	}
	if(mode == MQC_OPEN_READONLY && version == 0){
		store__say(reason, reasonlen, "database %s is not initialised: run mqchat-admin init", db->name);
		goto fail;
	}
	if(mode == MQC_OPEN_READWRITE && version != known){
		if(version == 0){
			store__say(reason, reasonlen, "database %s is not initialised: run mqchat-admin init", db->name);
		}else{
			store__say(reason, reasonlen, "database %s is at schema version %d, this build needs %d: run mqchat-admin init to migrate it",
					db->name, version, known);
		}
		goto fail;
	}
	if(ops->setup(db, reason, reasonlen)) goto fail;
	*dbp = db;
	return 0;
fail:
	mqc_db_close(db);
	return -1;
}

void mqc_db_close(mqc_db *db)
{
	if(db == NULL) return;
	for(int i = 0; i < MQC_Q_COUNT_; i++){
		if(db->stmt[i]) db->ops->finalize(db->stmt[i]);
		db->stmt[i] = NULL;
	}
	db->ops->close(db);
}

int mqc_db_migrate(mqc_db *db, int *applied, char *reason, size_t reasonlen)
{
	int known = mqc_schema_version_of(db->engine);
	int version = 0, count = 0, n;
	const struct mqc_migration *mig = migrations_of(db->engine, &n);

	if(applied) *applied = 0;
	for(int i = 0; i < n; i++){
		const struct mqc_migration *m = &mig[i];

		if(mqc_exec(db, MQC_Q_MIGRATION_BEGIN)){
			store__say(reason, reasonlen, "cannot start a migration transaction: %s", db->err);
			return -1;
		}
		if(mqc_exec(db, MQC_Q_MIGRATION_LOCK) || exec_text(db, MQC_Q_MIGRATION_INIT)){
			store__say(reason, reasonlen, "cannot lock the schema for a migration: %s", db->err);
			goto rollback;
		}
		/* Read the version inside the write lock: another migrator may have just run. */
		if(version_get(db, &version)){
			store__say(reason, reasonlen, "cannot read schema version: %s", db->err);
			goto rollback;
		}
		if(version > known){
			store__say(reason, reasonlen, "database is at schema version %d, this build knows up to %d: upgrade mqchat",
					version, known);
			goto rollback;
		}
		if(m->version <= version){
			mqc_exec(db, MQC_Q_COMMIT);
			continue;
		}
		if(m->version != version + 1){
			store__say(reason, reasonlen, "migration %s: database is at version %d, expected %d first",
					m->name, version, m->version - 1);
			goto rollback;
		}
		if(mqc_exec_script(db, m->sql)){
			store__say(reason, reasonlen, "migration %s failed: %s (rolled back, database stays at version %d)",
					m->name, db->err, version);
			goto rollback;
		}
		if(db->ops->version_set(db, m->version) || mqc_exec(db, MQC_Q_COMMIT)){
			store__say(reason, reasonlen, "migration %s: cannot commit: %s (rolled back, database stays at version %d)",
					m->name, db->err, version);
			goto rollback;
		}
		count++;
		if(applied) *applied = count;
	}
	/* Also refuse a newer database when there was nothing to apply. */
	if(version_get(db, &version)){
		store__say(reason, reasonlen, "cannot read schema version: %s", db->err);
		return -1;
	}
	if(version > known){
		store__say(reason, reasonlen, "database is at schema version %d, this build knows up to %d: upgrade mqchat",
				version, known);
		return -1;
	}
	return 0;

rollback:
	if(mqc_db_in_txn(db)) mqc_exec(db, MQC_Q_ROLLBACK);
	return -1;
}

mqc_engine mqc_db_engine(const mqc_db *db) { return db->engine; }
const char *mqc_db_name(const mqc_db *db) { return db->name; }
const char *mqc_db_errmsg(mqc_db *db) { return db->err; }
mqc_db_fault mqc_db_fault_last(mqc_db *db) { return db->fault; }
int64_t mqc_db_changes(mqc_db *db) { return db->changes; }
bool mqc_db_in_txn(mqc_db *db) { return db->ops->in_txn(db); }
mqc_db *mqc_stmt_db(mqc_stmt *s) { return s->db; }

mqc_stmt *mqc_q(mqc_db *db, mqc_qid id)
{
	mqc_stmt *s;

	if((unsigned)id >= MQC_Q_COUNT_){
		db__err(db, MQC_DBF_OTHER, "no statement %d", (int)id);
		return NULL;
	}
	s = db->stmt[id];
	if(s){
		if(!s->empty) db->ops->reset(s);
		return s;
	}
	s = db->ops->prepare(db, id);
	if(s == NULL) return NULL;
	s->db = db;
	s->id = id;
	s->empty = db->empty[id];
	db->stmt[id] = s;
	return s;
}

int mqc_exec(mqc_db *db, mqc_qid id)
{
	mqc_stmt *s = mqc_q(db, id);
	int rc;

	if(s == NULL) return -1;
	do rc = mqc_step(s); while(rc == MQC_ROW);
	mqc_reset(s);
	return rc == MQC_DONE ? 0 : -1;
}

int mqc_exec_script(mqc_db *db, const char *sql) { return db->ops->exec_script(db, sql); }

void mqc_bind_int64(mqc_stmt *s, int i, int64_t v) { if(!s->empty) s->db->ops->bind_int64(s, i, v); }
void mqc_bind_text(mqc_stmt *s, int i, const char *v, int len)
{
	if(s->empty) return;
	if(v == NULL) s->db->ops->bind_null(s, i);
	else s->db->ops->bind_text(s, i, v, len);
}
void mqc_bind_null(mqc_stmt *s, int i) { if(!s->empty) s->db->ops->bind_null(s, i); }

int mqc_step(mqc_stmt *s)
{
	if(s->empty) return MQC_DONE;
	s->db->fault = MQC_DBF_NONE;
	return s->db->ops->step(s);
}

void mqc_reset(mqc_stmt *s) { if(s && !s->empty) s->db->ops->reset(s); }
int64_t mqc_col_int64(mqc_stmt *s, int c) { return s->db->ops->col_int64(s, c); }
const char *mqc_col_text(mqc_stmt *s, int c) { return s->db->ops->col_text(s, c); }
int mqc_col_bytes(mqc_stmt *s, int c) { return s->db->ops->col_bytes(s, c); }
bool mqc_col_null(mqc_stmt *s, int c) { return s->db->ops->col_null(s, c); }

int mqc_db_listen(mqc_db *db) { return db->ops->listen(db); }
int mqc_db_wait(mqc_db *db, int timeout_ms) { return db->ops->wait(db, timeout_ms); }
int mqc_db_reconnect(mqc_db *db) { return db->ops->reconnect(db); }
