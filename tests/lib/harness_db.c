/*
 * harness_db.c: reading (and, for tests that play the operator, writing) the database
 * (see harness.h for the contract).
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "harness_int.h"

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

#include <sqlite3.h>

/* ------------------------------------------------------------ the database */

/* Prepares sql on a fresh connection (read-only unless rw) and binds the va_list text parameters. */
sqlite3_stmt *hx_db_prepare_mode(h_env *env, sqlite3 **dbp, const char *sql, va_list ap, bool rw)
{
	sqlite3_stmt *st = NULL;
	int i = 1;

	*dbp = NULL;
	if(sqlite3_open_v2(env->db, dbp, rw ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: open %s read-only: %s\n", env->db, sqlite3_errmsg(*dbp));
		goto fail;
	}
	sqlite3_busy_timeout(*dbp, 5000);
	if(sqlite3_prepare_v2(*dbp, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: prepare \"%s\": %s\n", sql, sqlite3_errmsg(*dbp));
		goto fail;
	}
	for(const char *a; (a = va_arg(ap, const char *)) != NULL; i++) {
		sqlite3_bind_text(st, i, a, -1, SQLITE_TRANSIENT);
	}
	return st;
fail:
	sqlite3_finalize(st);
	sqlite3_close(*dbp);
	*dbp = NULL;
	return NULL;
}

sqlite3_stmt *hx_db_prepare(h_env *env, sqlite3 **dbp, const char *sql, va_list ap)
{
	return hx_db_prepare_mode(env, dbp, sql, ap, false);
}

long long hx_db_int_va(h_env *env, const char *sql, va_list ap)
{
	sqlite3 *db;
	sqlite3_stmt *st = hx_db_prepare(env, &db, sql, ap);
	long long v = -1;
	int rc;

	if(!st) return -1;
	rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) {
		v = sqlite3_column_int64(st, 0);
	} else {
		fprintf(stderr, "harness: \"%s\" returned no row (%s)\n", sql, sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

int h_db_exec(h_env *env, const char *sql, ...)
{
	va_list ap;
	sqlite3 *db;
	va_start(ap, sql);
	sqlite3_stmt *st = hx_db_prepare_mode(env, &db, sql, ap, true);
	va_end(ap);
	if(!st) return -1;
	int rc = sqlite3_step(st);
	if(rc != SQLITE_DONE) fprintf(stderr, "harness: \"%s\" failed: %s\n", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc == SQLITE_DONE ? 0 : -1;
}

void *h_db_lock(h_env *env)
{
	sqlite3 *db = NULL;
	if(sqlite3_open_v2(env->db, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: opening %s to lock it: %s\n", env->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	if(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "harness: BEGIN IMMEDIATE on %s: %s\n", env->db, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

void h_db_unlock(void *lock)
{
	if(!lock) return;
	sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(lock);
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
	sqlite3 *db;
	sqlite3_stmt *st;
	va_list ap;
	int rc, ret = -1;

	va_start(ap, sql);
	st = hx_db_prepare(env, &db, sql, ap);
	va_end(ap);
	if(!st) return -1;
	rc = sqlite3_step(st);
	if(rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(out, outlen, "%s", t ? (const char *)t : "");
		ret = 0;
	} else if(rc == SQLITE_DONE) {
		ret = 1;
	} else {
		fprintf(stderr, "harness: \"%s\": %s\n", sql, sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ret;
}

