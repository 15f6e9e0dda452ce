/*
 * Unit tests of the plugin's membership snapshot (plugin/cache.c, plugin/strmap.c) against
 * a real database: loading, membership checks, control updates applied by version (stale
 * ones ignored, unknown rooms and users created), a snapshot read in one state, a failed
 * load that leaves the connection usable.
 *
 * SQLite (a file in a temp directory) unless MQCHAT_TEST_ENGINE=postgresql: then a fresh
 * database with a random name on the server MQCHAT_TEST_PG names
 * (postgresql://postgres@127.0.0.1:PORT/postgres, scripts/pg.sh start DIR), dropped at the end.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "dbconn.h"

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define H64B "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#include "../../plugin/cache.c"
#include "../../plugin/strmap.c"

static int failures;
#define CHECK(cond) do{ if(!(cond)){ fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); failures++; } }while(0)

static void pg_drop(void);

/* The same SQL for both engines (plain INSERTs and UPDATEs). */
static void exec(mqc_db *db, const char *sql)
{
	if(mqc_exec_script(db, sql)){
		fprintf(stderr, "SQL failed: %s\n%s\n", mqc_db_errmsg(db), sql);
		pg_drop();
		exit(2);
	}
}

/* ------------------------------------------------------------ a PostgreSQL database of our own */

static char pg_server[512], pg_name[64];

/* Creates t_plugin_cache_<random> on the server; where gets its URI. 0, or -1 (printed). */
static int pg_create(const char *server, char *where, size_t wherelen)
{
	snprintf(pg_server, sizeof(pg_server), "%s", server);
	return dbc_pg_create(server, "t_plugin_cache", pg_name, sizeof(pg_name), where, wherelen);
}

static void pg_drop(void)
{
	if(pg_name[0]) dbc_pg_drop(pg_server, pg_name);
}

static bool member(struct cache *c, const char *room, const char *user)
{
	struct cache_room *r = cache__room(c, room, strlen(room));
	struct cache_user *u = cache__user(c, user, strlen(user));
	return r && u && cache__is_member(r, u);
}

/* strmap values are structs whose first member is their key. */
struct kv {
	char *name;
	char buf[16];
};

static void test_strmap_many(void)
{
	struct strmap m = {0};
	static struct kv kv[5000];
	int err;
	for(int i = 0; i < 5000; i++){
		snprintf(kv[i].buf, sizeof(kv[i].buf), "k%d", i);
		kv[i].name = kv[i].buf;
		CHECK(strmap__put(&m, kv[i].name, strlen(kv[i].name), &kv[i], &err) == NULL && err == 0);
	}
	CHECK(m.len == 5000);
	for(int i = 0; i < 5000; i++) CHECK(strmap__get(&m, kv[i].name, strlen(kv[i].name)) == &kv[i]);
	CHECK(strmap__get(&m, "k5000", 5) == NULL);
	/* Lookup by a prefix of a longer string (how rooms are found inside topics). */
	CHECK(strmap__get(&m, "k12/messages", 3) == &kv[12]);
	/* Delete every other key; the rest stay reachable (backward-shift deletion). */
	for(int i = 0; i < 5000; i += 2) CHECK(strmap__del(&m, kv[i].name, strlen(kv[i].name)) == &kv[i]);
	CHECK(strmap__del(&m, "k0", 2) == NULL);
	CHECK(m.len == 2500);
	for(int i = 0; i < 5000; i++){
		void *want = (i % 2) ? &kv[i] : NULL;
		CHECK(strmap__get(&m, kv[i].name, strlen(kv[i].name)) == want);
	}
	for(int i = 0; i < 5000; i += 2) strmap__put(&m, kv[i].name, strlen(kv[i].name), &kv[i], &err);
	for(int i = 0; i < 5000; i++) CHECK(strmap__get(&m, kv[i].name, strlen(kv[i].name)) == &kv[i]);
	strmap__free(&m);
}

/* The snapshot is of one state: what commits while it is read is not in it. The reader
 * runs cache__load's statements by hand, the writer changes the tables in between. */
static void test_one_state(mqc_db *db, mqc_db *ro)
{
	mqc_stmt *s;
	int rc, users = 0;

	CHECK(mqc_exec(ro, MQC_Q_SNAP_BEGIN) == 0);
	s = mqc_q(ro, MQC_Q_SNAP_COUNTS);
	CHECK(s && mqc_step(s) == MQC_ROW);
	int64_t v = s ? mqc_col_int64(s, 0) : 0, nusers = s ? mqc_col_int64(s, 1) : 0;
	mqc_reset(s);
	exec(db, "INSERT INTO users(id, password_hash, created_at) VALUES ('frank','f',0)");
	s = mqc_q(ro, MQC_Q_SNAP_USERS);
	CHECK(s != NULL);
	while(s && (rc = mqc_step(s)) == MQC_ROW){
		users++;
		CHECK(strcmp(mqc_col_text(s, 0), "frank") != 0);
	}
	mqc_reset(s);
	CHECK(users == nusers);
	CHECK(mqc_exec(ro, MQC_Q_COMMIT) == 0);
	CHECK(!mqc_db_in_txn(ro));

	/* After it, the next load has it, at a newer acl_version. */
	char reason[512];
	struct cache *c = cache__load(ro, reason, sizeof(reason));
	CHECK(c && c->acl_version == v + 1 && cache__user(c, "frank", 5));
	cache__free(c);
	exec(db, "DELETE FROM users WHERE id = 'frank'");
}

/* A load that fails names what it read and ends its transaction (on PostgreSQL a failed
 * statement aborts the transaction: without the rollback every later load would fail). */
static void test_failed_load(mqc_db *db, mqc_db *ro)
{
	char reason[512] = "";
	exec(db, "ALTER TABLE tokens RENAME TO tokens_away");
	struct cache *c = cache__load(ro, reason, sizeof(reason));
	CHECK(c == NULL);
	CHECK(strstr(reason, "reading tokens") != NULL);
	CHECK(!mqc_db_in_txn(ro));
	CHECK(mqc_db_fault_last(ro) != MQC_DBF_LOST);
	exec(db, "ALTER TABLE tokens_away RENAME TO tokens");
	c = cache__load(ro, reason, sizeof(reason));
	CHECK(c != NULL && c->tokens.len == 1);
	if(!c) fprintf(stderr, "load after a failed one: %s\n", reason);
	cache__free(c);
}

/* PostgreSQL announces every acl_version change (what the reload thread waits for);
 * SQLite has nothing to listen to and is polled. */
static void test_announced(mqc_db *db, mqc_db *ro, bool pg)
{
	if(!pg){
		CHECK(mqc_db_listen(ro) == -1);
		return;
	}
	CHECK(mqc_db_listen(ro) == 0);
	CHECK(mqc_db_wait(ro, 0) == 0);
	exec(db, "UPDATE rooms SET msg_count = msg_count + 1 WHERE id = 'r1'"); /* not a membership change */
	CHECK(mqc_db_wait(ro, 200) == 0);
	exec(db, "DELETE FROM room_participants WHERE room_id = 'r1' AND user_id = 'carol'");
	int got = 0;
	for(int i = 0; i < 20 && !got; i++) got = mqc_db_wait(ro, 100);
	CHECK(got == 1);
	CHECK(mqc_db_wait(ro, 0) == 0); /* one change, one wake-up */
}

int main(void)
{
	char dir[] = "/tmp/mqchat-cache-XXXXXX", path[600], reason[512];
	const char *server;
	bool pg = dbc_test_pg(&server);
	mqc_db *db, *ro;

	test_strmap_many();

	if(!mkdtemp(dir)) return 2;
	snprintf(path, sizeof(path), "%s/t.db", dir);
	if(pg){
		if(pg_create(server, path, sizeof(path))) return 2;
		printf("test_plugin_cache: PostgreSQL %s\n", path);
	}
	if(mqc_db_open(path, MQC_OPEN_MIGRATE, 1000, &db, reason, sizeof(reason)) || mqc_db_migrate(db, NULL, reason, sizeof(reason))){
		fprintf(stderr, "open: %s\n", reason);
		pg_drop();
		return 2;
	}
	exec(db, "INSERT INTO users(id, password_hash, created_at) VALUES ('alice','x',0),('bob','y',0),('carol','z',0);"
			"INSERT INTO users(id, password_hash, created_at, disabled) VALUES ('dave','w',0,1);"
			"INSERT INTO rooms(id, kind, created_by, created_at, direct_key) VALUES ('r1','direct','alice',0,'alice:bob');"
			"INSERT INTO rooms(id, kind, created_by, created_at) VALUES ('g1','group','alice',0);"
			"INSERT INTO room_participants VALUES ('r1','alice',0),('r1','bob',0),"
			"('g1','alice',0),('g1','bob',0),('g1','carol',0);"
			"UPDATE rooms SET enabled = 0 WHERE id = 'g1';"
			/* tokens: one good, one whose id could not be named safely, one whose hash no secret matches */
			"INSERT INTO tokens(id, user_id, name, hash, created_at) VALUES"
			" ('tk0123456789abcdef','alice','phone','" H64 "',0),"
			" ('tk\"x\"','alice','bad id','" H64B "',0),"
			" ('tkfedcba9876543210','bob','bad hash','NOT-HEX',0);");

	struct cache *c = cache__load(db, reason, sizeof(reason));
	CHECK(c != NULL);
	if(!c){
		fprintf(stderr, "load: %s\n", reason);
		pg_drop();
		return 1;
	}
	CHECK(c->nusers == 4);
	CHECK(c->rooms.len == 2);
	CHECK(member(c, "r1", "alice") && member(c, "r1", "bob") && !member(c, "r1", "carol"));
	CHECK(member(c, "g1", "carol"));
	CHECK(!cache__room(c, "g1", 2)->enabled);
	CHECK(cache__room(c, "r1", 2)->enabled);
	CHECK(cache__user(c, "dave", 4)->disabled);
	CHECK(c->tokens.len == 1);
	CHECK(cache__token(c, H64) && !strcmp(cache__token(c, H64)->user->name, "alice"));
	CHECK(!cache__token(c, H64B) && !cache__token_by_id(c, "tkfedcba9876543210"));
	CHECK(!cache__user(c, "alice", 5)->disabled);
	CHECK(strcmp(cache__user(c, "bob", 3)->pwhash, "y") == 0);

	/* Version of g1 after 3 participant inserts and one enabled change. */
	int64_t v = cache__room(c, "g1", 2)->version;
	CHECK(v == 5);

	char *m1[] = {"alice", "carol"};
	struct room_update u = { .room = "g1", .members = m1, .nmembers = 2, .version = v + 1, .enabled = true };
	CHECK(cache__apply(c, &u) == 1);
	CHECK(!member(c, "g1", "bob") && member(c, "g1", "carol") && cache__room(c, "g1", 2)->enabled);

	/* A stale update (same or older version) changes nothing. */
	char *m2[] = {"alice", "bob", "carol"};
	struct room_update stale = { .room = "g1", .members = m2, .nmembers = 3, .version = v, .enabled = false };
	CHECK(cache__apply(c, &stale) == 0);
	CHECK(!member(c, "g1", "bob") && cache__room(c, "g1", 2)->enabled);

	/* A new room with a user the snapshot does not know yet. */
	char *m3[] = {"erin", "alice"};
	struct room_update fresh = { .room = "n1", .members = m3, .nmembers = 2, .version = 1, .enabled = true };
	CHECK(cache__apply(c, &fresh) == 1);
	CHECK(member(c, "n1", "erin") && member(c, "n1", "alice"));
	CHECK(cache__user(c, "erin", 4)->pwhash == NULL); /* cannot log in until a reload */

	/* acl_version moves with every membership change, whoever makes it. */
	int64_t before = c->acl_version;
	exec(db, "INSERT INTO room_participants VALUES ('r1','carol',0)");
	struct cache *c2 = cache__load(db, reason, sizeof(reason));
	CHECK(c2 && c2->acl_version == before + 1);
	CHECK(c2 && member(c2, "r1", "carol"));
	/* Storing messages does not. */
	exec(db, "UPDATE rooms SET msg_count = msg_count + 1, last_msg_id = 5 WHERE id = 'r1'");
	struct cache *c3 = cache__load(db, reason, sizeof(reason));
	CHECK(c3 && c3->acl_version == before + 1);

	/* The plugin's own connection: read-only. */
	if(mqc_db_open(path, MQC_OPEN_READONLY, 1000, &ro, reason, sizeof(reason))){
		fprintf(stderr, "open read-only: %s\n", reason);
		CHECK(0);
	}else{
		struct cache *c4 = cache__load(ro, reason, sizeof(reason));
		CHECK(c4 && c4->acl_version == before + 1 && c4->nusers == 4 && member(c4, "r1", "carol"));
		CHECK(!mqc_db_in_txn(ro));
		cache__free(c4);
		test_one_state(db, ro);
		test_failed_load(db, ro);
		test_announced(db, ro, pg);
		mqc_db_close(ro);
	}

	cache__free(c);
	cache__free(c2);
	cache__free(c3);
	mqc_db_close(db);
	pg_drop();
	snprintf(path, sizeof(path), "%s/t.db", dir);
	unlink(path);
	char wal[700];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	unlink(wal);
	snprintf(wal, sizeof(wal), "%s-shm", path);
	unlink(wal);
	rmdir(dir);
	if(failures) fprintf(stderr, "%d check(s) failed\n", failures);
	else printf("test_plugin_cache: all checks passed\n");
	return failures ? 1 : 0;
}
