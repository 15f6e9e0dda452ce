/* test_migrate.c: opening modes, migrations, and refusal of unknown schema versions. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mqchat_store.h"

static int count_rows(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	int n = -1;

	if(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW){
		n = sqlite3_column_int(stmt, 0);
	}
	sqlite3_finalize(stmt);
	return n;
}

static void rm_db(const char *path)
{
	char p[512];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

int main(void)
{
	char dir[] = "/tmp/mqchat-test-migrate-XXXXXX";
	char path[256], missing[256], reason[512], want[64];
	const char *tables[] = { "users", "rooms", "room_participants", "messages", "contacts",
		"read_markers", "meta" };
	sqlite3 *db = NULL;
	int applied = -1, n = mqc_schema_version();
	size_t i;

	CHECK(n >= 1);
	if(mkdtemp(dir) == NULL){
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/t.db", dir);
	snprintf(missing, sizeof(missing), "%s/missing.db", dir);

	/* READONLY and READWRITE never create a file */
	CHECK(mqc_db_open(missing, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1);
	CHECK(db == NULL);
	CHECKF(strstr(reason, missing) != NULL, "reason: %s", reason);
	CHECK(mqc_db_open(missing, MQC_OPEN_READWRITE, 100, &db, reason, sizeof(reason)) == -1);
	CHECK(access(missing, F_OK) != 0);

	/* fresh database: MIGRATE creates it, migrate brings it to version N with every table */
	CHECK(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == 0);
	CHECK(db != NULL);
	CHECK(mqc_db_migrate(db, &applied, reason, sizeof(reason)) == 0);
	CHECK(applied == n);
	CHECK(count_rows(db, "PRAGMA user_version") == n);
	for(i = 0; i < sizeof(tables)/sizeof(tables[0]); i++){
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='%s'", tables[i]);
		CHECKF(count_rows(db, sql) == 1, "table %s", tables[i]);
	}
	CHECK(count_rows(db, "PRAGMA foreign_keys") == 1);
	CHECK(count_rows(db, "SELECT value FROM meta WHERE key='acl_version'") >= 1);
	/* re-run is a no-op */
	CHECK(mqc_db_migrate(db, &applied, reason, sizeof(reason)) == 0);
	CHECK(applied == 0);
	CHECK(count_rows(db, "PRAGMA user_version") == n);
	sqlite3_close(db);
	db = NULL;

	/* the other modes accept the current version; writers got WAL */
	CHECK(mqc_db_open(path, MQC_OPEN_READWRITE, 100, &db, reason, sizeof(reason)) == 0);
	{
		sqlite3_stmt *st = NULL;
		CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
		CHECK(sqlite3_step(st) == SQLITE_ROW);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	db = NULL;
	CHECKF(mqc_db_open(path, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == 0, "%s", reason);
	if(db){
		CHECK(sqlite3_exec(db, "INSERT INTO meta(key, value) VALUES ('x', 1)", NULL, NULL, NULL) != SQLITE_OK);
		sqlite3_close(db);
		db = NULL;
	}

	/* a database newer than the code: refused by every mode, naming both versions */
	CHECK(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == 0);
	{
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", n + 1);
		CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	}
	/* ... and by mqc_db_migrate on a handle opened before the bump */
	CHECK(mqc_db_migrate(db, &applied, reason, sizeof(reason)) == -1);
	sqlite3_close(db);
	db = NULL;
	snprintf(want, sizeof(want), "schema version %d, this build knows up to %d", n + 1, n);
	{
		mqc_open_mode modes[] = { MQC_OPEN_READONLY, MQC_OPEN_READWRITE, MQC_OPEN_MIGRATE };
		for(i = 0; i < 3; i++){
			reason[0] = '\0';
			CHECKF(mqc_db_open(path, modes[i], 100, &db, reason, sizeof(reason)) == -1, "mode %zu", i);
			CHECK(db == NULL);
			CHECKF(strstr(reason, want) != NULL, "mode %zu reason: %s", i, reason);
			CHECKF(strstr(reason, path) != NULL, "mode %zu reason: %s", i, reason);
		}
	}
	rm_db(path);

	/* an empty database (version 0): READONLY and READWRITE say to run init */
	CHECK(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == 0);
	sqlite3_close(db);
	db = NULL;
	CHECK(mqc_db_open(path, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1);
	CHECKF(strstr(reason, "mqchat-admin init") != NULL, "reason: %s", reason);
	CHECK(mqc_db_open(path, MQC_OPEN_READWRITE, 100, &db, reason, sizeof(reason)) == -1);
	CHECKF(strstr(reason, "mqchat-admin init") != NULL, "reason: %s", reason);
	rm_db(path);

	/* a file that is not a database */
	{
		FILE *f = fopen(path, "w");
		if(f){
			fputs("this is not sqlite, it is plain text long enough to be looked at as a header ......\n", f);
			fclose(f);
		}
		CHECK(mqc_db_open(path, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1);
		CHECK(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == -1);
		CHECKF(strstr(reason, path) != NULL, "reason: %s", reason);
	}
	rm_db(path);
	rmdir(dir);

	return CHECK_RESULT();
}
