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
#include <mqtt_protocol.h>

#include "mqchat_store.h"
#include "topic.h"
#include "strmap.h"

#define MQCHAT_CONTROL_TOPIC "$CONTROL/mqchat/v1"
/* Below the control topic, published by the plugin to one bridge connection only:
 * .../store (the hello answer), .../store/<seq> (messages to store), .../req/<user> (requests). */
#define MQCHAT_STORE_TOPIC MQCHAT_CONTROL_TOPIC "/store"
#define MQCHAT_REQ_TOPIC MQCHAT_CONTROL_TOPIC "/req"
/* A device token's last use, to the bridge's request connection (token.c). */
#define MQCHAT_USED_TOPIC MQCHAT_CONTROL_TOPIC "/used"
/* The "try again later" answer to a PUBLISH: the broker closes the connection without
 * acknowledging it (MQTT 5: DISCONNECT 0x80), and the client sends it again after
 * reconnecting. Mosquitto 2.0 gives a plugin no way to answer PUBACK 0x97 (handle_publish.c
 * maps only ACL_DENIED to a reason code; any other result closes the connection). */
#define MQCHAT_RETRY_LATER MOSQ_ERR_UNKNOWN

struct mqchat;

/* A failure that may repeat every second (a full disk): logged once per LOG_REPEAT_MS
 * with how often it happened meanwhile (plugin__log_repeated). One per call site; used
 * by one thread. */
#define LOG_REPEAT_MS 10000
struct log_repeat {
	int64_t last_ms;     /* when it was last logged, 0: never */
	unsigned suppressed; /* times since, not logged */
};

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
	uint64_t last_seq; /* feed seq of its newest stamped message (broker thread; kept across swaps
	                    * while unconfirmed: plugin.c hot rooms) */
	bool enabled;
	bool members_heap; /* members came from a control message (malloc), free it on replace */
};

/* One consistent picture of users, rooms and participants. Built by the reload thread,
 * then owned and read (and patched by control messages) by the broker thread alone. */
/* A device token (token.c): the hash of its secret, whose it is, until when. */
struct token_idref {
	char *id;                  /* first member: the key of cache.tokens_by_id */
	struct cache_token *t;
};
struct cache_token {
	char *hash;                /* first member: the key of cache.tokens (hex SHA-256) */
	struct token_idref byid;
	struct cache_user *user;
	int64_t expires_at;        /* ms since the epoch; 0: never */
	int64_t reported_ms;       /* its last use told to the bridge (broker thread) */
	bool heap;                 /* from a control message (malloc'd), not the load's arena */
};

struct cache {
	struct arena arena;   /* users, rooms, names, hashes, member arrays of the load */
	struct strmap users;  /* name -> struct cache_user */
	struct strmap rooms;  /* id -> struct cache_room */
	struct strmap tokens;       /* hex SHA-256 -> struct cache_token */
	struct strmap tokens_by_id; /* id -> struct token_idref (in its cache_token) */
	struct cache_user **users_by_idx;
	uint32_t nusers, users_cap;
	int64_t acl_version;  /* meta.acl_version this snapshot was read at */
	uint64_t ctl_seq;     /* control-message sequence number when the read began */
	uint64_t max_msg_id;  /* max(messages.id) at read time (the id floor at start) */
};

/* Reads a snapshot in one transaction (reload thread). NULL with reason on failure;
 * mqc_db_fault_last(db) then tells a lost connection (PostgreSQL) from the rest. */
struct cache *cache__load(mqc_db *db, char *reason, size_t reasonlen);
/* Zeroed memory, a string copy, in c's arena (freed with c). NULL out of memory. */
void *cache__arena_alloc(struct cache *c, size_t n);
char *cache__arena_strdup(struct cache *c, const char *s);
void cache__free(struct cache *c);
struct cache_user *cache__user(const struct cache *c, const char *name, size_t len);
struct cache_room *cache__room(const struct cache *c, const char *id, size_t len);
bool cache__is_member(const struct cache_room *room, const struct cache_user *u);

/* ------------------------------------------------------------------ token.c */

/* Adds a token to c (heap: copied to malloc'd memory, else into the arena). Replaces one
 * with the same id. 0, or -1 out of memory. */
int cache__token_add(struct cache *c, const char *user, const char *id, const char *hash, int64_t expires_at, bool heap);
struct cache_token *cache__token(const struct cache *c, const char *hash);
/* The forms a token's hash (64 lowercase hex digits) and id ("tk" + 16 hex) must have. */
bool cache__token_hash_valid(const char *h);
bool cache__token_id_valid(const char *id);
struct cache_token *cache__token_by_id(const struct cache *c, const char *id);
/* Removes token id from c. true if it was there. */
bool cache__token_del(struct cache *c, const char *id);
void cache__tokens_free(struct cache *c);

/* A token change from a control message, kept for replay onto a snapshot being read. */
struct token_update {
	bool revoke;
	char *user, *id, *hash;
	int64_t expires_at;
	int64_t acl_to;       /* meta.acl_version after the change (0: unknown): a snapshot read at or
	                       * after it already reflects it, and whatever came later */
};
struct token_log {
	struct token_update *items;
	size_t len, cap;
};

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

enum { CLIENTID_OWNED = 0, CLIENTID_PREFIX = 1, CLIENTID_ANY = 2 };

/* clientid_policy owned: who holds each client id outside the users' own namespaces
 * ("<user>", "<user>:..."), for this broker run, so that no other user can take it over
 * (auth.c). A FIFO of at most CLIENTID_OWNERS_MAX; a connected client is also in conns. */
struct cid_owner {
	char *cid;               /* first member: the strmap key */
	char user[MQC_NAME_MAX + 1];
};
struct cid_owners {
	struct strmap map;
	struct cid_owner **ring;
	size_t cap, head, count;
};
void auth__owners_free(struct cid_owners *o);

/* ------------------------------------------------------------------ feed.c */

struct feed_entry {
	uint64_t id;
	uint32_t len;  /* payload bytes */
	uint32_t tlen; /* topic bytes */
	char *data;    /* topic, NUL, payload */
};

/* Stamped messages not yet confirmed stored by the bridge, in seq order (feed.c). Broker
 * thread only, except the [atomic] fields the reload thread reads. */
struct feed {
	struct feed_entry *ring;
	size_t cap, head, count;  /* ring of cap slots, count used starting at head */
	uint64_t epoch;           /* this run's: seqs are unique within it */
	uint64_t first_seq;       /* seq of the entry at head (the next one when empty) */
	size_t bytes;             /* what the entries take, counted against max_bytes */
	size_t max_messages, max_bytes;      /* past either, feed__admit refuses */
	size_t window_messages, window_bytes; /* most sent and unconfirmed at a time */

	char *store_cid;                     /* the bridge's store connection, NULL when gone */
	const struct mosquitto *store_client;
	uint64_t sent;                       /* highest seq sent on that connection */
	size_t cwnd;                         /* most in flight now, <= window_messages (feed.c) */
	struct log_repeat resend_log, behind_log;
	size_t inflight_bytes;               /* payload bytes of seq first_seq..sent */

	bool refusing;                       /* feed__admit is saying no */
	int64_t refusing_since;
	uint64_t refused_now, refused_total;

	/* The spool this start loaded, and the previous run's state if it did not stop cleanly. */
	uint64_t spool_epoch, spool_first, spool_upto;
	bool spool_pending;                  /* loaded messages not yet all confirmed */
	atomic_bool spool_consumed;          /* [atomic] the reload thread may delete the spool */
	uint64_t crashed_epoch, crashed_first, crashed_last;
	bool crashed_exact;                  /* crashed_* from the live record, not the last check */
	_Atomic uint64_t pub_first, pub_last; /* [atomic] first kept and last stamped seq */
	struct feed_live *live;              /* <spool>.live, mapped: NULL if it could not be */
};

/* <spool>.live: this run's epoch, last stamped and first kept seq, in a shared file mapping
 * the broker thread stores into (no system call, no disk wait: the kernel writes the page
 * back). A broker process that dies (SIGKILL, a crash, the OOM killer) leaves it exact in
 * the page cache, so the next start knows precisely what it lost; only a crash of the
 * machine itself falls back to the reload thread's <spool>.state of the last second. */
struct feed_live {
	uint64_t magic, epoch;
	uint64_t last, first; /* stored with __atomic_store_n: whole 8-byte words */
};
/* Reads the record a previous run left at path. 0 if there is a valid one. */
int feed__live_read(const char *path, uint64_t *epoch, uint64_t *last, uint64_t *first);
/* Maps path for this run (created or overwritten) and writes the current state into it. */
int feed__live_open(struct feed *f, const char *path);
void feed__live_close(struct feed *f);

int feed__init(struct feed *f);
/* Whether a message of len bytes may be accepted now (logs when it starts and stops saying no). */
bool feed__admit(struct feed *f, size_t len);
/* Keeps a copy of a stamped message and sends it to the bridge if the window allows.
 * 0 and *seq, or -1 when out of memory (nothing kept). */
int feed__add(struct feed *f, uint64_t id, const char *topic, const void *payload, uint32_t len, uint64_t *seq);
void feed__hello(struct feed *f, const struct mosquitto *client, uint64_t epoch, uint64_t seq);
void feed__stored(struct feed *f, uint64_t epoch, uint64_t seq);
void feed__resend(struct feed *f, uint64_t epoch, uint64_t from);
void feed__client_gone(struct feed *f, const struct mosquitto *client);
void feed__free(struct feed *f);
/* Broker stop / start (the broker thread may use the disk then). load: the number of
 * messages loaded (0: no spool), or -1 with reason (nothing loaded). */
int feed__spool_save(const struct feed *f, const char *path, char *reason, size_t reasonlen);
int feed__spool_load(struct feed *f, const char *path, char *reason, size_t reasonlen);
/* The reload thread's record of what a crash would lose, and its reading at start. */
int feed__state_write(const char *path, uint64_t epoch, uint64_t last, uint64_t first);
int feed__state_read(const char *path, uint64_t *epoch, uint64_t *last, uint64_t *first);

/* ------------------------------------------------------------------ qos2.c */

/* QoS 2 sends stamped and not yet released by the broker, per client id (qos2.c). */
struct qos2_entry;
struct qos2 {
	struct strmap clients;        /* client id -> struct qos2_client */
	struct strmap entries_by_key; /* "<client id>\x01<content hash>" -> struct qos2_entry */
	struct strmap released;       /* "<content hash>" -> struct qos2_ref (the latest entry) */
	struct qos2_entry *oldest, *newest; /* every entry, by age */
	size_t entries;
	unsigned window_s;
	struct log_repeat full_log;
};
/* True if this QoS 2 send is a resend of one already stamped: do not stamp it again. */
bool qos2__is_resend(struct mqchat *st, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t len);
/* Remembers a QoS 2 send that was stamped and kept (only then: a resend of one that was
 * not must be stamped). */
void qos2__remember(struct mqchat *st, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t len);
/* The broker released a QoS 2 message (it reaches subscribers now): it cannot be resent. */
void qos2__released(struct mqchat *st, const char *topic, const void *payload, uint32_t len);
/* A client id connected (auth.c): what it sent before may be resent now, unless it started clean. */
void qos2__connected(struct mqchat *st, const char *cid, bool clean_start);
void qos2__free(struct qos2 *q);

/* ------------------------------------------------------------------ limits.c */

struct dedupe_entry;
struct dedupe {
	struct strmap map;          /* key -> struct dedupe_entry */
	struct dedupe_entry **ring; /* the same entries, oldest first */
	size_t cap, head, count;
	size_t max;                 /* dedupe_max; 0 switches deduplication off */
	unsigned window_s;
};

/* What the plugin keeps per user name (limits.c): the fair-share buckets, the seq of the
 * user's newest stamped message (for requests' read-your-writes marker) and how many
 * connections the user has open. Created on first use, kept for the plugin's life (one
 * per user, a few dozen bytes). */
struct user_state {
	char *name;           /* first member: the strmap key */
	double send_tokens;   /* messages (send_rate, send_burst) */
	double byte_tokens;   /* bytes of sends (send_bytes_rate, send_bytes_burst) */
	double req_tokens;    /* requests (request_rate, request_burst) */
	int64_t last_ms;      /* when the buckets were last filled */
	uint64_t last_seq;    /* feed seq of the newest message this user sent (this epoch) */
	unsigned conns;       /* connections open now (auth.c counts up, disconnect.c down) */
	int64_t over_since_ms; /* refusals of QoS 0 over a rate in the second from then */
	unsigned over_count;
	int64_t penalty_until_ms; /* flooded: its CONNECTs are refused until then (auth.c) */
	int64_t penalty_ms;       /* the last penalty, doubled when it floods again soon */
};

/* One open connection of a user, by client id (auth.c, disconnect.c). */
struct conn {
	char *cid;            /* first member: the strmap key */
	const struct mosquitto *client;
	struct user_state *user;
	char *token_id;       /* the device token it logged in with, or NULL */
	int64_t expires_ms;   /* its token or JWT expires then (ms since the epoch); 0: never */
};

/* How a connection logged in, for admitted() (auth.c). */
struct login {
	const char *token_id; /* a device token's id, or NULL */
	int64_t expires_ms;   /* when its credential expires; 0: never */
};

struct mqchat;
/* The id an earlier copy of this (sender, room, client_msg_id) was stamped with, or 0. */
uint64_t limits__dedupe_seen(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, int64_t now, uint64_t *digest);
void limits__dedupe_add(struct dedupe *d, const char *user, const char *room, size_t roomlen,
		const char *cmid, uint64_t id, uint64_t digest, int64_t now);
/* A 64-bit digest of a payload (FNV-1a): a resend carries the same bytes. */
uint64_t limits__digest(const void *data, size_t len);
void limits__dedupe_free(struct dedupe *d);

/* The user's state, created if missing; NULL only when out of memory. */
struct user_state *limits__user(struct mqchat *st, const char *user);
enum limit_verdict { LIMIT_OK = 0, LIMIT_SEND_RATE, LIMIT_BYTE_RATE, LIMIT_REQUEST_RATE };
/* Takes one send of len bytes from u's buckets, or says which bucket is empty. */
enum limit_verdict limits__send(struct mqchat *st, struct user_state *u, uint32_t len, int64_t now);
enum limit_verdict limits__request(struct mqchat *st, struct user_state *u, int64_t now);
/* Counts a QoS 0 publish dropped for being over a rate; true when the user keeps sending
 * far over it (LIMIT_FLOOD a second): the connection is then closed, or a flood would
 * still cost the broker a packet read and a check each. */
#define LIMIT_FLOOD 1000
bool limits__flooding(struct user_state *u, int64_t now);
/* After a flood: the user's CONNECTs are refused for a second, doubling (up to a minute)
 * when it floods again within a minute of the last penalty. */
void limits__penalize(struct user_state *u, int64_t now);
void limits__free(struct mqchat *st);

/* ------------------------------------------------------------------ the plugin */

struct options {
	char *db_path;             /* plugin_opt_db_path (or db): a SQLite path or a postgresql:// URI */
	char *service_user;
	char *service_password;
	char *prefix;              /* "chat" */
	char *state_dir;           /* where the plugin's own files go when their paths are not given */
	char *idlease_path;        /* "<state_dir>/mqchat.idlease", else (SQLite) "<db_path>.idlease" */
	mqc_msg_limits limits;
	unsigned reload_interval_ms;
	unsigned auth_hash_budget_ms;
	int clientid_policy;       /* CLIENTID_OWNED (default), CLIENTID_PREFIX or CLIENTID_ANY (auth.c) */
	char *spool_path;          /* "<state_dir>/mqchat.spool", else (SQLite) "<db_path>.spool" */
	size_t unconfirmed_max_messages, unconfirmed_max_bytes;
	size_t store_window_messages, store_window_bytes;
	unsigned send_rate;        /* messages per second per sender; 0: no limit */
	unsigned send_burst;
	unsigned send_bytes_rate;  /* bytes per second per sender; 0: no limit */
	unsigned send_bytes_burst;
	unsigned request_rate;     /* requests per second per user; 0: no limit */
	unsigned request_burst;
	unsigned max_connections_per_user; /* 0: no limit */
	unsigned max_subscriptions;        /* per client; 0: no limit */
	unsigned max_res_topic;            /* bytes after ".../res/" in a user's filter or response topic */
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
	struct user_state *user;
	struct cache_room *room;
	uint64_t resend_of;   /* client_msg_id seen before with these bytes: the id it was stamped with */
	uint64_t digest;      /* limits__digest of the payload, when it has a client_msg_id */
};

struct control_log {
	struct room_update *items;
	size_t len, cap;
};

struct mqchat {
	mosquitto_plugin_id_t *identifier;
	struct options opt;

	/* Topic prefixes, precomputed: "chat/rooms/", "chat/users/". */
	mqc_topics topics;   /* <prefix>/rooms/, <prefix>/users/ (store/topic.h) */
	size_t prefix_len;

	struct cache *cache;          /* the snapshot in use (broker thread) */
	struct control_log ctl_log;   /* room updates since the last swap, replayed onto the next */
	struct token_log tok_log;     /* token changes since the last swap, likewise */
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
	struct feed feed;
	struct qos2 qos2;
	struct dedupe dedupe;
	struct strmap users_state;    /* name -> struct user_state */
	struct strmap conns;          /* client id -> struct conn (users' open connections) */
	struct cache_room **hot;      /* rooms whose last_seq may be unconfirmed (message.c, the swap) */
	size_t nhot, hot_cap;
	char *req_cid;                /* the bridge's request connection (its hello), NULL before */
	const struct mosquitto *req_client;
	uint64_t requests_dropped;    /* requests with no request connection to take them */
	struct strmap auth;           /* name -> struct auth_entry */
	struct cid_owners owners;     /* client id -> its user (clientid_policy owned) */
	unsigned char auth_key[32];   /* HMAC key of the verified-credential cache */
	int64_t budget_tokens_us;     /* slow-hash time available now (auth.c); may be negative */
	int64_t budget_last_us;       /* when it was last refilled (CLOCK_MONOTONIC), 0: never */

	struct log_repeat flood_log;  /* acl.c over_rate */
	struct log_repeat publish_log; /* message.c */
	int64_t log_window_ms;        /* rate limit for lines about client mistakes */
	unsigned log_lines;
	unsigned log_suppressed;

	char **kicks;                 /* users to disconnect at the next tick (see tick.c) */
	size_t nkicks, kicks_cap;
	char **kick_cids;             /* client ids to disconnect at the next tick */
	size_t nkick_cids, kick_cids_cap;
	/* Connections whose credential was revoked or expired, waiting for their kick: acl.c
	 * refuses them everything meanwhile (and for good where the tick never fires). */
	const struct mosquitto **condemned;
	size_t ncondemned, condemned_cap;
	int64_t expiry_checked_ms;    /* tick.c: credentials' expiry checked then */
	struct jwt *jwt;              /* jwt.c: NULL when no jwt_* option is set */

	struct log_repeat lease_log, state_log, reload_log; /* [reload thread] */

	pthread_t reload_thread;       /* [reload thread] */
	atomic_bool stop;              /* [atomic] */
	bool thread_started;
	mqc_db *reload_db;             /* [reload thread] after init */
	char db_name[512];             /* the database for log lines (no password), set by reload__start */
};

/* Drops the message acl.c validated for MOSQ_EVT_MESSAGE (acl.c). */
void plugin__pending_clear(struct mqchat *st);
/* Records that room got message seq (message.c); the swap carries unconfirmed ones over. */
void plugin__room_stamped(struct mqchat *st, struct cache_room *room, uint64_t seq);
/* Frees every room update in the control log (plugin.c). */
void plugin__ctl_log_clear(struct mqchat *st);

/* Takes a waiting snapshot, if any, and replays the control log onto it. Called at the
 * top of every callback: one atomic load when there is nothing to do. */
void plugin__swap_if_ready(struct mqchat *st);

/* Logs a line unless it was logged less than LOG_REPEAT_MS ago; then the next one says
 * how many were not. */
void plugin__log_repeated(struct log_repeat *lr, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Logs a line about something a client did wrong, at most 20 per second. */
void plugin__log_client(struct mqchat *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

int acl__check(int event, void *event_data, void *userdata);
int disconnect__handle(int event, void *event_data, void *userdata);
int auth__basic(int event, void *event_data, void *userdata);
int message__handle(int event, void *event_data, void *userdata);
int control__handle(int event, void *event_data, void *userdata);
int tick__handle(int event, void *event_data, void *userdata);
/* Queues user for disconnection at the next tick. */
void tick__kick_later(struct mqchat *st, const char *user);
/* Queues one client id for disconnection at the next tick. */
void tick__kick_cid_later(struct mqchat *st, const char *cid);
/* Marks a connection as refused everything until it is gone (tick.c), and forgets it. */
void tick__condemn(struct mqchat *st, const struct mosquitto *client);
bool tick__condemned(const struct mqchat *st, const struct mosquitto *client);
void tick__forget(struct mqchat *st, const struct mosquitto *client);

/* token.c, broker thread: a control message {"op":"token",...} or {"op":"token.revoke",...}. */
void token__control(struct mqchat *st, json_t *j, bool revoke);
/* After a swap: connections whose token is not in the new snapshot are disconnected. */
void token__after_swap(struct mqchat *st);
/* Replays the token log onto a new snapshot, then clears it. */
void token__replay(struct mqchat *st, struct cache *next);
void token__log_clear(struct mqchat *st);
/* A token login: tells the bridge (at most once a minute per token) when it was used. */
void token__used(struct mqchat *st, struct cache_token *t);

/* jwt.c */
struct jwt;
/* Reads the jwt_* options; *out NULL when none is set. 0, or -1 (logged) on a bad option. */
int jwt__init(const struct mosquitto_opt *opts, int opt_count, struct jwt **out);
void jwt__free(struct jwt *j);
/* Verifies token for username: signature, alg, sub == user, exp/nbf (leeway), iss/aud.
 * 0 and *exp_ms (0: no exp), or -1 with a reason naming what failed. */
int jwt__verify(const struct jwt *j, const char *token, size_t len, const char *user, int64_t now_ms,
		int64_t *exp_ms, char *reason, size_t reasonlen);
void tick__free(struct mqchat *st);
void auth__free(struct mqchat *st);
void auth__forget(struct mqchat *st, const char *name);

int reload__start(struct mqchat *st, char *reason, size_t reasonlen);
void reload__stop(struct mqchat *st);
/* Writes the id lease file (reload thread, and once at start). */
int reload__write_lease(const struct mqchat *st, uint64_t lease);
uint64_t reload__read_lease(const struct mqchat *st);

#endif
