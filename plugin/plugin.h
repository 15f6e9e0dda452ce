/*
 * mqchat_plugin: the state every callback shares, and the functions the files share.
 *
 * Threads: everything here belongs to the broker's thread except the fields marked
 * [reload thread] / [atomic], which the reload thread (reload.c) also touches. The broker
 * thread never waits for the reload thread: it only does atomic loads and exchanges.
 */
#ifndef MQCHAT_PLUGIN_H
#define MQCHAT_PLUGIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "mqchat_store.h"
#include "strmap.h"

#define MQCHAT_CONTROL_TOPIC "$CONTROL/mqchat/v1"
#define MQCHAT_REPLAY_DONE_TOPIC "$CONTROL/mqchat/v1/replay"

/* ------------------------------------------------------------------ cache.c */

/* Snapshot memory: chunks from mmap, bump-allocated, returned to the OS whole when the
 * snapshot is freed (malloc would keep a freed snapshot's pages in its arenas). */
struct arena_chunk;
struct arena {
	struct arena_chunk *head;
};

struct cache_user {
	char *name;     /* first member: the strmap key */
	char *pwhash;   /* NULL for a user known only from a control message: cannot log in yet */
	uint32_t idx;   /* position in cache.users_by_idx; what room member arrays hold */
	bool disabled;
};

struct cache_room {
	char *id;          /* first member: the strmap key */
	uint32_t *members; /* user idx, sorted ascending; in the arena unless members_heap */
	uint32_t nmembers;
	int64_t version;   /* rooms.version: updates with a version <= this are stale */
	bool enabled;
	bool members_heap; /* members came from a control message (malloc), free it on replace */
};

/* One consistent picture of users, rooms and participants. Built by the reload thread,
 * then owned and read (and patched by control messages) by the broker thread alone. */
struct cache {
	struct arena arena;   /* users, rooms, names, hashes, member arrays of the load */
	struct strmap users;  /* name -> struct cache_user */
	struct strmap rooms;  /* id -> struct cache_room */
	struct cache_user **users_by_idx;
	uint32_t nusers, users_cap;
	int64_t acl_version;  /* meta.acl_version this snapshot was read at */
	uint64_t ctl_seq;     /* control-message sequence number when the read began */
	uint64_t max_msg_id;  /* max(messages.id) at read time (the id floor at start) */
};

struct cache *cache__load(sqlite3 *db, char *reason, size_t reasonlen);
void cache__free(struct cache *c);
struct cache_user *cache__user(const struct cache *c, const char *name, size_t len);
struct cache_room *cache__room(const struct cache *c, const char *id, size_t len);
bool cache__is_member(const struct cache_room *room, const struct cache_user *u);

/* A room's full state from a control message (or a snapshot). members: user names. */
struct room_update {
	char *room;
	char **members;
	uint32_t nmembers;
	int64_t version;
	bool enabled;
};
/* Applies u if it is newer than what c holds. 1 applied, 0 stale, -1 out of memory. */
int cache__apply(struct cache *c, const struct room_update *u);
void room_update__free(struct room_update *u);

/* ------------------------------------------------------------------ auth.c */

struct auth_entry; /* per-username verified-credential cache + failure backoff */

/* ------------------------------------------------------------------ replay.c */

struct replay_entry {
	uint64_t id;
	uint32_t len;
	char *topic;
	char *payload;
};

/* Stamped messages not yet confirmed stored by the bridge, in id order. */
struct replay {
	struct replay_entry *ring;
	size_t cap, head, count; /* ring of cap slots, count used starting at head */
	size_t bytes, max_bytes;
	uint64_t dropped;        /* copies dropped for space since start */
};

int replay__add(struct replay *r, uint64_t id, const char *topic, const char *payload, uint32_t len);
void replay__ack(struct replay *r, uint64_t upto);
/* Republishes every entry with id > after to client clientid; returns how many. */
size_t replay__send(struct replay *r, const char *clientid, uint64_t after);
void replay__free(struct replay *r);

/* ------------------------------------------------------------------ limits.c */

struct dedupe_entry;
struct dedupe {
	struct strmap map;          /* key -> struct dedupe_entry */
	struct dedupe_entry **ring; /* the same entries, oldest first */
	size_t cap, head, count;
	size_t max;                 /* dedupe_max; 0 switches deduplication off */
	unsigned window_s;
};

struct mqchat;
/* The id an earlier copy of this (sender, room, client_msg_id) was stamped with, or 0. */
uint64_t limits__dedupe_seen(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, int64_t now);
void limits__dedupe_add(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, uint64_t id, int64_t now);
void limits__dedupe_free(struct dedupe *d);
/* Takes a token from user's bucket; false when the user is over send_rate. */
bool limits__rate_allow(struct mqchat *st, const char *user, int64_t now);
void limits__rate_free(struct mqchat *st);

/* ------------------------------------------------------------------ the plugin */

struct options {
	char *db_path;
	char *service_user;
	char *service_password;
	char *prefix;              /* "chat" */
	char *idlease_path;        /* "<db_path>.idlease" */
	mqc_msg_limits limits;
	unsigned reload_interval_ms;
	unsigned auth_hash_budget_ms;
	bool clientid_prefix;      /* clientid_policy prefix (default) or any */
	size_t replay_max_bytes;
	unsigned send_rate;        /* messages per second per sender; 0: no limit */
	unsigned send_burst;
	unsigned dedupe_window_s;
	size_t dedupe_max;
};

/* The message validated by the ACL WRITE check, waiting for its MOSQ_EVT_MESSAGE. The
 * broker runs the two back to back for one PUBLISH on its one thread. */
struct pending_msg {
	const struct mosquitto *client;
	const void *payload;
	uint32_t payloadlen;
	json_t *msg;
};

struct control_log {
	struct room_update *items;
	size_t len, cap;
};

struct mqchat {
	mosquitto_plugin_id_t *identifier;
	struct options opt;

	/* Topic prefixes, precomputed: "chat/rooms/", "chat/users/". */
	char *rooms_prefix, *users_prefix;
	size_t prefix_len, rooms_prefix_len, users_prefix_len;

	struct cache *cache;          /* the snapshot in use (broker thread) */
	struct control_log ctl_log;   /* room updates since the last swap, replayed onto the next */
	atomic_uint_least64_t ctl_seq;          /* [atomic] control updates applied so far */
	_Atomic(struct cache *) next_cache;     /* [atomic] a new snapshot waiting to be swapped in */
	_Atomic(struct cache *) retired_cache;  /* [atomic] an old snapshot for the thread to free */
	atomic_int_least64_t known_acl_version; /* [atomic] acl_version the broker's state reflects */
	atomic_bool reading;                    /* [atomic] the reload thread is reading a snapshot */

	mqc_idgen ids;
	atomic_uint_least64_t last_id;  /* [atomic] last id handed out, for the lease */
	atomic_uint_least64_t lease_id; /* [atomic] ids below this are safe to use after a restart */
	bool lease_warned;

	struct pending_msg pending;
	struct replay replay;
	struct dedupe dedupe;
	struct strmap rates;          /* name -> struct rate_bucket */
	struct strmap auth;           /* name -> struct auth_entry */
	unsigned char auth_key[32];   /* HMAC key of the verified-credential cache */
	int64_t budget_tokens_us;     /* slow-hash time available now (auth.c); may be negative */
	int64_t budget_last_us;       /* when it was last refilled (CLOCK_MONOTONIC), 0: never */

	int64_t log_window_ms;        /* rate limit for lines about client mistakes */
	unsigned log_lines;
	unsigned log_suppressed;

	char **kicks;                 /* users to disconnect at the next tick (see tick.c) */
	size_t nkicks, kicks_cap;

	pthread_t reload_thread;       /* [reload thread] */
	atomic_bool stop;              /* [atomic] */
	bool thread_started;
	sqlite3 *reload_db;            /* [reload thread] after init */
};

/* Drops the message acl.c validated for MOSQ_EVT_MESSAGE (acl.c). */
void plugin__pending_clear(struct mqchat *st);
/* Frees every room update in the control log (plugin.c). */
void plugin__ctl_log_clear(struct mqchat *st);

/* Takes a waiting snapshot, if any, and replays the control log onto it. Called at the
 * top of every callback: one atomic load when there is nothing to do. */
void plugin__swap_if_ready(struct mqchat *st);

/* Logs a line about something a client did wrong, at most 20 per second. */
void plugin__log_client(struct mqchat *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

int acl__check(int event, void *event_data, void *userdata);
int auth__basic(int event, void *event_data, void *userdata);
int message__handle(int event, void *event_data, void *userdata);
int control__handle(int event, void *event_data, void *userdata);
int tick__handle(int event, void *event_data, void *userdata);
/* Queues user for disconnection at the next tick. */
void tick__kick_later(struct mqchat *st, const char *user);
void tick__free(struct mqchat *st);
void auth__free(struct mqchat *st);
void auth__forget(struct mqchat *st, const char *name);

int reload__start(struct mqchat *st, char *reason, size_t reasonlen);
void reload__stop(struct mqchat *st);
/* Writes the id lease file (reload thread, and once at start). */
int reload__write_lease(const struct mqchat *st, uint64_t lease);
uint64_t reload__read_lease(const struct mqchat *st);

/* Splits "<prefix>/rooms/{room}/{leaf}": room and leaf point into topic. */
bool topic__room(const struct mqchat *st, const char *topic, const char **room, size_t *roomlen,
		const char **leaf);
/* Splits "<prefix>/users/{user}/{rest}". */
bool topic__user(const struct mqchat *st, const char *topic, const char **user, size_t *userlen,
		const char **rest);

#endif
