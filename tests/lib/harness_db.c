/*
 * harness_db.c: reading (and, for tests that play the operator, writing) the database
 * (see harness.h for the contract).
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "harness_int.h"
#include "dbconn.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <strings.h>

/* ------------------------------------------------------------ the database */

bool h_db_is_pg(const h_env *env)
{
	return dbc_is_pg(env->db);
}

static int hx_conn_open(h_env *env, struct hx_conn *c, bool rw)
{
	return dbc_open(env->db, c, rw);
}

long long hx_db_int_va(h_env *env, const char *sql, va_list ap)
{
	struct hx_conn c;
	long long v = -1;

	if(hx_conn_open(env, &c, false)) return -1;
	if(dbc_query(&c, sql, ap) == 0) {
		int r = dbc_row(&c);
		if(r == 1) v = dbc_int(&c, 0);
		else fprintf(stderr, "harness: \"%s\" returned no row (%s)\n", sql, dbc_err(&c));
	}
	dbc_close(&c);
	return v;
}

int h_db_exec(h_env *env, const char *sql, ...)
{
	struct hx_conn c;
	va_list ap;
	int rc = -1;

	if(hx_conn_open(env, &c, true)) return -1;
	va_start(ap, sql);
	if(dbc_query(&c, sql, ap) == 0) rc = dbc_row(&c) < 0 ? -1 : 0;
	va_end(ap);
	dbc_close(&c);
	return rc;
}

int h_db_script(h_env *env, const char *sql)
{
	struct hx_conn c;
	int rc = -1;

	if(hx_conn_open(env, &c, true)) return -1;
	if(c.pg) {
		c.res = PQexec(c.conn, sql);
		if(PQresultStatus(c.res) == PGRES_COMMAND_OK || PQresultStatus(c.res) == PGRES_TUPLES_OK) rc = 0;
		else fprintf(stderr, "harness: SQL failed: %s\n%s\n", PQresultErrorMessage(c.res), sql);
	} else {
		char *err = NULL;
		if(sqlite3_exec(c.lite, sql, NULL, NULL, &err) == SQLITE_OK) rc = 0;
		else fprintf(stderr, "harness: SQL failed: %s\n%s\n", err, sql);
		sqlite3_free(err);
	}
	dbc_close(&c);
	return rc;
}

/* Holds the database's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the tables the
 * bridge's writer changes, locked EXCLUSIVE, which still lets readers through). */
void *h_db_lock(h_env *env)
{
	struct hx_conn *c = calloc(1, sizeof(*c));
	if(!c || hx_conn_open(env, c, true)) {
		free(c);
		return NULL;
	}
	int ok;
	if(c->pg) {
		c->res = PQexec(c->conn, "BEGIN; LOCK TABLE messages, rooms, room_sender_counts, read_markers, meta IN EXCLUSIVE MODE");
		ok = PQresultStatus(c->res) == PGRES_COMMAND_OK;
	} else {
		ok = sqlite3_exec(c->lite, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	}
	if(!ok) {
		fprintf(stderr, "harness: locking %s: %s\n", env->db, dbc_err(c));
		dbc_close(c);
		free(c);
		return NULL;
	}
	return c;
}

void h_db_unlock(void *lock)
{
	struct hx_conn *c = lock;
	if(!c) return;
	if(c->pg) {
		PQclear(c->res);
		c->res = PQexec(c->conn, "ROLLBACK");
	} else {
		sqlite3_exec(c->lite, "ROLLBACK", NULL, NULL, NULL);
	}
	dbc_close(c);
	free(c);
}

int h_db_rows(h_env *env, int (*row)(void *arg, int ncols, const char *const *cols), void *arg, const char *sql, ...)
{
	va_list ap;
	int rc;
	va_start(ap, sql);
	rc = dbc_rows_va(env->db, row, arg, sql, ap);
	va_end(ap);
	return rc;
}


bool h_sanitized(void)
{
	return getenv("MQCHAT_ASAN_PRELOAD") != NULL;
}

long h_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if(!f) return -1;
	while(fgets(line, sizeof(line), f)) {
		if(!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
	}
	fclose(f);
	return kb;
}

long long h_db_int(h_env *env, const char *sql, ...)
{
	va_list ap;
	long long v;

	va_start(ap, sql);
	v = hx_db_int_va(env, sql, ap);
	va_end(ap);
	return v;
}

long long h_db_wait_int(h_env *env, long long want, int timeout_ms, const char *sql, ...)
{
	int64_t until = hx_mono_ms() + timeout_ms;
	long long v;

	for(;;) {
		va_list ap;
		va_start(ap, sql);
		v = hx_db_int_va(env, sql, ap);
		va_end(ap);
		if(v == want || hx_mono_ms() >= until) return v;
		h_sleep_ms(50);
	}
}

int h_db_text(h_env *env, char *out, size_t outlen, const char *sql, ...)
{
	struct hx_conn c;
	va_list ap;
	int ret = -1;

	if(hx_conn_open(env, &c, false)) return -1;
	va_start(ap, sql);
	if(dbc_query(&c, sql, ap) == 0) {
		int r = dbc_row(&c);
		if(r == 1) {
			const char *t = dbc_text(&c, 0);
			snprintf(out, outlen, "%s", t ? t : "");
			ret = 0;
		} else if(r == 0) {
			ret = 1;
		}
	}
	va_end(ap);
	dbc_close(&c);
	return ret;
}

