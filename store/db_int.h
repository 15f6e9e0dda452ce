/*
 * db_int.h: what the engines of db.h share. Not for the programs: db.h is their interface.
 */
#ifndef MQCHAT_DB_INT_H
#define MQCHAT_DB_INT_H

#include "db.h"

struct mqc_engine_ops {
	const char *name;                       /* "SQLite", "PostgreSQL" */
	const char *const *sql;                 /* the statement table, indexed by mqc_qid */
	/* A new connection (the engine's struct, starting with struct mqc_db, zeroed but for what
	 * the engine sets), or NULL with reason. Version checks are db.c's. */
	mqc_db *(*open)(const char *where, mqc_open_mode mode, int busy_ms, char *reason, size_t reasonlen);
	/* After the version checks: WAL and the writer's settings (SQLite). 0, or -1 with reason. */
	int (*setup)(mqc_db *db, char *reason, size_t reasonlen);
	void (*close)(mqc_db *db);
	mqc_stmt *(*prepare)(mqc_db *db, mqc_qid id);
	void (*finalize)(mqc_stmt *s);
	int (*exec_script)(mqc_db *db, const char *sql);
	void (*bind_int64)(mqc_stmt *s, int i, int64_t v);
	void (*bind_text)(mqc_stmt *s, int i, const char *v, int len);
	void (*bind_null)(mqc_stmt *s, int i);
	int (*step)(mqc_stmt *s);
	void (*reset)(mqc_stmt *s);
	int64_t (*col_int64)(mqc_stmt *s, int c);
	const char *(*col_text)(mqc_stmt *s, int c);
	int (*col_bytes)(mqc_stmt *s, int c);
	bool (*col_null)(mqc_stmt *s, int c);
	bool (*in_txn)(mqc_db *db);
	int (*version_set)(mqc_db *db, int version);  /* 0 or -1; inside the migration's transaction */
	int (*listen)(mqc_db *db);
	int (*wait)(mqc_db *db, int timeout_ms);
	int (*reconnect)(mqc_db *db);
};

/* The common part of a connection; each engine's connection starts with it. */
struct mqc_db {
	const struct mqc_engine_ops *ops;
	mqc_engine engine;
	mqc_open_mode mode;
	char name[512];     /* for log lines (no password) */
	char err[512];      /* the last error */
	mqc_db_fault fault; /* the kind of the last error */
	int64_t changes;
	mqc_stmt *stmt[MQC_Q_COUNT_];
	bool empty[MQC_Q_COUNT_]; /* the engine has no SQL for it: stepping it is MQC_DONE */
};

/* The common part of a statement. */
struct mqc_stmt {
	mqc_db *db;
	mqc_qid id;
	bool empty;
};

extern const struct mqc_engine_ops mqc_sqlite_ops;
extern const struct mqc_engine_ops mqc_pg_ops;

void db__err(mqc_db *db, mqc_db_fault fault, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
