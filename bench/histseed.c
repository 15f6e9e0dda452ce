/*
 * mqchat-histseed: the history database of benchmark scenario 3 (docs/benchmarks.md), fast.
 *
 *   mqchat-histseed --db PATH|postgresql://... --password PW [--rooms 10000] [--per-room 900]
 *                   [--hot 1000000] [--small 100] [--iterations 1000]
 *                   [--rooms-file FILE] [--info FILE]
 *
 * Makes, in a fresh file (or a fresh PostgreSQL database: created, not yet initialised):
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
 * Speed: the schema comes from mqc_db_open(MQC_OPEN_MIGRATE) (the SQL files of
 * schema/<engine>/, as `mqchat-admin init`); the messages table's secondary indexes are
 * dropped and recreated after the bulk load from their own CREATE statements as read from
 * the catalogue (SQLite's sqlite_master, PostgreSQL's pg_indexes, without the primary key's),
 * so the schema still lives only in schema/; rows go in id order, in transactions of
 * 500,000 rows. SQLite: because the file is new and thrown away if seeding fails,
 * journal_mode=OFF and synchronous=OFF, and id is the rowid (every insert appends).
 * PostgreSQL: the messages go in by COPY FROM STDIN (PQputCopyData, one COPY per
 * transaction), synchronous_commit off and a 1 GB maintenance_work_mem for the index
 * builds, and a VACUUM (ANALYZE) at the end (hint bits and the visibility map set, as
 * autovacuum leaves a table that has stood a while); users, rooms and participants go in
 * transactions of 1,000 rows (seedlib.c says why).
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
	fprintf(stderr, "usage: mqchat-histseed --db PATH|URI --password PW [--rooms R (10000)] [--per-room N (900)]\n"
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
static int add_room(struct seed_db *db, struct room *rm, const char *name, const char *extra, int64_t now)
{
	if(mqc_room_id_new(rm->id)){
		fprintf(stderr, "mqchat-histseed: no randomness for a room id\n");
		return -1;
	}
	if(seed_room(db, rm->id, name, rm->members[0], now)) return -1;
	for(unsigned i = 0; i < rm->nsenders; i++){
		if(seed_member(db, rm->id, rm->members[i], now)) return -1;
	}
	if(extra && seed_member(db, rm->id, extra, now)) return -1;
	return 0;
}

/* The messages table's secondary indexes, as the catalogue holds them. */
struct indexes {
	char **name, **sql;
	int n;
};

static int index_row(void *arg, int ncols, char **cols)
{
	struct indexes *ix = arg;
	char **gn, **gs;
	if(ncols < 2 || !cols[0] || !cols[1]) return 0;
	gn = realloc(ix->name, (size_t)(ix->n + 1) * sizeof(*gn));
	if(gn) ix->name = gn;
	gs = realloc(ix->sql, (size_t)(ix->n + 1) * sizeof(*gs));
	if(gs) ix->sql = gs;
	if(!gn || !gs) return 1;
	ix->name[ix->n] = strdup(cols[0]);
	ix->sql[ix->n] = strdup(cols[1]);
	ix->n++;
	return !ix->name[ix->n - 1] || !ix->sql[ix->n - 1];
}

int main(int argc, char **argv)
{
	const char *dbpath = NULL, *password = NULL, *rooms_file = NULL, *info_file = NULL;
	unsigned long nrooms = 10000, per_room = 900, hot_n = 1000000, small_n = 100, iterations = 1000;
	char hash[MQC_PW_HASH_MAX], name[MQC_NAME_MAX + 1], body[BODY_LEN + 64];
	struct seed_db db = { 0 };
	struct seed_stmt ins_msg = { 0 }, upd_room = { 0 }, ins_cnt = { 0 }, ins_mark = { 0 };
	struct room *rooms = NULL;
	unsigned *perm = NULL;
	struct indexes ix = { 0 };
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
	if(!seed_is_pg(dbpath)){
		FILE *exists = fopen(dbpath, "r");
		if(exists){
			fclose(exists);
			fprintf(stderr, "mqchat-histseed: %s exists; it makes a fresh file only (journal off while seeding)\n", dbpath);
			return 2;
		}
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
	if(seed_open(dbpath, true, &db)) goto fail;
	if(!db.pg && (seed_exec(&db, "PRAGMA journal_mode=OFF") || seed_exec(&db, "PRAGMA synchronous=OFF")
			|| seed_exec(&db, "PRAGMA cache_size=-1048576") || seed_exec(&db, "PRAGMA temp_store=MEMORY")
			|| seed_exec(&db, "PRAGMA threads=2"))){
		goto fail;
	}
	if(db.pg && (seed_exec(&db, "SET synchronous_commit = off") || seed_exec(&db, "SET maintenance_work_mem = '1GB'"))){
		goto fail;
	}

	/* The messages table's secondary indexes: remember their SQL, drop them, rebuild later.
	 * PostgreSQL: not the primary key's (a constraint's index, dropped with it). */
	if(seed_rows(&db, db.pg ? "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
				" AND tablename = 'messages' AND indexname NOT IN (SELECT conname FROM pg_constraint"
				" WHERE conrelid = 'messages'::regclass) ORDER BY indexname"
				: "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
				" AND sql IS NOT NULL", index_row, &ix)){
		goto fail;
	}
	for(int i = 0; i < ix.n; i++){
		char drop[200];
		snprintf(drop, sizeof(drop), "DROP INDEX \"%s\"", ix.name[i]);
		if(seed_exec(&db, drop)) goto fail;
	}

	if(seed_prepare_rows(&db)
			|| (!db.pg && seed_prepare(&db, &ins_msg, "INSERT INTO messages(id, room_id, seq, sender, type, body, ts)"
				" VALUES (?1, ?2, ?3, ?4, 'msg', ?5, ?6)"))
			|| seed_prepare(&db, &upd_room, "UPDATE rooms SET msg_count = ?1, last_msg_id = ?2 WHERE id = ?3")
			|| seed_prepare(&db, &ins_cnt, "INSERT INTO room_sender_counts(room_id, sender, n) VALUES (?1, ?2, ?3)")
			|| seed_prepare(&db, &ins_mark, "INSERT INTO read_markers(user_id, room_id, last_read_id) VALUES (?1, ?2, ?3)")){
		goto fail;
	}

	/* Users, rooms, participants. Seeded rooms and users are created before the first message. */
	int64_t now = mqc_now_ms(), step_ms = 250, t0 = now - 60000 - (int64_t)total * step_ms;
	if(seed_begin(&db)) goto fail;
	for(unsigned long u = 0; u < 2 * nrooms; u++){
		snprintf(name, sizeof(name), "u%lu", u);
		if(seed_user(&db, name, hash, t0)) goto fail;
	}
	for(unsigned i = 0; i < HOT_SENDERS; i++){
		snprintf(name, sizeof(name), "h%u", i);
		if(seed_user(&db, name, hash, t0)) goto fail;
	}
	if(seed_user(&db, READER, hash, t0)) goto fail;
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
		if(add_room(&db, rm, rname, r == nrooms - 1 ? READER : NULL, t0)) goto fail;
		if(f) fprintf(f, "%s %s %s\n", rm->id, rm->members[0], rm->members[1]);
		perm[r] = (unsigned)r;
	}
	rooms[HOT].nsenders = HOT_SENDERS;
	for(unsigned i = 0; i < HOT_SENDERS; i++) snprintf(rooms[HOT].members[i], MQC_NAME_MAX + 1, "h%u", i);
	if(add_room(&db, &rooms[HOT], "hot room", READER, t0)) goto fail;
	rooms[SMALL].nsenders = 2;
	snprintf(rooms[SMALL].members[0], MQC_NAME_MAX + 1, "h0");
	snprintf(rooms[SMALL].members[1], MQC_NAME_MAX + 1, READER);
	if(add_room(&db, &rooms[SMALL], "small room", NULL, t0)) goto fail;
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
		if(i % TXN_ROWS == 0){ /* the first commits the rooms */
			if(db.pg && i > 0 && seed_copy_end(&db)) goto fail;
			if(seed_exec(&db, "COMMIT; BEGIN")) goto fail;
			if(db.pg && seed_copy_begin(&db, "COPY messages(id, room_id, seq, sender, type, body, ts) FROM STDIN")){
				goto fail;
			}
		}

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
		if(db.pg){
			char idt[24], seqt[24], mst[24];
			const char *fields[7] = { idt, rm->id, seqt, rm->members[who], "msg", body, mst };
			size_t lens[7];
			lens[0] = (size_t)snprintf(idt, sizeof(idt), "%" PRIu64, id);
			lens[2] = (size_t)snprintf(seqt, sizeof(seqt), "%" PRIu64, rm->count);
			lens[6] = (size_t)snprintf(mst, sizeof(mst), "%" PRId64, ms);
			lens[1] = strlen(rm->id);
			lens[3] = strlen(rm->members[who]);
			lens[4] = 3;
			lens[5] = (size_t)bl;
			if(seed_copy_row(&db, 7, fields, lens)) goto fail;
			continue;
		}
		seed_bind_int64(&ins_msg, 1, (int64_t)id);
		seed_bind_text(&ins_msg, 2, rm->id);
		seed_bind_int64(&ins_msg, 3, (int64_t)rm->count);
		seed_bind_text(&ins_msg, 4, rm->members[who]);
		seed_bind_text(&ins_msg, 5, body);
		seed_bind_int64(&ins_msg, 6, ms);
		if(seed_step(&ins_msg, "insert message")) goto fail;
	}
	if(db.pg && seed_copy_end(&db)) goto fail;
	double t_idx = mono_s();
	for(unsigned long r = 0; r < nall; r++){
		struct room *rm = &rooms[r];
		seed_bind_int64(&upd_room, 1, (int64_t)rm->count);
		seed_bind_int64(&upd_room, 2, (int64_t)rm->last_id);
		seed_bind_text(&upd_room, 3, rm->id);
		if(seed_step(&upd_room, "update room counts")) goto fail;
		for(unsigned i = 0; i < rm->nsenders; i++){
			if(!rm->sent[i]) continue;
			seed_bind_text(&ins_cnt, 1, rm->id);
			seed_bind_text(&ins_cnt, 2, rm->members[i]);
			seed_bind_int64(&ins_cnt, 3, (int64_t)rm->sent[i]);
			if(seed_step(&ins_cnt, "insert sender count")) goto fail;
		}
		if(rm->mark_id){
			seed_bind_text(&ins_mark, 1, READER);
			seed_bind_text(&ins_mark, 2, rm->id);
			seed_bind_int64(&ins_mark, 3, (int64_t)rm->mark_id);
			if(seed_step(&ins_mark, "insert read marker")) goto fail;
		}
	}
	if(seed_commit(&db)) goto fail;
	for(int i = 0; i < ix.n; i++){
		if(seed_exec(&db, ix.sql[i])) goto fail;
	}
	if(db.pg ? seed_exec(&db, "VACUUM (ANALYZE)")
			: seed_exec(&db, "ANALYZE") || seed_exec(&db, "PRAGMA journal_mode=WAL")){
		goto fail;
	}
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
	for(int i = 0; i < ix.n; i++){
		free(ix.name[i]);
		free(ix.sql[i]);
	}
	free(ix.name);
	free(ix.sql);
	seed_finalize(&ins_msg);
	seed_finalize(&upd_room);
	seed_finalize(&ins_cnt);
	seed_finalize(&ins_mark);
	seed_close(&db);
	free(rooms);
	free(perm);
	return rc;
}
