/*
 * req_rooms.c: the room ops: room.create, room.direct, rooms.list, room.get, members, leave, disable and enable (docs/protocol.md "Operations"; the call context and
 * building blocks: requests_int.h). The database part of each change is a room rule of
 * store/rooms.h (shared with mqchat-admin); who may ask, the events and the answers are
 * here.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "requests_int.h"
#include "rooms.h"

/* ---------------------------------------------------------------- room ops */

/* A room rule's outcome (store/rooms.h) as the answer, for the outcomes every op answers
 * alike (the op handles the others first). what: the change, for the log. */
static int rooms_fail(struct call *c, mqc_rooms_rc rr, const char *room, const mqc_rooms_res *res, const char *what)
{
	switch(rr){
	case MQC_ROOMS_OK:
		return OP_OK;
	case MQC_ROOMS_DB:
		return dbfail(c, what);
	case MQC_ROOMS_NO_USER:
		return fail(c, "not_found", "no such user: %s", res->user);
	case MQC_ROOMS_USER_DISABLED:
		return fail(c, "invalid", "user %s is disabled", res->user);
	case MQC_ROOMS_NO_ROOM:
	case MQC_ROOMS_NOT_PARTICIPANT:
		return fail(c, "not_found", "no room %s (or you are not a participant)", room);
	case MQC_ROOMS_DIRECT:
		return fail(c, "invalid", "room %s is a direct room: its participants never change", room);
	case MQC_ROOMS_FULL:
		return fail(c, "too_large", "a room holds at most %d users", REQ_MAX_ROOM_MEMBERS);
	case MQC_ROOMS_NO_RANDOM:
		bridge__log(BLOG_ERROR, "requests", "%s for %s: no randomness for a room id; answering internal", c->opname,
				c->user);
		return fail(c, "internal", "cannot make a room id");
	default:
		bridge__log(BLOG_ERROR, "requests", "%s for %s: %s: the room rule answered \"%s\"; answering internal", c->opname,
				c->user, what, mqc_rooms_rc_str(rr));
		return fail(c, "internal", "%s", mqc_rooms_rc_str(rr));
	}
}

int op_room_create(struct call *c)
{
	const char **names = NULL;
	size_t n, i;
	int rc;
	json_t *jname = json_object_get(c->req, "name");
	mqc_rooms_res res;
	mqc_rooms_rc rr;

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
	/* Every user is checked first; a pair that has its direct room gets it (created false:
	 * nothing is written, nothing published). */
	rr = mqc_room_create(c->r->db, names, n, c->user, jname ? json_string_value(jname) : NULL, mqc_now_ms(), &res);
	if(rr != MQC_ROOMS_OK){
		rc = rooms_fail(c, rr, NULL, &res, "creating a room");
		goto out;
	}
	if(res.created){
		if((rc = room_control(c, res.room))) goto out;
		for(i = 0; i < n; i++){
			if((rc = room_event(c, names[i], "room.added", res.room, true))) goto out;
		}
	}
	if((rc = room_object(c, res.room, c->user, &c->result))) goto out;
	if(json_object_set_new(c->result, "created", json_boolean(res.created))){
		rc = OP_NOMEM;
		goto out;
	}
	rc = txn_commit(c);
out:
	free(names);
	return rc;
}

int op_room_direct(struct call *c)
{
	const char *with;
	char key[2 * MQC_NAME_MAX + 2];
	int rc = arg_name(c, "with", true, &with);
	if(rc) return rc;
	if(strcmp(with, c->user) == 0) return fail(c, "invalid", "with: must be someone else");
	if(mqc_direct_key(c->user, with, key, sizeof(key))) return fail(c, "invalid", "with: not a valid user id");

	mqc_stmt *s = st(c, MQC_Q_REQ_DIRECT_GET);
	bind_text(s, 1, key);
	rc = mqc_step(s);
	if(rc != MQC_ROW && rc != MQC_DONE){
		rc = dbfail(c, "reading the direct room");
		mqc_reset(s);
		return rc;
	}
	json_t *room = rc == MQC_ROW ? column_string(&c->r->text_log, s, 0, "rooms.id", "the direct room of", 1) : json_null();
	mqc_reset(s);
	c->result = json_object();
	if(!c->result || set(c->result, "room", room)) return OP_NOMEM;
	return OP_OK;
}

/* Cursor of rooms.list: "<activity>:<room id>" (':' is not in the id alphabet). */
int parse_cursor(struct call *c, const char *cur, int64_t *act, const char **room)
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

int op_rooms_list(struct call *c)
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

	mqc_stmt *s = st(c, MQC_Q_REQ_ROOMS_PAGE);
	bind_text(s, 1, c->user);
	mqc_bind_int64(s, 2, act);
	bind_text(s, 3, after_room);
	mqc_bind_int64(s, 4, limit + 1);
	next[0] = '\0';
	while((rc = mqc_step(s)) == MQC_ROW){
		if(got == (size_t)limit){
			more = true;
			break;
		}
		json_t *o;
		if((rc = room_from_row(c, s, &o)) || json_array_append_new(rooms, o)){
			mqc_reset(s);
			json_decref(rooms);
			return rc ? rc : OP_NOMEM;
		}
		last_act = mqc_col_int64(s, 15);
		snprintf(next, sizeof(next), "%" PRId64 ":%s", last_act, json_string_value(json_object_get(o, "id")));
		got++;
	}
	if(rc != MQC_ROW && rc != MQC_DONE){
		rc = dbfail(c, "listing rooms");
		mqc_reset(s);
		json_decref(rooms);
		return rc;
	}
	mqc_reset(s);
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

int op_room_get(struct call *c)
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
int group_change_access(struct call *c, const char *room, struct room_access *ra, bool creator_only)
{
	int rc = room_access(c, room, ra);
	if(rc) return rc;
	if(ra->direct) return fail(c, "invalid", "room %s is a direct room: its participants never change", room);
	if(creator_only && strcmp(ra->created_by, c->user) != 0){
		return fail(c, "forbidden", "only the room's owner (%s) may change its participants", ra->created_by);
	}
	return OP_OK;
}

int op_room_members_add(struct call *c)
{
	const char *room, **names = NULL;
	struct room_access ra;
	size_t n, i;
	int64_t now = mqc_now_ms();
	json_t *added = NULL;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = arg_users(c, "users", NULL, &names, &n))) return rc;
	if((rc = txn_begin(c))) goto out;
	if((rc = group_change_access(c, room, &ra, true))) goto out;
	if(!(added = json_array())){
		rc = OP_NOMEM;
		goto out;
	}
	for(i = 0; i < n; i++){
		mqc_rooms_res res;
		mqc_rooms_rc rr = mqc_room_member_add(c->r->db, room, names[i], now, REQ_MAX_ROOM_MEMBERS, &res);
		if(rr == MQC_ROOMS_PARTICIPANT) continue;
		if(rr != MQC_ROOMS_OK){
			rc = rooms_fail(c, rr, room, &res, "adding a participant");
			goto out;
		}
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

int op_room_members_remove(struct call *c)
{
	const char *room, **names = NULL;
	struct room_access ra;
	size_t n, i;
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
		mqc_rooms_res res;
		mqc_rooms_rc rr = mqc_room_member_remove(c->r->db, room, names[i], &res);
		if(rr == MQC_ROOMS_NOT_PARTICIPANT || rr == MQC_ROOMS_NO_USER) continue; /* nothing to remove */
		if(rr == MQC_ROOMS_TOO_FEW){
			/* The caller (the owner) stays: the removal that fails is the one leaving 1. */
			rc = fail(c, "conflict", "a room needs at least two participants: removing these would leave %" PRId64
					"; disable the room instead", res.participants);
			goto out;
		}
		if(rr != MQC_ROOMS_OK){
			rc = rooms_fail(c, rr, room, &res, "removing a participant");
			goto out;
		}
		if(json_array_append_new(removed, json_string(names[i]))){
			rc = OP_NOMEM;
			goto out;
		}
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
 * disabled as well: nobody can talk alone, and the last one keeps the history (the rule
 * is mqc_room_leave's). */
int op_room_leave(struct call *c)
{
	const char *room;
	struct room_access ra;
	mqc_rooms_res res;
	mqc_rooms_rc rr;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	if((rc = group_change_access(c, room, &ra, false))) return rc;
	rr = mqc_room_leave(c->r->db, room, c->user, &res);
	if(rr != MQC_ROOMS_OK) return rooms_fail(c, rr, room, &res, "leaving the room");
	if((rc = room_control(c, room))) return rc;
	if((rc = room_event(c, c->user, "room.removed", room, false))) return rc;
	if((rc = room_event_all(c, "room.updated", room, true, NULL))) return rc;
	if(res.disabled_now && (rc = room_event_all(c, "room.disabled", room, false, NULL))) return rc;

	c->result = json_object();
	if(!c->result || set(c->result, "room", json_string(room)) || set(c->result, "left", json_true())){
		return OP_NOMEM;
	}
	if(set(c->result, "room_disabled", json_boolean(res.disabled_now))) return OP_NOMEM;
	return txn_commit(c);
}

int set_enabled(struct call *c, bool enable)
{
	const char *room;
	struct room_access ra;
	mqc_rooms_res res;
	mqc_rooms_rc rr;
	int rc = arg_name(c, "room", true, &room);
	if(rc) return rc;
	if((rc = txn_begin(c))) return rc;
	if((rc = room_access(c, room, &ra))) return rc;
	if(strcmp(ra.created_by, c->user) != 0){
		return fail(c, "forbidden", "only the room's owner (%s) may %s it", ra.created_by, enable ? "enable" : "disable");
	}
	rr = mqc_room_set_enabled(c->r->db, room, enable, &res);
	if(rr == MQC_ROOMS_TOO_FEW) return fail(c, "conflict", "room %s has fewer than two participants", room);
	if(rr != MQC_ROOMS_OK) return rooms_fail(c, rr, room, &res, enable ? "enabling the room" : "disabling the room");
	if(res.changed){
		if((rc = room_control(c, room))) return rc;
		if((rc = room_event_all(c, enable ? "room.enabled" : "room.disabled", room, false, NULL))) return rc;
	}
	if((rc = room_object(c, room, c->user, &c->result))) return rc;
	if(set(c->result, "changed", json_boolean(res.changed))) return OP_NOMEM;
	return txn_commit(c);
}

int op_room_disable(struct call *c) { return set_enabled(c, false); }
int op_room_enable(struct call *c) { return set_enabled(c, true); }

