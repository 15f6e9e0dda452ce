/*
 * rooms.c: the room rules (rooms.h), the database part the request API and mqchat-admin
 * share. The statements are schema/<engine>/q_rooms.sql; everything runs inside the
 * caller's write transaction.
 */
#include <stdio.h>
#include <string.h>

#include "rooms.h"

/* The room as rooms_lock read it. */
struct room_row {
	bool direct, enabled;
	char owner[MQC_NAME_MAX + 1];
	int64_t last_msg_id;
};

static void copy_name(char out[MQC_NAME_MAX + 1], const char *s)
{
	snprintf(out, MQC_NAME_MAX + 1, "%s", s ? s : "");
}

/* Steps s to its end: 0, or -1 (the connection's error). Resets s either way. */
static int run_done(mqc_stmt *s)
{
	int rc = mqc_step(s);

	mqc_reset(s);
	return rc == MQC_DONE ? 0 : -1;
}

/* A query of one integer: 1 (row, its first column into *v), 0 (no row), -1 (error). */
static int query_int(mqc_stmt *s, int64_t *v)
{
	int rc = mqc_step(s);

	if(rc == MQC_ROW && v) *v = mqc_col_int64(s, 0);
	mqc_reset(s);
	if(rc == MQC_ROW) return 1;
	return rc == MQC_DONE ? 0 : -1;
}

/* PostgreSQL: waits for any other change of participants, rooms or users to end (rooms.h;
 * SQLite: nothing, BEGIN IMMEDIATE did it). 0, or -1. */
static int serialize(mqc_db *db)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ROOMS_SERIALIZE);
	int rc;

	if(s == NULL) return -1;
	while((rc = mqc_step(s)) == MQC_ROW){}
	mqc_reset(s);
	return rc == MQC_DONE ? 0 : -1;
}

/* Reads (and with PostgreSQL locks) the room: 1 found, 0 no such room, -1 error. The
 * room's state goes into res as well. */
static int room_lock(mqc_db *db, const char *room, struct room_row *r, mqc_rooms_res *res)
{
	mqc_stmt *s;
	int rc;

	if(serialize(db)) return -1;
	if((s = mqc_q(db, MQC_Q_ROOMS_LOCK)) == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	rc = mqc_step(s);
	if(rc == MQC_ROW){
		const char *kind = mqc_col_text(s, 0);
		r->direct = kind && strcmp(kind, "direct") == 0;
		copy_name(r->owner, mqc_col_text(s, 1));
		r->enabled = mqc_col_int64(s, 2) != 0;
		r->last_msg_id = mqc_col_int64(s, 3);
		res->direct = r->direct;
		res->enabled = r->enabled;
		memcpy(res->owner, r->owner, sizeof(res->owner));
	}
	mqc_reset(s);
	if(rc == MQC_ROW) return 1;
	return rc == MQC_DONE ? 0 : -1;
}

/* A user that may join a room: MQC_ROOMS_OK, NO_USER, USER_DISABLED (res->user) or DB. */
static mqc_rooms_rc user_joinable(mqc_db *db, const char *user, mqc_rooms_res *res)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ROOMS_USER);
	int64_t disabled = 0;
	int found;

	if(s == NULL) return MQC_ROOMS_DB;
	mqc_bind_text(s, 1, user, -1);
	found = query_int(s, &disabled);
	if(found < 0) return MQC_ROOMS_DB;
	if(found == 0 || disabled){
		res->user = user;
		return found == 0 ? MQC_ROOMS_NO_USER : MQC_ROOMS_USER_DISABLED;
	}
	return MQC_ROOMS_OK;
}

/* 1 participant, 0 not, -1 error. */
static int is_participant(mqc_db *db, const char *room, const char *user)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ROOMS_IS_PARTICIPANT);

	if(s == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	mqc_bind_text(s, 2, user, -1);
	return query_int(s, NULL);
}

static int participant_count(mqc_db *db, const char *room, int64_t *n)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ROOMS_COUNT);

	*n = 0;
	if(s == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	return query_int(s, n) < 0 ? -1 : 0;
}

static int part_insert(mqc_db *db, const char *room, const char *user, int64_t now)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ROOMS_PART_INSERT);

	if(s == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	mqc_bind_text(s, 2, user, -1);
	mqc_bind_int64(s, 3, now);
	return run_done(s);
}

static int part_delete(mqc_db *db, const char *room, const char *user)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ROOMS_PART_DELETE);

	if(s == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	mqc_bind_text(s, 2, user, -1);
	return run_done(s);
}

/* After user left or was removed: if it owned the room and anyone is left, the
 * longest-standing participant owns it now. */
static int hand_on(mqc_db *db, const char *room, const char *user, int64_t left, mqc_rooms_res *res)
{
	char owner[MQC_NAME_MAX + 1];
	mqc_stmt *s;
	int rc;

	if(left == 0 || strcmp(res->owner, user) != 0) return 0;
	if((s = mqc_q(db, MQC_Q_ROOMS_NEXT_OWNER)) == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	rc = mqc_step(s);
	if(rc == MQC_ROW) copy_name(owner, mqc_col_text(s, 0));
	mqc_reset(s);
	if(rc != MQC_ROW) return -1; /* left > 0: there is one */
	if((s = mqc_q(db, MQC_Q_ROOMS_SET_OWNER)) == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	mqc_bind_text(s, 2, owner, -1);
	if(run_done(s)) return -1;
	memcpy(res->owner, owner, sizeof(res->owner));
	res->owner_changed = true;
	return 0;
}

static int set_enabled(mqc_db *db, const char *room, bool enabled)
{
	mqc_stmt *s = mqc_q(db, MQC_Q_ROOMS_SET_ENABLED);

	if(s == NULL) return -1;
	mqc_bind_text(s, 1, room, -1);
	mqc_bind_int64(s, 2, enabled ? 1 : 0);
	return run_done(s);
}

mqc_rooms_rc mqc_room_create(mqc_db *db, const char *const *users, size_t n, const char *owner,
		const char *name, int64_t now, mqc_rooms_res *res)
{
	char id[23], key[2 * MQC_NAME_MAX + 2];
	bool direct = n == 2, owner_in = false;
	mqc_stmt *s;
	mqc_rooms_rc rc;
	size_t i, j;

	memset(res, 0, sizeof(*res));
	if(users == NULL || n < 2 || owner == NULL) return MQC_ROOMS_INVALID;
	for(i = 0; i < n; i++){
		if(users[i] == NULL || !mqc_name_valid(users[i], strlen(users[i]))) return MQC_ROOMS_INVALID;
		for(j = 0; j < i; j++){
			if(strcmp(users[i], users[j]) == 0) return MQC_ROOMS_INVALID;
		}
		if(strcmp(users[i], owner) == 0) owner_in = true;
	}
	if(!owner_in || (direct && name)) return MQC_ROOMS_INVALID;
	if(direct && mqc_direct_key(users[0], users[1], key, sizeof(key))) return MQC_ROOMS_INVALID;

	if(serialize(db)) return MQC_ROOMS_DB;
	for(i = 0; i < n; i++){
		if((rc = user_joinable(db, users[i], res)) != MQC_ROOMS_OK) return rc;
	}
	if(mqc_room_id_new(id)) return MQC_ROOMS_NO_RANDOM;
	if((s = mqc_q(db, MQC_Q_ROOMS_INSERT)) == NULL) return MQC_ROOMS_DB;
	mqc_bind_text(s, 1, id, -1);
	mqc_bind_text(s, 2, direct ? "direct" : "group", -1);
	mqc_bind_text(s, 3, name, -1);
	mqc_bind_text(s, 4, owner, -1);
	mqc_bind_int64(s, 5, now);
	mqc_bind_text(s, 6, direct ? key : NULL, -1);
	if(run_done(s)) return MQC_ROOMS_DB;
	res->direct = direct;
	if(mqc_db_changes(db) == 0){
		/* Only a direct key conflicts: the pair has its room. */
		int found;
		if(!direct || (s = mqc_q(db, MQC_Q_ROOMS_DIRECT_GET)) == NULL) return MQC_ROOMS_DB;
		mqc_bind_text(s, 1, key, -1);
		found = mqc_step(s);
		if(found == MQC_ROW){
			copy_name(res->room, mqc_col_text(s, 0));
			copy_name(res->owner, mqc_col_text(s, 1));
			res->enabled = mqc_col_int64(s, 2) != 0;
		}
		mqc_reset(s);
		if(found != MQC_ROW) return MQC_ROOMS_DB;
		res->participants = 2;
		return MQC_ROOMS_OK;
	}
	copy_name(res->room, id);
	copy_name(res->owner, owner);
	res->enabled = true;
	res->created = res->changed = true;
	for(i = 0; i < n; i++){
		if(part_insert(db, id, users[i], now)) return MQC_ROOMS_DB;
	}
	res->participants = (int64_t)n;
	return MQC_ROOMS_OK;
}

/* The checks every membership change starts with: the room exists, is a group. */
static mqc_rooms_rc group_of(mqc_db *db, const char *room, struct room_row *r, mqc_rooms_res *res)
{
	int found;

	memset(res, 0, sizeof(*res));
	if(room == NULL) return MQC_ROOMS_INVALID;
	found = room_lock(db, room, r, res);
	if(found < 0) return MQC_ROOMS_DB;
	if(found == 0) return MQC_ROOMS_NO_ROOM;
	if(r->direct) return MQC_ROOMS_DIRECT;
	return MQC_ROOMS_OK;
}

mqc_rooms_rc mqc_room_member_add(mqc_db *db, const char *room, const char *user, int64_t now,
		int64_t max, mqc_rooms_res *res)
{
	struct room_row r;
	mqc_rooms_rc rc;
	mqc_stmt *s;
	int yes;

	if((rc = group_of(db, room, &r, res)) != MQC_ROOMS_OK) return rc;
	if(user == NULL) return MQC_ROOMS_INVALID;
	if(participant_count(db, room, &res->participants)) return MQC_ROOMS_DB;
	if((yes = is_participant(db, room, user)) < 0) return MQC_ROOMS_DB;
	if(yes) return MQC_ROOMS_PARTICIPANT;
	if((rc = user_joinable(db, user, res)) != MQC_ROOMS_OK) return rc;
	if(max > 0 && res->participants >= max) return MQC_ROOMS_FULL;
	if(part_insert(db, room, user, now)) return MQC_ROOMS_DB;
	/* What came before it joined is read (the room's row is ours: nothing newer yet). */
	if((s = mqc_q(db, MQC_Q_MARKER_RAISE)) == NULL) return MQC_ROOMS_DB;
	mqc_bind_text(s, 1, user, -1);
	mqc_bind_text(s, 2, room, -1);
	mqc_bind_int64(s, 3, r.last_msg_id);
	if(run_done(s)) return MQC_ROOMS_DB;
	res->participants++;
	res->changed = true;
	return MQC_ROOMS_OK;
}

/* Whether user is a participant of the locked room: OK (yes), NOT_PARTICIPANT (a user
 * that is not), NO_USER, DB. */
static mqc_rooms_rc participant_of(mqc_db *db, const char *room, const char *user, mqc_rooms_res *res)
{
	int64_t disabled;
	mqc_stmt *s;
	int yes, found;

	if((yes = is_participant(db, room, user)) < 0) return MQC_ROOMS_DB;
	if(yes) return MQC_ROOMS_OK;
	/* Participants are users (a foreign key): only now tell the two apart. */
	if((s = mqc_q(db, MQC_Q_ROOMS_USER)) == NULL) return MQC_ROOMS_DB;
	mqc_bind_text(s, 1, user, -1);
	if((found = query_int(s, &disabled)) < 0) return MQC_ROOMS_DB;
	if(found) return MQC_ROOMS_NOT_PARTICIPANT;
	res->user = user;
	return MQC_ROOMS_NO_USER;
}

mqc_rooms_rc mqc_room_member_remove(mqc_db *db, const char *room, const char *user, mqc_rooms_res *res)
{
	struct room_row r;
	mqc_rooms_rc rc;

	if((rc = group_of(db, room, &r, res)) != MQC_ROOMS_OK) return rc;
	if(user == NULL) return MQC_ROOMS_INVALID;
	if((rc = participant_of(db, room, user, res)) != MQC_ROOMS_OK) return rc;
	if(participant_count(db, room, &res->participants)) return MQC_ROOMS_DB;
	if(res->participants - 1 < 2){
		res->participants--;
		return MQC_ROOMS_TOO_FEW;
	}
	if(part_delete(db, room, user)) return MQC_ROOMS_DB;
	res->participants--;
	res->changed = true;
	if(hand_on(db, room, user, res->participants, res)) return MQC_ROOMS_DB;
	return MQC_ROOMS_OK;
}

mqc_rooms_rc mqc_room_leave(mqc_db *db, const char *room, const char *user, mqc_rooms_res *res)
{
	struct room_row r;
	mqc_rooms_rc rc;
	int yes;

	if((rc = group_of(db, room, &r, res)) != MQC_ROOMS_OK) return rc;
	if(user == NULL) return MQC_ROOMS_INVALID;
	if((yes = is_participant(db, room, user)) < 0) return MQC_ROOMS_DB;
	if(!yes) return MQC_ROOMS_NOT_PARTICIPANT;
	if(part_delete(db, room, user)) return MQC_ROOMS_DB;
	res->changed = true;
	if(participant_count(db, room, &res->participants)) return MQC_ROOMS_DB;
	if(hand_on(db, room, user, res->participants, res)) return MQC_ROOMS_DB;
	if(res->participants < 2 && r.enabled){
		if(set_enabled(db, room, false)) return MQC_ROOMS_DB;
		res->enabled = false;
		res->disabled_now = true;
	}
	return MQC_ROOMS_OK;
}

mqc_rooms_rc mqc_room_set_enabled(mqc_db *db, const char *room, bool enabled, mqc_rooms_res *res)
{
	struct room_row r;
	int found;

	memset(res, 0, sizeof(*res));
	if(room == NULL) return MQC_ROOMS_INVALID;
	found = room_lock(db, room, &r, res);
	if(found < 0) return MQC_ROOMS_DB;
	if(found == 0) return MQC_ROOMS_NO_ROOM;
	if(participant_count(db, room, &res->participants)) return MQC_ROOMS_DB;
	if(r.enabled == enabled) return MQC_ROOMS_OK;
	if(enabled && res->participants < 2) return MQC_ROOMS_TOO_FEW;
	if(set_enabled(db, room, enabled)) return MQC_ROOMS_DB;
	res->enabled = enabled;
	res->changed = true;
	return MQC_ROOMS_OK;
}

const char *mqc_rooms_rc_str(mqc_rooms_rc rc)
{
	switch(rc){
	case MQC_ROOMS_OK: return "ok";
	case MQC_ROOMS_DB: return "database error";
	case MQC_ROOMS_INVALID: return "invalid call";
	case MQC_ROOMS_NO_RANDOM: return "no randomness for a room id";
	case MQC_ROOMS_NO_USER: return "no such user";
	case MQC_ROOMS_USER_DISABLED: return "user disabled";
	case MQC_ROOMS_NO_ROOM: return "no such room";
	case MQC_ROOMS_DIRECT: return "a direct room (its participants never change)";
	case MQC_ROOMS_PARTICIPANT: return "already a participant";
	case MQC_ROOMS_NOT_PARTICIPANT: return "not a participant";
	case MQC_ROOMS_TOO_FEW: return "fewer than two participants";
	case MQC_ROOMS_FULL: return "the room is full";
	}
	return "unknown outcome";
}
