/* The helpers of seedlib.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqchat_store.h"
#include "seedlib.h"

const char *seed_prog = "mqchat-bench";

/* PostgreSQL: commit (and begin again) after this many rows whose triggers update meta's
 * acl_version row (users, rooms, participants). Every such update in one transaction adds a
 * version of that one row which the next update must walk past, so one transaction of n of
 * them costs O(n^2): 20,000 users took 3.5 s in one transaction, 0.7 s in ten. */
#define PG_TRIGGER_ROWS_PER_TXN 1000
#define COPY_CHUNK (1 << 20)

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

bool seed_is_pg(const char *where)
{
	return mqc_db_engine_of(where) == MQC_ENGINE_PG;
}

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int seed_open(const char *where, bool fresh, struct seed_db *d)
{
	char reason[512];
	mqc_db *db = NULL;

	memset(d, 0, sizeof(*d));
	d->pg = seed_is_pg(where);
	if(fresh && !d->pg){
		FILE *exists = fopen(where, "r");
		if(exists){
			fclose(exists);
			fprintf(stderr, "%s: %s exists; it makes a fresh file only\n", seed_prog, where);
			return -1;
		}
	}
	if(mqc_db_open(where, MQC_OPEN_MIGRATE, 5000, &db, reason, sizeof(reason))){
		fprintf(stderr, "%s: %s\n", seed_prog, reason);
		return -1;
	}
	if(fresh && d->pg){
		int v = mqc_db_version(db);
		if(v != 0){
			fprintf(stderr, "%s: %s is initialised already (schema version %d; %s); it seeds a fresh database only\n",
					seed_prog, mqc_db_name(db), v, v < 0 ? mqc_db_errmsg(db) : "CREATE DATABASE a new one");
			mqc_db_close(db);
			return -1;
		}
	}
	if(mqc_db_migrate(db, NULL, reason, sizeof(reason))){
		fprintf(stderr, "%s: %s\n", seed_prog, reason);
		mqc_db_close(db);
		return -1;
	}
	mqc_db_close(db);

	if(d->pg){
		d->conn = PQconnectdb(where);
		if(PQstatus(d->conn) != CONNECTION_OK){
			fprintf(stderr, "%s: connecting to the database: %s\n", seed_prog, PQerrorMessage(d->conn));
			seed_close(d);
			return -1;
		}
		PQsetNoticeProcessor(d->conn, quiet, NULL);
		return 0;
	}
	if(sqlite3_open_v2(where, &d->lite, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK){
		fprintf(stderr, "%s: open %s: %s\n", seed_prog, where, sqlite3_errmsg(d->lite));
		seed_close(d);
		return -1;
	}
	/* As the store's connection that seeded before: foreign keys checked, a busy timeout. */
	sqlite3_busy_timeout(d->lite, 5000);
	return seed_exec(d, "PRAGMA foreign_keys=ON");
}

void seed_close(struct seed_db *d)
{
	seed_finalize(&d->user);
	seed_finalize(&d->room);
	seed_finalize(&d->member);
	if(d->conn) PQfinish(d->conn);
	if(d->lite) sqlite3_close(d->lite);
	free(d->copy_buf);
	memset(d, 0, sizeof(*d));
}

int seed_exec(struct seed_db *d, const char *sql)
{
	if(d->pg){
		PGresult *r = PQexec(d->conn, sql);
		ExecStatusType st = PQresultStatus(r);
		if(st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK){
			fprintf(stderr, "%s: %s: %s", seed_prog, sql, PQresultErrorMessage(r));
			PQclear(r);
			return -1;
		}
		PQclear(r);
		return 0;
	}
	char *err = NULL;
	if(sqlite3_exec(d->lite, sql, NULL, NULL, &err) != SQLITE_OK){
		fprintf(stderr, "%s: %s: %s\n", seed_prog, sql, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

int seed_begin(struct seed_db *d)
{
	if(seed_exec(d, "BEGIN")) return -1;
	d->in_txn = true;
	d->trigger_rows = 0;
	return 0;
}

int seed_commit(struct seed_db *d)
{
	if(seed_exec(d, "COMMIT")) return -1;
	d->in_txn = false;
	return 0;
}

struct lite_rows {
	int (*row)(void *arg, int ncols, char **cols);
	void *arg;
};

static int lite_row(void *arg, int ncols, char **cols, char **names)
{
	struct lite_rows *lr = arg;
	(void)names;
	return lr->row(lr->arg, ncols, cols);
}

int seed_rows(struct seed_db *d, const char *sql, int (*row)(void *arg, int ncols, char **cols), void *arg)
{
	if(d->pg){
		PGresult *r = PQexec(d->conn, sql);
		if(PQresultStatus(r) != PGRES_TUPLES_OK){
			fprintf(stderr, "%s: %s: %s", seed_prog, sql, PQresultErrorMessage(r));
			PQclear(r);
			return -1;
		}
		int n = PQnfields(r) < 16 ? PQnfields(r) : 16;
		char *cols[16];
		for(int t = 0; t < PQntuples(r); t++){
			for(int c = 0; c < n; c++) cols[c] = PQgetisnull(r, t, c) ? NULL : PQgetvalue(r, t, c);
			if(row(arg, n, cols)) break;
		}
		PQclear(r);
		return 0;
	}
	struct lite_rows lr = { row, arg };
	char *err = NULL;
	int rc = sqlite3_exec(d->lite, sql, lite_row, &lr, &err);
	if(rc != SQLITE_OK && rc != SQLITE_ABORT){
		fprintf(stderr, "%s: %s: %s\n", seed_prog, sql, err ? err : "?");
		sqlite3_free(err);
		return -1;
	}
	sqlite3_free(err);
	return 0;
}

int seed_prepare(struct seed_db *d, struct seed_stmt *s, const char *sql)
{
	memset(s, 0, sizeof(*s));
	s->d = d;
	if(!d->pg){
		if(sqlite3_prepare_v2(d->lite, sql, -1, &s->st, NULL) != SQLITE_OK){
			fprintf(stderr, "%s: prepare \"%s\": %s\n", seed_prog, sql, sqlite3_errmsg(d->lite));
			return -1;
		}
		s->nparams = sqlite3_bind_parameter_count(s->st);
		return 0;
	}
	/* ?N -> $N, a bare ? -> the next number; not inside '...'. */
	size_t len = strlen(sql), o = 0;
	char *q = malloc(len * 3 + 1);
	bool quoted = false;
	int next = 1;
	if(!q) return -1;
	for(const char *p = sql; *p; p++){
		if(*p == '\'') quoted = !quoted;
		if(quoted || *p != '?'){
			q[o++] = *p;
			continue;
		}
		if(p[1] >= '0' && p[1] <= '9'){
			int n = atoi(p + 1);
			if(n > s->nparams) s->nparams = n;
			q[o++] = '$';
			continue;
		}
		o += (size_t)sprintf(q + o, "$%d", next);
		if(next > s->nparams) s->nparams = next;
		next++;
	}
	q[o] = '\0';
	if(s->nparams > SEED_MAX_PARAMS){
		fprintf(stderr, "%s: \"%s\": more than %d parameters\n", seed_prog, sql, SEED_MAX_PARAMS);
		free(q);
		return -1;
	}
	snprintf(s->name, sizeof(s->name), "seed%d", ++d->nprepared);
	PGresult *r = PQprepare(d->conn, s->name, q, 0, NULL);
	if(PQresultStatus(r) != PGRES_COMMAND_OK){
		fprintf(stderr, "%s: prepare \"%s\": %s", seed_prog, q, PQresultErrorMessage(r));
		PQclear(r);
		free(q);
		s->name[0] = '\0';
		return -1;
	}
	PQclear(r);
	free(q);
	return 0;
}

void seed_bind_int64(struct seed_stmt *s, int i, int64_t v)
{
	if(!s->d->pg){
		sqlite3_bind_int64(s->st, i, (sqlite3_int64)v);
		return;
	}
	if(i < 1 || i > SEED_MAX_PARAMS) return;
	snprintf(s->num[i - 1], sizeof(s->num[i - 1]), "%" PRId64, v);
	s->val[i - 1] = s->num[i - 1];
}

void seed_bind_text(struct seed_stmt *s, int i, const char *v)
{
	if(!s->d->pg){
		sqlite3_bind_text(s->st, i, v, -1, SQLITE_STATIC);
		return;
	}
	if(i < 1 || i > SEED_MAX_PARAMS) return;
	s->val[i - 1] = v;
}

int seed_step(struct seed_stmt *s, const char *what)
{
	struct seed_db *d = s->d;
	if(d->pg){
		PGresult *r = PQexecPrepared(d->conn, s->name, s->nparams, s->val, NULL, NULL, 0);
		memset(s->val, 0, sizeof(s->val));
		if(PQresultStatus(r) != PGRES_COMMAND_OK){
			fprintf(stderr, "%s: %s: %s", seed_prog, what, PQresultErrorMessage(r));
			PQclear(r);
			return -1;
		}
		PQclear(r);
		return 0;
	}
	int rc = sqlite3_step(s->st);
	sqlite3_reset(s->st);
	if(rc != SQLITE_DONE){
		fprintf(stderr, "%s: %s: %s\n", seed_prog, what, sqlite3_errmsg(d->lite));
		return -1;
	}
	return 0;
}

void seed_finalize(struct seed_stmt *s)
{
	if(!s->d) return;
	if(s->st) sqlite3_finalize(s->st);
	if(s->d->pg && s->name[0] && s->d->conn && PQstatus(s->d->conn) == CONNECTION_OK){
		char sql[64];
		snprintf(sql, sizeof(sql), "DEALLOCATE %s", s->name);
		PQclear(PQexec(s->d->conn, sql));
	}
	memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------ COPY (PostgreSQL) */

static int copy_flush(struct seed_db *d)
{
	if(!d->copy_len) return 0;
	if(PQputCopyData(d->conn, d->copy_buf, (int)d->copy_len) != 1){
		fprintf(stderr, "%s: COPY: %s", seed_prog, PQerrorMessage(d->conn));
		return -1;
	}
	d->copy_len = 0;
	return 0;
}

int seed_copy_begin(struct seed_db *d, const char *copy_sql)
{
	if(!d->pg) return -1;
	if(!d->copy_buf){
		d->copy_cap = COPY_CHUNK + 65536;
		if(!(d->copy_buf = malloc(d->copy_cap))) return -1;
	}
	d->copy_len = 0;
	PGresult *r = PQexec(d->conn, copy_sql);
	if(PQresultStatus(r) != PGRES_COPY_IN){
		fprintf(stderr, "%s: %s: %s", seed_prog, copy_sql, PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	return 0;
}

int seed_copy_row(struct seed_db *d, int nfields, const char *const *fields, const size_t *lens)
{
	size_t need = 1;
	for(int i = 0; i < nfields; i++) need += lens[i] + 1;
	if(d->copy_len + need > d->copy_cap && copy_flush(d)) return -1;
	if(need > d->copy_cap){
		fprintf(stderr, "%s: COPY: a row of %zu bytes\n", seed_prog, need);
		return -1;
	}
	for(int i = 0; i < nfields; i++){
		if(memchr(fields[i], '\t', lens[i]) || memchr(fields[i], '\n', lens[i]) || memchr(fields[i], '\\', lens[i])
				|| memchr(fields[i], '\r', lens[i])){
			fprintf(stderr, "%s: COPY: field %d holds a tab, newline or backslash\n", seed_prog, i + 1);
			return -1;
		}
		memcpy(d->copy_buf + d->copy_len, fields[i], lens[i]);
		d->copy_len += lens[i];
		d->copy_buf[d->copy_len++] = i + 1 < nfields ? '\t' : '\n';
	}
	return d->copy_len >= COPY_CHUNK ? copy_flush(d) : 0;
}

int seed_copy_end(struct seed_db *d)
{
	int rc = copy_flush(d);
	if(PQputCopyEnd(d->conn, rc ? "seeding failed" : NULL) != 1){
		fprintf(stderr, "%s: COPY end: %s", seed_prog, PQerrorMessage(d->conn));
		rc = -1;
	}
	PGresult *r;
	while((r = PQgetResult(d->conn))){
		if(PQresultStatus(r) != PGRES_COMMAND_OK){
			if(!rc) fprintf(stderr, "%s: COPY: %s", seed_prog, PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

/* ------------------------------------------------------------ the common rows */

int seed_prepare_rows(struct seed_db *d)
{
	if(seed_prepare(d, &d->user, "INSERT INTO users(id, password_hash, created_at) VALUES (?1, ?2, ?3)")
			|| seed_prepare(d, &d->room,
				"INSERT INTO rooms(id, kind, name, created_by, created_at) VALUES (?1, 'group', ?2, ?3, ?4)")
			|| seed_prepare(d, &d->member,
				"INSERT INTO room_participants(room_id, user_id, joined_at) VALUES (?1, ?2, ?3)")){
		return -1;
	}
	return 0;
}

/* A row whose triggers updated acl_version: see PG_TRIGGER_ROWS_PER_TXN. */
static int trigger_row(struct seed_db *d)
{
	if(!d->pg || !d->in_txn || ++d->trigger_rows < PG_TRIGGER_ROWS_PER_TXN) return 0;
	d->trigger_rows = 0;
	return seed_exec(d, "COMMIT; BEGIN");
}

int seed_user(struct seed_db *d, const char *name, const char *hash, int64_t now)
{
	seed_bind_text(&d->user, 1, name);
	seed_bind_text(&d->user, 2, hash);
	seed_bind_int64(&d->user, 3, now);
	return seed_step(&d->user, "insert user") || trigger_row(d) ? -1 : 0;
}

int seed_room(struct seed_db *d, const char *id, const char *name, const char *creator, int64_t now)
{
	seed_bind_text(&d->room, 1, id);
	seed_bind_text(&d->room, 2, name);
	seed_bind_text(&d->room, 3, creator);
	seed_bind_int64(&d->room, 4, now);
	return seed_step(&d->room, "insert room") || trigger_row(d) ? -1 : 0;
}

int seed_member(struct seed_db *d, const char *room, const char *user, int64_t now)
{
	seed_bind_text(&d->member, 1, room);
	seed_bind_text(&d->member, 2, user);
	seed_bind_int64(&d->member, 3, now);
	return seed_step(&d->member, "insert participant") || trigger_row(d) ? -1 : 0;
}
