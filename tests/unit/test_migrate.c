/* test_migrate.c: opening modes, migrations, and refusal of unknown schema versions, on the
 * engine MQCHAT_TEST_ENGINE names (sqlite, the default; postgresql on the server whose URI
 * MQCHAT_TEST_PG gives: the test makes its own databases there and drops them). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "dbconn.h"
#include "mqchat_store.h"

static bool pg;
static const char *server; /* PostgreSQL: the server's maintenance database */

/* The first column of sql's first row on a connection of the test's own, -1 on failure. */
static long long one(const char *db, const char *sql, ...)
{
	struct hx_conn c;
	va_list ap;
	long long v = -1;
	if(dbc_open(db, &c, true)) return -1;
	va_start(ap, sql);
	if(dbc_query(&c, sql, ap) == 0 && dbc_row(&c) == 1) v = dbc_int(&c, 0);
	va_end(ap);
	dbc_close(&c);
	return v;
}

static int run(const char *db, const char *sql)
{
	struct hx_conn c;
	int rc = -1;
	if(dbc_open(db, &c, true)) return -1;
	if(c.pg){
		c.res = PQexec(c.conn, sql);
		rc = PQresultStatus(c.res) == PGRES_COMMAND_OK || PQresultStatus(c.res) == PGRES_TUPLES_OK ? 0 : -1;
	}else{
		rc = sqlite3_exec(c.lite, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
	}
	dbc_close(&c);
	return rc;
}

/* PostgreSQL: the databases made so far, by the test's name for them. */
static struct { char name[16], real[64]; } made[4];

/* A new, empty database: a path in dir, or a database on the server; its name into out. */
static void fresh(const char *dir, const char *name, char *out, size_t outlen)
{
	if(!pg){
		snprintf(out, outlen, "%s/%s.db", dir, name);
		return;
	}
	for(size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++){
		if(made[i].name[0] && strcmp(made[i].name, name)) continue;
		char prefix[32];
		snprintf(made[i].name, sizeof(made[i].name), "%s", name);
		snprintf(prefix, sizeof(prefix), "m_%s", name);
		CHECK(dbc_pg_create(server, prefix, made[i].real, sizeof(made[i].real), out, outlen) == 0);
		return;
	}
}

static void drop(const char *dir, const char *name)
{
	char p[512];
	if(!pg){
		const char *ext[] = { "", "-wal", "-shm" };
		for(int i = 0; i < 3; i++){
			snprintf(p, sizeof(p), "%s/%s.db%s", dir, name, ext[i]);
			unlink(p);
		}
		return;
	}
	for(size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++){
		if(!strcmp(made[i].name, name)){
			dbc_pg_drop(server, made[i].real);
			made[i].name[0] = '\0';
		}
	}
}

static const char *version_sql(void)
{
	return pg ? "SELECT version FROM mqchat_schema" : "PRAGMA user_version";
}

static long long table_count(const char *db, const char *table)
{
	return one(db, pg ? "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?1"
			: "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", table, (char *)NULL);
}

int main(void)
{
	char dir[] = "/tmp/mqchat-test-migrate-XXXXXX";
	char path[512], missing[512], reason[512], want[96], sql[128];
	const char *tables[] = { "users", "rooms", "room_participants", "messages", "contacts",
		"read_markers", "meta", "room_sender_counts", "tokens" };
	mqc_db *db = NULL;
	int applied = -1, n;
	size_t i;

	pg = dbc_test_pg(&server);
	n = mqc_schema_version_of(pg ? MQC_ENGINE_PG : MQC_ENGINE_SQLITE);
	CHECK(n >= 1);
	if(mkdtemp(dir) == NULL){
		perror("mkdtemp");
		return 1;
	}
	fresh(dir, "t", path, sizeof(path));

	/* READONLY and READWRITE never create a database */
	if(pg){
		/* a server that is not there: a clear reason naming it, no password in it */
		snprintf(missing, sizeof(missing), "postgresql://postgres:s3cret@127.0.0.1:1/nowhere");
		CHECK(mqc_db_open(missing, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1);
		CHECK(db == NULL);
		CHECKF(strstr(reason, "cannot connect to database postgresql://postgres:***@127.0.0.1:1/nowhere") != NULL,
				"reason: %s", reason);
		CHECKF(strstr(reason, "s3cret") == NULL, "reason: %s", reason);
		const char *p = strchr(server + 13, '/');
		snprintf(missing, sizeof(missing), "%.*s/m_%d_missing", (int)((p ? p : server + strlen(server)) - server),
				server, (int)getpid());
	}else{
		snprintf(missing, sizeof(missing), "%s/missing.db", dir);
	}
	CHECK(mqc_db_open(missing, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1);
	CHECK(db == NULL);
	CHECKF(strstr(reason, missing) != NULL, "reason: %s", reason);
	CHECK(mqc_db_open(missing, MQC_OPEN_READWRITE, 100, &db, reason, sizeof(reason)) == -1);
	if(!pg) CHECK(access(missing, F_OK) != 0);

	/* an empty database (version 0): READONLY and READWRITE say to run init */
	if(pg){
		CHECKF(mqc_db_open(path, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1, "%s", reason);
		CHECKF(strstr(reason, "mqchat-admin init") != NULL, "reason: %s", reason);
		CHECK(mqc_db_open(path, MQC_OPEN_READWRITE, 100, &db, reason, sizeof(reason)) == -1);
		CHECKF(strstr(reason, "mqchat-admin init") != NULL, "reason: %s", reason);
	}

	/* fresh database: MIGRATE creates it, migrate brings it to version N with every table */
	CHECKF(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == 0, "%s", reason);
	CHECK(db != NULL);
	CHECK(mqc_db_engine(db) == (pg ? MQC_ENGINE_PG : MQC_ENGINE_SQLITE));
	CHECKF(mqc_db_migrate(db, &applied, reason, sizeof(reason)) == 0, "%s", reason);
	CHECK(applied == n);
	CHECK(mqc_db_version(db) == n);
	CHECK(one(path, version_sql(), (char *)NULL) == n);
	for(i = 0; i < sizeof(tables)/sizeof(tables[0]); i++){
		CHECKF(table_count(path, tables[i]) == 1, "table %s", tables[i]);
	}
	CHECK(one(path, "SELECT value FROM meta WHERE key='acl_version'", (char *)NULL) >= 1);
	/* re-run is a no-op */
	CHECK(mqc_db_migrate(db, &applied, reason, sizeof(reason)) == 0);
	CHECK(applied == 0);
	CHECK(one(path, version_sql(), (char *)NULL) == n);
	mqc_db_close(db);
	db = NULL;

	/* the other modes accept the current version; SQLite writers got WAL */
	CHECKF(mqc_db_open(path, MQC_OPEN_READWRITE, 100, &db, reason, sizeof(reason)) == 0, "%s", reason);
	if(!pg && db){
		struct hx_conn c;
		va_list none;
		memset(&none, 0, sizeof(none));
		CHECK(dbc_open(path, &c, false) == 0);
		CHECK(sqlite3_prepare_v2(c.lite, "PRAGMA journal_mode", -1, &c.st, NULL) == SQLITE_OK);
		CHECK(dbc_row(&c) == 1);
		CHECK(strcmp(dbc_text(&c, 0), "wal") == 0);
		dbc_close(&c);
	}
	mqc_db_close(db);
	db = NULL;
	CHECKF(mqc_db_open(path, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == 0, "%s", reason);
	if(db){
		/* the read-only connection refuses writes (the statement table has none for the
		 * plugin; a script stands for any) */
		CHECK(mqc_exec_script(db, "INSERT INTO meta(key, value) VALUES ('x', 1)") != 0);
		CHECK(one(path, "SELECT count(*) FROM meta WHERE key = 'x'", (char *)NULL) == 0);
		mqc_db_close(db);
		db = NULL;
	}

	/* a database newer than the code: refused by every mode, naming both versions */
	CHECK(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == 0);
	if(pg) snprintf(sql, sizeof(sql), "UPDATE mqchat_schema SET version = %d", n + 1);
	else snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", n + 1);
	CHECK(run(path, sql) == 0);
	/* ... and by mqc_db_migrate on a handle opened before the bump */
	CHECK(mqc_db_migrate(db, &applied, reason, sizeof(reason)) == -1);
	mqc_db_close(db);
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
	drop(dir, "t");

	/* two migrators at once on an empty database: both succeed, the schema is made once */
	fresh(dir, "race", path, sizeof(path));
	{
		pid_t kids[2];
		for(int k = 0; k < 2; k++){
			kids[k] = fork();
			if(kids[k] == 0){
				mqc_db *d = NULL;
				char why[512];
				int ok = mqc_db_open(path, MQC_OPEN_MIGRATE, 5000, &d, why, sizeof(why)) == 0
					&& mqc_db_migrate(d, NULL, why, sizeof(why)) == 0;
				if(!ok) fprintf(stderr, "migrator %d: %s\n", k, why);
				mqc_db_close(d);
				_exit(ok ? 0 : 1);
			}
		}
		for(int k = 0; k < 2; k++){
			int status = -1;
			waitpid(kids[k], &status, 0);
			CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "migrator %d", k);
		}
		CHECK(one(path, version_sql(), (char *)NULL) == n);
		CHECK(one(path, "SELECT count(*) FROM meta WHERE key = 'acl_version'", (char *)NULL) == 1);
	}
	drop(dir, "race");

	if(!pg){
		/* an empty SQLite file (version 0): READONLY and READWRITE say to run init */
		fresh(dir, "t", path, sizeof(path));
		CHECK(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == 0);
		mqc_db_close(db);
		db = NULL;
		CHECK(mqc_db_open(path, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1);
		CHECKF(strstr(reason, "mqchat-admin init") != NULL, "reason: %s", reason);
		CHECK(mqc_db_open(path, MQC_OPEN_READWRITE, 100, &db, reason, sizeof(reason)) == -1);
		CHECKF(strstr(reason, "mqchat-admin init") != NULL, "reason: %s", reason);
		drop(dir, "t");

		/* a file that is not a database */
		FILE *f = fopen(path, "w");
		if(f){
			fputs("this is not sqlite, it is plain text long enough to be looked at as a header ......\n", f);
			fclose(f);
		}
		CHECK(mqc_db_open(path, MQC_OPEN_READONLY, 100, &db, reason, sizeof(reason)) == -1);
		CHECK(mqc_db_open(path, MQC_OPEN_MIGRATE, 100, &db, reason, sizeof(reason)) == -1);
		CHECKF(strstr(reason, path) != NULL, "reason: %s", reason);
		drop(dir, "t");
	}
	rmdir(dir);

	return CHECK_RESULT();
}
