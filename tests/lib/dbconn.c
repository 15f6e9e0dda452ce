/*
 * dbconn.c: a test's (or a benchmark's) own connection to the database, whichever engine
 * holds it (dbconn.h).
 */
#include "dbconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>


bool dbc_is_pg(const char *db)
{
	return !strncmp(db, "postgresql://", 13) || !strncmp(db, "postgres://", 11);
}

/* SQLite's SQL as PostgreSQL takes it (see above). */
static void hx_sql_pg(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	int next = 1;
	bool quoted = false;
	for(const char *p = in; *p && o + 16 < outlen; p++) {
		if(*p == '\'') quoted = !quoted;
		if(!quoted && *p == '?') {
			if(p[1] >= '0' && p[1] <= '9') {
				out[o++] = '$';
				continue;
			}
			o += (size_t)snprintf(out + o, outlen - o, "$%d", next++);
			continue;
		}
		if(!quoted && !strncasecmp(p, "AS INTEGER)", 11)) {
			o += (size_t)snprintf(out + o, outlen - o, "AS BIGINT)");
			p += 10;
			continue;
		}
		out[o++] = *p;
	}
	out[o] = '\0';
}

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

void dbc_close(struct hx_conn *c)
{
	if(c->pg) {
		PQclear(c->res);
		PQfinish(c->conn);
	} else {
		sqlite3_finalize(c->st);
		sqlite3_close(c->lite);
	}
	memset(c, 0, sizeof(*c));
}

int dbc_open(const char *db, struct hx_conn *c, bool rw)
{
	memset(c, 0, sizeof(*c));
	c->pg = dbc_is_pg(db);
	if(c->pg) {
		c->conn = PQconnectdb(db);
		PQsetNoticeProcessor(c->conn, quiet, NULL);
		if(PQstatus(c->conn) != CONNECTION_OK) {
			fprintf(stderr, "harness: connecting to %s: %s\n", db, PQerrorMessage(c->conn));
			dbc_close(c);
			return -1;
		}
		return 0;
	}
	if(sqlite3_open_v2(db, &c->lite, rw ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: open %s: %s\n", db, sqlite3_errmsg(c->lite));
		dbc_close(c);
		return -1;
	}
	sqlite3_busy_timeout(c->lite, 10000);
	return 0;
}


const char *dbc_err(struct hx_conn *c)
{
	if(c->pg) return c->res ? PQresultErrorMessage(c->res) : PQerrorMessage(c->conn);
	return sqlite3_errmsg(c->lite);
}

/* Runs sql with the va_list's text parameters (NULL-terminated). 0 (rows ready for
 * hx_conn_row), or -1 (printed). */
int dbc_query(struct hx_conn *c, const char *sql, va_list ap)
{
	const char *params[16];
	int n = 0;
	for(const char *a; (a = va_arg(ap, const char *)) != NULL && n < 16;) params[n++] = a;
	if(c->pg) {
		char q[4096];
		hx_sql_pg(sql, q, sizeof(q));
		PQclear(c->res);
		c->res = PQexecParams(c->conn, q, n, NULL, params, NULL, NULL, 0);
		c->row = -1;
		if(PQresultStatus(c->res) != PGRES_TUPLES_OK && PQresultStatus(c->res) != PGRES_COMMAND_OK) {
			fprintf(stderr, "harness: \"%s\": %s\n", q, PQresultErrorMessage(c->res));
			return -1;
		}
		return 0;
	}
	sqlite3_finalize(c->st);
	c->st = NULL;
	if(sqlite3_prepare_v2(c->lite, sql, -1, &c->st, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: prepare \"%s\": %s\n", sql, sqlite3_errmsg(c->lite));
		return -1;
	}
	for(int i = 0; i < n; i++) sqlite3_bind_text(c->st, i + 1, params[i], -1, SQLITE_TRANSIENT);
	return 0;
}

/* The next row: 1, 0 at the end, -1 on an error (printed). */
int dbc_row(struct hx_conn *c)
{
	if(c->pg) return ++c->row < PQntuples(c->res) ? 1 : 0;
	int rc = sqlite3_step(c->st);
	if(rc == SQLITE_ROW) return 1;
	if(rc == SQLITE_DONE) return 0;
	fprintf(stderr, "harness: %s\n", sqlite3_errmsg(c->lite));
	return -1;
}

const char *dbc_text(struct hx_conn *c, int col)
{
	if(c->pg) {
		if(PQgetisnull(c->res, c->row, col)) return NULL;
		const char *v = PQgetvalue(c->res, c->row, col);
		if(PQftype(c->res, col) == 16 /* bool */) return v[0] == 't' ? "1" : "0";
		return v;
	}
	return (const char *)sqlite3_column_text(c->st, col);
}

long long dbc_int(struct hx_conn *c, int col)
{
	const char *t = dbc_text(c, col);
	return t ? strtoll(t, NULL, 10) : 0;
}

int dbc_rows_va(const char *db, int (*row)(void *arg, int ncols, const char *const *cols), void *arg,
		const char *sql, va_list ap)
{
	struct hx_conn c;
	int rc = -1, r;

	if(dbc_open(db, &c, false)) return -1;
	if(dbc_query(&c, sql, ap) == 0) {
		int n = c.pg ? PQnfields(c.res) : sqlite3_column_count(c.st);
		const char *cols[16];
		if(n > 16) n = 16;
		while((r = dbc_row(&c)) == 1) {
			for(int i = 0; i < n; i++) cols[i] = dbc_text(&c, i);
			if(row(arg, n, cols)) break;
		}
		rc = r < 0 ? -1 : 0;
	}
	dbc_close(&c);
	return rc;
}

int dbc_rows(const char *db, int (*row)(void *arg, int ncols, const char *const *cols), void *arg,
		const char *sql, ...)
{
	va_list ap;
	int rc;
	va_start(ap, sql);
	rc = dbc_rows_va(db, row, arg, sql, ap);
	va_end(ap);
	return rc;
}

bool dbc_test_pg(const char **server)
{
	const char *engine = getenv("MQCHAT_TEST_ENGINE"), *pg = getenv("MQCHAT_TEST_PG");
	*server = NULL;
	if(!engine || !*engine || !strcmp(engine, "sqlite")) return false;
	if(strcmp(engine, "postgresql")) {
		fprintf(stderr, "MQCHAT_TEST_ENGINE=%s: expected sqlite or postgresql\n", engine);
		exit(2);
	}
	if(!pg || strncmp(pg, "postgresql://", 13)) {
		fprintf(stderr, "MQCHAT_TEST_ENGINE=postgresql needs MQCHAT_TEST_PG=postgresql://... "
				"(scripts/test.sh starts a server: scripts/pg.sh start DIR)\n");
		exit(2);
	}
	*server = pg;
	return true;
}

int dbc_pg_admin(const char *server, const char *sql)
{
	PGconn *c = PQconnectdb(server);
	int rc = -1;
	PQsetNoticeProcessor(c, quiet, NULL);
	if(PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "connecting to %s: %s", server, PQerrorMessage(c));
	} else {
		PGresult *r = PQexec(c, sql);
		if(PQresultStatus(r) == PGRES_COMMAND_OK) rc = 0;
		else fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
		PQclear(r);
	}
	PQfinish(c);
	return rc;
}

int dbc_pg_create(const char *server, const char *prefix, char *name, size_t namelen, char *url, size_t urllen)
{
	unsigned char rnd[4] = {0};
	char sql[256];
	FILE *f = fopen("/dev/urandom", "rb");
	if(!f || fread(rnd, 1, sizeof(rnd), f) != sizeof(rnd)) {
		unsigned v = (unsigned)getpid() ^ (unsigned)time(NULL);
		memcpy(rnd, &v, sizeof(rnd));
	}
	if(f) fclose(f);
	snprintf(name, namelen, "%s_%02x%02x%02x%02x", prefix, rnd[0], rnd[1], rnd[2], rnd[3]);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'", name);
	if(dbc_pg_admin(server, sql)) return -1;
	/* The server's URI with this database in place of its path. */
	const char *path = strchr(server + 13, '/');
	const char *query = strchr(server + 13, '?');
	int hostlen = (int)((path ? path : query ? query : server + strlen(server)) - server);
	snprintf(url, urllen, "%.*s/%s%s", hostlen, server, name, query ? query : "");
	return 0;
}

int dbc_pg_drop(const char *server, const char *name)
{
	char sql[160];
	if(!name || !name[0]) return 0;
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	return dbc_pg_admin(server, sql);
}
