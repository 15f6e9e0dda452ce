/*
 * db_pg.c: the PostgreSQL engine of db.h, over libpq.
 *
 * A connection is one PGconn. Each statement of the table is prepared on the server on first
 * use (named "q<id>") and run with PQexecPrepared, its parameters as text; its rows are read
 * from the PGresult one mqc_step at a time. The schema version is the one row of the table
 * mqchat_schema, which the first migration run creates.
 *
 * A lost connection shows as MQC_DBF_LOST; mqc_db_reconnect (PQreset) brings it back and the
 * statements are prepared again on their next use. Notifications: mqc_db_listen runs the
 * table's LISTEN; mqc_db_wait polls the connection's socket for them.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dlfcn.h>
#include <pthread.h>

#include <libpq-fe.h>

#include "db_int.h"
#include "reason.h"

/* libpq is loaded when the first PostgreSQL database is opened, not linked: a SQLite
 * deployment's broker never maps it and the twenty libraries behind it (gnutls, krb5,
 * ldap, ...), whose constructors and destructors run in the broker's process. */
#define PQ_FUNCS(X) X(PQclear) X(PQcmdStatus) X(PQcmdTuples) X(PQconnectdbParams) X(PQconsumeInput) \
	X(PQdescribePrepared) X(PQerrorMessage) X(PQexec) X(PQexecPrepared) X(PQfinish) X(PQfreemem) \
	X(PQgetisnull) X(PQgetlength) X(PQgetvalue) X(PQnfields) X(PQnotifies) X(PQnparams) X(PQntuples) \
	X(PQprepare) X(PQreset) X(PQresultErrorField) X(PQresultErrorMessage) X(PQresultStatus) \
	X(PQsetNoticeProcessor) X(PQsocket) X(PQstatus) X(PQtransactionStatus)
#define PQ_DECLARE(f) __typeof__(f) *f;
static struct { PQ_FUNCS(PQ_DECLARE) } pq;
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static char pq_error[256]; /* why libpq could not be loaded; "" once it is */

static void pq_load(void)
{
	void *h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
	if(h == NULL){
		const char *e = dlerror();
		snprintf(pq_error, sizeof(pq_error), "cannot load libpq (%s): install libpq5", e ? e : "dlopen failed");
		return;
	}
#define PQ_LOAD(f) \
	if((*(void **)&pq.f = dlsym(h, #f)) == NULL){ \
		snprintf(pq_error, sizeof(pq_error), "libpq.so.5 has no %s: too old", #f); \
		return; \
	}
	PQ_FUNCS(PQ_LOAD)
#undef PQ_LOAD
	pq_error[0] = '\0';
}

/* The calls below go through the loaded table. */
#define PQclear (pq.PQclear)
#define PQcmdStatus (pq.PQcmdStatus)
#define PQcmdTuples (pq.PQcmdTuples)
#define PQconnectdbParams (pq.PQconnectdbParams)
#define PQconsumeInput (pq.PQconsumeInput)
#define PQdescribePrepared (pq.PQdescribePrepared)
#define PQerrorMessage (pq.PQerrorMessage)
#define PQexec (pq.PQexec)
#define PQexecPrepared (pq.PQexecPrepared)
#define PQfinish (pq.PQfinish)
#define PQfreemem (pq.PQfreemem)
#define PQgetisnull (pq.PQgetisnull)
#define PQgetlength (pq.PQgetlength)
#define PQgetvalue (pq.PQgetvalue)
#define PQnfields (pq.PQnfields)
#define PQnotifies (pq.PQnotifies)
#define PQnparams (pq.PQnparams)
#define PQntuples (pq.PQntuples)
#define PQprepare (pq.PQprepare)
#define PQreset (pq.PQreset)
#define PQresultErrorField (pq.PQresultErrorField)
#define PQresultErrorMessage (pq.PQresultErrorMessage)
#define PQresultStatus (pq.PQresultStatus)
#define PQsetNoticeProcessor (pq.PQsetNoticeProcessor)
#define PQsocket (pq.PQsocket)
#define PQstatus (pq.PQstatus)
#define PQtransactionStatus (pq.PQtransactionStatus)

#define PG_MAX_PARAMS 64

struct pg_db {
	struct mqc_db base;
	PGconn *conn;
	bool listening;
	unsigned generation; /* bumped at each reconnect: statements prepared before must be again */
};

struct pg_stmt {
	struct mqc_stmt base;
	unsigned prepared_in; /* the generation it was prepared in; 0: not prepared */
	int nparams;
	const char *val[PG_MAX_PARAMS];
	char *own[PG_MAX_PARAMS];
	char num[PG_MAX_PARAMS][24];
	PGresult *res;
	int row, nrows;
	bool executed;
};

#define C(db) (((struct pg_db *)(db))->conn)
#define P(st) ((struct pg_stmt *)(st))

/* "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db"; also a password=
 * keyword in the query part. */
static void safe_name(const char *where, char *out, size_t outlen)
{
	const char *p = strstr(where, "://"), *at, *colon, *pw;
	snprintf(out, outlen, "%s", where);
	if(p == NULL) return;
	p += 3;
	at = strchr(p, '@');
	colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
	if(colon){
		snprintf(out, outlen, "%.*s:***%s", (int)(colon - where), where, at);
	}
	pw = strstr(out, "password=");
	if(pw){
		char *q = (char *)pw + 9;
		char *end = strchr(q, '&');
		char rest[256];
		snprintf(rest, sizeof(rest), "%s", end ? end : "");
		snprintf(q, outlen - (size_t)(q - out), "***%s", rest);
	}
}

/* One line for a log: trailing newlines dropped, inner ones ("CONTEXT: ...") made "; ". */
static void trim(char *s)
{
	size_t l = strlen(s);
	while(l && (s[l - 1] == '\n' || s[l - 1] == ' ')) s[--l] = '\0';
	for(char *p = s; *p; p++) if(*p == '\t') *p = ' ';
	for(char *p = s; (p = strchr(p, '\n')) != NULL;){
		size_t rest;
		*p++ = ';';
		for(rest = 0; p[rest] == ' '; rest++){}
		memmove(p + 1, p + rest, strlen(p + rest) + 1);
		*p = ' ';
	}
}

static mqc_db_fault fault_of(PGconn *conn, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if(PQstatus(conn) == CONNECTION_BAD) return MQC_DBF_LOST;
	if(state == NULL) return res ? MQC_DBF_OTHER : MQC_DBF_LOST;
	if(!strncmp(state, "23", 2)) return MQC_DBF_CONSTRAINT;
	if(!strncmp(state, "08", 2) || !strncmp(state, "57P", 3)) return MQC_DBF_LOST; /* connection, shutdown */
	if(!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03")) return MQC_DBF_BUSY;
	if(!strcmp(state, "53100")) return MQC_DBF_FULL;
	return MQC_DBF_OTHER;
}

static void fail_res(mqc_db *db, const char *what, const PGresult *res)
{
	char msg[400];
	snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(C(db)));
	if(msg[0] == '\0') snprintf(msg, sizeof(msg), "%s", PQerrorMessage(C(db)));
	trim(msg);
	db__err(db, fault_of(C(db), res), "%s: %s", what, msg);
}

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static mqc_db *pg_open(const char *where, mqc_open_mode mode, int busy_ms, char *reason, size_t reasonlen)
{
	struct pg_db *db = calloc(1, sizeof(*db));
	char timeout[16];
	const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
	const char *vals[] = {where, timeout, "mqchat", NULL};

	(void)mode;
	if(db == NULL){
		store__say(reason, reasonlen, "out of memory");
		return NULL;
	}
	pthread_once(&pq_once, pq_load);
	if(pq_error[0]){
		safe_name(where, db->base.name, sizeof(db->base.name));
		store__say(reason, reasonlen, "cannot connect to database %s: %s", db->base.name, pq_error);
		free(db);
		return NULL;
	}
	safe_name(where, db->base.name, sizeof(db->base.name));
	snprintf(timeout, sizeof(timeout), "%d", busy_ms / 1000 > 2 ? busy_ms / 1000 : 2);
	db->conn = PQconnectdbParams(keys, vals, 1);
	if(db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK){
		char msg[400];
		snprintf(msg, sizeof(msg), "%s", db->conn ? PQerrorMessage(db->conn) : "out of memory");
		trim(msg);
		store__say(reason, reasonlen, "cannot connect to database %s: %s", db->base.name, msg);
		PQfinish(db->conn);
		free(db);
		return NULL;
	}
	/* NOTICEs ("relation already exists, skipping") are not errors: not printed. */
	PQsetNoticeProcessor(db->conn, quiet, NULL);
	db->generation = 1;
	return &db->base;
}

static int pg_setup(mqc_db *db, char *reason, size_t reasonlen)
{
	if(db->mode == MQC_OPEN_READONLY && mqc_exec(db, MQC_Q_SESSION_READ_ONLY)){
		store__say(reason, reasonlen, "database %s: cannot make the connection read-only: %s", db->name, db->err);
		return -1;
	}
	return 0;
}

static void pg_close(mqc_db *db)
{
	PQfinish(C(db));
	free(db);
}

static int prepare_now(struct pg_stmt *st)
{
	mqc_db *db = st->base.db;
	struct pg_db *pd = (struct pg_db *)db;
	char name[16];
	PGresult *res;

	snprintf(name, sizeof(name), "q%d", (int)st->base.id);
	res = PQprepare(pd->conn, name, mqc_q_pg[st->base.id], 0, NULL);
	if(PQresultStatus(res) != PGRES_COMMAND_OK){
		fail_res(db, mqc_q_names[st->base.id], res);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	res = PQdescribePrepared(pd->conn, name);
	if(PQresultStatus(res) != PGRES_COMMAND_OK){
		fail_res(db, mqc_q_names[st->base.id], res);
		PQclear(res);
		return -1;
	}
	st->nparams = PQnparams(res);
	PQclear(res);
	if(st->nparams > PG_MAX_PARAMS){
		db__err(db, MQC_DBF_OTHER, "%s: %d parameters, at most %d", mqc_q_names[st->base.id], st->nparams, PG_MAX_PARAMS);
		return -1;
	}
	st->prepared_in = pd->generation;
	return 0;
}

static mqc_stmt *pg_prepare(mqc_db *db, mqc_qid id)
{
	struct pg_stmt *st = calloc(1, sizeof(*st));

	if(st == NULL){
		db__err(db, MQC_DBF_OTHER, "out of memory");
		return NULL;
	}
	st->base.db = db;
	st->base.id = id;
	if(mqc_q_pg[id][0] == '\0') return &st->base;
	if(prepare_now(st)){
		free(st);
		return NULL;
	}
	return &st->base;
}

static void clear_params(struct pg_stmt *st)
{
	for(int i = 0; i < PG_MAX_PARAMS; i++){
		free(st->own[i]);
		st->own[i] = NULL;
		st->val[i] = NULL;
	}
}

static void pg_reset(mqc_stmt *s)
{
	struct pg_stmt *st = P(s);
	PQclear(st->res);
	st->res = NULL;
	st->executed = false;
	st->row = st->nrows = 0;
	clear_params(st);
}

static void pg_finalize(mqc_stmt *s)
{
	pg_reset(s);
	/* The server forgets prepared statements with the connection. */
	free(s);
}

static int pg_exec_script(mqc_db *db, const char *sql)
{
	PGresult *res = PQexec(C(db), sql);
	ExecStatusType t = PQresultStatus(res);
	if(t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK){
		fail_res(db, "script", res);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

static bool param_ok(struct pg_stmt *st, int i)
{
	(void)st;
	return i >= 1 && i <= PG_MAX_PARAMS;
}

static void pg_bind_int64(mqc_stmt *s, int i, int64_t v)
{
	struct pg_stmt *st = P(s);
	if(!param_ok(st, i)) return;
	snprintf(st->num[i - 1], sizeof(st->num[i - 1]), "%lld", (long long)v);
	st->val[i - 1] = st->num[i - 1];
}

static void pg_bind_text(mqc_stmt *s, int i, const char *v, int len)
{
	struct pg_stmt *st = P(s);
	if(!param_ok(st, i)) return;
	free(st->own[i - 1]);
	st->own[i - 1] = NULL;
	if(len < 0){
		st->val[i - 1] = v;
		return;
	}
	st->own[i - 1] = malloc((size_t)len + 1);
	if(st->own[i - 1] == NULL){
		st->val[i - 1] = NULL;
		return;
	}
	memcpy(st->own[i - 1], v, (size_t)len);
	st->own[i - 1][len] = '\0';
	st->val[i - 1] = st->own[i - 1];
}

static void pg_bind_null(mqc_stmt *s, int i)
{
	struct pg_stmt *st = P(s);
	if(!param_ok(st, i)) return;
	free(st->own[i - 1]);
	st->own[i - 1] = NULL;
	st->val[i - 1] = NULL;
}

static int pg_step(mqc_stmt *s)
{
	struct pg_stmt *st = P(s);
	mqc_db *db = s->db;
	struct pg_db *pd = (struct pg_db *)db;

	if(!st->executed){
		char name[16];
		ExecStatusType t;

		if(st->prepared_in != pd->generation && prepare_now(st)) return MQC_ERR;
		snprintf(name, sizeof(name), "q%d", (int)s->id);
		st->res = PQexecPrepared(pd->conn, name, st->nparams, st->val, NULL, NULL, 0);
		st->executed = true;
		st->row = -1;
		t = PQresultStatus(st->res);
		if(t == PGRES_TUPLES_OK){
			st->nrows = PQntuples(st->res);
		}else if(t == PGRES_COMMAND_OK){
			st->nrows = 0;
		}else{
			fail_res(db, mqc_q_names[s->id], st->res);
			PQclear(st->res);
			st->res = NULL;
			return MQC_ERR;
		}
		/* Rows changed: INSERT/UPDATE/DELETE/MERGE (with or without RETURNING) only; a
		 * SELECT's rows or a BEGIN leave it, as SQLite's changes() does. */
		const char *tag = PQcmdStatus(st->res);
		if(!strncmp(tag, "INSERT", 6) || !strncmp(tag, "UPDATE", 6) || !strncmp(tag, "DELETE", 6)
				|| !strncmp(tag, "MERGE", 5)){
			const char *n = PQcmdTuples(st->res);
			db->changes = n && n[0] ? strtoll(n, NULL, 10) : 0;
		}
	}
	if(st->res == NULL) return MQC_ERR;
	if(++st->row < st->nrows) return MQC_ROW;
	st->row = st->nrows;
	return MQC_DONE;
}

static bool have(struct pg_stmt *st, int c)
{
	return st->res && st->row >= 0 && st->row < st->nrows && c >= 0 && c < PQnfields(st->res);
}

static bool pg_col_null(mqc_stmt *s, int c)
{
	struct pg_stmt *st = P(s);
	return !have(st, c) || PQgetisnull(st->res, st->row, c);
}

static int64_t pg_col_int64(mqc_stmt *s, int c)
{
	struct pg_stmt *st = P(s);
	if(pg_col_null(s, c)) return 0;
	return strtoll(PQgetvalue(st->res, st->row, c), NULL, 10);
}

static const char *pg_col_text(mqc_stmt *s, int c)
{
	struct pg_stmt *st = P(s);
	if(pg_col_null(s, c)) return NULL;
	return PQgetvalue(st->res, st->row, c);
}

static int pg_col_bytes(mqc_stmt *s, int c)
{
	struct pg_stmt *st = P(s);
	if(pg_col_null(s, c)) return 0;
	return PQgetlength(st->res, st->row, c);
}

static bool pg_in_txn(mqc_db *db)
{
	PGTransactionStatusType t = PQtransactionStatus(C(db));
	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static int pg_version_set(mqc_db *db, int version)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_VERSION_SET);
	int rc;
	if(s == NULL) return -1;
	mqc_bind_int64(s, 1, version);
	rc = mqc_step(s);
	mqc_reset(s);
	return rc == MQC_DONE ? 0 : -1;
}

static int pg_listen(mqc_db *db)
{
	if(mqc_exec(db, MQC_Q_LISTEN_ACL)) return -1;
	((struct pg_db *)db)->listening = true;
	return 0;
}

static int drain(mqc_db *db)
{
	PGnotify *n;
	int got = 0;
	while((n = PQnotifies(C(db))) != NULL){
		got = 1;
		PQfreemem(n);
	}
	return got;
}

static int pg_wait(mqc_db *db, int timeout_ms)
{
	struct pollfd p;
	int rc;

	if(!PQconsumeInput(C(db))) goto lost;
	if(drain(db)) return 1;
	p.fd = PQsocket(C(db));
	p.events = POLLIN;
	p.revents = 0;
	if(p.fd < 0) goto lost;
	rc = poll(&p, 1, timeout_ms);
	if(rc < 0 && errno != EINTR){
		db__err(db, MQC_DBF_OTHER, "waiting for notifications: %s", strerror(errno));
		return -1;
	}
	if(rc <= 0) return 0;
	if(!PQconsumeInput(C(db))) goto lost;
	return drain(db);
lost:
	fail_res(db, "waiting for notifications", NULL);
	db->fault = MQC_DBF_LOST;
	return -1;
}

static int pg_reconnect(mqc_db *db)
{
	struct pg_db *pd = (struct pg_db *)db;

	if(PQstatus(pd->conn) == CONNECTION_OK && PQtransactionStatus(pd->conn) != PQTRANS_UNKNOWN){
		/* It may still be fine: end what the failure left open, then try a statement. */
		if(pg_in_txn(db)) mqc_exec(db, MQC_Q_ROLLBACK);
		if(mqc_exec(db, MQC_Q_PING) == 0) return 0;
	}
	PQreset(pd->conn);
	if(PQstatus(pd->conn) != CONNECTION_OK){
		fail_res(db, "reconnecting", NULL);
		db->fault = MQC_DBF_LOST;
		return -1;
	}
	pd->generation++;
	db->fault = MQC_DBF_NONE;
	db->err[0] = '\0';
	if(db->mode == MQC_OPEN_READONLY && mqc_exec(db, MQC_Q_SESSION_READ_ONLY)) return -1;
	if(pd->listening && mqc_exec(db, MQC_Q_LISTEN_ACL)) return -1;
	return 0;
}

const struct mqc_engine_ops mqc_pg_ops = {
	.name = "PostgreSQL",
	.sql = mqc_q_pg,
	.open = pg_open,
	.setup = pg_setup,
	.close = pg_close,
	.prepare = pg_prepare,
	.finalize = pg_finalize,
	.exec_script = pg_exec_script,
	.bind_int64 = pg_bind_int64,
	.bind_text = pg_bind_text,
	.bind_null = pg_bind_null,
	.step = pg_step,
	.reset = pg_reset,
	.col_int64 = pg_col_int64,
	.col_text = pg_col_text,
	.col_bytes = pg_col_bytes,
	.col_null = pg_col_null,
	.in_txn = pg_in_txn,
	.version_set = pg_version_set,
	.listen = pg_listen,
	.wait = pg_wait,
	.reconnect = pg_reconnect,
};
