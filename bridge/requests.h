/*
 * The bridge's request API (DESIGN.md "Requests", docs/protocol.md): one JSON request from a
 * user in, one JSON answer out, plus what the bridge must publish around that answer.
 *
 * Contract with the caller (bridge core):
 *   - single-threaded; the caller owns db, which stays open for the life of the struct;
 *   - requests__handle must be called with no transaction open on db: write ops run in
 *     their own write transaction (begin_write ... commit; see requests__set_before);
 *   - publish order: every controls[] entry to $CONTROL/mqchat/v1 (QoS 1) first, then the
 *     answer and the events (each to <prefix>/users/{user}/events). Controls describe the
 *     committed state, so the plugin knows a membership change before anyone else does.
 */
#ifndef MQCHAT_BRIDGE_REQUESTS_H
#define MQCHAT_BRIDGE_REQUESTS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "db.h"
#include "mqchat_store.h"

/* Limits (docs/protocol.md "Limits"). A group room's name: MQC_ROOM_NAME_MAX and
 * mqc_room_name_check in mqchat_store.h, the rule mqchat-admin applies too. */
#define REQ_MAX_PAYLOAD MQC_MAX_REQUEST /* bytes of one request; more is too_large */
#define REQ_MAX_ROOM_MEMBERS 1000  /* participants of one room */
#define REQ_MAX_CHANGE 100         /* users one room.create or room.members.add names (its cost) */
#define REQ_MAX_REQ_ID 256         /* bytes of a string req_id */
#define REQ_PAGE_DEFAULT 50        /* history and rooms.list page size */
#define REQ_PAGE_MAX 100
#define REQ_MAX_TOKENS 100         /* device tokens of one user */
#define REQ_TOKEN_MAX_EXPIRES_S (10LL * 366 * 24 * 3600) /* token.create expires_in: 60 s .. ~10 years */

struct requests;

/* The ops of docs/protocol.md, in a fixed order (for per-op statistics). */
#define REQ_OPS 18
const char *requests__op_name(int index);

/* Prepares every statement on db (either engine; db.h). prefix (the topic prefix) is not
 * needed: answers and events name rooms and users, the caller builds topics. NULL on
 * failure (logged, with the statement that failed). */
struct requests *requests__new(mqc_db *db, const char *prefix);
void requests__free(struct requests *r);

struct req_out {
	json_t *response; /* the answer to publish (always set on return 0) */
	json_t *controls; /* array of objects to publish to $CONTROL/mqchat/v1 before the answer (may be NULL) */
	json_t *events;   /* array of {"user":u,"event":{...}} to publish to <prefix>/users/{u}/events (may be NULL) */
	const char *op;   /* the op it ran (a static string), NULL if the request named none we know */
	char *res;        /* the request's "res" argument (answer on <prefix>/users/{user}/res/<res>), or NULL; free() it */
	int op_index;     /* its index in 0..REQ_OPS-1 (requests__op_name), -1 with op NULL */
};

/* What a request is about to do, for the caller's consistency rule (docs/protocol.md
 * "Consistency"): the caller commits what must be committed first. */
enum req_sees {
	REQ_SEES_ROOM,     /* read one room (room.get, history, count) */
	REQ_SEES_MY_ROOMS, /* read every room of the user (rooms.list) */
	REQ_WRITES,        /* begin a write transaction (every writing op) */
	REQ_NEEDS_MESSAGE, /* a recent message the op names is not stored yet (read upto):
	                    * wait for it, or (true) refuse the request */
};
/* Called once per request that gets that far: after its arguments and the user's access
 * are checked, before it reads (room: the checked room id) or begins its transaction
 * (room NULL). Requests refused earlier, and ops that read no messages (contacts.list,
 * room.direct), never call it. Returns false when the request must wait: requests__handle
 * then returns REQ_DEFERRED having changed nothing, and the caller runs it again later. */
typedef bool requests_before_fn(void *arg, const char *user, enum req_sees sees, const char *room);
void requests__set_before(struct requests *r, requests_before_fn *fn, void *arg);

#define REQ_DEFERRED 1
/* Handles one request from `user` (taken from the topic, already validated). Returns 0 and
 * fills *out (caller json_decref()s each non-NULL member), REQ_DEFERRED when the before
 * hook said wait (nothing changed, *out all NULL), or -1 only when out of memory; then
 * *out is all NULL. Hazard: if memory ran out after the COMMIT, the change stands
 * without its controls, and the plugin learns it only at its next reload (acl_version). */
int requests__handle(struct requests *r, const char *user, const void *payload, size_t len, struct req_out *out);

/* The next request comes from a session that logged in with a device token (the plugin's
 * "mqchat-login"): token.create is refused to it. */
void requests__set_token_login(struct requests *r, bool token);

/* An error answer for a request that is refused before it runs (its req_id echoed if the
 * payload has one). NULL only when out of memory. */
json_t *requests__refusal(const void *payload, size_t len, const char *code, const char *msg);

/* A device token's last use, from the plugin ($CONTROL/mqchat/v1/used): queued, and
 * written by requests__flush_used in one transaction (when `now`, or a second after the
 * first queued). 0, or -1 for a malformed report. Request thread only. */
int requests__token_used(struct requests *r, const void *payload, size_t len);
void requests__flush_used(struct requests *r, bool now);

#endif
