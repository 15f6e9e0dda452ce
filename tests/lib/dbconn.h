/*
 * dbconn.h: a test's (or a benchmark's) own connection to the database, whichever engine
 * holds it, as an operator would open one: sqlite3 on the file, libpq on the URI. Tests
 * read (and, playing the operator, write) with plain SQL written for SQLite; for
 * PostgreSQL its placeholders (?N, ?) become $N, CAST(... AS INTEGER) becomes BIGINT, and
 * booleans read as 1/0. Parameters are text. Not the programs' store interface (store/db.h):
 * tests check what is in the tables whoever wrote it.
 */
#ifndef MQCHAT_TESTS_DBCONN_H
#define MQCHAT_TESTS_DBCONN_H

#include <stdarg.h>
#include <stdbool.h>

#include <libpq-fe.h>
#include <sqlite3.h>

struct hx_conn {
	bool pg;
	sqlite3 *lite;
	sqlite3_stmt *st;
	PGconn *conn;
	PGresult *res;
	int row;
};

/* Whether db (a --db value) names PostgreSQL. */
bool dbc_is_pg(const char *db);
/* 0, or -1 (printed). */
int dbc_open(const char *db, struct hx_conn *c, bool rw);
void dbc_close(struct hx_conn *c);
const char *dbc_err(struct hx_conn *c);
/* Runs sql with the va_list's text parameters (NULL-terminated). 0, or -1 (printed). */
int dbc_query(struct hx_conn *c, const char *sql, va_list ap);
/* The next row: 1, 0 at the end, -1 on an error (printed). */
int dbc_row(struct hx_conn *c);
const char *dbc_text(struct hx_conn *c, int col);
long long dbc_int(struct hx_conn *c, int col);
/* Calls row for each row of sql (at most 16 columns, text, NULL for NULL) until it returns
 * nonzero. 0, or -1 (printed). */
int dbc_rows_va(const char *db, int (*row)(void *arg, int ncols, const char *const *cols), void *arg,
		const char *sql, va_list ap);
int dbc_rows(const char *db, int (*row)(void *arg, int ncols, const char *const *cols), void *arg,
		const char *sql, ...) __attribute__((sentinel));

/* ---- a PostgreSQL database of a test's own, on the server MQCHAT_TEST_PG names */

/* The engine the test runs on: MQCHAT_TEST_ENGINE=postgresql with MQCHAT_TEST_PG set gives
 * true and *server; sqlite (or unset) false. Anything else, or postgresql without a server,
 * is printed and exits 2. */
bool dbc_test_pg(const char **server);
/* One statement on the server's maintenance database (CREATE / DROP DATABASE run outside a
 * transaction). 0, or -1 (printed). */
int dbc_pg_admin(const char *server, const char *sql);
/* Creates "<prefix>_<8 random hex>" (UTF8, C collation) on server: name gets it, url the
 * server's URI with it in place of the database. 0, or -1 (printed). */
int dbc_pg_create(const char *server, const char *prefix, char *name, size_t namelen, char *url, size_t urllen);
/* Drops it (connections to it are closed). */
int dbc_pg_drop(const char *server, const char *name);

#endif
