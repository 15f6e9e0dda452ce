/*
 * What the bench seeders (mqchat-seed, mqchat-histseed) share: option parsing, SQL helpers,
 * and the rows every benchmark database needs (users, group rooms, participants), written
 * with prepared statements. Errors are printed to stderr with the program's name.
 */
#ifndef MQCHAT_BENCH_SEEDLIB_H
#define MQCHAT_BENCH_SEEDLIB_H

#include <stdint.h>

#include <sqlite3.h>

/* The program name in error messages ("mqchat-seed"); set once in main. */
extern const char *seed_prog;

/* Parses a whole number in lo..hi for option opt; 0, or -1 (printed). */
int seed_parse_num(const char *opt, const char *s, unsigned long lo, unsigned long hi, unsigned long *out);
/* sqlite3_exec; 0, or -1 (printed with the SQL). */
int seed_exec(sqlite3 *db, const char *sql);
/* Steps a statement that returns no row and resets it; 0, or -1 (printed with what). */
int seed_step(sqlite3 *db, sqlite3_stmt *s, const char *what);

struct seed_stmts {
	sqlite3_stmt *user, *room, *member;
};
/* Prepares the three inserts; 0, or -1 (printed; seed_finalize still safe). */
int seed_prepare(sqlite3 *db, struct seed_stmts *st);
void seed_finalize(struct seed_stmts *st);
int seed_user(sqlite3 *db, struct seed_stmts *st, const char *name, const char *hash, int64_t now);
/* A group room named name, created by creator (not made a participant here). */
int seed_room(sqlite3 *db, struct seed_stmts *st, const char *id, const char *name, const char *creator, int64_t now);
int seed_member(sqlite3 *db, struct seed_stmts *st, const char *room, const char *user, int64_t now);

#endif
