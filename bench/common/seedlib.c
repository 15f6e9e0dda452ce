/* The helpers of seedlib.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "seedlib.h"

const char *seed_prog = "mqchat-bench";

int seed_parse_num(const char *opt, const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if(errno || end == s || *end || v < lo || v > hi){
		fprintf(stderr, "%s: %s '%s': expected a whole number in %lu..%lu\n", seed_prog, opt, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

int seed_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if(sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK){
		fprintf(stderr, "%s: %s: %s\n", seed_prog, sql, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

int seed_step(sqlite3 *db, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if(rc != SQLITE_DONE){
		fprintf(stderr, "%s: %s: %s\n", seed_prog, what, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

int seed_prepare(sqlite3 *db, struct seed_stmts *st)
{
	if(sqlite3_prepare_v2(db, "INSERT INTO users(id, password_hash, created_at) VALUES (?, ?, ?)", -1, &st->user, NULL)
			|| sqlite3_prepare_v2(db, "INSERT INTO rooms(id, kind, name, created_by, created_at) VALUES (?, 'group', ?, ?, ?)",
				-1, &st->room, NULL)
			|| sqlite3_prepare_v2(db, "INSERT INTO room_participants(room_id, user_id, joined_at) VALUES (?, ?, ?)",
				-1, &st->member, NULL)){
		fprintf(stderr, "%s: prepare: %s\n", seed_prog, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

void seed_finalize(struct seed_stmts *st)
{
	sqlite3_finalize(st->user);
	sqlite3_finalize(st->room);
	sqlite3_finalize(st->member);
	st->user = st->room = st->member = NULL;
}

int seed_user(sqlite3 *db, struct seed_stmts *st, const char *name, const char *hash, int64_t now)
{
	sqlite3_bind_text(st->user, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st->user, 2, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st->user, 3, now);
	return seed_step(db, st->user, "insert user");
}

int seed_room(sqlite3 *db, struct seed_stmts *st, const char *id, const char *name, const char *creator, int64_t now)
{
	sqlite3_bind_text(st->room, 1, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st->room, 2, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st->room, 3, creator, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st->room, 4, now);
	return seed_step(db, st->room, "insert room");
}

int seed_member(sqlite3 *db, struct seed_stmts *st, const char *room, const char *user, int64_t now)
{
	sqlite3_bind_text(st->member, 1, room, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st->member, 2, user, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st->member, 3, now);
	return seed_step(db, st->member, "insert participant");
}
