/*
 * requests_int.h: what the files of the request API share (bridge/requests.c the core:
 * statements, the call context, arguments, building blocks, dispatch; req_rooms.c,
 * req_messages.c and req_people.c the op families). Not for the rest of the bridge:
 * requests.h is its interface.
 */
#ifndef MQCHAT_BRIDGE_REQUESTS_INT_H
#define MQCHAT_BRIDGE_REQUESTS_INT_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bridge.h"
#include "db.h"
#include "mqchat_store.h"
#include "requests.h"

/* ---------------------------------------------------------------- the state, one call */

/* The statements are the req_* entries of schema/<engine>/q_bridge.sql (MQC_Q_REQ_*) and
 * the shared ones of q_store.sql (transactions, acl_version, marker_raise). */

/* Token uses reported by the plugin, not yet written (requests__flush_used). */
#define USED_MAX 1024
struct used { char user[MQC_NAME_MAX + 1], id[MQC_TOKEN_ID_LEN + 1]; int64_t at; };

struct requests {
	mqc_db *db;
	struct used used_q[USED_MAX];
	size_t used_n;
	int64_t used_first_ms;
	bool token_login;    /* the request being handled came from a device-token session */
	struct log_repeat text_log; /* stored text that is not UTF-8 (column_fix) */
	requests_before_fn *before;
	void *before_arg;
};

/* One request being answered. On OP_ERR, code and msg say why. */

enum { OP_OK = 0, OP_ERR = 1, OP_DEFER = 2, OP_NOMEM = -1 };

struct call {
	struct requests *r;
	const char *user;
	const char *opname;
	const struct op *op; /* NULL until known */
	json_t *req;
	json_t *result;
	json_t *controls;
	json_t *events;
	int64_t acl_from;   /* meta.acl_version when this call's transaction began */
	bool began;         /* this call opened the transaction (and must end it) */
	char *res;          /* the "res" argument, handed to the caller in req_out */
	const char *code;
	char msg[400];
};

struct room_access {
	bool direct;
	bool enabled;
	char created_by[MQC_NAME_MAX + 1];
};

/* ---------------------------------------------------------------- the core (requests.c) */

int fail(struct call *c, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int dbfail(struct call *c, const char *what);
mqc_stmt *st(struct call *c, mqc_qid id);
void bind_text(mqc_stmt *s, int i, const char *v);
int exec_done(struct call *c, mqc_stmt *s, const char *what);
int query_int(struct call *c, mqc_stmt *s, const char *what, int64_t *v, bool *found);
int set(json_t *o, const char *k, json_t *v);
void log_quote(char out[static 264], const unsigned char *t);
int column_fix(struct log_repeat *lr, mqc_stmt *s, const char *what,
		const char *whose, int keycol, const char **t, size_t *len, char **fixed);
int column_utf8(struct log_repeat *lr, mqc_stmt *s, int col, const char *what, const char *whose,
		int keycol, const char **t, size_t *len, char **fixed);
json_t *column_string(struct log_repeat *lr, mqc_stmt *s, int col, const char *what, const char *whose,
		int keycol);
int column_json(struct log_repeat *lr, mqc_stmt *s, int col, const char *what, const char *whose,
		int keycol, json_t **out, json_error_t *jerr);
int set_present(json_t *o, const char *k, json_t *v);
int acl_version(struct call *c, int64_t *v);
int about_to(struct call *c, enum req_sees what, const char *room);
int txn_begin(struct call *c);
int txn_commit(struct call *c);
json_t *msg_from_row(struct log_repeat *lr, mqc_stmt *s, int col, const char *room);
int room_from_row(struct call *c, mqc_stmt *s, json_t **out);
int room_object(struct call *c, const char *room, const char *user, json_t **out);
int room_access(struct call *c, const char *room, struct room_access *ra);
int members(struct call *c, const char *room, json_t **out);
int append(json_t **arr, json_t *v);
int room_control(struct call *c, const char *room);
int room_event(struct call *c, const char *user, const char *name, const char *room, bool with_info);
int room_event_all(struct call *c, const char *name, const char *room, bool with_info, const char *skip);
int arg_name(struct call *c, const char *key, bool required, const char **out);
int arg_int(struct call *c, const char *key, int64_t min, int64_t max, int64_t *out, bool *present);
int cmp_str(const void *a, const void *b);
int arg_users(struct call *c, const char *key, const char *extra, const char ***names, size_t *n);
int parse_cursor(struct call *c, const char *cur, int64_t *act, const char **room);
int group_change_access(struct call *c, const char *room, struct room_access *ra, bool creator_only);
int set_enabled(struct call *c, bool enable);
int list_rows(struct call *c, mqc_stmt *s, const char *what, const char *key,
		int (*row)(struct call *c, mqc_stmt *s, json_t *o));
int contact_row(struct call *c, mqc_stmt *s, json_t *o);
int contact_change(struct call *c, bool add);
int unread(struct call *c, const char *room, int64_t *total, int64_t *n);
int token_control(struct call *c, const char *op, const char *id, const char *hash, int64_t expires_at);
json_t *int_or_null(mqc_stmt *s, int col);
int token_row(struct call *c, mqc_stmt *s, json_t *o);

/* ---------------------------------------------------------------- the ops */

int op_room_create(struct call *c);
int op_room_direct(struct call *c);
int op_rooms_list(struct call *c);
int op_room_get(struct call *c);
int op_room_members_add(struct call *c);
int op_room_members_remove(struct call *c);
int op_room_leave(struct call *c);
int op_room_disable(struct call *c);
int op_room_enable(struct call *c);
int op_contacts_list(struct call *c);
int op_contacts_add(struct call *c);
int op_contacts_remove(struct call *c);
int op_history(struct call *c);
int op_count(struct call *c);
int op_read(struct call *c);
int op_token_create(struct call *c);
int op_tokens_list(struct call *c);
int op_token_revoke(struct call *c);

#endif
