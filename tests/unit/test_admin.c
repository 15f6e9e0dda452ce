/*
 * test_admin.c: mqchat-admin end to end on a scratch database (MQCHAT_ADMIN, set by CTest,
 * is the built binary). Checks exit codes, what it prints, and what lands in the tables.
 * The engine is MQCHAT_TEST_ENGINE's: sqlite (the default) a file in a temporary directory,
 * postgresql a database of a random name made on the server whose URI MQCHAT_TEST_PG gives
 * (scripts/pg.sh start prints one), dropped at the end. The tables are read with the
 * test's own connection (tests/lib/dbconn.h), as an operator would.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "dbconn.h"
#include "mqchat_store.h"
#include "rooms.h"

static const char *admin;
static char dbpath[512];   /* the --db value: a SQLite path or a postgresql:// URI */
static char scratch[300];  /* a file name for mqchat-admin's standard input */

/* Runs "mqchat-admin --db DB args" with input on stdin; its stdout (first line) into out,
 * or its stderr when want_stderr. Returns the exit status. */
static int run_admin_to(const char *input, const char *args, char *out, size_t outlen, bool want_stderr)
{
	char cmd[1400], inpath[300];
	FILE *p;
	int st;

	snprintf(inpath, sizeof(inpath), "%s", scratch);
	p = fopen(inpath, "w");
	if(p == NULL) return -1;
	fputs(input ? input : "", p);
	fclose(p);
	snprintf(cmd, sizeof(cmd), "MQCHAT_PW_ITERATIONS=1000 '%s' --db '%s' %s < '%s' %s",
			admin, dbpath, args, inpath, want_stderr ? "2>&1 >/dev/null" : "2>/dev/null");
	p = popen(cmd, "r");
	if(p == NULL) return -1;
	if(out){
		out[0] = '\0';
		if(fgets(out, (int)outlen, p)) out[strcspn(out, "\n")] = '\0';
	}
	while(fgetc(p) != EOF){}
	st = pclose(p);
	unlink(inpath);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_admin(const char *input, const char *args, char *out, size_t outlen)
{
	return run_admin_to(input, args, out, outlen, false);
}

/* Free text mqchat-admin must refuse: exit status 1, one line on stderr naming the flag
 * and the reason, and nothing written (the caller counts rows). */
static void refused_at(int line, const char *args, const char *flag, const char *why)
{
	char err[512], want[128];

	int st = run_admin_to("pw-x\n", args, err, sizeof(err), true);
	snprintf(want, sizeof(want), "mqchat-admin: %s: %s", flag, why);
	CHECKF(st == 1, "line %d: exit status %d for %s", line, st, args);
	CHECKF(strstr(err, want) != NULL && strstr(err, "nothing written") != NULL,
			"line %d: stderr \"%s\" lacks \"%s\"", line, err, want);
}
#define REFUSED(args, flag, why) refused_at(__LINE__, (args), (flag), (why))

/* The first column of sql's first row as an integer (-1: no row or an error); the
 * parameters (?1, ?2, ...) are text, NULL-terminated. */
static long long count(const char *sql, ...) __attribute__((sentinel));
static long long count(const char *sql, ...)
{
	struct hx_conn c;
	va_list ap;
	long long n = -1;

	if(dbc_open(dbpath, &c, false)) return -1;
	va_start(ap, sql);
	if(dbc_query(&c, sql, ap) == 0 && dbc_row(&c) == 1) n = dbc_int(&c, 0);
	va_end(ap);
	dbc_close(&c);
	return n;
}

/* The same as text into out ("" for no row or NULL). */
static char *text(char *out, size_t outlen, const char *sql, ...) __attribute__((sentinel));
static char *text(char *out, size_t outlen, const char *sql, ...)
{
	struct hx_conn c;
	va_list ap;

	out[0] = '\0';
	if(dbc_open(dbpath, &c, false)) return out;
	va_start(ap, sql);
	if(dbc_query(&c, sql, ap) == 0 && dbc_row(&c) == 1 && dbc_text(&c, 0)){
		snprintf(out, outlen, "%s", dbc_text(&c, 0));
	}
	va_end(ap);
	dbc_close(&c);
	return out;
}

/* A change made behind mqchat-admin's back, as an operator with sqlite3 or psql would. */
static int operator(const char *sql, ...) __attribute__((sentinel));
static int operator(const char *sql, ...)
{
	struct hx_conn c;
	va_list ap;
	int rc = -1;

	if(dbc_open(dbpath, &c, true)) return -1;
	va_start(ap, sql);
	if(dbc_query(&c, sql, ap) == 0) rc = dbc_row(&c) < 0 ? -1 : 0;
	va_end(ap);
	dbc_close(&c);
	return rc;
}

/* ---------------------------------------------------------------- the rules themselves */

/* store/rooms.c called as the request API calls it: each rule in its own write
 * transaction on a connection of the test's own, committed when it answers OK. */
static mqc_rooms_rc in_txn(mqc_db *db, mqc_rooms_rc (*fn)(mqc_db *, void *, mqc_rooms_res *), void *arg,
		mqc_rooms_res *res)
{
	mqc_rooms_rc rc;

	if(mqc_exec(db, MQC_Q_BEGIN_WRITE)){
		fprintf(stderr, "BEGIN: %s\n", mqc_db_errmsg(db));
		return MQC_ROOMS_DB;
	}
	rc = fn(db, arg, res);
	if(rc == MQC_ROOMS_DB) fprintf(stderr, "rooms: %s\n", mqc_db_errmsg(db));
	if(rc == MQC_ROOMS_OK && mqc_exec(db, MQC_Q_COMMIT)){
		fprintf(stderr, "COMMIT: %s\n", mqc_db_errmsg(db));
		rc = MQC_ROOMS_DB;
	}
	if(mqc_db_in_txn(db)) mqc_exec(db, MQC_Q_ROLLBACK);
	return rc;
}

struct call {
	const char *room, *user;
	const char *const *users;
	size_t n;
	const char *owner;
	int64_t now, max;
	bool enable;
};

static mqc_rooms_rc do_create(mqc_db *db, void *a, mqc_rooms_res *res)
{
	struct call *c = a;
	return mqc_room_create(db, c->users, c->n, c->owner, c->n > 2 ? "Rules" : NULL, c->now, res);
}
static mqc_rooms_rc do_add(mqc_db *db, void *a, mqc_rooms_res *res)
{
	struct call *c = a;
	return mqc_room_member_add(db, c->room, c->user, c->now, c->max, res);
}
static mqc_rooms_rc do_remove(mqc_db *db, void *a, mqc_rooms_res *res)
{
	struct call *c = a;
	return mqc_room_member_remove(db, c->room, c->user, res);
}
static mqc_rooms_rc do_leave(mqc_db *db, void *a, mqc_rooms_res *res)
{
	struct call *c = a;
	return mqc_room_leave(db, c->room, c->user, res);
}
static mqc_rooms_rc do_enable(mqc_db *db, void *a, mqc_rooms_res *res)
{
	struct call *c = a;
	return mqc_room_set_enabled(db, c->room, c->enable, res);
}

static mqc_rooms_rc create(mqc_db *db, const char *const *users, size_t n, const char *owner, int64_t now,
		mqc_rooms_res *res)
{
	struct call c = { .users = users, .n = n, .owner = owner, .now = now };
	return in_txn(db, do_create, &c, res);
}
static mqc_rooms_rc add(mqc_db *db, const char *room, const char *user, int64_t now, int64_t max, mqc_rooms_res *res)
{
	struct call c = { .room = room, .user = user, .now = now, .max = max };
	return in_txn(db, do_add, &c, res);
}
static mqc_rooms_rc removal(mqc_db *db, const char *room, const char *user, mqc_rooms_res *res)
{
	struct call c = { .room = room, .user = user };
	return in_txn(db, do_remove, &c, res);
}
static mqc_rooms_rc leave(mqc_db *db, const char *room, const char *user, mqc_rooms_res *res)
{
	struct call c = { .room = room, .user = user };
	return in_txn(db, do_leave, &c, res);
}
static mqc_rooms_rc enable(mqc_db *db, const char *room, bool on, mqc_rooms_res *res)
{
	struct call c = { .room = room, .enable = on };
	return in_txn(db, do_enable, &c, res);
}

/* Users alice, bob, carol, erin (enabled), finn (disabled) exist; direct is alice's and
 * bob's direct room. */
static void rules(const char *direct)
{
	char reason[512], room[MQC_NAME_MAX + 1], race[MQC_NAME_MAX + 1];
	mqc_rooms_res res;
	mqc_db *db = NULL;
	mqc_rooms_rc rc;

	CHECKF(mqc_db_open(dbpath, MQC_OPEN_READWRITE, 5000, &db, reason, sizeof(reason)) == 0, "%s", reason);
	if(db == NULL) return;

	/* create: preconditions, then every user before anything is written */
	const char *three[] = { "erin", "alice", "bob" }, *dup[] = { "erin", "alice", "erin" };
	const char *pair[] = { "bob", "alice" }, *with_finn[] = { "alice", "finn" }, *with_nobody[] = { "alice", "nobody", "finn" };
	CHECK(create(db, three, 1, "erin", 1000, &res) == MQC_ROOMS_INVALID);
	CHECK(create(db, dup, 3, "erin", 1000, &res) == MQC_ROOMS_INVALID);
	CHECK(create(db, three, 3, "carol", 1000, &res) == MQC_ROOMS_INVALID); /* the owner is one of them */
	CHECK(mqc_exec(db, MQC_Q_BEGIN_WRITE) == 0);
	CHECK(mqc_room_create(db, pair, 2, "bob", "Us", 1000, &res) == MQC_ROOMS_INVALID); /* a direct room has no name */
	CHECK(mqc_exec(db, MQC_Q_ROLLBACK) == 0);
	CHECK(create(db, with_finn, 2, "alice", 1000, &res) == MQC_ROOMS_USER_DISABLED && res.user == with_finn[1]);
	CHECK(create(db, with_nobody, 3, "alice", 1000, &res) == MQC_ROOMS_NO_USER && res.user == with_nobody[1]);
	rc = create(db, pair, 2, "bob", 1000, &res); /* the pair's room, whoever asks */
	CHECKF(rc == MQC_ROOMS_OK && !res.created && !res.changed && res.direct && !strcmp(res.room, direct),
			"%s created %d room %s", mqc_rooms_rc_str(rc), res.created, res.room);
	CHECK(!strcmp(res.owner, "alice"));
	rc = create(db, three, 3, "erin", 1000, &res);
	CHECKF(rc == MQC_ROOMS_OK && res.created && res.changed && !res.direct && res.enabled && res.participants == 3
			&& !strcmp(res.owner, "erin"), "%s", mqc_rooms_rc_str(rc));
	snprintf(room, sizeof(room), "%s", res.room);
	CHECK(count("SELECT count(*) FROM rooms WHERE id = ?1 AND kind = 'group' AND name = 'Rules' AND created_by = 'erin'"
				" AND created_at = 1000 AND direct_key IS NULL", room, (char *)NULL) == 1);

	/* add: the order of the checks, the limit */
	CHECK(add(db, "nosuchroom", "carol", 2000, 0, &res) == MQC_ROOMS_NO_ROOM);
	CHECK(add(db, direct, "carol", 2000, 0, &res) == MQC_ROOMS_DIRECT && res.direct);
	CHECK(add(db, room, "bob", 2000, 0, &res) == MQC_ROOMS_PARTICIPANT && !res.changed);
	CHECK(add(db, room, "nobody", 2000, 0, &res) == MQC_ROOMS_NO_USER);
	CHECK(add(db, room, "finn", 2000, 0, &res) == MQC_ROOMS_USER_DISABLED);
	CHECK(add(db, room, "carol", 2000, 3, &res) == MQC_ROOMS_FULL && res.participants == 3);
	rc = add(db, room, "carol", 2000, 4, &res);
	CHECKF(rc == MQC_ROOMS_OK && res.changed && res.participants == 4, "%s", mqc_rooms_rc_str(rc));
	CHECK(count("SELECT joined_at FROM room_participants WHERE room_id = ?1 AND user_id = 'carol'", room, (char *)NULL) == 2000);
	CHECK(count("SELECT last_read_id FROM read_markers WHERE room_id = ?1 AND user_id = 'carol'", room, (char *)NULL) == 0);

	/* leave: the owner hands the room on (joined_at, then the smallest id: alice of
	 * alice, bob, erin); fewer than two left disable it; the last one keeps it */
	CHECK(leave(db, room, "finn", &res) == MQC_ROOMS_NOT_PARTICIPANT);
	CHECK(leave(db, direct, "alice", &res) == MQC_ROOMS_DIRECT);
	rc = leave(db, room, "erin", &res);
	CHECKF(rc == MQC_ROOMS_OK && res.changed && res.owner_changed && !strcmp(res.owner, "alice") && res.participants == 3
			&& !res.disabled_now && res.enabled, "%s owner %s", mqc_rooms_rc_str(rc), res.owner);
	CHECK(count("SELECT count(*) FROM rooms WHERE id = ?1 AND created_by = 'alice'", room, (char *)NULL) == 1);
	CHECK(leave(db, room, "erin", &res) == MQC_ROOMS_NOT_PARTICIPANT);
	/* remove: never below two */
	CHECK(removal(db, room, "erin", &res) == MQC_ROOMS_NOT_PARTICIPANT);
	CHECK(removal(db, room, "nobody", &res) == MQC_ROOMS_NO_USER && !strcmp(res.user, "nobody"));
	rc = removal(db, room, "carol", &res);
	CHECKF(rc == MQC_ROOMS_OK && res.changed && !res.owner_changed && res.participants == 2, "%s", mqc_rooms_rc_str(rc));
	rc = removal(db, room, "bob", &res);
	CHECKF(rc == MQC_ROOMS_TOO_FEW && !res.changed && res.participants == 1, "%s", mqc_rooms_rc_str(rc));
	CHECK(count("SELECT count(*) FROM room_participants WHERE room_id = ?1", room, (char *)NULL) == 2);
	rc = leave(db, room, "bob", &res);
	CHECKF(rc == MQC_ROOMS_OK && res.disabled_now && !res.enabled && !res.owner_changed && res.participants == 1,
			"%s", mqc_rooms_rc_str(rc));
	CHECK(count("SELECT enabled FROM rooms WHERE id = ?1", room, (char *)NULL) == 0);
	rc = leave(db, room, "alice", &res); /* the owner, the last one: nobody to hand it to */
	CHECKF(rc == MQC_ROOMS_OK && !res.disabled_now && !res.owner_changed && res.participants == 0
			&& !strcmp(res.owner, "alice"), "%s", mqc_rooms_rc_str(rc));
	/* enable/disable */
	CHECK(enable(db, room, true, &res) == MQC_ROOMS_TOO_FEW);
	CHECK(enable(db, "nosuchroom", true, &res) == MQC_ROOMS_NO_ROOM);
	CHECK(enable(db, room, false, &res) == MQC_ROOMS_OK && !res.changed);
	CHECK(enable(db, direct, false, &res) == MQC_ROOMS_OK && res.changed && !res.enabled && res.participants == 2);
	CHECK(enable(db, direct, false, &res) == MQC_ROOMS_OK && !res.changed);
	CHECK(enable(db, direct, true, &res) == MQC_ROOMS_OK && res.changed && res.enabled);
	CHECK(count("SELECT enabled FROM rooms WHERE id = ?1", direct, (char *)NULL) == 1);

	/* Two removals from a group of three at once: the second (mqchat-admin, another
	 * process) waits for the first (SQLite: the write lock; PostgreSQL: the room's row),
	 * then counts what it left, so the group keeps two. */
	const char *trio[] = { "alice", "bob", "carol" };
	char cmd[1400], err[512] = "";
	CHECK(create(db, trio, 3, "alice", 3000, &res) == MQC_ROOMS_OK);
	snprintf(race, sizeof(race), "%s", res.room);
	CHECK(mqc_exec(db, MQC_Q_BEGIN_WRITE) == 0);
	CHECK(mqc_room_member_remove(db, race, "bob", &res) == MQC_ROOMS_OK && res.participants == 2);
	snprintf(cmd, sizeof(cmd), "'%s' --db '%s' room remove %s carol 2>&1 </dev/null", admin, dbpath, race);
	fflush(NULL);
	FILE *second = popen(cmd, "r");
	CHECK(second != NULL);
	usleep(300 * 1000); /* it is waiting by now (if not, it comes after: the same answer) */
	CHECK(mqc_exec(db, MQC_Q_COMMIT) == 0);
	if(second){
		if(fgets(err, sizeof(err), second)) err[strcspn(err, "\n")] = '\0';
		while(fgetc(second) != EOF){}
		int st = pclose(second);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(err, "fewer than two participants"), "%s", err);
	}
	CHECK(count("SELECT count(*) FROM room_participants WHERE room_id = ?1", race, (char *)NULL) == 2);

	mqc_db_close(db);
}

int main(void)
{
	char dir[] = "/tmp/mqchat-test-admin-XXXXXX";
	char out[256], err[512], direct[64], group[64], group2[64], hash[MQC_PW_HASH_MAX];
	char p[400], pgname[64] = "", sql[160];
	const char *server;
	bool pg = dbc_test_pg(&server);

	admin = getenv("MQCHAT_ADMIN");
	if(admin == NULL || access(admin, X_OK)){
		fprintf(stderr, "MQCHAT_ADMIN is not set to the built mqchat-admin (CTest sets it)\n");
		return 1;
	}
	if(mkdtemp(dir) == NULL){
		perror("mkdtemp");
		return 1;
	}
	snprintf(scratch, sizeof(scratch), "%s/stdin", dir);
	if(pg){
		if(dbc_pg_create(server, "mqchat_admin", pgname, sizeof(pgname), dbpath, sizeof(dbpath))) return 1;
	}else{
		snprintf(dbpath, sizeof(dbpath), "%s/a.db", dir);
	}
	printf("engine %s, database %s\n", pg ? "postgresql" : "sqlite", dbpath);

	CHECK(run_admin(NULL, "user list", NULL, 0) == 1); /* no database (or an empty one) yet */
	CHECK(run_admin(NULL, "init", out, sizeof(out)) == 0);
	CHECKF(strstr(out, "schema version") != NULL, "%s", out);
	CHECKF(strstr(out, "(1 migration") != NULL || strstr(out, "migrations applied") != NULL, "%s", out);
	CHECK(run_admin(NULL, "init", out, sizeof(out)) == 0);
	CHECKF(strstr(out, "(0 migrations applied)") != NULL, "%s", out);

	CHECK(run_admin("secret\n", "user add alice --display-name 'Alice A'", NULL, 0) == 0);
	CHECK(run_admin("pw-bob", "user add bob", NULL, 0) == 0);
	CHECK(run_admin("pw-carol\n", "user add carol --iterations 2000", NULL, 0) == 0);
	CHECK(run_admin("\n", "user add dave", NULL, 0) == 1);      /* empty password */
	CHECK(run_admin("", "user add dave", NULL, 0) == 1);        /* no password */
	CHECK(run_admin("x\n", "user add 'b/d'", NULL, 0) == 1);    /* bad name */
	CHECK(run_admin("x\n", "user add alice", NULL, 0) == 1);    /* exists */
	CHECK(run_admin("x\n", "user add erin --iterations 10", NULL, 0) == 1);
	CHECK(run_admin(NULL, "user frobnicate", NULL, 0) == 1);
	CHECK(run_admin(NULL, "user list", out, sizeof(out)) == 0);
	CHECKF(!strcmp(out, "alice\tenabled\tAlice A"), "%s", out);

	CHECK(run_admin(NULL, "room create alice bob", direct, sizeof(direct)) == 0);
	CHECK(mqc_name_valid(direct, strlen(direct)));
	CHECK(run_admin(NULL, "room create bob alice", out, sizeof(out)) == 0);
	CHECKF(!strcmp(out, direct), "%s vs %s", out, direct);
	CHECK(run_admin(NULL, "room create --name Team carol alice bob", group, sizeof(group)) == 0);
	CHECK(mqc_name_valid(group, strlen(group)) && strcmp(group, direct));
	CHECK(run_admin(NULL, "room create alice alice", NULL, 0) == 1);
	CHECK(run_admin(NULL, "room create alice nobody", NULL, 0) == 1);
	CHECK(run_admin(NULL, "room create alice", NULL, 0) == 1);
	REFUSED("room create --name Us alice bob", "--name", "a direct room (two distinct users) has no name");

	snprintf(p, sizeof(p), "room add %s carol", direct);
	CHECK(run_admin(NULL, p, NULL, 0) == 1); /* a direct room never changes */
	snprintf(p, sizeof(p), "room remove %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(run_admin(NULL, p, NULL, 0) == 1);
	/* the request API's rules: a group keeps two participants; the owner's removal hands it on */
	snprintf(p, sizeof(p), "room remove %s carol", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 1); /* alice alone would be left */
	snprintf(p, sizeof(p), "room add %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(run_admin(NULL, p, NULL, 0) == 1);
	snprintf(p, sizeof(p), "room remove %s carol", group); /* carol made it */
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	snprintf(p, sizeof(p), "room add %s carol", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	snprintf(p, sizeof(p), "room disable %s", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(run_admin(NULL, "room enable nosuchroom", NULL, 0) == 1);
	CHECK(run_admin(NULL, "user disable bob", NULL, 0) == 0);
	snprintf(p, sizeof(p), "room remove %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	snprintf(p, sizeof(p), "room add %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 1); /* a disabled user is not added */
	CHECK(run_admin(NULL, "user disable nobody", NULL, 0) == 1);
	CHECK(run_admin("new-pw\n", "user passwd carol", NULL, 0) == 0);
	CHECK(run_admin("x\n", "user passwd nobody", NULL, 0) == 1);

	/* what landed in the database */
	CHECK(count("SELECT count(*) FROM users", (char *)NULL) == 3);
	CHECK(count("SELECT disabled FROM users WHERE id='bob'", (char *)NULL) == 1);
	CHECK(count("SELECT count(*) FROM rooms", (char *)NULL) == 2);
	CHECKF(!strcmp(text(out, sizeof(out), "SELECT direct_key FROM rooms WHERE id=?1 AND kind='direct' AND created_by='alice'",
			direct, (char *)NULL), "alice:bob"), "%s", out);
	CHECK(count("SELECT count(*) FROM room_participants WHERE room_id=?1", group, (char *)NULL) == 2);
	/* alice and carol: bob was removed once disabled */
	CHECK(count("SELECT count(*) FROM read_markers WHERE user_id='carol' AND room_id=?1", group, (char *)NULL) == 1);
	/* room add starts carol with what came before read */
	/* carol was removed (and added back): the room passed to alice, the longest-standing */
	CHECK(count("SELECT enabled FROM rooms WHERE id=?1 AND name='Team' AND created_by='alice'", group, (char *)NULL) == 0);
	text(hash, sizeof(hash), "SELECT password_hash FROM users WHERE id='alice'", (char *)NULL);
	CHECK(mqc_password_verify("secret", 6, hash) == 1);
	text(hash, sizeof(hash), "SELECT password_hash FROM users WHERE id='bob'", (char *)NULL);
	CHECK(mqc_password_verify("pw-bob", 6, hash) == 1);
	text(hash, sizeof(hash), "SELECT password_hash FROM users WHERE id='carol'", (char *)NULL);
	CHECK(mqc_password_verify("new-pw", 6, hash) == 1);
	CHECK(mqc_password_verify("pw-carol", 8, hash) == 0);

	/* The rules mqchat-admin now takes from store/rooms.c, the request API's. */
	/* A disabled user is in no new room, also when the pair's direct room exists. */
	CHECK(run_admin_to(NULL, "room create alice carol bob", err, sizeof(err), true) == 1);
	CHECKF(!strcmp(err, "mqchat-admin: bob is disabled (nothing created)"), "%s", err);
	CHECK(run_admin(NULL, "room create alice bob", NULL, 0) == 1);
	CHECK(count("SELECT count(*) FROM rooms", (char *)NULL) == 2);
	CHECK(run_admin(NULL, "user enable bob", NULL, 0) == 0);
	CHECK(run_admin(NULL, "room create alice bob", out, sizeof(out)) == 0);
	CHECKF(!strcmp(out, direct), "%s vs %s", out, direct);
	/* room add: the new participant has read what the room held (its last message),
	 * and a marker further on is never moved back. */
	CHECK(operator("UPDATE rooms SET last_msg_id = 4242 WHERE id = ?1", group, (char *)NULL) == 0);
	snprintf(p, sizeof(p), "room add %s bob", group);
	CHECK(run_admin(NULL, p, out, sizeof(out)) == 0);
	snprintf(sql, sizeof(sql), "bob added to room %s", group);
	CHECKF(!strcmp(out, sql), "%s", out);
	CHECK(count("SELECT last_read_id FROM read_markers WHERE user_id='bob' AND room_id=?1", group, (char *)NULL) == 4242);
	CHECK(operator("UPDATE read_markers SET last_read_id = 5000 WHERE user_id='bob' AND room_id=?1", group, (char *)NULL) == 0);
	snprintf(p, sizeof(p), "room remove %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	snprintf(p, sizeof(p), "room add %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(count("SELECT last_read_id FROM read_markers WHERE user_id='bob' AND room_id=?1", group, (char *)NULL) == 5000);
	CHECK(run_admin_to(NULL, p, err, sizeof(err), true) == 1);
	snprintf(sql, sizeof(sql), "mqchat-admin: bob is already a participant of room %s", group);
	CHECKF(!strcmp(err, sql), "%s", err);
	/* room remove never leaves one participant: refused, nothing changed */
	snprintf(p, sizeof(p), "room remove %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	snprintf(p, sizeof(p), "room remove %s alice", group);
	CHECK(run_admin_to(NULL, p, err, sizeof(err), true) == 1);
	CHECKF(strstr(err, "would leave room") && strstr(err, "fewer than two participants"), "%s", err);
	CHECK(count("SELECT count(*) FROM room_participants WHERE room_id=?1", group, (char *)NULL) == 2);
	CHECK(count("SELECT count(*) FROM rooms WHERE id=?1 AND created_by='alice'", group, (char *)NULL) == 1);
	snprintf(p, sizeof(p), "room remove %s nobody", group);
	CHECK(run_admin_to(NULL, p, err, sizeof(err), true) == 1);
	CHECKF(!strcmp(err, "mqchat-admin: no such user: nobody"), "%s", err);
	snprintf(p, sizeof(p), "room remove %s bob", group);
	CHECK(run_admin_to(NULL, p, err, sizeof(err), true) == 1);
	snprintf(sql, sizeof(sql), "mqchat-admin: bob is not a participant of room %s", group);
	CHECKF(!strcmp(err, sql), "%s", err);
	/* room list: one line a room, participants in id order */
	CHECK(run_admin(NULL, "room list", out, sizeof(out)) == 0);
	snprintf(sql, sizeof(sql), "%s\tdirect\tenabled\talice\talice,bob\t", direct);
	CHECKF(!strcmp(out, sql), "%s", out);
	/* a room is enabled with two participants, not with one (an operator left it one) */
	snprintf(p, sizeof(p), "room enable %s", group);
	CHECK(run_admin(NULL, p, out, sizeof(out)) == 0);
	CHECK(count("SELECT enabled FROM rooms WHERE id=?1", group, (char *)NULL) == 1);
	snprintf(p, sizeof(p), "room disable %s", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(run_admin(NULL, p, NULL, 0) == 0); /* already so: still fine */
	CHECK(operator("DELETE FROM room_participants WHERE room_id=?1 AND user_id='carol'", group, (char *)NULL) == 0);
	snprintf(p, sizeof(p), "room enable %s", group);
	CHECK(run_admin_to(NULL, p, err, sizeof(err), true) == 1);
	CHECKF(strstr(err, "fewer than two participants: not enabled") != NULL, "%s", err);
	CHECK(count("SELECT enabled FROM rooms WHERE id=?1", group, (char *)NULL) == 0);

	/* Display names and room names follow the request API's rule (store/text.c): valid
	 * UTF-8, no control characters, 1..128 bytes. Refused text leaves nothing behind. */
	REFUSED("user add erin --display-name 'Zo\xEB'", "--display-name", "not valid UTF-8 (a sequence cut short");
	REFUSED("user add erin --display-name 'B\xE4se'", "--display-name", "not valid UTF-8 (an incomplete sequence");
	REFUSED("user add erin --display-name '\xC0\xAF'", "--display-name", "not valid UTF-8 (an overlong encoding");
	REFUSED("user add erin --display-name 'x\xED\xA0\x80'", "--display-name", "not valid UTF-8 (a UTF-16 surrogate");
	REFUSED("user add erin --display-name '\xFF'", "--display-name", "not valid UTF-8");
	REFUSED("user add erin --display-name 'two\nlines'", "--display-name", "must not contain control characters (byte 0x0a");
	REFUSED("user add erin --display-name 'tab\there'", "--display-name", "must not contain control characters (byte 0x09");
	REFUSED("user add erin --display-name '\x1B[2J'", "--display-name", "must not contain control characters (byte 0x1b");
	REFUSED("user add erin --display-name 'del\x7F'", "--display-name", "must not contain control characters (byte 0x7f");
	REFUSED("user add erin --display-name ''", "--display-name", "must not be empty");
	char arg[600], big[200];
	memset(big, 'd', 129);
	big[129] = '\0';
	snprintf(arg, sizeof(arg), "user add erin --display-name '%s'", big);
	REFUSED(arg, "--display-name", "at most 128 bytes");
	REFUSED("room create --name 'Lunch\xE2\x82' carol alice bob", "--name", "not valid UTF-8");
	REFUSED("room create --name 'caf\xE9' carol alice bob", "--name", "not valid UTF-8");
	REFUSED("room create --name 'a\nb' carol alice bob", "--name", "must not contain control characters");
	REFUSED("room create --name '\x01' carol alice bob", "--name", "must not contain control characters");
	REFUSED("room create --name '' carol alice bob", "--name", "must not be empty");
	snprintf(arg, sizeof(arg), "room create --name '%s' carol alice bob", big);
	REFUSED(arg, "--name", "at most 128 bytes");
	/* What is fine: UTF-8 of any script, exactly 128 bytes. */
	big[128] = '\0';
	snprintf(arg, sizeof(arg), "user add erin --display-name '%s'", big);
	CHECK(run_admin("pw-erin\n", arg, NULL, 0) == 0);
	CHECK(run_admin("pw-finn\n", "user add finn --display-name 'Zo\xC3\xAB \xF0\x9F\x98\x80'", NULL, 0) == 0);
	CHECK(run_admin(NULL, "room create --name 'Caf\xC3\xA9 \xE2\x82\xAC' carol alice bob", group2, sizeof(group2)) == 0);
	CHECK(count("SELECT count(*) FROM users", (char *)NULL) == 5); /* alice, bob, carol, erin, finn */
	CHECK(count("SELECT count(*) FROM rooms", (char *)NULL) == 3);
	CHECK(count("SELECT count(*) FROM users WHERE id = 'erin' AND length(display_name) = 128", (char *)NULL) == 1);
	CHECK(count("SELECT count(*) FROM users WHERE id = 'finn' AND display_name = 'Zo\xC3\xAB \xF0\x9F\x98\x80'", (char *)NULL) == 1);
	CHECK(count("SELECT count(*) FROM rooms WHERE id = ?1 AND name = 'Caf\xC3\xA9 \xE2\x82\xAC'", group2, (char *)NULL) == 1);
	CHECK(count("SELECT count(*) FROM room_participants WHERE room_id = ?1", group2, (char *)NULL) == 3);

	/* Device tokens: the secret alone on stdout, one line each in the listing. */
	char secret[128], id[64];
	CHECK(run_admin(NULL, "token add alice laptop", secret, sizeof(secret)) == 0);
	CHECKF(mqc_token_looks(secret, strlen(secret)), "%s", secret);
	CHECK(run_admin(NULL, "token add alice phone --expires-in 3600", NULL, 0) == 0);
	CHECK(run_admin(NULL, "token add nobody phone", NULL, 0) == 1);
	CHECK(run_admin(NULL, "user disable finn", NULL, 0) == 0);
	CHECK(run_admin(NULL, "token add finn phone", NULL, 0) == 1); /* a disabled user gets none */
	CHECK(run_admin(NULL, "token list alice", out, sizeof(out)) == 0);
	CHECKF(strstr(out, "\tlaptop\t") != NULL && strstr(out, "\t-\t-") != NULL, "%s", out);
	CHECK(count("SELECT count(*) FROM tokens WHERE user_id = 'alice'", (char *)NULL) == 2);
	CHECK(count("SELECT count(*) FROM tokens WHERE user_id = 'alice' AND name = 'phone' AND expires_at = created_at + 3600000",
				(char *)NULL) == 1);
	text(id, sizeof(id), "SELECT id FROM tokens WHERE name = 'laptop'", (char *)NULL);
	snprintf(p, sizeof(p), "token revoke alice %s", id);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(run_admin(NULL, p, NULL, 0) == 1);
	CHECK(count("SELECT count(*) FROM tokens", (char *)NULL) == 1);
	CHECK(run_admin("pw-alice2\n", "user passwd alice", NULL, 0) == 0); /* revokes the rest */
	CHECK(count("SELECT count(*) FROM tokens", (char *)NULL) == 0);

	CHECK(run_admin(NULL, "user enable bob", NULL, 0) == 0);
	rules(direct);

	if(pg){
		CHECK(dbc_pg_drop(server, pgname) == 0);
	}
	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	if(system(p) != 0) fprintf(stderr, "could not remove %s\n", dir);
	return CHECK_RESULT();
}
