/*
 * mqchat-admin: creates and migrates the database, manages users and rooms.
 *
 * The database is a SQLite file or a PostgreSQL server (store/db.h); the statements are
 * schema/<engine>/q_admin.sql, and the room commands follow the request API's rules
 * (store/rooms.c). It is the only writer besides the bridge. Every change is one
 * transaction; the schema's triggers bump meta.acl_version, so a running broker's plugin
 * picks the change up within one reload poll (SQLite) or when the server notifies it of the
 * commit (PostgreSQL, channel mqchat_acl; docs/architecture.md "Membership"). Passwords are
 * read from standard input, never from the command line (argv is visible to every local
 * user in ps).
 *
 * Exit status: 0 on success, 1 on any error (the message on stderr says what and why).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "mqchat_store.h"
#include "rooms.h"

#define BUSY_MS 5000

static const char usage_text[] =
"usage: mqchat-admin [--db PATH|URI] COMMAND [ARGS]\n"
"\n"
"The database is --db PATH (a SQLite file) or --db URI (PostgreSQL,\n"
"postgresql://[user[:password]@]host[:port]/dbname), or the environment variable\n"
"MQCHAT_DB. A password is better given in PGPASSWORD or ~/.pgpass than in the URI.\n"
"\n"
"Commands:\n"
"  init                         create the database, or migrate it to this build's\n"
"                               schema version; prints the version (PostgreSQL: the\n"
"                               database must exist; init makes its tables)\n"
"  user add NAME [--display-name X] [--iterations N | --no-password]\n"
"                               add a user; the password is read from standard input\n"
"                               (one line, trailing newline stripped, must not be empty;\n"
"                               on a terminal it is asked for twice, without echo)\n"
"  user passwd NAME [--iterations N]\n"
"                               set a user's password (read as for user add); it\n"
"                               revokes all of the user's device tokens\n"
"  (--no-password: the user logs in with device tokens or a JWT only)\n"
"  user disable NAME            refuse the user's logins (takes effect on the broker\n"
"  user enable NAME             within one reload poll; existing sessions: see docs)\n"
"                               (disabling revokes the user's device tokens)\n"
"  user list                    id, state, display name, one user a line\n"
"  token add USER NAME [--expires-in SECONDS]\n"
"                               make a device token (docs/logging-in.md); prints its\n"
"                               secret, USER's MQTT password from then on, this once\n"
"  token list USER              id, name, created, expires, last used (ms), a line each\n"
"  token revoke USER ID         the token stops working within one reload poll\n"
"  room create [--name X] USER USER [USER...]\n"
"                               two distinct users make their direct room (if the pair\n"
"                               already has one, that one is printed); more make a group\n"
"                               room created by the first user; prints the room id\n"
"                               (no user may be disabled; --name: groups only)\n"
"  room list                    id, kind, state, created_by, participants, name\n"
"  room add ROOM USER           add a participant to a group room (not a disabled\n"
"                               user); what the room held before is read for it\n"
"  room remove ROOM USER        remove a participant from a group room; a group keeps\n"
"                               two participants; a removed owner hands the room to the\n"
"                               longest-standing participant\n"
"  room disable ROOM            nobody can send to the room; history stays readable\n"
"  room enable ROOM             reopen a disabled room (it needs two participants)\n"
"\n"
"Names (users and rooms) are 1-64 characters of [A-Za-z0-9._-]. A display name\n"
"(--display-name) and a room name (--name) are 1-128 bytes of UTF-8 without control\n"
"characters, the rule of the request API.\n"
"Password hashing: PBKDF2-HMAC-SHA512 with --iterations N, else the environment\n"
"variable MQCHAT_PW_ITERATIONS, else 210000 (allowed: 1000 to 10000000).\n";

struct opts {
	const char *db_path;
	const char *display_name;
	const char *room_name;
	const char *iterations;
	const char *expires_in;
	bool has_display_name, has_room_name, has_iterations, has_expires_in, no_password;
	int argc;          /* positional arguments, command words included */
	char **argv;
};

static int fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("mqchat-admin: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static bool check_name(const char *what, const char *s)
{
	if(mqc_name_valid(s, strlen(s))) return true;
	fail_msg("invalid %s name '%s': expected 1-%d characters of [A-Za-z0-9._-]", what, s, MQC_NAME_MAX);
	return false;
}

/* Free text given with flag (--display-name, --name), checked by the store library's rule
 * for its kind: the request API uses the same one, so what mqchat-admin writes is what a
 * client could have written. The text itself is not quoted: it may be what is wrong. */
static bool check_text(const char *flag, const char *s, mqc_text_err (*check)(const char *, size_t, char *, size_t))
{
	char why[200];

	if(check(s, strlen(s), why, sizeof(why)) == MQC_TEXT_OK) return true;
	fail_msg("%s: %s; nothing written", flag, why);
	return false;
}

/* ---------------------------------------------------------------- database helpers */

static int db_open(const struct opts *o, mqc_open_mode mode, mqc_db **db)
{
	char reason[512];

	if(mqc_db_open(o->db_path, mode, BUSY_MS, db, reason, sizeof(reason))){
		return fail_msg("%s", reason);
	}
	return 0;
}

static int db_fail(mqc_db *db, const char *what)
{
	return fail_msg("%s failed: %s", what, mqc_db_errmsg(db));
}

static int tx_begin(mqc_db *db)
{
	if(mqc_exec(db, MQC_Q_BEGIN_WRITE)) return db_fail(db, "BEGIN");
	return 0;
}

static int tx_commit(mqc_db *db)
{
	if(mqc_exec(db, MQC_Q_COMMIT)) return db_fail(db, "COMMIT");
	return 0;
}

static void tx_rollback(mqc_db *db)
{
	if(mqc_db_in_txn(db)) mqc_exec(db, MQC_Q_ROLLBACK);
}

/* The statement id, or NULL (the failure said, as what). */
static mqc_stmt *q(mqc_db *db, mqc_qid id, const char *what)
{
	mqc_stmt *s = mqc_q(db, id);

	if(s == NULL) db_fail(db, what);
	return s;
}

/* Steps a statement that returns no rows; *changes gets mqc_db_changes (may be NULL). */
static int run(mqc_stmt *s, const char *what, int64_t *changes)
{
	mqc_db *db = mqc_stmt_db(s);
	int rc = mqc_step(s);

	mqc_reset(s);
	if(rc != MQC_DONE) return db_fail(db, what);
	if(changes) *changes = mqc_db_changes(db);
	return 0;
}

static int user_exists(mqc_db *db, const char *name)
{
	mqc_stmt *s = q(db, MQC_Q_ADMIN_USER_EXISTS, "looking up a user");
	int rc;

	if(s == NULL) return -1;
	mqc_bind_text(s, 1, name, -1);
	rc = mqc_step(s);
	mqc_reset(s);
	if(rc == MQC_ROW) return 1;
	if(rc == MQC_DONE) return 0;
	db_fail(db, "looking up a user");
	return -1;
}

/* ---------------------------------------------------------------- passwords */

static int parse_iterations(const char *s, unsigned *out)
{
	unsigned long v = 0;
	size_t i, len = strlen(s);

	if(len == 0 || len > 8) return -1;
	for(i = 0; i < len; i++){
		if(s[i] < '0' || s[i] > '9') return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if(v < 1000 || v > 10000000) return -1;
	*out = (unsigned)v;
	return 0;
}

static int iterations_from(const struct opts *o, unsigned *out)
{
	const char *env = getenv("MQCHAT_PW_ITERATIONS");

	*out = MQC_PW_DEFAULT_ITERATIONS;
	if(o->has_iterations){
		if(parse_iterations(o->iterations, out)){
			return fail_msg("--iterations '%s': expected a whole number from 1000 to 10000000", o->iterations);
		}
	}else if(env && env[0]){
		if(parse_iterations(env, out)){
			return fail_msg("MQCHAT_PW_ITERATIONS '%s': expected a whole number from 1000 to 10000000", env);
		}
	}
	return 0;
}

/* Reads one line from stdin into a malloc'd string, without its trailing newline.
 * On a terminal, echo is off while typing. NULL on end of input or error. */
static char *read_line(const char *prompt, size_t *len)
{
	struct termios old, noecho;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if(tty){
		fputs(prompt, stderr);
		fflush(stderr);
		noecho = old;
		noecho.c_lflag &= (tcflag_t)~ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
	}
	n = getline(&line, &cap, stdin);
	if(tty){
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if(n < 0){
		free(line);
		return NULL;
	}
	if(n > 0 && line[n - 1] == '\n') line[--n] = '\0';
	*len = (size_t)n;
	return line;
}

static void free_secret(char *s, size_t len)
{
	if(s){
		memset(s, 0, len);
		free(s);
	}
}


/* Reads the password (twice on a terminal) and hashes it into hash. */
static int read_password_hash(const struct opts *o, const char *user, char hash[MQC_PW_HASH_MAX])
{
	char prompt[128];
	char *pw = NULL, *again = NULL;
	size_t len = 0, len2 = 0;
	unsigned iterations;
	int rc = 1;

	if(iterations_from(o, &iterations)) return 1;
	snprintf(prompt, sizeof(prompt), "Password for %s: ", user);
	pw = read_line(prompt, &len);
	if(pw == NULL){
		fail_msg("no password on standard input for user %s (expected one line)", user);
		goto done;
	}
	if(len == 0){
		fail_msg("empty password refused for user %s", user);
		goto done;
	}
	if(memchr(pw, '\0', len)){
		fail_msg("password for user %s contains a NUL byte: refused", user);
		goto done;
	}
	/* The plugin checks a password of these forms as a token or a JWT, never as a
	 * password: it could never log in. */
	if(mqc_token_looks(pw, len) || mqc_jwt_looks(pw, len)){
		fail_msg("password for user %s has the form of a device token or a JWT: refused (pick another)", user);
		goto done;
	}
	if(isatty(STDIN_FILENO)){
		again = read_line("Again: ", &len2);
		if(again == NULL || len2 != len || memcmp(pw, again, len)){
			fail_msg("the two passwords for user %s differ: nothing changed", user);
			goto done;
		}
	}
	if(mqc_password_hash(pw, len, iterations, hash, MQC_PW_HASH_MAX)){
		fail_msg("hashing the password for user %s failed (OpenSSL or randomness unavailable)", user);
		goto done;
	}
	rc = 0;
done:
	free_secret(pw, len);
	free_secret(again, len2);
	return rc;
}

/* ---------------------------------------------------------------- commands */

static int cmd_init(const struct opts *o)
{
	mqc_db *db = NULL;
	char reason[512], name[512];
	int applied = 0, version;

	if(o->argc != 1) return fail_msg("init takes no arguments");
	if(db_open(o, MQC_OPEN_MIGRATE, &db)) return 1;
	/* the SQLite path, or the URI without its password */
	snprintf(name, sizeof(name), "%s", mqc_db_name(db));
	if(mqc_db_migrate(db, &applied, reason, sizeof(reason))){
		mqc_db_close(db);
		return fail_msg("database %s: %s", name, reason);
	}
	version = mqc_schema_version_of(mqc_db_engine(db));
	mqc_db_close(db);
	printf("database %s is at schema version %d (%d migration%s applied)\n",
			name, version, applied, applied == 1 ? "" : "s");
	return 0;
}

static int cmd_user_add(const struct opts *o)
{
	const char *name;
	char hash[MQC_PW_HASH_MAX];
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc = 1, exists;
	int64_t changes = 0;

	if(o->argc != 3) return fail_msg("usage: user add NAME [--display-name X] [--iterations N | --no-password]");
	name = o->argv[2];
	if(!check_name("user", name)) return 1;
	if(o->has_display_name && !check_text("--display-name", o->display_name, mqc_display_name_check)) return 1;
	if(db_open(o, MQC_OPEN_READWRITE, &db)) return 1;
	exists = user_exists(db, name);
	if(exists < 0) goto done;
	if(exists){
		fail_msg("user %s already exists (use user passwd to change the password)", name);
		goto done;
	}
	if(o->no_password) hash[0] = '\0'; /* logs in with a device token or a JWT only */
	else if(read_password_hash(o, name, hash)) goto done;
	if(tx_begin(db)) goto done;
	if((s = q(db, MQC_Q_ADMIN_USER_INSERT, "adding the user")) == NULL) goto done;
	mqc_bind_text(s, 1, name, -1);
	mqc_bind_text(s, 2, o->has_display_name ? o->display_name : NULL, -1);
	mqc_bind_text(s, 3, hash, -1);
	mqc_bind_int64(s, 4, mqc_now_ms());
	if(run(s, "adding the user", &changes)) goto done;
	/* the row may have appeared since the check: the primary key decides */
	if(changes == 0){
		fail_msg("user %s already exists", name);
		goto done;
	}
	if(tx_commit(db)) goto done;
	printf("user %s added\n", name);
	rc = 0;
done:
	if(db) tx_rollback(db);
	mqc_db_close(db);
	return rc;
}

static int cmd_user_passwd(const struct opts *o)
{
	const char *name;
	char hash[MQC_PW_HASH_MAX];
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc = 1, exists;
	int64_t changes = 0;

	if(o->argc != 3) return fail_msg("usage: user passwd NAME [--iterations N]");
	name = o->argv[2];
	if(!check_name("user", name)) return 1;
	if(db_open(o, MQC_OPEN_READWRITE, &db)) return 1;
	exists = user_exists(db, name);
	if(exists < 0) goto done;
	if(!exists){
		fail_msg("no such user: %s", name);
		goto done;
	}
	if(read_password_hash(o, name, hash)) goto done;
	if(tx_begin(db)) goto done;
	if((s = q(db, MQC_Q_ADMIN_USER_PASSWD, "changing the password")) == NULL) goto done;
	mqc_bind_text(s, 1, name, -1);
	mqc_bind_text(s, 2, hash, -1);
	if(run(s, "changing the password", &changes)) goto done;
	if(changes == 0){
		fail_msg("no such user: %s", name);
		goto done;
	}
	if(tx_commit(db)) goto done;
	printf("password of user %s changed\n", name);
	rc = 0;
done:
	if(db) tx_rollback(db);
	mqc_db_close(db);
	return rc;
}

static int cmd_user_set_disabled(const struct opts *o, bool disabled)
{
	const char *name;
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc = 1;

	if(o->argc != 3) return fail_msg("usage: user %s NAME", disabled ? "disable" : "enable");
	name = o->argv[2];
	if(!check_name("user", name)) return 1;
	if(db_open(o, MQC_OPEN_READWRITE, &db)) return 1;
	if(tx_begin(db)) goto done;
	if(user_exists(db, name) != 1){
		fail_msg("no such user: %s", name);
		goto done;
	}
	if((s = q(db, MQC_Q_ADMIN_USER_SET_DISABLED, disabled ? "disabling the user" : "enabling the user")) == NULL) goto done;
	mqc_bind_text(s, 1, name, -1);
	mqc_bind_int64(s, 2, disabled ? 1 : 0);
	if(run(s, disabled ? "disabling the user" : "enabling the user", NULL)) goto done;
	if(tx_commit(db)) goto done;
	printf("user %s %s\n", name, disabled ? "disabled" : "enabled");
	rc = 0;
done:
	if(db) tx_rollback(db);
	mqc_db_close(db);
	return rc;
}

static int cmd_user_list(const struct opts *o)
{
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc;

	if(o->argc != 2) return fail_msg("user list takes no arguments");
	if(db_open(o, MQC_OPEN_READONLY, &db)) return 1;
	if((s = q(db, MQC_Q_ADMIN_USER_LIST, "listing users")) == NULL){
		mqc_db_close(db);
		return 1;
	}
	while((rc = mqc_step(s)) == MQC_ROW){
		const char *dn = mqc_col_text(s, 2);
		printf("%s\t%s\t%s\n", mqc_col_text(s, 0), mqc_col_int64(s, 1) ? "disabled" : "enabled", dn ? dn : "");
	}
	mqc_reset(s);
	if(rc != MQC_DONE) db_fail(db, "listing users");
	mqc_db_close(db);
	return rc == MQC_DONE ? 0 : 1;
}

/* The room rules (store/rooms.c) are the request API's; these are mqchat-admin's words
 * for their refusals. 1 after saying it. */
static int room_refused(mqc_db *db, mqc_rooms_rc rc, const mqc_rooms_res *res, const char *room,
		const char *user, const char *what)
{
	switch(rc){
	case MQC_ROOMS_OK: return 0;
	case MQC_ROOMS_NO_ROOM: return fail_msg("no such room: %s", room);
	case MQC_ROOMS_DIRECT: return fail_msg("room %s is a direct room: its participants never change", room);
	case MQC_ROOMS_NO_USER: return fail_msg("no such user: %s", res->user ? res->user : user);
	case MQC_ROOMS_USER_DISABLED: return fail_msg("%s is disabled: not added to room %s", user, room);
	case MQC_ROOMS_PARTICIPANT: return fail_msg("%s is already a participant of room %s", user, room);
	case MQC_ROOMS_NOT_PARTICIPANT: return fail_msg("%s is not a participant of room %s", user, room);
	case MQC_ROOMS_DB: return db_fail(db, what);
	default: return fail_msg("%s: %s", what, mqc_rooms_rc_str(rc));
	}
}

static int cmd_room_create(const struct opts *o)
{
	char **users = o->argv + 2;
	int nusers = o->argc - 2, i, j;
	const char **distinct = NULL;
	size_t ndistinct = 0;
	mqc_db *db = NULL;
	mqc_rooms_res res;
	mqc_rooms_rc rr;
	int rc = 1;

	if(nusers < 2) return fail_msg("usage: room create [--name X] USER USER [USER...]");
	if(o->has_room_name && !check_text("--name", o->room_name, mqc_room_name_check)) return 1;
	distinct = calloc((size_t)nusers, sizeof(*distinct));
	if(distinct == NULL) return fail_msg("out of memory");
	for(i = 0; i < nusers; i++){
		bool dup = false;
		if(!check_name("user", users[i])) goto done;
		for(j = 0; j < i; j++){
			if(!strcmp(users[i], users[j])) dup = true;
		}
		if(!dup) distinct[ndistinct++] = users[i];
	}
	if(ndistinct < 2){
		fail_msg("a room needs at least two distinct users");
		goto done;
	}
	/* the request API's rule: the pair's room is theirs, it has no name */
	if(ndistinct == 2 && o->has_room_name){
		fail_msg("--name: a direct room (two distinct users) has no name; nothing written");
		goto done;
	}

	if(db_open(o, MQC_OPEN_READWRITE, &db)) goto done;
	if(tx_begin(db)) goto done;
	/* two distinct users: their direct room; more: a group room owned by the first */
	rr = mqc_room_create(db, distinct, ndistinct, distinct[0], o->has_room_name ? o->room_name : NULL,
			mqc_now_ms(), &res);
	if(rr == MQC_ROOMS_NO_USER){
		fail_msg("no such user: %s (nothing created)", res.user);
		goto done;
	}
	if(rr == MQC_ROOMS_USER_DISABLED){
		fail_msg("%s is disabled (nothing created)", res.user);
		goto done;
	}
	if(rr == MQC_ROOMS_NO_RANDOM){
		fail_msg("no randomness available to make a room id");
		goto done;
	}
	if(room_refused(db, rr, &res, NULL, NULL, "creating the room")) goto done;
	if(!res.created){
		tx_rollback(db);
		fprintf(stderr, "mqchat-admin: %s and %s already have a direct room: %s\n",
				distinct[0], distinct[1], res.room);
		printf("%s\n", res.room);
		rc = 0;
		goto done;
	}
	if(tx_commit(db)) goto done;
	printf("%s\n", res.room);
	rc = 0;
done:
	if(db) tx_rollback(db);
	mqc_db_close(db);
	free(distinct);
	return rc;
}

static int cmd_room_list(const struct opts *o)
{
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc;

	if(o->argc != 2) return fail_msg("room list takes no arguments");
	if(db_open(o, MQC_OPEN_READONLY, &db)) return 1;
	if((s = q(db, MQC_Q_ADMIN_ROOM_LIST, "listing rooms")) == NULL){
		mqc_db_close(db);
		return 1;
	}
	while((rc = mqc_step(s)) == MQC_ROW){
		const char *members = mqc_col_text(s, 4);
		const char *name = mqc_col_text(s, 5);
		printf("%s\t%s\t%s\t%s\t%s\t%s\n", mqc_col_text(s, 0), mqc_col_text(s, 1),
				mqc_col_int64(s, 2) ? "enabled" : "disabled", mqc_col_text(s, 3),
				members ? members : "", name ? name : "");
	}
	mqc_reset(s);
	if(rc != MQC_DONE) db_fail(db, "listing rooms");
	mqc_db_close(db);
	return rc == MQC_DONE ? 0 : 1;
}

static int cmd_room_member(const struct opts *o, bool add)
{
	const char *room, *user;
	mqc_db *db = NULL;
	mqc_rooms_res res;
	mqc_rooms_rc rr;
	int rc = 1;

	if(o->argc != 4) return fail_msg("usage: room %s ROOM USER", add ? "add" : "remove");
	room = o->argv[2];
	user = o->argv[3];
	if(!check_name("room", room) || !check_name("user", user)) return 1;
	if(db_open(o, MQC_OPEN_READWRITE, &db)) return 1;
	if(tx_begin(db)) goto done;
	/* The request API's rules (store/rooms.c, as room.members.add / .remove): a disabled
	 * user is not added; a new participant starts with what came before it read; a group
	 * keeps at least two participants (disable it instead); a removed owner hands the room
	 * to the longest-standing participant, as room.leave does. No size limit here. */
	if(add) rr = mqc_room_member_add(db, room, user, mqc_now_ms(), 0, &res);
	else rr = mqc_room_member_remove(db, room, user, &res);
	if(rr == MQC_ROOMS_TOO_FEW){
		fail_msg("removing %s would leave room %s with fewer than two participants: disable the room instead "
				"(room disable %s)", user, room, room);
		goto done;
	}
	if(room_refused(db, rr, &res, room, user, add ? "adding the participant" : "removing the participant")) goto done;
	if(tx_commit(db)) goto done;
	printf("%s %s room %s\n", user, add ? "added to" : "removed from", room);
	if(res.owner_changed) fprintf(stderr, "mqchat-admin: room %s passed from %s to %s\n", room, user, res.owner);
	rc = 0;
done:
	if(db) tx_rollback(db);
	mqc_db_close(db);
	return rc;
}

static int cmd_room_set_enabled(const struct opts *o, bool enabled)
{
	const char *room;
	mqc_db *db = NULL;
	mqc_rooms_res res;
	mqc_rooms_rc rr;
	int rc = 1;

	if(o->argc != 3) return fail_msg("usage: room %s ROOM", enabled ? "enable" : "disable");
	room = o->argv[2];
	if(!check_name("room", room)) return 1;
	if(db_open(o, MQC_OPEN_READWRITE, &db)) return 1;
	if(tx_begin(db)) goto done;
	rr = mqc_room_set_enabled(db, room, enabled, &res);
	if(rr == MQC_ROOMS_TOO_FEW){
		fail_msg("room %s has fewer than two participants: not enabled (room add %s USER first)", room, room);
		goto done;
	}
	if(room_refused(db, rr, &res, room, NULL, enabled ? "enabling the room" : "disabling the room")) goto done;
	if(tx_commit(db)) goto done;
	printf("room %s %s\n", room, enabled ? "enabled" : "disabled");
	rc = 0;
done:
	if(db) tx_rollback(db);
	mqc_db_close(db);
	return rc;
}

/* ---------------------------------------------------------------- device tokens */

static int cmd_token_add(const struct opts *o)
{
	char secret[MQC_TOKEN_LEN + 1], hash[MQC_TOKEN_HASH_HEX + 1], id[MQC_TOKEN_ID_LEN + 1];
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc = 1;
	long long expires_in = 0;

	if(o->argc != 4) return fail_msg("usage: token add USER NAME [--expires-in SECONDS]");
	const char *user = o->argv[2], *name = o->argv[3];
	if(!check_name("user", user)) return 1;
	if(!check_text("token name", name, mqc_token_name_check)) return 1;
	if(o->has_expires_in){
		char *end;
		expires_in = strtoll(o->expires_in, &end, 10);
		if(*end || expires_in < 60 || expires_in > 10LL * 366 * 24 * 3600){
			return fail_msg("--expires-in %s: expected whole seconds, 60 to 316224000 (10 years)", o->expires_in);
		}
	}
	memset(secret, 0, sizeof(secret));
	if(db_open(o, MQC_OPEN_READWRITE, &db)) return 1;
	if(tx_begin(db)) goto done;
	if(user_exists(db, user) != 1){
		fail_msg("no such user: %s", user);
		goto done;
	}
	if(mqc_token_new(secret, hash, id)){
		fail_msg("no randomness for a token");
		goto done;
	}
	int64_t t = mqc_now_ms();
	if((s = q(db, MQC_Q_ADMIN_TOKEN_INSERT, "adding the token")) == NULL) goto done;
	mqc_bind_text(s, 1, id, -1);
	mqc_bind_text(s, 2, user, -1);
	mqc_bind_text(s, 3, name, -1);
	mqc_bind_text(s, 4, hash, -1);
	mqc_bind_int64(s, 5, t);
	if(o->has_expires_in) mqc_bind_int64(s, 6, t + expires_in * 1000);
	else mqc_bind_null(s, 6);
	if(run(s, "adding the token", NULL)) goto done;
	if(tx_commit(db)) goto done;
	/* the secret alone on stdout (TOKEN=$(mqchat-admin token add ...)); shown this once */
	printf("%s\n", secret);
	fflush(stdout);
	fprintf(stderr, "mqchat-admin: token %s (%s) added for user %s%s; the secret is shown only now\n", id, name,
			user, o->has_expires_in ? ", expiring" : "");
	rc = 0;
done:
	OPENSSL_cleanse(secret, sizeof(secret));
	if(db) tx_rollback(db);
	mqc_db_close(db);
	return rc;
}

static int cmd_token_list(const struct opts *o)
{
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc;

	if(o->argc != 3) return fail_msg("usage: token list USER");
	const char *user = o->argv[2];
	if(!check_name("user", user)) return 1;
	if(db_open(o, MQC_OPEN_READONLY, &db)) return 1;
	if((s = q(db, MQC_Q_ADMIN_TOKEN_LIST, "listing tokens")) == NULL){
		mqc_db_close(db);
		return 1;
	}
	mqc_bind_text(s, 1, user, -1);
	while((rc = mqc_step(s)) == MQC_ROW){
		char e[24] = "-", u[24] = "-";
		if(!mqc_col_null(s, 3)) snprintf(e, sizeof(e), "%lld", (long long)mqc_col_int64(s, 3));
		if(!mqc_col_null(s, 4)) snprintf(u, sizeof(u), "%lld", (long long)mqc_col_int64(s, 4));
		printf("%s\t%s\t%lld\t%s\t%s\n", mqc_col_text(s, 0), mqc_col_text(s, 1),
				(long long)mqc_col_int64(s, 2), e, u);
	}
	mqc_reset(s);
	if(rc != MQC_DONE) db_fail(db, "listing tokens");
	mqc_db_close(db);
	return rc == MQC_DONE ? 0 : 1;
}

static int cmd_token_revoke(const struct opts *o)
{
	mqc_db *db = NULL;
	mqc_stmt *s;
	int rc = 1;
	int64_t changes = 0;

	if(o->argc != 4) return fail_msg("usage: token revoke USER ID");
	const char *user = o->argv[2], *id = o->argv[3];
	if(!check_name("user", user) || !check_name("token", id)) return 1;
	if(db_open(o, MQC_OPEN_READWRITE, &db)) return 1;
	if(tx_begin(db)) goto done;
	if((s = q(db, MQC_Q_ADMIN_TOKEN_REVOKE, "revoking the token")) == NULL) goto done;
	mqc_bind_text(s, 1, id, -1);
	mqc_bind_text(s, 2, user, -1);
	if(run(s, "revoking the token", &changes)) goto done;
	if(!changes){
		fail_msg("user %s has no token %s", user, id);
		goto done;
	}
	if(tx_commit(db)) goto done;
	printf("token %s of user %s revoked (its connections close within one reload poll)\n", id, user);
	rc = 0;
done:
	if(db) tx_rollback(db);
	mqc_db_close(db);
	return rc;
}

/* ---------------------------------------------------------------- arguments */

/* Splits argv into options (anywhere) and positional words. */
static int parse_args(int argc, char **argv, struct opts *o, bool *help)
{
	int i;

	o->argv = calloc((size_t)argc + 1, sizeof(char *));
	if(o->argv == NULL) return fail_msg("out of memory");
	for(i = 1; i < argc; i++){
		const char *a = argv[i];
		const char **val = NULL;
		bool *flag = NULL;

		if(!strcmp(a, "--help") || !strcmp(a, "-h")){
			*help = true;
			continue;
		}
		if(!strcmp(a, "--db")) val = &o->db_path;
		else if(!strcmp(a, "--display-name")){ val = &o->display_name; flag = &o->has_display_name; }
		else if(!strcmp(a, "--name")){ val = &o->room_name; flag = &o->has_room_name; }
		else if(!strcmp(a, "--iterations")){ val = &o->iterations; flag = &o->has_iterations; }
		else if(!strcmp(a, "--expires-in")){ val = &o->expires_in; flag = &o->has_expires_in; }
		else if(!strcmp(a, "--no-password")){ o->no_password = true; continue; }
		else if(!strcmp(a, "--")){
			for(i++; i < argc; i++) o->argv[o->argc++] = argv[i];
			break;
		}else if(a[0] == '-' && a[1] != '\0'){
			return fail_msg("unknown option %s (see mqchat-admin --help)", a);
		}else{
			o->argv[o->argc++] = argv[i];
			continue;
		}
		if(i + 1 >= argc) return fail_msg("option %s needs a value", a);
		*val = argv[++i];
		if(flag) *flag = true;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	bool help = false;
	const char *cmd, *sub;
	int rc;

	memset(&o, 0, sizeof(o));
	if(parse_args(argc, argv, &o, &help)){
		free(o.argv);
		return 1;
	}
	if(help){
		fputs(usage_text, stdout);
		free(o.argv);
		return 0;
	}
	if(o.argc == 0){
		fputs(usage_text, stderr);
		free(o.argv);
		return 1;
	}
	if(o.db_path == NULL) o.db_path = getenv("MQCHAT_DB");
	if(o.db_path == NULL || o.db_path[0] == '\0'){
		free(o.argv);
		return fail_msg("no database: give --db PATH|URI or set MQCHAT_DB");
	}

	cmd = o.argv[0];
	sub = o.argc > 1 ? o.argv[1] : "";
	/* an option the command does not take is an error, not silently dropped */
	{
		bool is_user = !strcmp(cmd, "user"), is_room = !strcmp(cmd, "room");
		const char *bad = NULL;
		if(o.has_display_name && !(is_user && !strcmp(sub, "add"))) bad = "--display-name";
		else if(o.has_iterations && !(is_user && (!strcmp(sub, "add") || !strcmp(sub, "passwd")))) bad = "--iterations";
		else if(o.has_room_name && !(is_room && !strcmp(sub, "create"))) bad = "--name";
		else if(o.has_expires_in && !(!strcmp(cmd, "token") && !strcmp(sub, "add"))) bad = "--expires-in";
		else if(o.no_password && !(is_user && !strcmp(sub, "add"))) bad = "--no-password";
		else if(o.no_password && o.has_iterations) bad = "--iterations (with --no-password)";
		if(bad){
			free(o.argv);
			return fail_msg("option %s does not apply to '%s%s%s' (see mqchat-admin --help)",
					bad, cmd, sub[0] ? " " : "", sub);
		}
	}
	rc = -1;
	if(!strcmp(cmd, "init")) rc = cmd_init(&o);
	else if(!strcmp(cmd, "user")){
		if(!strcmp(sub, "add")) rc = cmd_user_add(&o);
		else if(!strcmp(sub, "passwd")) rc = cmd_user_passwd(&o);
		else if(!strcmp(sub, "disable")) rc = cmd_user_set_disabled(&o, true);
		else if(!strcmp(sub, "enable")) rc = cmd_user_set_disabled(&o, false);
		else if(!strcmp(sub, "list")) rc = cmd_user_list(&o);
	}else if(!strcmp(cmd, "token")){
		if(!strcmp(sub, "add")) rc = cmd_token_add(&o);
		else if(!strcmp(sub, "list")) rc = cmd_token_list(&o);
		else if(!strcmp(sub, "revoke")) rc = cmd_token_revoke(&o);
	}else if(!strcmp(cmd, "room")){
		if(!strcmp(sub, "create")) rc = cmd_room_create(&o);
		else if(!strcmp(sub, "list")) rc = cmd_room_list(&o);
		else if(!strcmp(sub, "add")) rc = cmd_room_member(&o, true);
		else if(!strcmp(sub, "remove")) rc = cmd_room_member(&o, false);
		else if(!strcmp(sub, "disable")) rc = cmd_room_set_enabled(&o, false);
		else if(!strcmp(sub, "enable")) rc = cmd_room_set_enabled(&o, true);
	}
	if(rc == -1){
		rc = fail_msg("unknown command '%s%s%s' (see mqchat-admin --help)", cmd, sub[0] ? " " : "", sub);
	}
	free(o.argv);
	return rc;
}
