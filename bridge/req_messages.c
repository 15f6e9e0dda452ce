/*
 * req_messages.c: history, count and read (docs/protocol.md "Operations"; the call context and
 * building blocks: requests_int.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "requests_int.h"

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
int op_history(struct call *c)
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
	mqc_stmt *s = st(c, from ? (asc ? MQC_Q_REQ_HIST_FROM_ASC : MQC_Q_REQ_HIST_FROM_DESC) : (asc ? MQC_Q_REQ_HIST_ASC : MQC_Q_REQ_HIST_DESC));
	bind_text(s, 1, room);
	mqc_bind_int64(s, 2, after);
	mqc_bind_int64(s, 3, before);
	mqc_bind_int64(s, 4, limit + 1);
	if(from) bind_text(s, 5, from);
	int64_t got = 0;
	while((rc = mqc_step(s)) == MQC_ROW){
		if(got == limit){
			more = true;
			break;
		}
		json_t *m = msg_from_row(&c->r->text_log, s, 0, room);
		/* Ascending rows are inserted at the front so the page reads newest first. */
		if(!m || (asc ? json_array_insert_new(msgs, 0, m) : json_array_append_new(msgs, m))){
			mqc_reset(s);
			json_decref(msgs);
			return OP_NOMEM;
		}
		got++;
	}
	if(rc != MQC_ROW && rc != MQC_DONE){
		rc = dbfail(c, "reading history");
		mqc_reset(s);
		json_decref(msgs);
		return rc;
	}
	mqc_reset(s);
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

int unread(struct call *c, const char *room, int64_t *total, int64_t *n)
{
	mqc_stmt *s = st(c, MQC_Q_REQ_UNREAD);
	int rc;
	bind_text(s, 1, room);
	bind_text(s, 2, c->user);
	rc = mqc_step(s);
	if(rc != MQC_ROW){
		rc = dbfail(c, "counting unread messages");
		mqc_reset(s);
		return rc;
	}
	*total = mqc_col_int64(s, 0);
	*n = mqc_col_int64(s, 1);
	mqc_reset(s);
	return OP_OK;
}

int op_count(struct call *c)
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
		mqc_stmt *s = st(c, MQC_Q_REQ_COUNT_FROM);
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

int op_read(struct call *c)
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
	mqc_stmt *s = st(c, MQC_Q_REQ_MSG_IN_ROOM);
	mqc_bind_int64(s, 1, upto);
	bind_text(s, 2, room);
	rc = query_int(c, s, "looking up a message", &one, &found);
	mqc_reset(s);
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
	s = st(c, MQC_Q_MARKER_RAISE);
	bind_text(s, 1, c->user);
	bind_text(s, 2, room);
	mqc_bind_int64(s, 3, upto);
	if((rc = exec_done(c, s, "setting the read marker"))) return rc;
	s = st(c, MQC_Q_REQ_MARKER_GET);
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

