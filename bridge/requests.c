/*
 * requests.c: the request API served on <prefix>/users/{me}/req (docs/protocol.md).
 *
 * requests__handle() parses one request, checks its arguments against the op's table
 * entry, runs the op and builds exactly one answer. This file is the core (statements, the
 * call context, arguments, building blocks, dispatch); the op families are req_rooms.c,
 * req_messages.c and req_people.c, over requests_int.h. Their SQL is the req_* statements
 * of schema/<engine>/q_bridge.sql, for either engine (db.h). Ops that change state run in
 * one write transaction (begin_write: BEGIN IMMEDIATE on SQLite) and, before committing,
 * collect what the caller publishes after the commit: the room's full new state for the
 * plugin ($CONTROL/mqchat/v1) and the user events. If anything fails, the transaction is
 * rolled back and nothing is handed out.
 *
 * Rules every op follows:
 *   - a room the caller is not a participant of does not exist for it (not_found, whether
 *     the room exists or not);
 *   - an op's arguments are exactly those in its table entry; anything else is invalid;
 *   - every statement is prepared in requests__new and kept by the connection (mqc_q);
 *     each use resets it at once, so no read transaction outlives the request.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "bridge.h"
#include "mqchat_store.h"
#include "requests.h"

#include "requests_int.h"

/* ---------------------------------------------------------------- one call */

int fail(struct call *c, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	c->code = code;
	return OP_ERR;
}

/* A database failure: logged with the op and the user; the requester gets `internal`. */
int dbfail(struct call *c, const char *what)
{
	bridge__log(BLOG_ERROR, "requests", "%s for %s: %s failed: %s; answering internal, nothing changed",
			c->opname ? c->opname : "request", c->user, what, mqc_db_errmsg(c->r->db));
	if(mqc_db_fault_last(c->r->db) == MQC_DBF_BUSY){
		return fail(c, "internal", "the database is busy, try again");
	}
	return fail(c, "internal", "database error");
}

/* Statement id, reset and unbound. Never NULL: requests__new prepared every statement the
 * request API runs, and the connection keeps them (a lost PostgreSQL connection shows at
 * the step, which prepares them again). */
mqc_stmt *st(struct call *c, mqc_qid id)
{
	return mqc_q(c->r->db, id);
}

void bind_text(mqc_stmt *s, int i, const char *v)
{
	mqc_bind_text(s, i, v, -1); /* NULL binds NULL */
}

/* Steps a statement that returns no row and resets it. 0 or OP_ERR. */
int exec_done(struct call *c, mqc_stmt *s, const char *what)
{
	int rc = mqc_step(s);
	if(rc != MQC_DONE){
		rc = dbfail(c, what);
		mqc_reset(s);
		return rc;
	}
	mqc_reset(s);
	return OP_OK;
}

/* Steps a query expected to give at most one integer. *found says whether a row came. */
int query_int(struct call *c, mqc_stmt *s, const char *what, int64_t *v, bool *found)
{
	int rc = mqc_step(s);
	*v = 0;
	*found = false;
	if(rc == MQC_ROW){
		*v = mqc_col_int64(s, 0);
		*found = true;
	}else if(rc == MQC_DONE){
		*found = false;
	}else{
		rc = dbfail(c, what);
		mqc_reset(s);
		return rc;
	}
	mqc_reset(s);
	return OP_OK;
}

/* json_object_set_new that reports failure; a NULL value counts as out of memory. */
int set(json_t *o, const char *k, json_t *v)
{
	if(!v) return -1;
	return json_object_set_new(o, k, v) ? -1 : 0;
}

/* ---------------------------------------------------------------- stored text into JSON */

/* The database may hold text the request API would not accept today (written by hand or
 * by an older mqchat-admin), and jansson refuses to make a string of bytes that are not
 * UTF-8. So every text column goes into an answer through these two, which never fail
 * because of what the text holds: only out of memory is NULL / -1. Valid text costs one
 * UTF-8 check (jansson's own is skipped: _nocheck); only bad text is copied. */

/* Up to 64 bytes of stored text for a log line: printable ASCII as it is, any other byte
 * as \xNN, so a damaged key cannot garble the log. */
void log_quote(char out[static 264], const unsigned char *t)
{
	size_t o = 0, i;
	if(!t){
		snprintf(out, 264, "(null)");
		return;
	}
	for(i = 0; t[i] && i < 64; i++){
		if(t[i] >= 0x20 && t[i] < 0x7F && t[i] != '\\') out[o++] = (char)t[i];
		else o += (size_t)snprintf(out + o, 264 - o, "\\x%02x", t[i]);
	}
	if(t[i]) o += (size_t)snprintf(out + o, 264 - o, "...");
	out[o] = '\0';
}

/* The rare path of column_utf8: text that failed the check is copied with U+FFFD for each
 * bad byte, and one warning is logged. Apart so that the common path carries no buffers. */
__attribute__((noinline)) int column_fix(struct log_repeat *lr, mqc_stmt *s, const char *what,
		const char *whose, int keycol, const char **t, size_t *len, char **fixed)
{
	char reason[256], key[264];
	size_t n;

	*fixed = mqc_utf8_sanitize(*t, *len, &n, reason, sizeof(reason));
	if(!*fixed) return -1;
	/* After the copy: reading keycol may convert that column and invalidate *t. */
	key[0] = '\0';
	if(keycol >= 0) log_quote(key, (const unsigned char *)mqc_col_text(s, keycol));
	bridge__log_repeated(lr, BLOG_WARN, "requests", "%s of %s%s%s is %s; answering with U+FFFD replacements",
			what, whose, keycol >= 0 ? " " : "", key, reason);
	*t = *fixed;
	*len = n;
	return 0;
}

/* Column col as UTF-8 text ready for JSON: *t and *len point into the row if it is valid,
 * else into *fixed (malloc'd, caller frees), and the warning says "<what> of <whose>
 * <column keycol of the row> is not valid UTF-8 (...)" (keycol -1: whose alone).
 * Returns 0, 1 if the column is NULL (*t NULL), -1 when out of memory. */
int column_utf8(struct log_repeat *lr, mqc_stmt *s, int col, const char *what, const char *whose,
		int keycol, const char **t, size_t *len, char **fixed)
{
	*fixed = NULL;
	*t = mqc_col_text(s, col);
	if(!*t) return mqc_col_null(s, col) ? 1 : -1; /* else the engine ran out of memory */
	*len = (size_t)mqc_col_bytes(s, col);
	if(mqc_utf8_valid_len(*t, *len) == *len) return 0;
	return column_fix(lr, s, what, whose, keycol, t, len, fixed);
}

/* Column col as a JSON string, or JSON null for NULL. NULL only when out of memory. */
json_t *column_string(struct log_repeat *lr, mqc_stmt *s, int col, const char *what, const char *whose,
		int keycol)
{
	const char *t;
	size_t len;
	char *fixed;
	json_t *v;
	int rc = column_utf8(lr, s, col, what, whose, keycol, &t, &len, &fixed);

	if(rc) return rc > 0 ? json_null() : NULL;
	v = json_stringn_nocheck(t, len);
	free(fixed);
	return v;
}

/* Column col parsed as JSON. Returns 0 with *out (NULL for a NULL column), 1 if the text
 * is not JSON (*out NULL, jerr says why), -1 when out of memory. */
int column_json(struct log_repeat *lr, mqc_stmt *s, int col, const char *what, const char *whose,
		int keycol, json_t **out, json_error_t *jerr)
{
	const char *t;
	size_t len;
	char *fixed;
	int rc = column_utf8(lr, s, col, what, whose, keycol, &t, &len, &fixed);

	*out = NULL;
	if(rc) return rc > 0 ? 0 : -1;
	*out = json_loadb(t, len, 0, jerr);
	free(fixed);
	if(*out) return 0;
	return json_error_code(jerr) == json_error_out_of_memory ? -1 : 1;
}

/* set() for a value that may be JSON null: null leaves the key out. */
int set_present(json_t *o, const char *k, json_t *v)
{
	if(!v) return -1;
	if(json_is_null(v)) return 0;
	return set(o, k, v);
}

/* ---------------------------------------------------------------- transactions */

int acl_version(struct call *c, int64_t *v)
{
	bool found;
	int rc = query_int(c, st(c, MQC_Q_ACL_VERSION), "reading meta.acl_version", v, &found);
	if(rc == OP_OK && !found) *v = 0;
	return rc;
}

/* Tells the caller what this call is about to read or write (requests_before_fn), once
 * its arguments and access are checked: a refused request never makes anyone wait.
 * OP_DEFER: the caller wants it run later (nothing is changed before this). */
int about_to(struct call *c, enum req_sees what, const char *room)
{
	if(c->r->before && !c->r->before(c->r->before_arg, c->user, what, room)) return OP_DEFER;
	return OP_OK;
}

/* Starts the call's write transaction. Refuses to run inside someone else's transaction:
 * the controls must describe committed state. */
int txn_begin(struct call *c)
{
	if(mqc_db_in_txn(c->r->db)){
		bridge__log(BLOG_ERROR, "requests", "%s for %s: called with a transaction open on the database (the caller must "
				"commit first); answering internal", c->opname, c->user);
		return fail(c, "internal", "database busy");
	}
	int rc = about_to(c, REQ_WRITES, NULL);
	if(rc) return rc;
	rc = exec_done(c, st(c, MQC_Q_BEGIN_WRITE), "beginning the transaction");
	if(rc) return rc;
	c->began = true;
	return acl_version(c, &c->acl_from);
}

int txn_commit(struct call *c)
{
	return exec_done(c, st(c, MQC_Q_COMMIT), "COMMIT");
}

/* ---------------------------------------------------------------- building blocks */

/* A stamped message from the MSG_COLS columns at col..col+6, exactly as delivered on
 * <prefix>/rooms/{room}/messages: id, room, from, ts, type, body?, attachment?, client_msg_id?. */
json_t *msg_from_row(struct log_repeat *lr, mqc_stmt *s, int col, const char *room)
{
	/* The columns are MQC_MSG_ROW_COLS from col on; stored text that is not UTF-8 is
	 * answered repaired and logged (column_utf8), then store/message.c makes the object. */
	static const char *const what[] = { "messages.sender", "messages.type", "messages.body",
		"messages.attachment", "messages.client_msg_id" };
	static const int at[] = { 1, 3, 4, 5, 6 };
	const char *t[5];
	size_t len[5];
	char *fixed[5] = { NULL };
	json_t *m = NULL;
	bool bad_att = false;
	mqc_msg_row row = { .id = mqc_col_int64(s, col), .room = room, .ts = mqc_col_int64(s, col + 2) };

	for(int i = 0; i < 5; i++){
		int rc = column_utf8(lr, s, col + at[i], what[i], "message", col, &t[i], &len[i], &fixed[i]);
		if(rc < 0) goto out;
		if(rc > 0){
			t[i] = NULL;
			len[i] = 0;
		}
	}
	row.sender = t[0] ? t[0] : "";
	row.type = t[1] ? t[1] : "";
	row.body = t[2];
	row.body_len = len[2];
	row.attachment = t[3];
	row.attachment_len = len[3];
	row.client_msg_id = t[4];
	m = mqc_msg_row_json(&row, &bad_att);
	if(m && bad_att){
		bridge__log(BLOG_WARN, "requests", "messages.attachment of message %lld is not JSON; sent without it",
				(long long)row.id);
	}
out:
	for(int i = 0; i < 5; i++) free(fixed[i]);
	return m;
}

/* A room object from a ROOM_COLS row into *out: OP_OK, OP_NOMEM, or OP_ERR (internal,
 * logged) if the stored participants cannot be read. */
int room_from_row(struct call *c, mqc_stmt *s, json_t **out)
{
	json_t *o = json_object(), *id, *parts = NULL;
	json_error_t jerr;
	int rc = 0;
	*out = NULL;
	if(!o) return OP_NOMEM;
	rc |= set(o, "id", id = column_string(&c->r->text_log, s, 0, "rooms.id", "room", 0));
	rc |= set(o, "name", column_string(&c->r->text_log, s, 1, "rooms.name", "room", 0));
	rc |= set(o, "kind", column_string(&c->r->text_log, s, 2, "rooms.kind", "room", 0));
	rc |= set(o, "created_by", column_string(&c->r->text_log, s, 3, "rooms.created_by", "room", 0));
	rc |= set(o, "enabled", json_boolean(mqc_col_int64(s, 4)));
	rc |= set(o, "created_at", json_integer(mqc_col_int64(s, 5)));
	/* json_group_array (SQLite) / json_agg (PostgreSQL) makes JSON of any text; once that
	 * text is valid UTF-8 only a NUL byte in a user id (jansson refuses \u0000) can make it
	 * unreadable. NULL (json_agg of no rows) is an empty array. */
	int j = column_json(&c->r->text_log, s, 6, "room_participants.user_id", "room", 0, &parts, &jerr);
	if(j > 0){
		char key[264];
		log_quote(key, (const unsigned char *)mqc_col_text(s, 0));
		bridge__log(BLOG_ERROR, "requests", "%s for %s: the participants of room %s cannot be read (%s); answering internal",
				c->opname, c->user, key, jerr.text);
		json_decref(o);
		return fail(c, "internal", "the stored participants of a room cannot be read");
	}
	rc |= set(o, "participants", j == 0 && !parts ? json_array() : parts);
	if(mqc_col_null(s, 7)){
		rc |= set(o, "last_message", json_null());
	}else{
		rc |= set(o, "last_message", msg_from_row(&c->r->text_log, s, 7, json_string_value(id) ? json_string_value(id) : ""));
	}
	rc |= set(o, "unread", json_integer(mqc_col_int64(s, 14)));
	if(rc){
		json_decref(o);
		return OP_NOMEM;
	}
	*out = o;
	return OP_OK;
}

/* The room object of `room` as `user` sees it. */
int room_object(struct call *c, const char *room, const char *user, json_t **out)
{
	mqc_stmt *s = st(c, MQC_Q_REQ_ROOM_ONE);
	int rc;
	bind_text(s, 1, user);
	bind_text(s, 2, room);
	rc = mqc_step(s);
	if(rc == MQC_ROW){
		rc = room_from_row(c, s, out);
		mqc_reset(s);
		return rc;
	}
	if(rc == MQC_DONE){
		mqc_reset(s);
		return fail(c, "not_found", "no room %s", room);
	}
	rc = dbfail(c, "reading a room");
	mqc_reset(s);
	return rc;
}


/* The caller's view of a room: not_found unless the caller is a participant. */
int room_access(struct call *c, const char *room, struct room_access *ra)
{
	mqc_stmt *s = st(c, MQC_Q_REQ_ROOM_ACCESS);
	int rc;
	bind_text(s, 1, room);
	bind_text(s, 2, c->user);
	rc = mqc_step(s);
	if(rc == MQC_ROW){
		const char *kind = mqc_col_text(s, 0);
		const char *by = mqc_col_text(s, 1);
		ra->direct = kind && strcmp(kind, "direct") == 0;
		snprintf(ra->created_by, sizeof(ra->created_by), "%s", by ? by : "");
		ra->enabled = mqc_col_int64(s, 2) != 0;
		mqc_reset(s);
		return OP_OK;
	}
	if(rc == MQC_DONE){
		mqc_reset(s);
		return fail(c, "not_found", "no room %s (or you are not a participant)", room);
	}
	rc = dbfail(c, "checking room access");
	mqc_reset(s);
	return rc;
}

/* The sorted participants of a room, as a JSON array of strings. */
int members(struct call *c, const char *room, json_t **out)
{
	mqc_stmt *s = st(c, MQC_Q_REQ_MEMBERS);
	json_t *a = json_array();
	int rc;
	if(!a) return OP_NOMEM;
	bind_text(s, 1, room);
	while((rc = mqc_step(s)) == MQC_ROW){
		if(json_array_append_new(a, column_string(&c->r->text_log, s, 0, "room_participants.user_id", "room", 1))){
			mqc_reset(s);
			json_decref(a);
			return OP_NOMEM;
		}
	}
	if(rc != MQC_DONE){
		rc = dbfail(c, "listing participants");
		mqc_reset(s);
		json_decref(a);
		return rc;
	}
	mqc_reset(s);
	*out = a;
	return OP_OK;
}

int append(json_t **arr, json_t *v)
{
	if(!v) return OP_NOMEM;
	if(!*arr && !(*arr = json_array())){
		json_decref(v);
		return OP_NOMEM;
	}
	return json_array_append_new(*arr, v) ? OP_NOMEM : OP_OK;
}

/* Queues the room's full state for the plugin. Called inside the transaction, after the
 * last change, so version/enabled/members are what COMMIT makes durable; acl_from/acl_to
 * let the plugin's reload thread skip re-reading a change it was told about. */
int room_control(struct call *c, const char *room)
{
	mqc_stmt *s = st(c, MQC_Q_REQ_ROOM_STATE);
	int64_t version, enabled, acl_to = 0;
	json_t *o, *mem = NULL;
	int rc;

	bind_text(s, 1, room);
	rc = mqc_step(s);
	if(rc != MQC_ROW){
		rc = dbfail(c, "reading room state");
		mqc_reset(s);
		return rc;
	}
	version = mqc_col_int64(s, 0);
	enabled = mqc_col_int64(s, 1);
	mqc_reset(s);
	if((rc = acl_version(c, &acl_to))) return rc;
	if((rc = members(c, room, &mem))) return rc;

	o = json_object();
	if(!o){
		json_decref(mem);
		return OP_NOMEM;
	}
	rc = 0;
	rc |= set(o, "op", json_string("room"));
	rc |= set(o, "room", json_string(room));
	rc |= set(o, "version", json_integer(version));
	rc |= set(o, "enabled", json_boolean(enabled));
	rc |= set(o, "members", mem);
	rc |= set(o, "acl_from", json_integer(c->acl_from));
	rc |= set(o, "acl_to", json_integer(acl_to));
	if(rc){
		json_decref(o);
		return OP_NOMEM;
	}
	return append(&c->controls, o);
}

/* Queues {"user":u,"event":{"event":name,"room":room,"by":caller[,"info":room object as u sees it]}}. */
int room_event(struct call *c, const char *user, const char *name, const char *room, bool with_info)
{
	json_t *ev = json_object(), *wrap = json_object(), *info = NULL;
	int rc = 0;
	if(!ev || !wrap) goto nomem;
	if(with_info){
		rc = room_object(c, room, user, &info);
		if(rc){
			json_decref(ev);
			json_decref(wrap);
			return rc;
		}
	}
	rc |= set(ev, "event", json_string(name));
	rc |= set(ev, "room", json_string(room));
	rc |= set(ev, "by", json_string(c->user));
	if(info) rc |= set(ev, "info", info);
	rc |= set(wrap, "user", json_string(user));
	rc |= set(wrap, "event", ev);
	ev = NULL;
	if(rc) goto nomem;
	return append(&c->events, wrap);
nomem:
	json_decref(ev);
	json_decref(wrap);
	return OP_NOMEM;
}

/* Queues the same event for every current participant of room except `skip`. */
int room_event_all(struct call *c, const char *name, const char *room, bool with_info, const char *skip)
{
	json_t *mem = NULL;
	size_t i;
	int rc = members(c, room, &mem);
	if(rc) return rc;
	for(i = 0; i < json_array_size(mem); i++){
		const char *u = json_string_value(json_array_get(mem, i));
		if(skip && strcmp(u, skip) == 0) continue;
		rc = room_event(c, u, name, room, with_info);
		if(rc) break;
	}
	json_decref(mem);
	return rc;
}

/* ---------------------------------------------------------------- arguments */

int arg_name(struct call *c, const char *key, bool required, const char **out)
{
	json_t *v = json_object_get(c->req, key);
	*out = NULL;
	if(!v || json_is_null(v)){
		if(required) return fail(c, "invalid", "%s: required", key);
		return OP_OK;
	}
	if(!json_is_string(v)) return fail(c, "invalid", "%s: expected a string", key);
	if(!mqc_name_valid(json_string_value(v), json_string_length(v))
			|| strlen(json_string_value(v)) != json_string_length(v)){
		return fail(c, "invalid", "%s: not a valid id (1..64 characters of A-Z a-z 0-9 . _ -)", key);
	}
	*out = json_string_value(v);
	return OP_OK;
}

/* An integer argument in [min, max]; *present says whether it was given. */
int arg_int(struct call *c, const char *key, int64_t min, int64_t max, int64_t *out, bool *present)
{
	json_t *v = json_object_get(c->req, key);
	if(json_is_null(v)) v = NULL; /* null is the same as absent */
	*present = v != NULL;
	if(!v) return OP_OK;
	if(!json_is_integer(v)) return fail(c, "invalid", "%s: expected an integer", key);
	if(json_integer_value(v) < min || json_integer_value(v) > max){
		return fail(c, "invalid", "%s: must be between %" PRId64 " and %" PRId64, key, min, max);
	}
	*out = json_integer_value(v);
	return OP_OK;
}

int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A non-empty array of user ids, sorted and deduplicated into *names (malloc'd, pointers
 * borrow from the request). extra, if not NULL, is added to the set. */
int arg_users(struct call *c, const char *key, const char *extra, const char ***names, size_t *n)
{
	json_t *v = json_object_get(c->req, key);
	size_t i, len, k = 0;
	const char **a;

	*names = NULL;
	*n = 0;
	if(!v) return fail(c, "invalid", "%s: required", key);
	if(!json_is_array(v)) return fail(c, "invalid", "%s: expected an array of user ids", key);
	len = json_array_size(v);
	if(len == 0) return fail(c, "invalid", "%s: must not be empty", key);
	if(len > REQ_MAX_CHANGE){
		/* The cost of one request (each user is a row, a read marker, an event): a bigger
		 * group is built with several room.members.add. */
		return fail(c, "too_large", "%s: at most %d users in one request", key, REQ_MAX_CHANGE);
	}
	a = malloc((len + 1) * sizeof(*a));
	if(!a) return OP_NOMEM;
	for(i = 0; i < len; i++){
		json_t *e = json_array_get(v, i);
		if(!json_is_string(e)){
			free(a);
			return fail(c, "invalid", "%s[%zu]: expected a string", key, i);
		}
		if(!mqc_name_valid(json_string_value(e), json_string_length(e))
				|| strlen(json_string_value(e)) != json_string_length(e)){
			free(a);
			return fail(c, "invalid", "%s[%zu]: not a valid user id", key, i);
		}
		a[k++] = json_string_value(e);
	}
	if(extra) a[k++] = extra;
	qsort(a, k, sizeof(*a), cmp_str);
	len = 0;
	for(i = 0; i < k; i++){
		if(len == 0 || strcmp(a[len - 1], a[i]) != 0) a[len++] = a[i];
	}
	*names = a;
	*n = len;
	return OP_OK;
}

/* ---------------------------------------------------------------- token last use */


int requests__token_used(struct requests *r, const void *payload, size_t len)
{
	json_t *j = json_loadb(payload, len, 0, NULL);
	const char *user = json_string_value(json_object_get(j, "user"));
	const char *id = json_string_value(json_object_get(j, "id"));
	json_t *at = json_object_get(j, "at");
	int rc = -1;
	if(user && id && json_is_integer(at) && mqc_name_valid(user, strlen(user)) && strlen(id) == MQC_TOKEN_ID_LEN
			&& mqc_name_valid(id, strlen(id))){
		if(r->used_n == USED_MAX) requests__flush_used(r, true);
		if(r->used_n == USED_MAX){
			/* the database would not take them now: this one is dropped (a last-use time
			 * is a hint; the next report of this token, a minute later, brings it) */
			json_decref(j);
			return 0;
		}
		struct used *u = &r->used_q[r->used_n++];
		snprintf(u->user, sizeof(u->user), "%s", user);
		snprintf(u->id, sizeof(u->id), "%s", id);
		u->at = json_integer_value(at);
		if(r->used_n == 1) r->used_first_ms = mqc_now_ms();
		rc = 0;
	}
	json_decref(j);
	return rc;
}

/* One transaction for the queued uses. A failed update ends the batch: PostgreSQL aborts
 * a transaction at its first error, so nothing after it would be written (and the COMMIT
 * would answer success having rolled back). The batch is then dropped: a last use is a hint. */
void requests__flush_used(struct requests *r, bool now)
{
	size_t i;

	if(!r->used_n || (!now && mqc_now_ms() - r->used_first_ms < 1000)) return;
	if(mqc_db_in_txn(r->db)) return;
	if(mqc_exec(r->db, MQC_Q_BEGIN_WRITE)){
		bridge__log(BLOG_WARN, "requests", "cannot record %zu tokens' last use now: %s; trying again later", r->used_n,
				mqc_db_errmsg(r->db));
		if(mqc_db_in_txn(r->db)) mqc_exec(r->db, MQC_Q_ROLLBACK);
		r->used_first_ms = mqc_now_ms();
		return;
	}
	mqc_stmt *s = mqc_q(r->db, MQC_Q_REQ_TOKEN_USED);
	for(i = 0; i < r->used_n; i++){
		mqc_bind_text(s, 1, r->used_q[i].id, -1);
		mqc_bind_text(s, 2, r->used_q[i].user, -1);
		mqc_bind_int64(s, 3, r->used_q[i].at);
		int rc = mqc_step(s);
		mqc_reset(s);
		if(rc != MQC_DONE) break;
	}
	if(i < r->used_n || mqc_exec(r->db, MQC_Q_COMMIT)){
		bridge__log(BLOG_WARN, "requests", "cannot record %zu tokens' last use: %s", r->used_n, mqc_db_errmsg(r->db));
		if(mqc_db_in_txn(r->db)) mqc_exec(r->db, MQC_Q_ROLLBACK);
	}
	r->used_n = 0;
}

/* ---------------------------------------------------------------- dispatch */

struct op {
	const char *name;
	int (*fn)(struct call *c);
	const char *const args[6]; /* the op's arguments besides op and req_id; NULL-terminated */
};

static const struct op ops[] = {
	{"room.create", op_room_create, {"participants", "name", NULL}},
	{"room.direct", op_room_direct, {"with", NULL}},
	{"rooms.list", op_rooms_list, {"limit", "before", NULL}},
	{"room.get", op_room_get, {"room", NULL}},
	{"room.members.add", op_room_members_add, {"room", "users", NULL}},
	{"room.members.remove", op_room_members_remove, {"room", "users", NULL}},
	{"room.leave", op_room_leave, {"room", NULL}},
	{"room.disable", op_room_disable, {"room", NULL}},
	{"room.enable", op_room_enable, {"room", NULL}},
	{"contacts.list", op_contacts_list, {NULL}},
	{"contacts.add", op_contacts_add, {"user", NULL}},
	{"contacts.remove", op_contacts_remove, {"user", NULL}},
	{"history", op_history, {"room", "before", "after", "limit", "from", NULL}},
	{"count", op_count, {"room", "from", NULL}},
	{"read", op_read, {"room", "upto", NULL}},
	{"token.create", op_token_create, {"name", "expires_in", NULL}},
	{"tokens.list", op_tokens_list, {NULL}},
	{"token.revoke", op_token_revoke, {"id", NULL}},
};

_Static_assert(sizeof(ops) / sizeof(ops[0]) == REQ_OPS, "REQ_OPS is the number of ops");

const char *requests__op_name(int index)
{
	return index >= 0 && index < REQ_OPS ? ops[index].name : NULL;
}

static const struct op *op_find(const char *name)
{
	for(size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++){
		if(strcmp(ops[i].name, name) == 0) return &ops[i];
	}
	return NULL;
}

static int check_args(struct call *c, const struct op *op)
{
	const char *key;
	json_t *v;
	json_object_foreach(c->req, key, v){
		bool known = strcmp(key, "op") == 0 || strcmp(key, "req_id") == 0 || strcmp(key, "res") == 0;
		for(size_t i = 0; !known && op->args[i]; i++){
			if(strcmp(op->args[i], key) == 0) known = true;
		}
		if(!known){
			/* The key came from the client: quote at most 64 bytes of it. */
			return fail(c, "invalid", "unknown argument \"%.64s\" for %s", key, op->name);
		}
	}
	return OP_OK;
}

/* Parses and runs the request; fills c->result or c->code. */
static int run(struct call *c, const void *payload, size_t len, json_t **req_id)
{
	json_error_t jerr;
	json_t *v;
	const struct op *op;

	if(len > REQ_MAX_PAYLOAD) return fail(c, "too_large", "request is %zu bytes, the limit is %d", len, REQ_MAX_PAYLOAD);
	c->req = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
	if(!c->req) return fail(c, "invalid", "malformed JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
	if(!json_is_object(c->req)) return fail(c, "invalid", "a request is a JSON object");
	v = json_object_get(c->req, "req_id");
	if(v){
		if(!json_is_string(v) && !json_is_number(v)) return fail(c, "invalid", "req_id: expected a string or a number");
		if(json_is_string(v) && json_string_length(v) > REQ_MAX_REQ_ID){
			return fail(c, "too_large", "req_id: at most %d bytes", REQ_MAX_REQ_ID);
		}
		*req_id = json_incref(v);
	}
	v = json_object_get(c->req, "res");
	if(v && !json_is_null(v)){
		/* MQTT 3.1.1 has no response topic: "res":"phone" answers on .../res/phone */
		const char *r = json_string_value(v);
		if(!r || !*r || json_string_length(v) > MQC_MAX_RES_TOPIC || strlen(r) != json_string_length(v)
				|| strpbrk(r, "+#") || mqc_utf8_valid_len(r, strlen(r)) != strlen(r)){
			return fail(c, "invalid", "res: expected 1..%d bytes of topic levels without wildcards (answers go to "
					".../res/<res>)", MQC_MAX_RES_TOPIC);
		}
		if(!(c->res = strdup(r))) return OP_NOMEM;
	}
	v = json_object_get(c->req, "op");
	if(!v) return fail(c, "invalid", "op: required");
	if(!json_is_string(v)) return fail(c, "invalid", "op: expected a string");
	op = op_find(json_string_value(v));
	if(!op) return fail(c, "invalid", "op: unknown operation \"%.64s\"", json_string_value(v));
	c->opname = op->name;
	c->op = op;
	int rc = check_args(c, op);
	if(rc) return rc;
	return op->fn(c);
}

/* An error message as a JSON string. It quotes client text cut to a few bytes ("%.64s"),
 * and a cut can split a UTF-8 character, which jansson would refuse: such a tail becomes
 * U+FFFD rather than costing the answer. NULL only when out of memory. */
static json_t *message_string(const char *msg)
{
	size_t len = strlen(msg), n;
	char *fixed;
	json_t *v;

	if(mqc_utf8_valid_len(msg, len) == len) return json_stringn_nocheck(msg, len);
	fixed = mqc_utf8_sanitize(msg, len, &n, NULL, 0);
	if(!fixed) return NULL;
	v = json_stringn_nocheck(fixed, n);
	free(fixed);
	return v;
}

int requests__handle(struct requests *r, const char *user, const void *payload, size_t len, struct req_out *out)
{
	struct call c;
	json_t *req_id = NULL, *resp = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	out->op_index = -1;
	memset(&c, 0, sizeof(c));
	c.r = r;
	c.user = user;
	if(!user || !mqc_name_valid(user, strlen(user))){
		bridge__log(BLOG_ERROR, "requests", "request for an invalid user id: answering internal");
		rc = fail(&c, "internal", "invalid requester");
	}else{
		rc = run(&c, payload, len, &req_id);
	}
	if(rc != OP_OK && c.began && mqc_db_in_txn(r->db)){
		/* Ours (txn_begin refuses to nest); a failed COMMIT may have left it open. */
		if(mqc_exec(r->db, MQC_Q_ROLLBACK)){
			bridge__log(BLOG_ERROR, "requests", "%s for %s: ROLLBACK failed: %s", c.opname, user, mqc_db_errmsg(r->db));
		}
	}
	if(rc == OP_DEFER){
		free(c.res);
		json_decref(req_id);
		json_decref(c.req);
		json_decref(c.result);
		json_decref(c.controls);
		json_decref(c.events);
		return REQ_DEFERRED;
	}
	if(rc == OP_NOMEM) goto nomem;

	resp = json_object();
	if(!resp) goto nomem;
	if(set(resp, "req_id", req_id ? req_id : json_null())) goto nomem;
	req_id = NULL;
	if(rc == OP_OK){
		if(set(resp, "ok", json_true()) || set(resp, "result", c.result)) goto nomem;
		c.result = NULL;
		out->controls = c.controls;
		out->events = c.events;
		c.controls = c.events = NULL;
	}else{
		json_t *err = json_object();
		if(!err || set(err, "code", json_string(c.code)) || set(err, "message", message_string(c.msg))){
			json_decref(err);
			goto nomem;
		}
		if(set(resp, "ok", json_false()) || set(resp, "error", err)) goto nomem;
	}
	out->response = resp;
	out->res = c.res;
	c.res = NULL;
	out->op = c.opname;
	out->op_index = c.op ? (int)(c.op - ops) : -1;
	json_decref(c.req);
	json_decref(c.result);
	json_decref(c.controls);
	json_decref(c.events);
	return 0;

nomem:
	free(c.res);
	bridge__log(BLOG_ERROR, "requests", "%s for %s: out of memory building the answer%s", c.opname ? c.opname : "request", user ? user : "(none)",
			rc == OP_OK ? " (the change was committed; the plugin learns it at its next reload)" : "");
	json_decref(req_id);
	json_decref(resp);
	json_decref(c.req);
	json_decref(c.result);
	json_decref(c.controls);
	json_decref(c.events);
	json_decref(out->controls);
	json_decref(out->events);
	memset(out, 0, sizeof(*out));
	out->op_index = -1;
	return -1;
}

json_t *requests__refusal(const void *payload, size_t len, const char *code, const char *msg)
{
	json_t *req = len <= REQ_MAX_PAYLOAD ? json_loadb(payload, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	json_t *id = json_object_get(req, "req_id");
	if(id && !(json_is_string(id) && json_string_length(id) <= REQ_MAX_REQ_ID) && !json_is_number(id)) id = NULL;
	json_t *resp = json_object(), *err = json_object();
	if(!resp || !err || set(resp, "req_id", id ? json_incref(id) : json_null()) || set(resp, "ok", json_false())
			|| set(err, "code", json_string(code)) || set(err, "message", message_string(msg))){
		json_decref(resp);
		json_decref(err);
		json_decref(req);
		return NULL;
	}
	json_decref(req);
	if(set(resp, "error", err)){
		json_decref(resp);
		return NULL;
	}
	return resp;
}

void requests__set_token_login(struct requests *r, bool token)
{
	r->token_login = token;
}

/* ---------------------------------------------------------------- life cycle */

/* The shared statements of q_store.sql the request API runs; its own are every req_*, and
 * the room rules' (store/rooms.c) every rooms_*. */
static const mqc_qid shared_stmts[] = {
	MQC_Q_BEGIN_WRITE, MQC_Q_COMMIT, MQC_Q_ROLLBACK, MQC_Q_ACL_VERSION, MQC_Q_MARKER_RAISE,
};

struct requests *requests__new(mqc_db *db, const char *prefix)
{
	struct requests *r = calloc(1, sizeof(*r));
	if(!r){
		bridge__log(BLOG_ERROR, "requests", "out of memory starting the request API");
		return NULL;
	}
	/* Answers and events name rooms and users, never topics: the caller builds topics. */
	(void)prefix;
	r->db = db;
	r->text_log.limit = 20; /* one bad row need not hide another's warning */
	/* Prepared now, so that a statement the database refuses shows at start (and st()
	 * never meets a statement that cannot be prepared). */
	for(int i = 0; i < MQC_Q_COUNT_; i++){
		bool ours = strncmp(mqc_q_names[i], "req_", 4) == 0 || strncmp(mqc_q_names[i], "rooms_", 6) == 0;
		for(size_t k = 0; !ours && k < sizeof(shared_stmts) / sizeof(shared_stmts[0]); k++) ours = shared_stmts[k] == (mqc_qid)i;
		if(ours && !mqc_q(db, (mqc_qid)i)){
			bridge__log(BLOG_ERROR, "requests", "cannot prepare statement %s on database %s: %s; the bridge cannot serve requests",
					mqc_q_names[i], mqc_db_name(db), mqc_db_errmsg(db));
			goto fail;
		}
	}
	return r;
fail:
	requests__free(r);
	return NULL;
}

void requests__set_before(struct requests *r, requests_before_fn *fn, void *arg)
{
	r->before = fn;
	r->before_arg = arg;
}

/* The statements stay with the connection (db.h): the caller closes it. */
void requests__free(struct requests *r)
{
	free(r);
}
