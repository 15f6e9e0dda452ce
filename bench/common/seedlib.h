/*
 * What the bench seeders (mqchat-seed, mqchat-histseed) share: option parsing, the seeder's
 * own connection to either engine, SQL helpers, and the rows every benchmark database needs
 * (users, group rooms, participants), written with prepared statements. Errors are printed
 * to stderr with the program's name.
 *
 * The schema is made by the store library (seed_open: mqc_db_open(MQC_OPEN_MIGRATE), as
 * `mqchat-admin init`); the rows are written on a connection of the seeder's own (sqlite3 on
 * the file, libpq on a postgresql:// URI), because a benchmark's bulk load is not something
 * the programs do and has no place in their statement table. The SQL here is SQLite's, with
 * ?N parameters; for PostgreSQL they become $N (nothing else is translated: write SQL both
 * engines take).
 */
#ifndef MQCHAT_BENCH_SEEDLIB_H
#define MQCHAT_BENCH_SEEDLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <sqlite3.h>

/* The program name in error messages ("mqchat-seed"); set once in main. */
extern const char *seed_prog;

/* Parses a whole number in lo..hi for option opt; 0, or -1 (printed). */
int seed_parse_num(const char *opt, const char *s, unsigned long lo, unsigned long hi, unsigned long *out);

#define SEED_MAX_PARAMS 8

struct seed_db;

/* A prepared statement that returns no rows. Text bound must stay valid until the step. */
struct seed_stmt {
	struct seed_db *d;
	sqlite3_stmt *st;                          /* SQLite */
	char name[16];                             /* PostgreSQL: the prepared statement's name */
	int nparams;
	const char *val[SEED_MAX_PARAMS];          /* PostgreSQL: the parameters as text */
	char num[SEED_MAX_PARAMS][24];             /* ... with room for the numbers */
};

struct seed_db {
	bool pg;
	sqlite3 *lite;
	PGconn *conn;
	int nprepared;
	/* PostgreSQL: rows inserted in the open transaction whose triggers updated meta's
	 * acl_version row (see seed_trigger_row). */
	unsigned long trigger_rows;
	bool in_txn;
	struct seed_stmt user, room, member;
	/* PostgreSQL COPY in progress: rows are gathered here and sent in chunks. */
	char *copy_buf;
	size_t copy_len, copy_cap;
};

/* Whether where (a --db value) names PostgreSQL. */
bool seed_is_pg(const char *where);
/* Creates the schema with the store library and opens the seeder's own connection. fresh:
 * refuse a database that exists already (SQLite: the file; PostgreSQL: a database already
 * initialised). 0, or -1 (printed). */
int seed_open(const char *where, bool fresh, struct seed_db *d);
void seed_close(struct seed_db *d);
/* Runs sql (several statements allowed); 0, or -1 (printed with the SQL). */
int seed_exec(struct seed_db *d, const char *sql);
/* Transactions (seed_exec of BEGIN / COMMIT, tracked for seed_trigger_row). */
int seed_begin(struct seed_db *d);
int seed_commit(struct seed_db *d);
/* Runs a query without parameters and calls row(arg, ncols, cols) for each row (text,
 * NULL for NULL) until it returns nonzero. 0, or -1 (printed). */
int seed_rows(struct seed_db *d, const char *sql, int (*row)(void *arg, int ncols, char **cols), void *arg);

/* Prepares sql (SQLite's, ?N parameters); 0, or -1 (printed; seed_finalize still safe). */
int seed_prepare(struct seed_db *d, struct seed_stmt *s, const char *sql);
void seed_bind_int64(struct seed_stmt *s, int i, int64_t v);
void seed_bind_text(struct seed_stmt *s, int i, const char *v);
/* Steps a statement that returns no row and resets it; 0, or -1 (printed with what). */
int seed_step(struct seed_stmt *s, const char *what);
void seed_finalize(struct seed_stmt *s);

/* PostgreSQL only: COPY ... FROM STDIN (text format). seed_copy_row takes one row as the
 * fields' text; fields must not hold a tab, newline or backslash (checked: -1). */
int seed_copy_begin(struct seed_db *d, const char *copy_sql);
int seed_copy_row(struct seed_db *d, int nfields, const char *const *fields, const size_t *lens);
int seed_copy_end(struct seed_db *d);

/* Prepares the user, room and participant inserts; 0, or -1 (printed). */
int seed_prepare_rows(struct seed_db *d);
int seed_user(struct seed_db *d, const char *name, const char *hash, int64_t now);
/* A group room named name, created by creator (not made a participant here). */
int seed_room(struct seed_db *d, const char *id, const char *name, const char *creator, int64_t now);
int seed_member(struct seed_db *d, const char *room, const char *user, int64_t now);

#endif
