/*
 * The shared store library: what the plugin, the bridge and mqchat-admin all need.
 *
 *   - the database, SQLite or PostgreSQL, its migrations and its statement table (db.h);
 *   - name validation (user ids, room ids) and room id generation;
 *   - free text: the rules for room names and display names, and making stored text safe
 *     to answer as JSON (text.c);
 *   - chat message validation and stamping (DESIGN.md "A message");
 *   - message id generation (unique, time-ordered, < 2^53);
 *   - password hashing (PBKDF2-HMAC-SHA512);
 *   - device tokens: their secrets and hashes (token.c).
 *
 * Nothing here logs: every failure is returned with a reason the caller can log with its
 * own context. Nothing here keeps global state.
 */
#ifndef MQCHAT_STORE_H
#define MQCHAT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include "db.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- names */

#define MQC_NAME_MAX 64

/* A user id or a room id: 1..64 characters of [A-Za-z0-9._-]. len is the length to check
 * (the string need not be NUL-terminated). */
bool mqc_name_valid(const char *s, size_t len);

/* Writes a new random room id ("r" + 21 base62 characters from the OS CSPRNG, 22 chars)
 * and a NUL into out (at least 23 bytes). Returns 0, or -1 if no randomness was available. */
int mqc_room_id_new(char out[static 23]);

/* The unique key of the direct room of a and b: "a:b" with a < b (strcmp order).
 * out must hold 2*MQC_NAME_MAX+2 bytes. Returns 0, or -1 if a name is invalid or a == b. */
int mqc_direct_key(const char *a, const char *b, char *out, size_t outlen);

/* ---------------------------------------------------------------- free text */

/* The limits of the free text users and rooms carry (docs/protocol.md "Limits"), the same
 * for the request API and mqchat-admin. */
#define MQC_ROOM_NAME_MAX 128    /* bytes of UTF-8 in a group room's name */
#define MQC_DISPLAY_NAME_MAX 128 /* bytes of UTF-8 in a user's display name */

/* Why a name was refused. The request API answers MQC_TEXT_TOO_LONG with too_large and
 * the others with invalid. */
typedef enum mqc_text_err {
	MQC_TEXT_OK = 0,
	MQC_TEXT_EMPTY,    /* no bytes */
	MQC_TEXT_BAD_UTF8, /* not UTF-8 as mqc_utf8_valid_len defines it (NUL aside) */
	MQC_TEXT_CONTROL,  /* an ASCII control character: 0x00..0x1F or 0x7F (NUL included) */
	MQC_TEXT_TOO_LONG, /* more bytes than the kind allows */
} mqc_text_err;

/* A group room's name / a user's display name: 1..MQC_ROOM_NAME_MAX (MQC_DISPLAY_NAME_MAX)
 * bytes of valid UTF-8 without ASCII control characters. len is the length to check (s
 * need not be NUL-terminated; a NUL within len is a control character). On refusal,
 * reason gets a phrase to put after the field's name, e.g. "not valid UTF-8 (a stray
 * continuation byte 0xe9 at offset 3)". The checks run in the order of the enum. */
mqc_text_err mqc_room_name_check(const char *s, size_t len, char *reason, size_t reasonlen);
mqc_text_err mqc_display_name_check(const char *s, size_t len, char *reason, size_t reasonlen);
/* A device token's name (MQC_TOKEN_NAME_MAX bytes), the same rules. */
mqc_text_err mqc_token_name_check(const char *s, size_t len, char *reason, size_t reasonlen);

/* The length of the longest prefix of s[0..len) that is valid UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF, no sequence cut short) without a NUL byte;
 * len when all of it is. Such text can be a JSON string as it is (json_stringn_nocheck). */
size_t mqc_utf8_valid_len(const char *s, size_t len);

/* A malloc'd, NUL-terminated copy of s[0..len) in which every byte that does not belong to
 * a valid sequence (see mqc_utf8_valid_len; NUL included) is replaced by U+FFFD (EF BF BD).
 * *outlen (may be NULL) gets its length. reason gets what was wrong first and how many
 * bytes were replaced, e.g. "not valid UTF-8 (a NUL byte at offset 2; 1 byte replaced)".
 * Returns NULL only when out of memory. Meant for the rare stored text that fails
 * mqc_utf8_valid_len: check first, copy only then. */
char *mqc_utf8_sanitize(const char *s, size_t len, size_t *outlen, char *reason, size_t reasonlen);

/* ---------------------------------------------------------------- ids */

/* Message ids: ((ms since MQC_ID_EPOCH_MS) << MQC_ID_SEQ_BITS) | sequence.
 * 41 bits of milliseconds last until 2093; ids stay below 2^53. */
#define MQC_ID_EPOCH_MS 1704067200000LL /* 2024-01-01T00:00:00Z */
#define MQC_ID_SEQ_BITS 12
#define MQC_ID_MAX ((1ULL << 53) - 1)

typedef struct mqc_idgen {
	uint64_t last; /* the last id handed out; 0 before the first */
} mqc_idgen;

/* Starts a generator that will never hand out an id <= floor. */
void mqc_idgen_init(mqc_idgen *g, uint64_t floor);

/* The next id for wall-clock time now_ms (ms since the Unix epoch): the larger of
 * last+1 and now's first id, so ids grow even if the clock steps back. */
uint64_t mqc_id_next(mqc_idgen *g, int64_t now_ms);

/* The first id of millisecond now_ms, and the millisecond an id was made in. */
uint64_t mqc_id_from_ms(int64_t now_ms);
int64_t mqc_id_to_ms(uint64_t id);

/* ---------------------------------------------------------------- messages */

typedef struct mqc_msg_limits {
	size_t max_body;    /* bytes of UTF-8 in "body"; default 16384 */
	size_t max_payload; /* bytes of the whole client payload; default 65536 */
} mqc_msg_limits;

#define MQC_MSG_DEFAULT_MAX_BODY 16384
#define MQC_MSG_DEFAULT_MAX_PAYLOAD 65536
/* Bytes of one request on <prefix>/users/{me}/req: the plugin refuses more (PUBACK 0x87)
 * before the bridge reads it, the bridge answers too_large (docs/protocol.md "Limits"). */
#define MQC_MAX_REQUEST 65536
/* Bytes of a topic below <prefix>/users/{me}/res/ that a user may subscribe to or name as
 * its response topic (the plugin's max_res_topic default; the bridge answers elsewhere). */
#define MQC_MAX_RES_TOPIC 128

/* Why a message was refused. */
typedef enum mqc_msg_err {
	MQC_MSG_OK = 0,
	MQC_MSG_TOO_LARGE,   /* payload or body over its limit */
	MQC_MSG_BAD_JSON,    /* not UTF-8 JSON, or not an object */
	MQC_MSG_BAD_TYPE,    /* type missing, not a string, or not one of the four */
	MQC_MSG_BAD_FIELD,   /* a field has the wrong JSON type, is empty, or is not allowed */
	MQC_MSG_MISSING,     /* a required field is missing */
	MQC_MSG_INTERNAL,    /* out of memory: not the client's fault */
} mqc_msg_err;

/* Validates a client payload for chat/rooms/{room}/send (DESIGN.md "A message").
 * On success returns MQC_MSG_OK and *out is a new object holding only the client's
 * fields (type, body, attachment, client_msg_id); id, room, from and ts in the input are
 * ignored (the stamp overwrites them); any other field is refused.
 * On failure *out is NULL and reason (if not NULL) gets a one-line explanation naming the
 * field, e.g. "body: missing (required for type msg)". */
mqc_msg_err mqc_msg_parse(const void *payload, size_t len, const mqc_msg_limits *lim,
		json_t **out, char *reason, size_t reasonlen);

/* Serialises the stamped message delivered on chat/rooms/{room}/messages:
 * {"id":..,"room":..,"from":..,"ts":..,"type":..,["body":..],["attachment":..],["client_msg_id":..]}
 * msg is a result of mqc_msg_parse. The buffer comes from alloc (so the plugin can pass
 * mosquitto_malloc and hand it to the broker); it is NUL-terminated and *len excludes
 * the NUL. Returns NULL when out of memory. */
char *mqc_msg_stamp(const json_t *msg, uint64_t id, const char *room, const char *from,
		int64_t ts_ms, void *(*alloc)(size_t), size_t *len);

/* A stamped message as the bridge reads it back. Pointers borrow from *root. */
typedef struct mqc_stamped {
	json_t *root;
	uint64_t id;
	const char *room;
	const char *from;
	int64_t ts;
	const char *type;
	const char *body;          /* NULL if absent */
	const json_t *attachment;  /* NULL if absent */
	const char *client_msg_id; /* NULL if absent */
} mqc_stamped;

/* Parses a stamped payload (as produced by mqc_msg_stamp). Returns 0, or -1 with reason.
 * On success the caller json_decref()s out->root. */
int mqc_stamped_parse(const void *payload, size_t len, mqc_stamped *out, char *reason, size_t reasonlen);

/* A message as the messages table holds it (schema/<engine>/001_init.sql). The bridge's
 * writer stores the row of a stamped message (mqc_msg_row_of); every statement that reads
 * messages for an answer selects MQC_MSG_ROW_COLS, in that order, and the answer is
 * mqc_msg_row_json of the row: the object mqc_msg_stamp delivered. Text borrows. */
#define MQC_MSG_ROW_COLS "id, sender, ts, type, body, attachment, client_msg_id"
typedef struct mqc_msg_row {
	int64_t id;
	const char *room;
	const char *sender;
	int64_t ts;
	const char *type;
	const char *body;          /* NULL if none */
	size_t body_len;
	const char *attachment;    /* the attachment object as JSON text; NULL if none */
	size_t attachment_len;
	const char *client_msg_id; /* NULL if none */
} mqc_msg_row;

/* The row of a stamped message. *att_text gets the attachment's JSON text (malloc'd, NULL
 * when there is none), which row->attachment points to: free it after the row is written.
 * 0, or -1 when out of memory. */
int mqc_msg_row_of(const mqc_stamped *m, mqc_msg_row *row, char **att_text);

/* The message object of a row, as it was delivered on <prefix>/rooms/{room}/messages:
 * {id, room, from, ts, type, [body], [attachment], [client_msg_id]}. The text must be valid
 * UTF-8 (the caller repairs stored text first: mqc_utf8_sanitize). An attachment whose text
 * is not JSON is left out and *bad_attachment (may be NULL) set, for the caller to log.
 * NULL only when out of memory. */
json_t *mqc_msg_row_json(const mqc_msg_row *row, bool *bad_attachment);

/* ---------------------------------------------------------------- device tokens */

#define MQC_TOKEN_PREFIX "mqt_"
#define MQC_TOKEN_LEN 47      /* "mqt_" + 43 base64url characters (32 random bytes) */
#define MQC_TOKEN_HASH_HEX 64 /* hex SHA-256 */
#define MQC_TOKEN_ID_LEN 18   /* "tk" + 16 hex digits: the token's public handle */
#define MQC_TOKEN_NAME_MAX 64 /* bytes of UTF-8 in a token's name (free text rules) */

/* Whether s (len bytes) has the form of a token secret. A password of that form is never
 * checked as a password (mqchat-admin refuses to set one). */
bool mqc_token_looks(const char *s, size_t len);
/* Whether s has the form the plugin takes for a JWT (JWS compact: "eyJ" and three
 * base64url parts, at most MQC_JWT_MAX bytes). Such a password is never checked as one
 * either: mqchat-admin refuses it, the plugin verifies it as a JWT. */
#define MQC_JWT_MAX 8192
bool mqc_jwt_looks(const char *s, size_t len);
/* The hex SHA-256 of a secret, NUL-terminated. 0, or -1 if OpenSSL failed. */
int mqc_token_hash_hex(const char *secret, size_t len, char out[static MQC_TOKEN_HASH_HEX + 1]);
/* A new secret, its hash and a new public id (all NUL-terminated). 0, or -1 without
 * randomness. The caller shows the secret once, stores the hash, and cleanses the secret. */
int mqc_token_new(char secret[static MQC_TOKEN_LEN + 1], char hash[static MQC_TOKEN_HASH_HEX + 1],
		char id[static MQC_TOKEN_ID_LEN + 1]);

/* ---------------------------------------------------------------- passwords */

#define MQC_PW_DEFAULT_ITERATIONS 210000u /* OWASP 2023 figure for PBKDF2-HMAC-SHA512 */
#define MQC_PW_HASH_MAX 160               /* room for the encoded string and its NUL */

/* Encodes "pbkdf2-sha512$<iterations>$<salt, base64>$<dk, base64>" with a fresh 16-byte
 * salt and a 64-byte derived key into out. Returns 0, or -1 (bad arguments, no
 * randomness, OpenSSL failure). */
int mqc_password_hash(const char *pw, size_t pwlen, unsigned iterations, char *out, size_t outlen);

/* Returns 1 if pw matches encoded, 0 if it does not, -1 if encoded is malformed.
 * Constant time in the comparison; costs the iterations recorded in encoded. */
int mqc_password_verify(const char *pw, size_t pwlen, const char *encoded);

/* ---------------------------------------------------------------- database: db.h */

/* Current wall-clock time in ms since the Unix epoch. */
int64_t mqc_now_ms(void);

#ifdef __cplusplus
}
#endif

#endif
