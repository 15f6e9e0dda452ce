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

/* Runs "mqchat-admin --db DB args" with input on stdin; its stdout (first line) into out.
 * Returns the exit status. */
static int run_admin(const char *input, const char *args, char *out, size_t outlen)
{
	char cmd[1024], inpath[300];
	FILE *p;
	int st;

	snprintf(inpath, sizeof(inpath), "%s.in", dbpath);
	p = fopen(inpath, "w");
	if(p == NULL) return -1;
	fputs(input ? input : "", p);
	fclose(p);
	snprintf(cmd, sizeof(cmd), "MQCHAT_PW_ITERATIONS=1000 '%s' --db '%s' %s < '%s' 2>/dev/null",
			admin, dbpath, args, inpath);
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
	snprintf(p, sizeof(p), "room add %s bob", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(run_admin(NULL, p, NULL, 0) == 1);
	snprintf(p, sizeof(p), "room disable %s", group);
	CHECK(run_admin(NULL, p, NULL, 0) == 0);
	CHECK(run_admin(NULL, "room enable nosuchroom", NULL, 0) == 1);
	CHECK(run_admin(NULL, "user disable bob", NULL, 0) == 0);
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
		CHECK(count(db, sql) == 3);
		snprintf(sql, sizeof(sql), "SELECT enabled FROM rooms WHERE id='%s' AND name='Team' AND created_by='carol'", group);
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

	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	if(system(p) != 0) fprintf(stderr, "could not remove %s\n", dir);
	return CHECK_RESULT();
}
