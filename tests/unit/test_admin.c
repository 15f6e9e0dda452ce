/*
 * test_admin.c: mqchat-admin end to end on a scratch database (MQCHAT_ADMIN, set by CTest,
 * is the built binary). Checks exit codes, what it prints, and what lands in the tables.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "mqchat_store.h"

static const char *admin;
static char dbpath[256];

/* Runs "mqchat-admin --db DB args" with input on stdin; its stdout (first line) into out,
 * or its stderr when want_stderr. Returns the exit status. */
static int run_admin_to(const char *input, const char *args, char *out, size_t outlen, bool want_stderr)
{
	char cmd[1024], inpath[300];
	FILE *p;
	int st;

	snprintf(inpath, sizeof(inpath), "%s.in", dbpath);
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

static int count(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int n = -1;

	if(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW){
		n = sqlite3_column_int(s, 0);
	}
	sqlite3_finalize(s);
	return n;
}

static char *text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *s = NULL;

	out[0] = '\0';
	if(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW
			&& sqlite3_column_text(s, 0)){
		snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(s, 0));
	}
	sqlite3_finalize(s);
	return out;
}

int main(void)
{
	char dir[] = "/tmp/mqchat-test-admin-XXXXXX";
	char out[256], direct[64], group[64], sql[256], hash[MQC_PW_HASH_MAX], reason[256];
	sqlite3 *db = NULL;
	char p[300];

	admin = getenv("MQCHAT_ADMIN");
	if(admin == NULL || access(admin, X_OK)){
		fprintf(stderr, "MQCHAT_ADMIN is not set to the built mqchat-admin (CTest sets it)\n");
		return 1;
	}
	if(mkdtemp(dir) == NULL){
		perror("mkdtemp");
		return 1;
	}
	snprintf(dbpath, sizeof(dbpath), "%s/a.db", dir);

	CHECK(run_admin(NULL, "user list", NULL, 0) == 1); /* no database yet */
	CHECK(run_admin(NULL, "init", out, sizeof(out)) == 0);
	CHECKF(strstr(out, "schema version") != NULL, "%s", out);
	CHECK(run_admin(NULL, "init", NULL, 0) == 0);

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
	CHECK(mqc_db_open(dbpath, MQC_OPEN_READONLY, 1000, &db, reason, sizeof(reason)) == 0);
	if(db){
		CHECK(count(db, "SELECT count(*) FROM users") == 3);
		CHECK(count(db, "SELECT disabled FROM users WHERE id='bob'") == 1);
		CHECK(count(db, "SELECT count(*) FROM rooms") == 2);
		snprintf(sql, sizeof(sql), "SELECT direct_key FROM rooms WHERE id='%s' AND kind='direct' AND created_by='alice'", direct);
		CHECKF(!strcmp(text(db, sql, out, sizeof(out)), "alice:bob"), "%s", out);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM room_participants WHERE room_id='%s'", group);
		CHECK(count(db, sql) == 2); /* alice and carol: bob was removed once disabled */
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM read_markers WHERE user_id='carol' AND room_id='%s'", group);
		CHECK(count(db, sql) == 1); /* room add starts carol with what came before read */
		/* carol was removed (and added back): the room passed to alice, the longest-standing */
		snprintf(sql, sizeof(sql), "SELECT enabled FROM rooms WHERE id='%s' AND name='Team' AND created_by='alice'", group);
		CHECK(count(db, sql) == 0);
		text(db, "SELECT password_hash FROM users WHERE id='alice'", hash, sizeof(hash));
		CHECK(mqc_password_verify("secret", 6, hash) == 1);
		text(db, "SELECT password_hash FROM users WHERE id='bob'", hash, sizeof(hash));
		CHECK(mqc_password_verify("pw-bob", 6, hash) == 1);
		text(db, "SELECT password_hash FROM users WHERE id='carol'", hash, sizeof(hash));
		CHECK(mqc_password_verify("new-pw", 6, hash) == 1);
		CHECK(mqc_password_verify("pw-carol", 8, hash) == 0);
		sqlite3_close(db);
	}

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
	CHECK(run_admin(NULL, "room create --name 'Caf\xC3\xA9 \xE2\x82\xAC' carol alice bob", group, sizeof(group)) == 0);
	CHECK(mqc_db_open(dbpath, MQC_OPEN_READONLY, 1000, &db, reason, sizeof(reason)) == 0);
	if(db){
		CHECK(count(db, "SELECT count(*) FROM users") == 5); /* alice, bob, carol, erin, finn */
		CHECK(count(db, "SELECT count(*) FROM rooms") == 3);
		CHECK(count(db, "SELECT count(*) FROM users WHERE id = 'erin' AND length(display_name) = 128") == 1);
		CHECK(count(db, "SELECT count(*) FROM users WHERE id = 'finn' AND display_name = 'Zo\xC3\xAB \xF0\x9F\x98\x80'") == 1);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM rooms WHERE id = '%s' AND name = 'Caf\xC3\xA9 \xE2\x82\xAC'", group);
		CHECK(count(db, sql) == 1);
		sqlite3_close(db);
	}

	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	if(system(p) != 0) fprintf(stderr, "could not remove %s\n", dir);
	return CHECK_RESULT();
}
