/*
 * requests.c: the request API served on <prefix>/users/{me}/req (docs/protocol.md).
 *
 * requests__handle() parses one request, checks its arguments against the op's table
 * entry, runs the op and builds exactly one answer. Ops that change state run in one
 * BEGIN IMMEDIATE transaction and, before committing, collect what the caller publishes
 * after the commit: the room's full new state for the plugin ($CONTROL/mqchat/v1) and the
 * user events. If anything fails, the transaction is rolled back and nothing is handed out.
 *
 * Rules every op follows:
 *   - a room the caller is not a participant of does not exist for it (not_found, whether
 *     the room exists or not);
 *   - an op's arguments are exactly those in its table entry; anything else is invalid;
 *   - every SQL statement is prepared in requests__new and finalized in requests__free;
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

/* ---------------------------------------------------------------- statements */

/* Activity of a room, for ordering rooms.list: its newest message id, else the first
 * message id of the millisecond it was created (same scale, see MQC_ID_SEQ_BITS). */
#define ROOM_ACTIVITY "(CASE WHEN r.last_msg_id > 0 THEN r.last_msg_id ELSE (r.created_at - 1704067200000) * 4096 END)"

/* The columns of a room object as seen by user ?1 (see room_from_row). Unread: the room's
 * message count minus the seq of the newest message at or below my read marker. */
#define ROOM_COLS \
	"r.id, r.name, r.kind, r.created_by, r.enabled, r.created_at," \
	" (SELECT json_group_array(p2.user_id) FROM room_participants p2 WHERE p2.room_id = r.id)," \
	" m.id, m.sender, m.ts, m.type, m.body, m.attachment, m.client_msg_id," \
	" max(0, r.msg_count - coalesce((SELECT s.seq FROM messages s WHERE s.room_id = r.id" \
	"   AND s.id <= rm.last_read_id ORDER BY s.id DESC LIMIT 1), 0))"
#define ROOM_JOINS \
	" LEFT JOIN messages m ON m.id = r.last_msg_id" \
	" LEFT JOIN read_markers rm ON rm.user_id = ?1 AND rm.room_id = r.id"
#define MSG_COLS "id, sender, ts, type, body, attachment, client_msg_id"

enum stmt_id {
	S_BEGIN, S_COMMIT, S_ROLLBACK,
	S_ACL_VERSION,
	S_USER_GET,
	S_ROOM_ACCESS,
	S_ROOM_STATE,
	S_MEMBERS,
	S_MEMBER_COUNT,
	S_IS_MEMBER,
	S_ROOM_INSERT,
	S_DIRECT_GET,
	S_PART_INSERT,
	S_PART_DELETE,
	S_MARKER_JOIN,
	S_ROOM_SET_ENABLED,
	S_ROOM_SET_OWNER,
	S_NEXT_OWNER,
	S_ROOM_ONE,
	S_ROOMS_PAGE,
	S_CONTACTS_LIST,
	S_CONTACT_ADD,
	S_CONTACT_DEL,
	S_HIST_DESC, S_HIST_ASC, S_HIST_FROM_DESC, S_HIST_FROM_ASC,
	S_COUNT_FROM,
	S_UNREAD,
	S_MSG_IN_ROOM,
	S_MARKER_SET,
	S_MARKER_GET,
	S_TOKEN_INSERT,
	S_TOKEN_COUNT,
	S_TOKENS_LIST,
	S_TOKEN_DELETE,
	S_TOKEN_USED,
	S_COUNT_
};

static const char *const stmt_sql[S_COUNT_] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_ACL_VERSION] = "SELECT value FROM meta WHERE key = 'acl_version'",
	[S_USER_GET] = "SELECT disabled FROM users WHERE id = ?1",
	[S_ROOM_ACCESS] = "SELECT r.kind, r.created_by, r.enabled FROM rooms r"
		" JOIN room_participants p ON p.room_id = r.id AND p.user_id = ?2 WHERE r.id = ?1",
	[S_ROOM_STATE] = "SELECT version, enabled FROM rooms WHERE id = ?1",
	[S_MEMBERS] = "SELECT user_id, room_id FROM room_participants WHERE room_id = ?1 ORDER BY user_id",
	[S_MEMBER_COUNT] = "SELECT count(*) FROM room_participants WHERE room_id = ?1",
	[S_IS_MEMBER] = "SELECT 1 FROM room_participants WHERE room_id = ?1 AND user_id = ?2",
	[S_ROOM_INSERT] = "INSERT INTO rooms(id, kind, name, created_by, created_at, direct_key)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(direct_key) DO NOTHING",
	[S_DIRECT_GET] = "SELECT id, direct_key FROM rooms WHERE direct_key = ?1",
	[S_PART_INSERT] = "INSERT INTO room_participants(room_id, user_id, joined_at) VALUES (?1, ?2, ?3)"
		" ON CONFLICT DO NOTHING",
	[S_PART_DELETE] = "DELETE FROM room_participants WHERE room_id = ?1 AND user_id = ?2",
	/* A new member starts with everything before its arrival read. */
	[S_MARKER_JOIN] = "INSERT INTO read_markers(user_id, room_id, last_read_id)"
		" SELECT ?1, id, last_msg_id FROM rooms WHERE id = ?2 AND true"
		" ON CONFLICT(user_id, room_id) DO UPDATE SET last_read_id = max(last_read_id, excluded.last_read_id)",
	[S_ROOM_SET_ENABLED] = "UPDATE rooms SET enabled = ?2 WHERE id = ?1",
	[S_ROOM_SET_OWNER] = "UPDATE rooms SET created_by = ?2 WHERE id = ?1",
	[S_NEXT_OWNER] = "SELECT user_id FROM room_participants WHERE room_id = ?1 ORDER BY joined_at, user_id LIMIT 1",
	[S_ROOM_ONE] = "SELECT " ROOM_COLS " FROM rooms r" ROOM_JOINS " WHERE r.id = ?2",
	/* The page is chosen from my participations alone (room_participants_by_user, top-N
	 * sort of my rooms' activity), then only its rows get participants, last message and
	 * unread. Cursor: (?2 activity, ?3 room id), exclusive. */
	[S_ROOMS_PAGE] = "WITH page(id, activity) AS MATERIALIZED ("
		" SELECT r.id, " ROOM_ACTIVITY " FROM room_participants p JOIN rooms r ON r.id = p.room_id"
		" WHERE p.user_id = ?1 AND (" ROOM_ACTIVITY " < ?2 OR (" ROOM_ACTIVITY " = ?2 AND r.id < ?3))"
		" ORDER BY 2 DESC, 1 DESC LIMIT ?4)"
		" SELECT " ROOM_COLS ", page.activity FROM page JOIN rooms r ON r.id = page.id" ROOM_JOINS
		" ORDER BY page.activity DESC, page.id DESC",
	[S_CONTACTS_LIST] = "WITH c(u) AS ("
		" SELECT contact FROM contacts WHERE owner = ?1"
		" UNION SELECT p2.user_id FROM room_participants p1"
		" JOIN room_participants p2 ON p2.room_id = p1.room_id"
		" WHERE p1.user_id = ?1 AND p2.user_id <> ?1)"
		" SELECT c.u, u.display_name,"
		" EXISTS (SELECT 1 FROM contacts k WHERE k.owner = ?1 AND k.contact = c.u),"
		" (SELECT d.id FROM rooms d WHERE d.direct_key ="
		"   CASE WHEN ?1 < c.u THEN ?1 || ':' || c.u ELSE c.u || ':' || ?1 END)"
		" FROM c JOIN users u ON u.id = c.u ORDER BY c.u",
	[S_CONTACT_ADD] = "INSERT INTO contacts(owner, contact, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
	[S_CONTACT_DEL] = "DELETE FROM contacts WHERE owner = ?1 AND contact = ?2",
	[S_HIST_DESC] = "SELECT " MSG_COLS " FROM messages WHERE room_id = ?1 AND id > ?2 AND id < ?3"
		" ORDER BY id DESC LIMIT ?4",
	[S_HIST_ASC] = "SELECT " MSG_COLS " FROM messages WHERE room_id = ?1 AND id > ?2 AND id < ?3"
		" ORDER BY id ASC LIMIT ?4",
	[S_HIST_FROM_DESC] = "SELECT " MSG_COLS " FROM messages WHERE room_id = ?1 AND sender = ?5"
		" AND id > ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
	[S_HIST_FROM_ASC] = "SELECT " MSG_COLS " FROM messages WHERE room_id = ?1 AND sender = ?5"
		" AND id > ?2 AND id < ?3 ORDER BY id ASC LIMIT ?4",
	[S_COUNT_FROM] = "SELECT n FROM room_sender_counts WHERE room_id = ?1 AND sender = ?2",
	[S_UNREAD] = "SELECT r.msg_count, max(0, r.msg_count - coalesce((SELECT s.seq FROM messages s"
		" WHERE s.room_id = r.id AND s.id <= rm.last_read_id ORDER BY s.id DESC LIMIT 1), 0))"
		" FROM rooms r LEFT JOIN read_markers rm ON rm.user_id = ?2 AND rm.room_id = r.id WHERE r.id = ?1",
	[S_MSG_IN_ROOM] = "SELECT 1 FROM messages WHERE id = ?1 AND room_id = ?2",
	[S_MARKER_SET] = "INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES (?1, ?2, ?3)"
		" ON CONFLICT(user_id, room_id) DO UPDATE SET last_read_id = max(last_read_id, excluded.last_read_id)",
	[S_MARKER_GET] = "SELECT last_read_id FROM read_markers WHERE user_id = ?1 AND room_id = ?2",
	[S_TOKEN_INSERT] = "INSERT INTO tokens(id, user_id, name, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_TOKEN_COUNT] = "SELECT count(*) FROM tokens WHERE user_id = ?1",
	[S_TOKENS_LIST] = "SELECT id, name, created_at, expires_at, last_used_at FROM tokens WHERE user_id = ?1"
		" ORDER BY created_at, id",
	[S_TOKEN_DELETE] = "DELETE FROM tokens WHERE id = ?1 AND user_id = ?2",
	[S_TOKEN_USED] = "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?3) WHERE id = ?1 AND user_id = ?2",
};

/* Token uses reported by the plugin, not yet written (requests__flush_used). */
#define USED_MAX 1024
struct used { char user[MQC_NAME_MAX + 1], id[MQC_TOKEN_ID_LEN + 1]; int64_t at; };

struct requests {
	sqlite3 *db;
	struct used used_q[USED_MAX];
	size_t used_n;
	int64_t used_first_ms;
	struct log_repeat text_log; /* stored text that is not UTF-8 (column_fix) */
	sqlite3_stmt *stmt[S_COUNT_];
	requests_before_fn *before;
	void *before_arg;
};

/* ---------------------------------------------------------------- one call */

enum { OP_OK = 0, OP_ERR = 1, OP_DEFER = 2, OP_NOMEM = -1 };

/* One request being answered. On OP_ERR, code and msg say why. */
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

static int fail(struct call *c, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct call *c, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	c->code = code;
	return OP_ERR;
}

/* A database failure: logged with the op and the user; the requester gets `internal`. */
static int dbfail(struct call *c, const char *what)
{
	int err = sqlite3_extended_errcode(c->r->db);
	bridge__log(BLOG_ERROR, "requests", "%s for %s: %s failed: %s (%d); answering internal, nothing changed",
			c->opname ? c->opname : "request", c->user, what, sqlite3_errmsg(c->r->db), err);
	if((err & 0xff) == SQLITE_BUSY){
		return fail(c, "internal", "the database is busy, try again");
	}
	return fail(c, "internal", "database error");
}

static sqlite3_stmt *st(struct call *c, enum stmt_id id)
{
	sqlite3_stmt *s = c->r->stmt[id];
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if(v) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else sqlite3_bind_null(s, i);
}

/* Steps a statement that returns no row and resets it. 0 or OP_ERR. */
static int exec_done(struct call *c, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	if(rc != SQLITE_DONE){
		rc = dbfail(c, what);
		sqlite3_reset(s);
		return rc;
	}
	sqlite3_reset(s);
	return OP_OK;
}

/* Steps a query expected to give at most one integer. *found says whether a row came. */
static int query_int(struct call *c, sqlite3_stmt *s, const char *what, int64_t *v, bool *found)
{
	int rc = sqlite3_step(s);
	*v = 0;
	*found = false;
	if(rc == SQLITE_ROW){
		*v = sqlite3_column_int64(s, 0);
		*found = true;
	}else if(rc == SQLITE_DONE){
		*found = false;
	}else{
		rc = dbfail(c, what);
		sqlite3_reset(s);
		return rc;
	}
	sqlite3_reset(s);
	return OP_OK;
}

/* json_object_set_new that reports failure; a NULL value counts as out of memory. */
static int set(json_t *o, const char *k, json_t *v)
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
static void log_quote(char out[static 264], const unsigned char *t)
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
static __attribute__((noinline)) int column_fix(struct log_repeat *lr, sqlite3_stmt *s, const char *what,
		const char *whose, int keycol, const char **t, size_t *len, char **fixed)
{
	char reason[256], key[264];
	size_t n;

	*fixed = mqc_utf8_sanitize(*t, *len, &n, reason, sizeof(reason));
	if(!*fixed) return -1;
	/* After the copy: reading keycol may convert that column and invalidate *t. */
	key[0] = '\0';
	if(keycol >= 0) log_quote(key, sqlite3_column_text(s, keycol));
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
static int column_utf8(struct log_repeat *lr, sqlite3_stmt *s, int col, const char *what, const char *whose,
		int keycol, const char **t, size_t *len, char **fixed)
{
	*fixed = NULL;
	*t = (const char *)sqlite3_column_text(s, col);
	if(!*t) return sqlite3_column_type(s, col) == SQLITE_NULL ? 1 : -1; /* else SQLite ran out of memory */
	*len = (size_t)sqlite3_column_bytes(s, col);
	if(mqc_utf8_valid_len(*t, *len) == *len) return 0;
	return column_fix(lr, s, what, whose, keycol, t, len, fixed);
}

/* Column col as a JSON string, or JSON null for NULL. NULL only when out of memory. */
static json_t *column_string(struct log_repeat *lr, sqlite3_stmt *s, int col, const char *what, const char *whose,
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
static int column_json(struct log_repeat *lr, sqlite3_stmt *s, int col, const char *what, const char *whose,
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
static int set_present(json_t *o, const char *k, json_t *v)
{
	if(!v) return -1;
	if(json_is_null(v)) return 0;
	return set(o, k, v);
}

/* ---------------------------------------------------------------- transactions */

static int acl_version(struct call *c, int64_t *v)
{
	bool found;
	int rc = query_int(c, st(c, S_ACL_VERSION), "reading meta.acl_version", v, &found);
	if(rc == OP_OK && !found) *v = 0;
	return rc;
}

/* Tells the caller what this call is about to read or write (requests_before_fn), once
 * its arguments and access are checked: a refused request never makes anyone wait.
 * OP_DEFER: the caller wants it run later (nothing is changed before this). */
static int about_to(struct call *c, enum req_sees what, const char *room)
{
	if(c->r->before && !c->r->before(c->r->before_arg, c->user, what, room)) return OP_DEFER;
	return OP_OK;
}

/* Starts the call's write transaction. Refuses to run inside someone else's transaction:
 * the controls must describe committed state. */
static int txn_begin(struct call *c)
{
	if(!sqlite3_get_autocommit(c->r->db)){
		bridge__log(BLOG_ERROR, "requests", "%s for %s: called with a transaction open on the database (the caller must "
				"commit first); answering internal", c->opname, c->user);
		return fail(c, "internal", "database busy");
	}
	int rc = about_to(c, REQ_WRITES, NULL);
	if(rc) return rc;
	rc = exec_done(c, st(c, S_BEGIN), "BEGIN IMMEDIATE");
	if(rc) return rc;
	c->began = true;
	return acl_version(c, &c->acl_from);
}

static int txn_commit(struct call *c)
{
	return exec_done(c, st(c, S_COMMIT), "COMMIT");
}

/* ---------------------------------------------------------------- building blocks */

/* A stamped message from the MSG_COLS columns at col..col+6, exactly as delivered on
 * <prefix>/rooms/{room}/messages: id, room, from, ts, type, body?, attachment?, client_msg_id?. */
static json_t *msg_from_row(struct log_repeat *lr, sqlite3_stmt *s, int col, const char *room)
{
	json_t *m = json_object();
	int rc = 0;
	if(!m) return NULL;
	rc |= set(m, "id", json_integer(sqlite3_column_int64(s, col)));
	rc |= set(m, "room", json_string(room));
	rc |= set(m, "from", column_string(lr, s, col + 1, "messages.sender", "message", col));
	rc |= set(m, "ts", json_integer(sqlite3_column_int64(s, col + 2)));
	rc |= set(m, "type", column_string(lr, s, col + 3, "messages.type", "message", col));
	rc |= set_present(m, "body", column_string(lr, s, col + 4, "messages.body", "message", col));
	json_error_t jerr;
	json_t *att;
	int j = column_json(lr, s, col + 5, "messages.attachment", "message", col, &att, &jerr);
	if(j < 0){
		rc = -1;
	}else if(j == 0){
		if(att) rc |= set(m, "attachment", att);
	}else{
		bridge__log(BLOG_WARN, "requests", "messages.attachment of message %lld is not JSON (%s); sent without it",
				(long long)sqlite3_column_int64(s, col), jerr.text);
	}
	rc |= set_present(m, "client_msg_id", column_string(lr, s, col + 6, "messages.client_msg_id", "message", col));
	if(rc){
		json_decref(m);
		return NULL;
	}
	return m;
}

/* A room object from a ROOM_COLS row into *out: OP_OK, OP_NOMEM, or OP_ERR (internal,
 * logged) if the stored participants cannot be read. */
static int room_from_row(struct call *c, sqlite3_stmt *s, json_t **out)
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
	rc |= set(o, "enabled", json_boolean(sqlite3_column_int(s, 4)));
	rc |= set(o, "created_at", json_integer(sqlite3_column_int64(s, 5)));
	/* json_group_array makes JSON of any text; once that text is valid UTF-8 only a NUL
	 * byte in a user id (jansson refuses \u0000) can make it unreadable. */
	int j = column_json(&c->r->text_log, s, 6, "room_participants.user_id", "room", 0, &parts, &jerr);
	if(j > 0){
		char key[264];
		log_quote(key, sqlite3_column_text(s, 0));
		bridge__log(BLOG_ERROR, "requests", "%s for %s: the participants of room %s cannot be read (%s); answering internal",
				c->opname, c->user, key, jerr.text);
		json_decref(o);
		return fail(c, "internal", "the stored participants of a room cannot be read");
	}
	rc |= set(o, "participants", j == 0 && !parts ? json_array() : parts);
	if(sqlite3_column_type(s, 7) == SQLITE_NULL){
		rc |= set(o, "last_message", json_null());
	}else{
		rc |= set(o, "last_message", msg_from_row(&c->r->text_log, s, 7, json_string_value(id) ? json_string_value(id) : ""));
	}
	rc |= set(o, "unread", json_integer(sqlite3_column_int64(s, 14)));
	if(rc){
		json_decref(o);
		return OP_NOMEM;
	}
	*out = o;
	return OP_OK;
}

/* The room object of `room` as `user` sees it. */
static int room_object(struct call *c, const char *room, const char *user, json_t **out)
{
	sqlite3_stmt *s = st(c, S_ROOM_ONE);
	int rc;
	bind_text(s, 1, user);
	bind_text(s, 2, room);
	rc = sqlite3_step(s);
	if(rc == SQLITE_ROW){
		rc = room_from_row(c, s, out);
		sqlite3_reset(s);
		return rc;
	}
	if(rc == SQLITE_DONE){
		sqlite3_reset(s);
		return fail(c, "not_found", "no room %s", room);
	}
	rc = dbfail(c, "reading a room");
	sqlite3_reset(s);
	return rc;
}

struct room_access {
	bool direct;
	bool enabled;
	char created_by[MQC_NAME_MAX + 1];
};

/* The caller's view of a room: not_found unless the caller is a participant. */
static int room_access(struct call *c, const char *room, struct room_access *ra)
{
	sqlite3_stmt *s = st(c, S_ROOM_ACCESS);
	int rc;
	bind_text(s, 1, room);
	bind_text(s, 2, c->user);
	rc = sqlite3_step(s);
	if(rc == SQLITE_ROW){
		const char *kind = (const char *)sqlite3_column_text(s, 0);
		const char *by = (const char *)sqlite3_column_text(s, 1);
		ra->direct = kind && strcmp(kind, "direct") == 0;
		snprintf(ra->created_by, sizeof(ra->created_by), "%s", by ? by : "");
		ra->enabled = sqlite3_column_int(s, 2) != 0;
		sqlite3_reset(s);
		return OP_OK;
	}
	if(rc == SQLITE_DONE){
		sqlite3_reset(s);
		return fail(c, "not_found", "no room %s (or you are not a participant)", room);
	}
	rc = dbfail(c, "checking room access");
	sqlite3_reset(s);
	return rc;
}

/* A user that may join a room: exists (else not_found) and is not disabled (else invalid). */
static int user_joinable(struct call *c, const char *user)
{
	int64_t disabled;
	bool found;
	sqlite3_stmt *s = st(c, S_USER_GET);
	bind_text(s, 1, user);
	int rc = query_int(c, s, "looking up a user", &disabled, &found);
	if(rc) return rc;
	if(!found) return fail(c, "not_found", "no such user: %s", user);
	if(disabled) return fail(c, "invalid", "user %s is disabled", user);
	return OP_OK;
}

static int member_count(struct call *c, const char *room, int64_t *n)
{
	bool found;
	sqlite3_stmt *s = st(c, S_MEMBER_COUNT);
	bind_text(s, 1, room);
	return query_int(c, s, "counting participants", n, &found);
}

static int is_member(struct call *c, const char *room, const char *user, bool *yes)
{
	int64_t v;
	sqlite3_stmt *s = st(c, S_IS_MEMBER);
	bind_text(s, 1, room);
	bind_text(s, 2, user);
	return query_int(c, s, "checking a participant", &v, yes);
}

/* The sorted participants of a room, as a JSON array of strings. */
static int members(struct call *c, const char *room, json_t **out)
{
	sqlite3_stmt *s = st(c, S_MEMBERS);
	json_t *a = json_array();
	int rc;
	if(!a) return OP_NOMEM;
	bind_text(s, 1, room);
	while((rc = sqlite3_step(s)) == SQLITE_ROW){
		if(json_array_append_new(a, column_string(&c->r->text_log, s, 0, "room_participants.user_id", "room", 1))){
			sqlite3_reset(s);
			json_decref(a);
			return OP_NOMEM;
		}
	}
	if(rc != SQLITE_DONE){
		rc = dbfail(c, "listing participants");
		sqlite3_reset(s);
		json_decref(a);
		return rc;
	}
	sqlite3_reset(s);
	*out = a;
	return OP_OK;
}

static int append(json_t **arr, json_t *v)
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
static int room_control(struct call *c, const char *room)
{
	sqlite3_stmt *s = st(c, S_ROOM_STATE);
	int64_t version, enabled, acl_to = 0;
	json_t *o, *mem = NULL;
	int rc;

	bind_text(s, 1, room);
	rc = sqlite3_step(s);
	if(rc != SQLITE_ROW){
		rc = dbfail(c, "reading room state");
		sqlite3_reset(s);
		return rc;
	}
	version = sqlite3_column_int64(s, 0);
	enabled = sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
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
static int room_event(struct call *c, const char *user, const char *name, const char *room, bool with_info)
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
static int room_event_all(struct call *c, const char *name, const char *room, bool with_info, const char *skip)
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

static int arg_name(struct call *c, const char *key, bool required, const char **out)
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
static int arg_int(struct call *c, const char *key, int64_t min, int64_t max, int64_t *out, bool *present)
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

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A non-empty array of user ids, sorted and deduplicated into *names (malloc'd, pointers
 * borrow from the request). extra, if not NULL, is added to the set. */
static int arg_users(struct call *c, const char *key, const char *extra, const char ***names, size_t *n)
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

/* ---------------------------------------------------------------- room ops */

static int op_room_create(struct call *c)
{
	const char **names = NULL;
	const char *room = NULL;
	size_t n, i;
	int rc;
	json_t *jname = json_object_get(c->req, "name");
	char id[23], key[2 * MQC_NAME_MAX + 2];
	bool created = false;
	int64_t now = mqc_now_ms();

	if(json_is_null(jname)) jname = NULL;
	rc = arg_users(c, "participants", c->user, &names, &n);
	if(rc) return rc;
	if(n < 2){
		rc = fail(c, "invalid", "participants: a room needs at least two distinct users (you are always one)");
		goto out;
	}
	if(n > REQ_MAX_ROOM_MEMBERS){
		rc = fail(c, "too_large", "participants: a room holds at most %d users", REQ_MAX_ROOM_MEMBERS);
		goto out;
	}
	if(jname){
		if(n == 2){
			rc = fail(c, "invalid", "name: a direct room (two participants) has no name");
			goto out;
		}
		if(!json_is_string(jname)){
			rc = fail(c, "invalid", "name: expected a string");
			goto out;
		}
		/* The same rule as mqchat-admin's --name (store/text.c). */
		char why[200];
		mqc_text_err te = mqc_room_name_check(json_string_value(jname), json_string_length(jname), why, sizeof(why));
		if(te != MQC_TEXT_OK){
			rc = fail(c, te == MQC_TEXT_TOO_LONG ? "too_large" : "invalid", "name: %s", why);
			goto out;
		}
	}

	if((rc = txn_begin(c))) goto out;
	for(i = 0; i < n; i++){
		if((rc = user_joinable(c, names[i]))) goto out;
	}
	if(mqc_room_id_new(id)){
		bridge__log(BLOG_ERROR, "requests", "room.create for %s: no randomness for a room id; answering internal", c->user);
		rc = fail(c, "internal", "cannot make a room id");
		goto out;
	}
	sqlite3_stmt *s = st(c, S_ROOM_INSERT);
	bind_text(s, 1, id);
	bind_text(s, 2, n == 2 ? "direct" : "group");
	bind_text(s, 3, jname ? json_string_value(jname) : NULL);
	bind_text(s, 4, c->user);
	sqlite3_bind_int64(s, 5, now);
	if(n == 2){
		if(mqc_direct_key(names[0], names[1], key, sizeof(key))){
			rc = fail(c, "internal", "cannot make the direct room key");
			goto out;
		}
		bind_text(s, 6, key);
	}else{
		bind_text(s, 6, NULL);
	}
	if((rc = exec_done(c, s, "inserting a room"))) goto out;
	created = sqlite3_changes(c->r->db) == 1;
	room = id;
	if(n == 2 && !created){
		/* The pair already has its room: UNIQUE(direct_key) made the INSERT a no-op. */
		s = st(c, S_DIRECT_GET);
		bind_text(s, 1, key);
		rc = sqlite3_step(s);
		if(rc != SQLITE_ROW){
			rc = dbfail(c, "reading the direct room");
			sqlite3_reset(s);
			goto out;
		}
		snprintf(id, sizeof(id), "%s", (const char *)sqlite3_column_text(s, 0));
		sqlite3_reset(s);
	}
	if(created){
		for(i = 0; i < n; i++){
			s = st(c, S_PART_INSERT);
			bind_text(s, 1, id);
			bind_text(s, 2, names[i]);
			sqlite3_bind_int64(s, 3, now);
			if((rc = exec_done(c, s, "inserting a participant"))) goto out;
		}
		if((rc = room_control(c, id))) goto out;
		for(i = 0; i < n; i++){
			if((rc = room_event(c, names[i], "room.added", id, true))) goto out;
		}
	}
	if((rc = room_object(c, room, c->user, &c->result))) goto out;
	if(json_object_set_new(c->result, "created", json_boolean(created))){
		rc = OP_NOMEM;
		goto out;
	}
	rc = txn_commit(c);
out:
	free(names);
	return rc;
}

static int op_room_direct(struct call *c)
{
	const char *with;
	char key[2 * MQC_NAME_MAX + 2];
	int rc = arg_name(c, "with", true, &with);
	if(rc) return rc;
	if(strcmp(with, c->user) == 0) return fail(c, "invalid", "with: must be someone else");
	if(mqc_direct_key(c->user, with, key, sizeof(key))) return fail(c, "invalid", "with: not a valid user id");

	sqlite3_stmt *s = st(c, S_DIRECT_GET);
	bind_text(s, 1, key);
	rc = sqlite3_step(s);
	if(rc != SQLITE_ROW && rc != SQLITE_DONE){
		rc = dbfail(c, "reading the direct room");
		sqlite3_reset(s);
		return rc;
	}
	json_t *room = rc == SQLITE_ROW ? column_string(&c->r->text_log, s, 0, "rooms.id", "the direct room of", 1) : json_null();
	sqlite3_reset(s);
	c->result = json_object();
	if(!c->result || set(c->result, "room", room)) return OP_NOMEM;
	return OP_OK;
}

/* Cursor of rooms.list: "<activity>:<room id>" (':' is not in the id alphabet). */
static int parse_cursor(struct call *c, const char *cur, int64_t *act, const char **room)
{
	char *end;
	const char *colon = strchr(cur, ':');
	if(!colon || colon == cur) return fail(c, "invalid", "before: not a cursor from a previous rooms.list");
	errno = 0;
	*act = strtoll(cur, &end, 10);
	if(end != colon || errno || !mqc_name_valid(colon + 1, strlen(colon + 1))){
		return fail(c, "invalid", "before: not a cursor from a previous rooms.list");
	}
	*room = colon + 1;
	return OP_OK;
}

static int op_rooms_list(struct call *c)
{
	int64_t limit = REQ_PAGE_DEFAULT, act = INT64_MAX, last_act = 0;
	const char *after_room = "";
	bool present, more = false;
	json_t *before = json_object_get(c->req, "before"), *rooms, *res;
	char next[96];
	size_t got = 0;
	int rc;

	if((rc = arg_int(c, "limit", 1, REQ_PAGE_MAX, &limit, &present))) return rc;
	if(before && !json_is_null(before)){
		if(!json_is_string(before)) return fail(c, "invalid", "before: expected the string `next` of a previous rooms.list");
		if((rc = parse_cursor(c, json_string_value(before), &act, &after_room))) return rc;
	}
	if((rc = about_to(c, REQ_SEES_MY_ROOMS, NULL))) return rc;
	rooms = json_array();
	if(!rooms) return OP_NOMEM;

	sqlite3_stmt *s = st(c, S_ROOMS_PAGE);
	bind_text(s, 1, c->user);
	sqlite3_bind_int64(s, 2, act);
	bind_text(s, 3, after_room);
	sqlite3_bind_int64(s, 4, limit + 1);
	next[0] = '\0';
	while((rc = sqlite3_step(s)) == SQLITE_ROW){
		if(got == (size_t)limit){
			more = true;
			break;
		}
		json_t *o;
		if((rc = room_from_row(c, s, &o)) || json_array_append_new(rooms, o)){
			sqlite3_reset(s);
			json_decref(rooms);
			return rc ? rc : OP_NOMEM;
		}
		last_act = sqlite3_column_int64(s, 15);
		snprintf(next, sizeof(next), "%" PRId64 ":%s", last_act, json_string_value(json_object_get(o, "id")));
		got++;
	}
	if(rc != SQLITE_ROW && rc != SQLITE_DONE){
		rc = dbfail(c, "listing rooms");
		sqlite3_reset(s);
		json_decref(rooms);
		return rc;
	}
	sqlite3_reset(s);
	res = json_object();
	if(!res){
		json_decref(rooms);
		return OP_NOMEM;
	}
	c->result = res;
	rc = 0;
	rc |= set(res, "rooms", rooms);
	rc |= set(res, "more", json_boolean(more));
	rc |= set(res, "next", more ? json_string(next) : json_null());
	return rc ? OP_NOMEM : OP_OK;
}

static int op_room_get(struct call *c)
{
	const char *room;
	struct room_access ra;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = room_access(c, room, &ra))) return rc;
	if((rc = about_to(c, REQ_SEES_ROOM, room))) return rc;
	return room_object(c, room, c->user, &c->result);
}

/* Shared checks of the ops that change a group's membership. */
static int group_change_access(struct call *c, const char *room, struct room_access *ra, bool creator_only)
{
	int rc = room_access(c, room, ra);
	if(rc) return rc;
	if(ra->direct) return fail(c, "invalid", "room %s is a direct room: its participants never change", room);
	if(creator_only && strcmp(ra->created_by, c->user) != 0){
		return fail(c, "forbidden", "only the room's owner (%s) may change its participants", ra->created_by);
	}
	return OP_OK;
}

static int op_room_members_add(struct call *c)
{
	const char *room, **names = NULL;
	struct room_access ra;
	size_t n, i;
	int64_t count, now = mqc_now_ms();
	json_t *added = NULL;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = arg_users(c, "users", NULL, &names, &n))) return rc;
	if((rc = txn_begin(c))) goto out;
	if((rc = group_change_access(c, room, &ra, true))) goto out;
	if((rc = member_count(c, room, &count))) goto out;
	if(!(added = json_array())){
		rc = OP_NOMEM;
		goto out;
	}
	for(i = 0; i < n; i++){
		bool yes;
		if((rc = is_member(c, room, names[i], &yes))) goto out;
		if(yes) continue;
		if((rc = user_joinable(c, names[i]))) goto out;
		if(count + 1 > REQ_MAX_ROOM_MEMBERS){
			rc = fail(c, "too_large", "a room holds at most %d users", REQ_MAX_ROOM_MEMBERS);
			goto out;
		}
		sqlite3_stmt *s = st(c, S_PART_INSERT);
		bind_text(s, 1, room);
		bind_text(s, 2, names[i]);
		sqlite3_bind_int64(s, 3, now);
		if((rc = exec_done(c, s, "inserting a participant"))) goto out;
		s = st(c, S_MARKER_JOIN);
		bind_text(s, 1, names[i]);
		bind_text(s, 2, room);
		if((rc = exec_done(c, s, "setting a new participant's read marker"))) goto out;
		count++;
		if(json_array_append_new(added, json_string(names[i]))){
			rc = OP_NOMEM;
			goto out;
		}
	}
	if(json_array_size(added) > 0){
		if((rc = room_control(c, room))) goto out;
		/* New members get room.added, the others room.updated. */
		json_t *mem = NULL;
		if((rc = members(c, room, &mem))) goto out;
		for(i = 0; i < json_array_size(mem) && rc == OP_OK; i++){
			const char *u = json_string_value(json_array_get(mem, i));
			bool is_new = false;
			for(size_t k = 0; k < json_array_size(added); k++){
				if(strcmp(u, json_string_value(json_array_get(added, k))) == 0) is_new = true;
			}
			rc = room_event(c, u, is_new ? "room.added" : "room.updated", room, true);
		}
		json_decref(mem);
		if(rc) goto out;
	}
	if((rc = room_object(c, room, c->user, &c->result))) goto out;
	rc = set(c->result, "added", added) ? OP_NOMEM : OP_OK;
	added = NULL;
	if(rc) goto out;
	rc = txn_commit(c);
out:
	json_decref(added);
	free(names);
	return rc;
}

static int op_room_members_remove(struct call *c)
{
	const char *room, **names = NULL;
	struct room_access ra;
	size_t n, i;
	int64_t count;
	json_t *removed = NULL;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = arg_users(c, "users", NULL, &names, &n))) return rc;
	for(i = 0; i < n; i++){
		if(strcmp(names[i], c->user) == 0){
			rc = fail(c, "invalid", "users: you cannot remove yourself; use room.leave");
			goto out;
		}
	}
	if((rc = txn_begin(c))) goto out;
	if((rc = group_change_access(c, room, &ra, true))) goto out;
	if(!(removed = json_array())){
		rc = OP_NOMEM;
		goto out;
	}
	for(i = 0; i < n; i++){
		sqlite3_stmt *s = st(c, S_PART_DELETE);
		bind_text(s, 1, room);
		bind_text(s, 2, names[i]);
		if((rc = exec_done(c, s, "removing a participant"))) goto out;
		if(sqlite3_changes(c->r->db) == 1 && json_array_append_new(removed, json_string(names[i]))){
			rc = OP_NOMEM;
			goto out;
		}
	}
	if((rc = member_count(c, room, &count))) goto out;
	if(count < 2){
		rc = fail(c, "conflict", "a room needs at least two participants: removing these would leave %" PRId64
				"; disable the room instead", count);
		goto out;
	}
	if(json_array_size(removed) > 0){
		if((rc = room_control(c, room))) goto out;
		for(i = 0; i < json_array_size(removed); i++){
			if((rc = room_event(c, json_string_value(json_array_get(removed, i)), "room.removed", room, false))) goto out;
		}
		if((rc = room_event_all(c, "room.updated", room, true, NULL))) goto out;
	}
	if((rc = room_object(c, room, c->user, &c->result))) goto out;
	rc = set(c->result, "removed", removed) ? OP_NOMEM : OP_OK;
	removed = NULL;
	if(rc) goto out;
	rc = txn_commit(c);
out:
	json_decref(removed);
	free(names);
	return rc;
}

/* Leaving a group: always allowed. If the owner leaves, ownership passes to the member who
 * joined first (ties: smallest user id). If fewer than two members remain, the room is
 * disabled as well: nobody can talk alone, and the last one keeps the history. */
static int op_room_leave(struct call *c)
{
	const char *room;
	struct room_access ra;
	int64_t count;
	bool disabled_now = false;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	if((rc = group_change_access(c, room, &ra, false))) return rc;

	sqlite3_stmt *s = st(c, S_PART_DELETE);
	bind_text(s, 1, room);
	bind_text(s, 2, c->user);
	if((rc = exec_done(c, s, "removing the participant"))) return rc;
	if((rc = member_count(c, room, &count))) return rc;
	if(count > 0 && strcmp(ra.created_by, c->user) == 0){
		s = st(c, S_NEXT_OWNER);
		bind_text(s, 1, room);
		rc = sqlite3_step(s);
		if(rc != SQLITE_ROW){
			rc = dbfail(c, "choosing the next owner");
			sqlite3_reset(s);
			return rc;
		}
		char owner[MQC_NAME_MAX + 1];
		snprintf(owner, sizeof(owner), "%s", (const char *)sqlite3_column_text(s, 0));
		sqlite3_reset(s);
		s = st(c, S_ROOM_SET_OWNER);
		bind_text(s, 1, room);
		bind_text(s, 2, owner);
		if((rc = exec_done(c, s, "passing ownership"))) return rc;
	}
	if(count < 2 && ra.enabled){
		s = st(c, S_ROOM_SET_ENABLED);
		bind_text(s, 1, room);
		sqlite3_bind_int(s, 2, 0);
		if((rc = exec_done(c, s, "disabling the room"))) return rc;
		disabled_now = true;
	}
	if((rc = room_control(c, room))) return rc;
	if((rc = room_event(c, c->user, "room.removed", room, false))) return rc;
	if((rc = room_event_all(c, "room.updated", room, true, NULL))) return rc;
	if(disabled_now && (rc = room_event_all(c, "room.disabled", room, false, NULL))) return rc;

	c->result = json_object();
	if(!c->result || set(c->result, "room", json_string(room)) || set(c->result, "left", json_true())){
		return OP_NOMEM;
	}
	if(set(c->result, "room_disabled", json_boolean(disabled_now))) return OP_NOMEM;
	return txn_commit(c);
}

static int set_enabled(struct call *c, bool enable)
{
	const char *room;
	struct room_access ra;
	bool changed = false;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	if((rc = room_access(c, room, &ra))) return rc;
	if(strcmp(ra.created_by, c->user) != 0){
		return fail(c, "forbidden", "only the room's owner (%s) may %s it", ra.created_by, enable ? "enable" : "disable");
	}
	if(ra.enabled != enable){
		if(enable){
			int64_t count;
			if((rc = member_count(c, room, &count))) return rc;
			if(count < 2) return fail(c, "conflict", "room %s has fewer than two participants", room);
		}
		sqlite3_stmt *s = st(c, S_ROOM_SET_ENABLED);
		bind_text(s, 1, room);
		sqlite3_bind_int(s, 2, enable);
		if((rc = exec_done(c, s, enable ? "enabling the room" : "disabling the room"))) return rc;
		changed = true;
		if((rc = room_control(c, room))) return rc;
		if((rc = room_event_all(c, enable ? "room.enabled" : "room.disabled", room, false, NULL))) return rc;
	}
	if((rc = room_object(c, room, c->user, &c->result))) return rc;
	if(set(c->result, "changed", json_boolean(changed))) return OP_NOMEM;
	return txn_commit(c);
}

static int op_room_disable(struct call *c) { return set_enabled(c, false); }
static int op_room_enable(struct call *c) { return set_enabled(c, true); }

/* ---------------------------------------------------------------- contacts */

/* Runs s (bound by the caller) and answers {key: [one object per row, filled by row()]}. */
static int list_rows(struct call *c, sqlite3_stmt *s, const char *what, const char *key,
		int (*row)(struct call *c, sqlite3_stmt *s, json_t *o))
{
	json_t *list = json_array();
	int rc;
	if(!list){
		sqlite3_reset(s);
		return OP_NOMEM;
	}
	while((rc = sqlite3_step(s)) == SQLITE_ROW){
		json_t *o = json_object();
		if(!o || row(c, s, o) || json_array_append_new(list, o)){
			sqlite3_reset(s);
			json_decref(list);
			return OP_NOMEM;
		}
	}
	if(rc != SQLITE_DONE){
		rc = dbfail(c, what);
		sqlite3_reset(s);
		json_decref(list);
		return rc;
	}
	sqlite3_reset(s);
	c->result = json_object();
	if(!c->result){
		json_decref(list);
		return OP_NOMEM;
	}
	return set(c->result, key, list) ? OP_NOMEM : OP_OK;
}

static int contact_row(struct call *c, sqlite3_stmt *s, json_t *o)
{
	int e = 0;
	e |= set(o, "user", column_string(&c->r->text_log, s, 0, "users.id", "user", 0));
	e |= set(o, "display_name", column_string(&c->r->text_log, s, 1, "users.display_name", "user", 0));
	e |= set(o, "explicit", json_boolean(sqlite3_column_int(s, 2)));
	e |= set(o, "direct_room", column_string(&c->r->text_log, s, 3, "rooms.id", "the direct room with user", 0));
	return e;
}

static int op_contacts_list(struct call *c)
{
	sqlite3_stmt *s = st(c, S_CONTACTS_LIST);
	bind_text(s, 1, c->user);
	return list_rows(c, s, "listing contacts", "contacts", contact_row);
}

static int contact_change(struct call *c, bool add)
{
	const char *user;
	int rc = arg_name(c, "user", true, &user);
	if(rc) return rc;
	if(strcmp(user, c->user) == 0) return fail(c, "invalid", "user: you cannot be your own contact");
	if((rc = txn_begin(c))) return rc;
	if(add){
		int64_t disabled;
		bool found;
		sqlite3_stmt *s = st(c, S_USER_GET);
		bind_text(s, 1, user);
		if((rc = query_int(c, s, "looking up a user", &disabled, &found))) return rc;
		if(!found) return fail(c, "not_found", "no such user: %s", user);
	}
	sqlite3_stmt *s = st(c, add ? S_CONTACT_ADD : S_CONTACT_DEL);
	bind_text(s, 1, c->user);
	bind_text(s, 2, user);
	if(add) sqlite3_bind_int64(s, 3, mqc_now_ms());
	if((rc = exec_done(c, s, add ? "adding a contact" : "removing a contact"))) return rc;
	bool changed = sqlite3_changes(c->r->db) == 1;
	c->result = json_object();
	if(!c->result || set(c->result, "user", json_string(user))
			|| set(c->result, add ? "added" : "removed", json_boolean(changed))){
		return OP_NOMEM;
	}
	return txn_commit(c);
}

static int op_contacts_add(struct call *c) { return contact_change(c, true); }
static int op_contacts_remove(struct call *c) { return contact_change(c, false); }

/* ---------------------------------------------------------------- history, count, read */

/* Pages are id ranges, exclusive at both ends:
 *   - no after: the `limit` newest messages below `before` (or the newest overall);
 *     more = older ones exist below the page. Next older page: before = last id returned.
 *   - after given: the `limit` messages just above `after` (and below `before`, if given),
 *     returned newest first; more = newer ones exist above the page (below `before`).
 *     Next newer page: after = first id returned.
 * Ids grow with time and a message is stored before it is visible here, so a message that
 * arrives while paging lies above every page already taken: paging backwards never sees it,
 * paging forwards meets it in order. */
static int op_history(struct call *c)
{
	const char *room, *from;
	struct room_access ra;
	int64_t before = (int64_t)MQC_ID_MAX + 1, after = 0, limit = REQ_PAGE_DEFAULT;
	bool present, more = false, asc;
	json_t *msgs, *res;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = arg_name(c, "from", false, &from))) return rc;
	if((rc = arg_int(c, "before", 1, (int64_t)MQC_ID_MAX + 1, &before, &present))) return rc;
	if((rc = arg_int(c, "after", 0, (int64_t)MQC_ID_MAX, &after, &present))) return rc;
	asc = present;
	if((rc = arg_int(c, "limit", 1, REQ_PAGE_MAX, &limit, &present))) return rc;
	if((rc = room_access(c, room, &ra))) return rc;
	if((rc = about_to(c, REQ_SEES_ROOM, room))) return rc;

	msgs = json_array();
	if(!msgs) return OP_NOMEM;
	sqlite3_stmt *s = st(c, from ? (asc ? S_HIST_FROM_ASC : S_HIST_FROM_DESC) : (asc ? S_HIST_ASC : S_HIST_DESC));
	bind_text(s, 1, room);
	sqlite3_bind_int64(s, 2, after);
	sqlite3_bind_int64(s, 3, before);
	sqlite3_bind_int64(s, 4, limit + 1);
	if(from) bind_text(s, 5, from);
	int64_t got = 0;
	while((rc = sqlite3_step(s)) == SQLITE_ROW){
		if(got == limit){
			more = true;
			break;
		}
		json_t *m = msg_from_row(&c->r->text_log, s, 0, room);
		/* Ascending rows are inserted at the front so the page reads newest first. */
		if(!m || (asc ? json_array_insert_new(msgs, 0, m) : json_array_append_new(msgs, m))){
			sqlite3_reset(s);
			json_decref(msgs);
			return OP_NOMEM;
		}
		got++;
	}
	if(rc != SQLITE_ROW && rc != SQLITE_DONE){
		rc = dbfail(c, "reading history");
		sqlite3_reset(s);
		json_decref(msgs);
		return rc;
	}
	sqlite3_reset(s);
	res = json_object();
	if(!res){
		json_decref(msgs);
		return OP_NOMEM;
	}
	c->result = res;
	rc = 0;
	rc |= set(res, "messages", msgs);
	rc |= set(res, "more", json_boolean(more));
	return rc ? OP_NOMEM : OP_OK;
}

static int unread(struct call *c, const char *room, int64_t *total, int64_t *n)
{
	sqlite3_stmt *s = st(c, S_UNREAD);
	int rc;
	bind_text(s, 1, room);
	bind_text(s, 2, c->user);
	rc = sqlite3_step(s);
	if(rc != SQLITE_ROW){
		rc = dbfail(c, "counting unread messages");
		sqlite3_reset(s);
		return rc;
	}
	*total = sqlite3_column_int64(s, 0);
	*n = sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	return OP_OK;
}

static int op_count(struct call *c)
{
	const char *room, *from;
	struct room_access ra;
	int64_t total, n;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = arg_name(c, "from", false, &from))) return rc;
	if((rc = room_access(c, room, &ra))) return rc;
	if((rc = about_to(c, REQ_SEES_ROOM, room))) return rc;
	if((rc = unread(c, room, &total, &n))) return rc;
	if(from){
		bool found;
		sqlite3_stmt *s = st(c, S_COUNT_FROM);
		bind_text(s, 1, room);
		bind_text(s, 2, from);
		if((rc = query_int(c, s, "reading a sender count", &total, &found))) return rc;
		if(!found) total = 0;
	}
	c->result = json_object();
	if(!c->result || set(c->result, "total", json_integer(total)) || set(c->result, "unread", json_integer(n))){
		return OP_NOMEM;
	}
	return OP_OK;
}

static int op_read(struct call *c)
{
	const char *room;
	struct room_access ra;
	int64_t upto = 0, mark = 0, total, n, one;
	bool present, found;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = arg_int(c, "upto", 1, (int64_t)MQC_ID_MAX, &upto, &present))) return rc;
	if(!present) return fail(c, "invalid", "upto: required");
	/* The message may be one the user just received, still in a batch: the room is read
	 * as history is, and the message looked for before the write transaction (a request
	 * waiting for it retries on every commit: it must not take the write lock each time).
	 * Access is checked again inside the transaction. */
	if((rc = room_access(c, room, &ra))) return rc;
	if((rc = about_to(c, REQ_SEES_ROOM, room))) return rc;
	sqlite3_stmt *s = st(c, S_MSG_IN_ROOM);
	sqlite3_bind_int64(s, 1, upto);
	bind_text(s, 2, room);
	rc = query_int(c, s, "looking up a message", &one, &found);
	sqlite3_reset(s);
	if(rc) return rc;
	if(!found){
		/* A message received a moment ago may not be stored yet: a recent id waits for it
		 * (the caller decides how long), an old or future one is refused now. */
		int64_t ms = mqc_id_to_ms((uint64_t)upto), now = mqc_now_ms();
		if(ms > now - 60000 && ms < now + 5000 && (rc = about_to(c, REQ_NEEDS_MESSAGE, room))) return rc;
		return fail(c, "invalid", "upto: %" PRId64 " is not a message of room %s", upto, room);
	}
	if((rc = txn_begin(c))) return rc;
	if((rc = room_access(c, room, &ra))) return rc;
	s = st(c, S_MARKER_SET);
	bind_text(s, 1, c->user);
	bind_text(s, 2, room);
	sqlite3_bind_int64(s, 3, upto);
	if((rc = exec_done(c, s, "setting the read marker"))) return rc;
	s = st(c, S_MARKER_GET);
	bind_text(s, 1, c->user);
	bind_text(s, 2, room);
	if((rc = query_int(c, s, "reading the read marker", &mark, &found))) return rc;
	if((rc = unread(c, room, &total, &n))) return rc;
	c->result = json_object();
	if(!c->result || set(c->result, "room", json_string(room)) || set(c->result, "last_read_id", json_integer(mark))
			|| set(c->result, "unread", json_integer(n))){
		return OP_NOMEM;
	}
	return txn_commit(c);
}

/* ---------------------------------------------------------------- device tokens */

/* The plugin's control message for a token change, sent before the answer. */
static int token_control(struct call *c, const char *op, const char *id, const char *hash, int64_t expires_at)
{
	int64_t acl_to = 0;
	int rc = acl_version(c, &acl_to);
	if(rc) return rc;
	json_t *o = json_object();
	if(!o) return OP_NOMEM;
	int e = 0;
	e |= set(o, "op", json_string(op));
	e |= set(o, "user", json_string(c->user));
	e |= set(o, "id", json_string(id));
	if(hash){
		e |= set(o, "hash", json_string(hash));
		e |= set(o, "expires_at", expires_at ? json_integer(expires_at) : json_null());
	}
	e |= set(o, "acl_from", json_integer(c->acl_from));
	e |= set(o, "acl_to", json_integer(acl_to));
	if(e){
		json_decref(o);
		return OP_NOMEM;
	}
	return append(&c->controls, o);
}

static int op_token_create(struct call *c)
{
	json_t *jname = json_object_get(c->req, "name");
	int64_t expires_in = 0;
	bool has_exp;
	char why[160];
	if(!json_is_string(jname)) return fail(c, "invalid", "name: required, a string (the device)");
	mqc_text_err te = mqc_token_name_check(json_string_value(jname), json_string_length(jname), why, sizeof(why));
	if(te) return fail(c, te == MQC_TEXT_TOO_LONG ? "too_large" : "invalid", "name: %s", why);
	int rc = arg_int(c, "expires_in", 60, REQ_TOKEN_MAX_EXPIRES_S, &expires_in, &has_exp);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	int64_t n;
	bool found;
	sqlite3_stmt *s = st(c, S_TOKEN_COUNT);
	bind_text(s, 1, c->user);
	if((rc = query_int(c, s, "counting tokens", &n, &found))) return rc;
	if(n >= REQ_MAX_TOKENS){
		return fail(c, "conflict", "you have %" PRId64 " tokens, the most one user may have; revoke one first", n);
	}
	char secret[MQC_TOKEN_LEN + 1], hash[MQC_TOKEN_HASH_HEX + 1], id[MQC_TOKEN_ID_LEN + 1];
	if(mqc_token_new(secret, hash, id)) return fail(c, "internal", "no randomness for a token");
	int64_t now = mqc_now_ms(), expires_at = has_exp ? now + expires_in * 1000 : 0;
	s = st(c, S_TOKEN_INSERT);
	bind_text(s, 1, id);
	bind_text(s, 2, c->user);
	sqlite3_bind_text(s, 3, json_string_value(jname), (int)json_string_length(jname), SQLITE_TRANSIENT);
	bind_text(s, 4, hash);
	sqlite3_bind_int64(s, 5, now);
	if(expires_at) sqlite3_bind_int64(s, 6, expires_at);
	else sqlite3_bind_null(s, 6);
	rc = exec_done(c, s, "storing a token");
	if(!rc) rc = token_control(c, "token", id, hash, expires_at);
	if(!rc){
		c->result = json_object();
		int e = !c->result;
		if(!e){
			e |= set(c->result, "id", json_string(id));
			e |= set(c->result, "name", json_stringn(json_string_value(jname), json_string_length(jname)));
			e |= set(c->result, "token", json_string(secret));
			e |= set(c->result, "created_at", json_integer(now));
			e |= set(c->result, "expires_at", expires_at ? json_integer(expires_at) : json_null());
		}
		rc = e ? OP_NOMEM : OP_OK;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	if(rc) return rc;
	bridge__log(BLOG_INFO, "requests", "token.create: %s made token %s (%.64s)%s", c->user, id, json_string_value(jname),
			expires_at ? ", expiring" : "");
	return txn_commit(c);
}

static json_t *int_or_null(sqlite3_stmt *s, int col)
{
	return sqlite3_column_type(s, col) == SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(s, col));
}

static int token_row(struct call *c, sqlite3_stmt *s, json_t *o)
{
	int e = 0;
	e |= set(o, "id", column_string(&c->r->text_log, s, 0, "tokens.id", "user", 0));
	e |= set(o, "name", column_string(&c->r->text_log, s, 1, "tokens.name", "user", 0));
	e |= set(o, "created_at", json_integer(sqlite3_column_int64(s, 2)));
	e |= set(o, "expires_at", int_or_null(s, 3));
	e |= set(o, "last_used_at", int_or_null(s, 4));
	return e;
}

static int op_tokens_list(struct call *c)
{
	sqlite3_stmt *s = st(c, S_TOKENS_LIST);
	bind_text(s, 1, c->user);
	return list_rows(c, s, "listing tokens", "tokens", token_row);
}

static int op_token_revoke(struct call *c)
{
	const char *id;
	int rc = arg_name(c, "id", true, &id);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	sqlite3_stmt *s = st(c, S_TOKEN_DELETE);
	bind_text(s, 1, id);
	bind_text(s, 2, c->user);
	if((rc = exec_done(c, s, "revoking a token"))) return rc;
	/* someone else's token does not exist for you */
	if(sqlite3_changes(c->r->db) != 1) return fail(c, "not_found", "you have no token %s", id);
	if((rc = token_control(c, "token.revoke", id, NULL, 0))) return rc;
	c->result = json_object();
	if(!c->result || set(c->result, "id", json_string(id)) || set(c->result, "revoked", json_true())) return OP_NOMEM;
	bridge__log(BLOG_INFO, "requests", "token.revoke: %s revoked token %s", c->user, id);
	return txn_commit(c);
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

void requests__flush_used(struct requests *r, bool now)
{
	if(!r->used_n || (!now && mqc_now_ms() - r->used_first_ms < 1000)) return;
	if(!sqlite3_get_autocommit(r->db)) return;
	sqlite3_stmt *b = r->stmt[S_BEGIN], *cm = r->stmt[S_COMMIT], *s = r->stmt[S_TOKEN_USED];
	sqlite3_reset(b);
	if(sqlite3_step(b) != SQLITE_DONE){
		sqlite3_reset(b);
		bridge__log(BLOG_WARN, "requests", "cannot record %zu tokens' last use now: %s; trying again later", r->used_n,
				sqlite3_errmsg(r->db));
		r->used_first_ms = mqc_now_ms();
		return;
	}
	sqlite3_reset(b);
	for(size_t i = 0; i < r->used_n; i++){
		sqlite3_bind_text(s, 1, r->used_q[i].id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, r->used_q[i].user, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, r->used_q[i].at);
		sqlite3_step(s);
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	sqlite3_reset(cm);
	if(sqlite3_step(cm) != SQLITE_DONE){
		bridge__log(BLOG_WARN, "requests", "cannot record %zu tokens' last use: %s", r->used_n, sqlite3_errmsg(r->db));
		sqlite3_reset(cm);
		sqlite3_reset(r->stmt[S_ROLLBACK]);
		sqlite3_step(r->stmt[S_ROLLBACK]);
		sqlite3_reset(r->stmt[S_ROLLBACK]);
	}
	sqlite3_reset(cm);
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
	if(rc != OP_OK && c.began && !sqlite3_get_autocommit(r->db)){
		/* Ours (txn_begin refuses to nest); a failed COMMIT may have left it open. */
		sqlite3_reset(r->stmt[S_ROLLBACK]);
		if(sqlite3_step(r->stmt[S_ROLLBACK]) != SQLITE_DONE){
			bridge__log(BLOG_ERROR, "requests", "%s for %s: ROLLBACK failed: %s", c.opname, user, sqlite3_errmsg(r->db));
		}
		sqlite3_reset(r->stmt[S_ROLLBACK]);
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

/* ---------------------------------------------------------------- life cycle */

struct requests *requests__new(sqlite3 *db, const char *prefix)
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
	for(int i = 0; i < S_COUNT_; i++){
		if(sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->stmt[i], NULL) != SQLITE_OK){
			bridge__log(BLOG_ERROR, "requests", "cannot prepare statement %d (%s): %s; the bridge cannot serve requests",
					i, stmt_sql[i], sqlite3_errmsg(db));
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

void requests__free(struct requests *r)
{
	if(!r) return;
	for(int i = 0; i < S_COUNT_; i++) sqlite3_finalize(r->stmt[i]);
	free(r);
}
