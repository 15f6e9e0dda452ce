/*
 * mqchat-histseed: the history database of benchmark scenario 3 (docs/benchmarks.md), fast.
 *
 *   mqchat-histseed --db PATH --password PW [--rooms 10000] [--per-room 900]
 *                   [--hot 1000000] [--small 100] [--iterations 1000]
 *                   [--rooms-file FILE] [--info FILE]
 *
 * Makes, in a fresh file:
 *   - users u0..u(2R-1) (room r's members are u(2r) and u(2r+1), like scenario 2), h0..h9
 *     (the senders of the hot room) and "reader" (the user mqchat-reqbench queries as);
 *   - R group rooms of --per-room messages each, the hot room of --hot messages (reader +
 *     h0..h9), and the small room of --small messages (reader + h0); reader is also a
 *     participant of the last regular room (a "normal" room for history);
 *   - messages in one global time order: ids are mqc_id_from_ms() of times one step apart
 *     ending a minute before now, so the broker's next ids are above them; every room's
 *     messages are spread over the whole span (the rooms interleave, as in real traffic),
 *     with seq 1, 2, 3... per room; bodies of about 100 bytes;
 *   - rooms.msg_count / last_msg_id and room_sender_counts as the bridge keeps them, and a
 *     read marker of reader in the middle of the hot room and of the small room (so
 *     `count`'s unread figure does its seq lookup).
 *
 * Speed: the schema comes from mqc_db_open(MQC_OPEN_MIGRATE) (the SQL files of schema/, as
 * `mqchat-admin init`); then, because the file is new and thrown away if seeding fails,
 * journal_mode=OFF and synchronous=OFF, the messages table's secondary indexes are dropped
 * and recreated after the bulk load from their own CREATE statements as read from
 * sqlite_master (so the schema still lives only in schema/), and rows go in id order (id is
 * the rowid: every insert appends) in transactions of 500,000 rows.
 *
 * --rooms-file: "<room> <member> <member>" per regular room (mqchat-loadgen's input).
 * --info: shell assignments (HOT_ROOM, HOT_MID_ID, ...) that bench/scenario3.sh sources.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqchat_store.h"
#include "seedlib.h"

#define HOT_SENDERS 10
#define TXN_ROWS 500000
#define BODY_LEN 100
#define READER "reader"

static void usage(void)
{
	fprintf(stderr, "usage: mqchat-histseed --db PATH --password PW [--rooms R (10000)] [--per-room N (900)]\n"
			"                       [--hot N (1000000)] [--small N (100)] [--iterations I (1000)]\n"
			"                       [--rooms-file FILE] [--info FILE]\n");
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: a fixed-seed generator, so two seedings make the same shape. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void shuffle(unsigned *a, unsigned n, uint64_t *rng)
{
	for(unsigned i = n - 1; i > 0; i--){
		unsigned j = (unsigned)(rng_next(rng) % (i + 1));
		unsigned t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

/* One room while seeding. */
struct room {
	char id[23];
	char members[HOT_SENDERS][MQC_NAME_MAX + 1]; /* the senders, in turn */
	unsigned nsenders;
	uint64_t count;                  /* messages so far = the last seq */
	uint64_t sent[HOT_SENDERS];      /* per sender */
	uint64_t last_id;
	uint64_t mark_seq, mark_id;      /* reader's read marker: at this seq (0: none) */
};

/* Creates room rm (id made here) with its senders as participants, plus extra if not NULL. */
static int add_room(sqlite3 *db, struct seed_stmts *st, struct room *rm, const char *name, const char *extra, int64_t now)
{
	if(mqc_room_id_new(rm->id)){
		fprintf(stderr, "mqchat-histseed: no randomness for a room id\n");
		return -1;
	}
	if(seed_room(db, st, rm->id, name, rm->members[0], now)) return -1;
	for(unsigned i = 0; i < rm->nsenders; i++){
		if(seed_member(db, st, rm->id, rm->members[i], now)) return -1;
	}
	if(extra && seed_member(db, st, rm->id, extra, now)) return -1;
	return 0;
}

int main(int argc, char **argv)
{
	const char *dbpath = NULL, *password = NULL, *rooms_file = NULL, *info_file = NULL;
	unsigned long nrooms = 10000, per_room = 900, hot_n = 1000000, small_n = 100, iterations = 1000;
	char reason[512], hash[MQC_PW_HASH_MAX], name[MQC_NAME_MAX + 1], body[BODY_LEN + 64];
	sqlite3 *db = NULL;
	struct seed_stmts st = { 0 };
	sqlite3_stmt *ins_msg = NULL, *upd_room = NULL,
			*ins_cnt = NULL, *ins_mark = NULL, *idx_sql = NULL;
	struct room *rooms = NULL;
	unsigned *perm = NULL;
	char **indexes = NULL;
	int nindexes = 0;
	FILE *f = NULL;
	int rc = 1;

	seed_prog = "mqchat-histseed";
	for(int i = 1; i < argc; i++){
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;
		if(!v){
			usage();
			return 2;
		}
		if(!strcmp(a, "--db")) dbpath = v;
		else if(!strcmp(a, "--password")) password = v;
		else if(!strcmp(a, "--rooms-file")) rooms_file = v;
		else if(!strcmp(a, "--info")) info_file = v;
		else if(!strcmp(a, "--rooms")) bad = seed_parse_num(a, v, 1, 1000000, &nrooms);
		else if(!strcmp(a, "--per-room")) bad = seed_parse_num(a, v, 1, 100000000, &per_room);
		else if(!strcmp(a, "--hot")) bad = seed_parse_num(a, v, 2, 100000000, &hot_n);
		else if(!strcmp(a, "--small")) bad = seed_parse_num(a, v, 2, 100000000, &small_n);
		else if(!strcmp(a, "--iterations")) bad = seed_parse_num(a, v, 1, 10000000, &iterations);
		else{
			fprintf(stderr, "mqchat-histseed: unknown option %s\n", a);
			usage();
			return 2;
		}
		if(bad) return 2;
		i++;
	}
	if(!dbpath || !password){
		fprintf(stderr, "mqchat-histseed: --db and --password are required\n");
		usage();
		return 2;
	}
	FILE *exists = fopen(dbpath, "r");
	if(exists){
		fclose(exists);
		fprintf(stderr, "mqchat-histseed: %s exists; it makes a fresh file only (journal off while seeding)\n", dbpath);
		return 2;
	}

	double t_start = mono_s();
	unsigned long nall = nrooms + 2; /* regular rooms, then hot, then small */
	const unsigned long HOT = nrooms, SMALL = nrooms + 1;
	uint64_t nreg = (uint64_t)nrooms * per_room, total = nreg + hot_n + small_n;
	rooms = calloc(nall, sizeof(*rooms));
	perm = malloc(nrooms * sizeof(*perm));
	if(!rooms || !perm){
		fprintf(stderr, "mqchat-histseed: out of memory for %lu rooms\n", nall);
		goto fail;
	}

	if(mqc_password_hash(password, strlen(password), (unsigned)iterations, hash, sizeof(hash))){
		fprintf(stderr, "mqchat-histseed: cannot hash the password (%lu iterations)\n", iterations);
		goto fail;
	}
	if(mqc_db_open(dbpath, MQC_OPEN_MIGRATE, 5000, &db, reason, sizeof(reason))
			|| mqc_db_migrate(db, NULL, reason, sizeof(reason))){
		fprintf(stderr, "mqchat-histseed: %s\n", reason);
		goto fail;
	}
	if(seed_exec(db, "PRAGMA journal_mode=OFF") || seed_exec(db, "PRAGMA synchronous=OFF")
			|| seed_exec(db, "PRAGMA cache_size=-1048576") || seed_exec(db, "PRAGMA temp_store=MEMORY")
			|| seed_exec(db, "PRAGMA threads=2")){
		goto fail;
	}

	/* The messages table's secondary indexes: remember their SQL, drop them, rebuild later. */
	if(sqlite3_prepare_v2(db, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
				" AND sql IS NOT NULL", -1, &idx_sql, NULL)){
		fprintf(stderr, "mqchat-histseed: reading the index list: %s\n", sqlite3_errmsg(db));
		goto fail;
	}
	while(sqlite3_step(idx_sql) == SQLITE_ROW){
		char drop[200], **grown = realloc(indexes, (size_t)(nindexes + 1) * sizeof(*indexes));
		if(!grown) goto fail;
		indexes = grown;
		indexes[nindexes] = strdup((const char *)sqlite3_column_text(idx_sql, 1));
		if(!indexes[nindexes]) goto fail;
		nindexes++;
		snprintf(drop, sizeof(drop), "DROP INDEX \"%s\"", (const char *)sqlite3_column_text(idx_sql, 0));
		sqlite3_reset(idx_sql);
		if(seed_exec(db, drop)) goto fail;
	}
	sqlite3_finalize(idx_sql);
	idx_sql = NULL;

	if(seed_prepare(db, &st)
			|| sqlite3_prepare_v2(db, "INSERT INTO messages(id, room_id, seq, sender, type, body, ts)"
				" VALUES (?, ?, ?, ?, 'msg', ?, ?)", -1, &ins_msg, NULL)
			|| sqlite3_prepare_v2(db, "UPDATE rooms SET msg_count = ?, last_msg_id = ? WHERE id = ?", -1, &upd_room, NULL)
			|| sqlite3_prepare_v2(db, "INSERT INTO room_sender_counts(room_id, sender, n) VALUES (?, ?, ?)",
				-1, &ins_cnt, NULL)
			|| sqlite3_prepare_v2(db, "INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES (?, ?, ?)",
				-1, &ins_mark, NULL)){
		fprintf(stderr, "mqchat-histseed: prepare: %s\n", sqlite3_errmsg(db));
		goto fail;
	}

	/* Users, rooms, participants. Seeded rooms and users are created before the first message. */
	int64_t now = mqc_now_ms(), step_ms = 250, t0 = now - 60000 - (int64_t)total * step_ms;
	if(seed_exec(db, "BEGIN")) goto fail;
	for(unsigned long u = 0; u < 2 * nrooms; u++){
		snprintf(name, sizeof(name), "u%lu", u);
		if(seed_user(db, &st, name, hash, t0)) goto fail;
	}
	for(unsigned i = 0; i < HOT_SENDERS; i++){
		snprintf(name, sizeof(name), "h%u", i);
		if(seed_user(db, &st, name, hash, t0)) goto fail;
	}
	if(seed_user(db, &st, READER, hash, t0)) goto fail;
	if(rooms_file && !(f = fopen(rooms_file, "w"))){
		fprintf(stderr, "mqchat-histseed: cannot create %s: %s\n", rooms_file, strerror(errno));
		goto fail;
	}
	for(unsigned long r = 0; r < nrooms; r++){
		struct room *rm = &rooms[r];
		char rname[32];
		rm->nsenders = 2;
		snprintf(rm->members[0], sizeof(rm->members[0]), "u%lu", 2 * r);
		snprintf(rm->members[1], sizeof(rm->members[1]), "u%lu", 2 * r + 1);
		snprintf(rname, sizeof(rname), "history %lu", r);
		if(add_room(db, &st, rm, rname, r == nrooms - 1 ? READER : NULL, t0)) goto fail;
		if(f) fprintf(f, "%s %s %s\n", rm->id, rm->members[0], rm->members[1]);
		perm[r] = (unsigned)r;
	}
	rooms[HOT].nsenders = HOT_SENDERS;
	for(unsigned i = 0; i < HOT_SENDERS; i++) snprintf(rooms[HOT].members[i], MQC_NAME_MAX + 1, "h%u", i);
	if(add_room(db, &st, &rooms[HOT], "hot room", READER, t0)) goto fail;
	rooms[SMALL].nsenders = 2;
	snprintf(rooms[SMALL].members[0], MQC_NAME_MAX + 1, "h0");
	snprintf(rooms[SMALL].members[1], MQC_NAME_MAX + 1, READER);
	if(add_room(db, &st, &rooms[SMALL], "small room", NULL, t0)) goto fail;
	rooms[HOT].mark_seq = hot_n / 2;
	rooms[SMALL].mark_seq = small_n / 2;
	if(f){
		if(fclose(f)){
			f = NULL;
			fprintf(stderr, "mqchat-histseed: cannot write %s: %s\n", rooms_file, strerror(errno));
			goto fail;
		}
		f = NULL;
	}

	/* Messages in id order. Each step picks the class (regular, hot, small) furthest behind
	 * its share of the messages so far, so all three are spread evenly over time; regular
	 * rooms take turns in a shuffled order, reshuffled after each round. */
	uint64_t rng = 0x9E3779B97F4A7C15ULL, done_reg = 0, done_hot = 0, done_small = 0;
	unsigned pos = nrooms;
	double t_msgs = mono_s();
	for(uint64_t i = 0; i < total; i++){
		double want_hot = (double)(i + 1) * (double)hot_n / (double)total - (double)done_hot;
		double want_small = (double)(i + 1) * (double)small_n / (double)total - (double)done_small;
		double want_reg = (double)(i + 1) * (double)nreg / (double)total - (double)done_reg;
		struct room *rm;
		if(done_small < small_n && want_small >= want_hot && want_small >= want_reg){
			rm = &rooms[SMALL];
			done_small++;
		}else if(done_hot < hot_n && (want_hot >= want_reg || done_reg == nreg)){
			rm = &rooms[HOT];
			done_hot++;
		}else{
			if(pos == nrooms){
				shuffle(perm, (unsigned)nrooms, &rng);
				pos = 0;
			}
			rm = &rooms[perm[pos++]];
			done_reg++;
		}
		if(i % TXN_ROWS == 0 && seed_exec(db, "COMMIT; BEGIN")) goto fail; /* the first commits the rooms */

		int64_t ms = t0 + (int64_t)i * step_ms;
		uint64_t id = mqc_id_from_ms(ms);
		unsigned who = (unsigned)(rm->count % rm->nsenders);
		rm->count++;
		rm->sent[who]++;
		rm->last_id = id;
		if(rm->count == rm->mark_seq) rm->mark_id = id;
		int bl = snprintf(body, sizeof(body), "message %" PRIu64 " of room %s from %s: ", rm->count, rm->id,
				rm->members[who]);
		while(bl < BODY_LEN) body[bl++] = (char)('a' + (rng_next(&rng) % 26));
		body[bl] = '\0';
		sqlite3_bind_int64(ins_msg, 1, (sqlite3_int64)id);
		sqlite3_bind_text(ins_msg, 2, rm->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins_msg, 3, (sqlite3_int64)rm->count);
		sqlite3_bind_text(ins_msg, 4, rm->members[who], -1, SQLITE_STATIC);
		sqlite3_bind_text(ins_msg, 5, body, bl, SQLITE_STATIC);
		sqlite3_bind_int64(ins_msg, 6, ms);
		if(seed_step(db, ins_msg, "insert message")) goto fail;
	}
	double t_idx = mono_s();
	for(unsigned long r = 0; r < nall; r++){
		struct room *rm = &rooms[r];
		sqlite3_bind_int64(upd_room, 1, (sqlite3_int64)rm->count);
		sqlite3_bind_int64(upd_room, 2, (sqlite3_int64)rm->last_id);
		sqlite3_bind_text(upd_room, 3, rm->id, -1, SQLITE_STATIC);
		if(seed_step(db, upd_room, "update room counts")) goto fail;
		for(unsigned i = 0; i < rm->nsenders; i++){
			if(!rm->sent[i]) continue;
			sqlite3_bind_text(ins_cnt, 1, rm->id, -1, SQLITE_STATIC);
			sqlite3_bind_text(ins_cnt, 2, rm->members[i], -1, SQLITE_STATIC);
			sqlite3_bind_int64(ins_cnt, 3, (sqlite3_int64)rm->sent[i]);
			if(seed_step(db, ins_cnt, "insert sender count")) goto fail;
		}
		if(rm->mark_id){
			sqlite3_bind_text(ins_mark, 1, READER, -1, SQLITE_STATIC);
			sqlite3_bind_text(ins_mark, 2, rm->id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ins_mark, 3, (sqlite3_int64)rm->mark_id);
			if(seed_step(db, ins_mark, "insert read marker")) goto fail;
		}
	}
	if(seed_exec(db, "COMMIT")) goto fail;
	for(int i = 0; i < nindexes; i++){
		if(seed_exec(db, indexes[i])) goto fail;
	}
	if(seed_exec(db, "ANALYZE") || seed_exec(db, "PRAGMA journal_mode=WAL")) goto fail;
	double t_end = mono_s();

	if(info_file){
		if(!(f = fopen(info_file, "w"))){
			fprintf(stderr, "mqchat-histseed: cannot create %s: %s\n", info_file, strerror(errno));
			goto fail;
		}
		fprintf(f, "HOT_ROOM=%s\nHOT_MESSAGES=%" PRIu64 "\nHOT_MID_ID=%" PRIu64 "\nHOT_SENDER=h3\n"
				"SMALL_ROOM=%s\nSMALL_MESSAGES=%" PRIu64 "\nNORMAL_ROOM=%s\nNORMAL_MESSAGES=%" PRIu64 "\n"
				"READER=%s\nMESSAGES=%" PRIu64 "\nROOMS=%lu\nSEED_SECONDS=%.1f\n",
				rooms[HOT].id, rooms[HOT].count, rooms[HOT].mark_id, rooms[SMALL].id, rooms[SMALL].count,
				rooms[nrooms - 1].id, rooms[nrooms - 1].count, READER, total, nall, t_end - t_start);
		if(fclose(f)){
			f = NULL;
			fprintf(stderr, "mqchat-histseed: cannot write %s: %s\n", info_file, strerror(errno));
			goto fail;
		}
		f = NULL;
	}
	fprintf(stderr, "mqchat-histseed: %s: %" PRIu64 " messages in %lu rooms (hot %lu, small %lu) in %.1f s "
			"(users/rooms %.1f s, messages %.1f s = %.0f rows/s, indexes+counts %.1f s)\n", dbpath, total, nall,
			hot_n, small_n, t_end - t_start, t_msgs - t_start, t_idx - t_msgs, (double)total / (t_idx - t_msgs),
			t_end - t_idx);
	rc = 0;
fail:
	if(f) fclose(f);
	for(int i = 0; i < nindexes; i++) free(indexes[i]);
	free(indexes);
	sqlite3_finalize(idx_sql);
	seed_finalize(&st);
	sqlite3_finalize(ins_msg);
	sqlite3_finalize(upd_room);
	sqlite3_finalize(ins_cnt);
	sqlite3_finalize(ins_mark);
	if(db) sqlite3_close(db);
	free(rooms);
	free(perm);
	return rc;
}
