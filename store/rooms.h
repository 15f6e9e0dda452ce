/*
 * rooms.h: the room rules, in one place for the request API (bridge/req_rooms.c) and
 * mqchat-admin (DESIGN.md "Rooms"; docs/protocol.md room.create, room.members.add/remove,
 * room.leave, room.disable/enable):
 *
 *   - a direct room is the pair's one room (rooms.direct_key, UNIQUE: mqc_direct_key);
 *     its participants never change;
 *   - every participant exists and is not disabled when it joins;
 *   - a new participant's read marker starts at the room's last message: what came before
 *     it is read;
 *   - a group keeps at least two participants (a removal that would leave fewer is
 *     refused; leaving is always allowed and disables the room instead);
 *   - when the owner (rooms.created_by) leaves or is removed, the longest-standing
 *     participant (joined_at, then user_id) becomes the owner;
 *   - a room is enabled only with at least two participants.
 *
 * Each function is the database part of one rule: it runs inside the caller's open write
 * transaction (MQC_Q_BEGIN_WRITE), never begins, commits or rolls back, and answers an
 * outcome. On anything but MQC_ROOMS_OK the caller rolls back: an outcome other than
 * MQC_ROOMS_DB comes before any write, but with PostgreSQL a failed statement (MQC_ROOMS_DB)
 * has aborted the whole transaction. What stays with the callers: who may do what (the
 * owner, a participant), argument limits, names' syntax, events, answers, messages.
 *
 * With PostgreSQL every function first locks the acl_version row (which the change bumps
 * anyway) and then the room's row (SELECT ... FOR UPDATE), so two changes to one room's
 * participants run one after the other and each counts the participants the other left,
 * and a transaction calling several rules, also for several rooms, takes its locks in the
 * schema triggers' order (SQLite has one writer at a time anyway).
 *
 * Nothing here logs; on MQC_ROOMS_DB, mqc_db_errmsg and mqc_db_fault_last say what failed.
 */
#ifndef MQCHAT_ROOMS_H
#define MQCHAT_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqchat_store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mqc_rooms_rc {
	MQC_ROOMS_OK = 0,
	MQC_ROOMS_DB,              /* a statement failed (mqc_db_errmsg, mqc_db_fault_last) */
	MQC_ROOMS_INVALID,         /* the call broke its preconditions (see each function) */
	MQC_ROOMS_NO_RANDOM,       /* create: no randomness for a room id */
	MQC_ROOMS_NO_USER,         /* res->user is not a user */
	MQC_ROOMS_USER_DISABLED,   /* res->user is disabled: it joins nothing */
	MQC_ROOMS_NO_ROOM,         /* no such room */
	MQC_ROOMS_DIRECT,          /* a direct room: its participants never change */
	MQC_ROOMS_PARTICIPANT,     /* add: already a participant (nothing changed) */
	MQC_ROOMS_NOT_PARTICIPANT, /* remove, leave: not a participant (nothing changed) */
	MQC_ROOMS_TOO_FEW,         /* remove: it would leave fewer than two participants;
	                            * enable: the room has fewer than two (nothing changed) */
	MQC_ROOMS_FULL,            /* add: the room already holds max participants */
} mqc_rooms_rc;

/* What a call did, filled as far as it got (zeroed first). */
typedef struct mqc_rooms_res {
	char room[MQC_NAME_MAX + 1];  /* create: the room's id, new or the pair's existing one */
	bool created;                 /* create: a new room (false: the pair's direct room existed) */
	bool changed;                 /* anything was written */
	bool direct;                  /* the room is a direct room */
	bool enabled;                 /* the room is enabled (after the call) */
	char owner[MQC_NAME_MAX + 1]; /* the room's owner (created_by) after the call */
	bool owner_changed;           /* the owner left or was removed: owner is the new one */
	bool disabled_now;            /* leave: fewer than two were left, the room was disabled */
	int64_t participants;         /* participants after the call; MQC_ROOMS_TOO_FEW (remove):
	                               * what the removal would have left */
	const char *user;             /* MQC_ROOMS_NO_USER / USER_DISABLED: the user (one of the
	                               * caller's pointers) */
} mqc_rooms_res;

/* Creates the room of users[0..n): n == 2 their direct room, n > 2 a group room named name
 * (NULL: no name; the callers check its text). owner is its created_by and one of users.
 * Preconditions (else MQC_ROOMS_INVALID, nothing read): n >= 2, the names valid and
 * distinct, owner among them, no name for a direct room. Every user is checked in order
 * (MQC_ROOMS_NO_USER, MQC_ROOMS_USER_DISABLED with res->user) before anything is written,
 * also when the pair's direct room exists: then res->room is that room, res->created false
 * and nothing is written (the UNIQUE direct_key decides, so two creates racing make one
 * room). A new room: every user a participant since now (ms), res->created and changed. */
mqc_rooms_rc mqc_room_create(mqc_db *db, const char *const *users, size_t n, const char *owner,
		const char *name, int64_t now, mqc_rooms_res *res);

/* Adds user to group room (since now, ms), its read marker at the room's last message
 * (raised, never lowered). Checked in this order: MQC_ROOMS_NO_ROOM, MQC_ROOMS_DIRECT,
 * MQC_ROOMS_PARTICIPANT, MQC_ROOMS_NO_USER, MQC_ROOMS_USER_DISABLED, MQC_ROOMS_FULL (max > 0
 * and the room holds max participants; max 0: no limit). */
mqc_rooms_rc mqc_room_member_add(mqc_db *db, const char *room, const char *user, int64_t now,
		int64_t max, mqc_rooms_res *res);

/* Removes user from group room. Checked in this order: MQC_ROOMS_NO_ROOM, MQC_ROOMS_DIRECT,
 * MQC_ROOMS_NO_USER / MQC_ROOMS_NOT_PARTICIPANT, MQC_ROOMS_TOO_FEW (res->participants: what
 * would be left; disable the room instead). A removed owner hands the room on
 * (res->owner_changed, res->owner). */
mqc_rooms_rc mqc_room_member_remove(mqc_db *db, const char *room, const char *user,
		mqc_rooms_res *res);

/* user leaves group room: always allowed for a participant (MQC_ROOMS_NO_ROOM,
 * MQC_ROOMS_DIRECT, MQC_ROOMS_NOT_PARTICIPANT). An owner leaving hands the room on to the
 * longest-standing participant left (if any); fewer than two left disables the room
 * (res->disabled_now, when it was enabled): nobody talks alone, the last one keeps the
 * history. */
mqc_rooms_rc mqc_room_leave(mqc_db *db, const char *room, const char *user, mqc_rooms_res *res);

/* Sets rooms.enabled (direct or group). MQC_ROOMS_NO_ROOM; enabling a room with fewer than
 * two participants: MQC_ROOMS_TOO_FEW. Already so: MQC_ROOMS_OK, res->changed false. */
mqc_rooms_rc mqc_room_set_enabled(mqc_db *db, const char *room, bool enabled, mqc_rooms_res *res);

/* The outcome's name, for logs ("no such room", ...). */
const char *mqc_rooms_rc_str(mqc_rooms_rc rc);

#ifdef __cplusplus
}
#endif

#endif
