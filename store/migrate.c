/*
 * migrate.c: opening the database and applying schema/ migrations.
 *
 * The SQL lives only in schema/NNN_name.sql, embedded at build time (schema_embedded.h).
 * The database's PRAGMA user_version is the number of the last migration applied; each
 * migration and its user_version update commit together or not at all.
 *
 * Modes: the plugin opens READONLY (never writes, refuses a schema it does not know), the
 * bridge READWRITE (refuses anything but the current version), mqchat-admin MIGRATE
 * (creates the file; the caller then runs mqc_db_migrate). A database newer than this
 * build is refused in every mode, before anything is written to it.
 */
#include <stdio.h>
#include <string.h>

#include "mqchat_store.h"
#include "reason.h"
#include "schema_embedded.h"


int mqc_schema_version(void)
{
	return mqc_migration_count > 0 ? mqc_migrations[mqc_migration_count - 1].version : 0;
}

static int user_version(sqlite3 *db, int *version)
{
	sqlite3_stmt *stmt = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL);
	if(rc == SQLITE_OK) rc = sqlite3_step(stmt);
	if(rc == SQLITE_ROW){
		*version = sqlite3_column_int(stmt, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* Runs a pragma that answers one text row (journal_mode) and returns a copy of it. */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *stmt = NULL;
	int rc;

	out[0] = '\0';
	rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
	if(rc == SQLITE_OK) rc = sqlite3_step(stmt);
	if(rc == SQLITE_ROW){
		const unsigned char *t = sqlite3_column_text(stmt, 0);
		snprintf(out, outlen, "%s", t ? (const char *)t : "");
		rc = SQLITE_OK;
	}else if(rc == SQLITE_DONE){
		rc = SQLITE_OK;
	}
	sqlite3_finalize(stmt);
	return rc;
}

int mqc_db_open(const char *path, mqc_open_mode mode, int busy_ms, sqlite3 **dbp,
		char *reason, size_t reasonlen)
{
	sqlite3 *db = NULL;
	int flags, rc, version = 0;
	int known = mqc_schema_version();
	char jmode[32];

	*dbp = NULL;
	if(path == NULL){
		store__say(reason, reasonlen, "no database path given");
		return -1;
	}
	switch(mode){
		/* Not SQLITE_OPEN_READONLY: a read-only connection cannot create the -shm file of a
		 * WAL database whose writer has closed ("attempt to write a readonly database").
		 * It opens read-write where the OS allows it and is made read-only by query_only. */
		case MQC_OPEN_READONLY: flags = SQLITE_OPEN_READWRITE; break;
		case MQC_OPEN_READWRITE: flags = SQLITE_OPEN_READWRITE; break;
		case MQC_OPEN_MIGRATE: flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
		default:
			store__say(reason, reasonlen, "database %s: unknown open mode %d", path, (int)mode);
			return -1;
	}
	rc = sqlite3_open_v2(path, &db, flags, NULL);
	if(rc != SQLITE_OK){
		store__say(reason, reasonlen, "cannot open database %s: %s%s", path,
				db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
				mode == MQC_OPEN_MIGRATE ? "" : " (create it with mqchat-admin init)");
		goto fail;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, busy_ms > 0 ? busy_ms : 0);
	if(mode == MQC_OPEN_READONLY && sqlite3_exec(db, "PRAGMA query_only=ON", NULL, NULL, NULL) != SQLITE_OK){
		store__say(reason, reasonlen, "database %s: cannot make the connection read-only: %s", path, sqlite3_errmsg(db));
		goto fail;
	}

	rc = user_version(db, &version);
	if(rc != SQLITE_OK){
		store__say(reason, reasonlen, "cannot read schema version of database %s: %s", path, sqlite3_errmsg(db));
		goto fail;
	}
	if(version > known){
		store__say(reason, reasonlen, "database %s is at schema version %d, this build knows up to %d: upgrade mqchat",
				path, version, known);
		goto fail;
	}
	if(version < 0){
		store__say(reason, reasonlen, "database %s has a negative schema version %d: not an mqchat database", path, version);
		goto fail;
	}
	if(mode == MQC_OPEN_READONLY && version == 0){
		store__say(reason, reasonlen, "database %s is not initialised: run mqchat-admin init", path);
		goto fail;
	}
	if(mode == MQC_OPEN_READWRITE && version != known){
		if(version == 0){
			store__say(reason, reasonlen, "database %s is not initialised: run mqchat-admin init", path);
		}else{
			store__say(reason, reasonlen, "database %s is at schema version %d, this build needs %d: run mqchat-admin init to migrate it",
					path, version, known);
		}
		goto fail;
	}

	if(mode != MQC_OPEN_READONLY){
		rc = pragma_text(db, "PRAGMA journal_mode=WAL", jmode, sizeof(jmode));
		if(rc != SQLITE_OK){
			store__say(reason, reasonlen, "database %s: cannot switch to WAL: %s", path, sqlite3_errmsg(db));
			goto fail;
		}
		/* An in-memory database answers "memory"; a file must really be in WAL. */
		if(strcmp(jmode, "wal") && strcmp(path, ":memory:") && path[0] != '\0'){
			store__say(reason, reasonlen, "database %s: journal mode is %s, WAL could not be enabled", path, jmode);
			goto fail;
		}
		rc = sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
		if(rc != SQLITE_OK){
			store__say(reason, reasonlen, "database %s: cannot set synchronous=NORMAL: %s", path, sqlite3_errmsg(db));
			goto fail;
		}
	}
	rc = sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
	if(rc != SQLITE_OK){
		store__say(reason, reasonlen, "database %s: cannot enable foreign keys: %s", path, sqlite3_errmsg(db));
		goto fail;
	}
	*dbp = db;
	return 0;

fail:
	sqlite3_close(db);
	return -1;
}

int mqc_db_migrate(sqlite3 *db, int *applied, char *reason, size_t reasonlen)
{
	int known = mqc_schema_version();
	int version = 0, count = 0, i, rc;
	char sql[64];

	if(applied) *applied = 0;
	for(i = 0; i < mqc_migration_count; i++){
		const struct mqc_migration *m = &mqc_migrations[i];

		rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if(rc != SQLITE_OK){
			store__say(reason, reasonlen, "cannot start a migration transaction: %s", sqlite3_errmsg(db));
			return -1;
		}
		/* Read the version inside the write lock: another migrator may have just run. */
		rc = user_version(db, &version);
		if(rc != SQLITE_OK){
			store__say(reason, reasonlen, "cannot read schema version: %s", sqlite3_errmsg(db));
			goto rollback;
		}
		if(version > known){
			store__say(reason, reasonlen, "database is at schema version %d, this build knows up to %d: upgrade mqchat",
					version, known);
			goto rollback;
		}
		if(m->version <= version){
			sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
			continue;
		}
		if(m->version != version + 1){
			store__say(reason, reasonlen, "migration %s: database is at version %d, expected %d first",
					m->name, version, m->version - 1);
			goto rollback;
		}
		rc = sqlite3_exec(db, m->sql, NULL, NULL, NULL);
		if(rc != SQLITE_OK){
			store__say(reason, reasonlen, "migration %s failed: %s (rolled back, database stays at version %d)",
					m->name, sqlite3_errmsg(db), version);
			goto rollback;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", m->version);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if(rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		if(rc != SQLITE_OK){
			store__say(reason, reasonlen, "migration %s: cannot commit: %s (rolled back, database stays at version %d)",
					m->name, sqlite3_errmsg(db), version);
			goto rollback;
		}
		count++;
		if(applied) *applied = count;
	}
	/* Also refuse a newer database when there was nothing to apply. */
	rc = user_version(db, &version);
	if(rc != SQLITE_OK){
		store__say(reason, reasonlen, "cannot read schema version: %s", sqlite3_errmsg(db));
		return -1;
	}
	if(version > known){
		store__say(reason, reasonlen, "database is at schema version %d, this build knows up to %d: upgrade mqchat",
				version, known);
		return -1;
	}
	return 0;

rollback:
	if(!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}
