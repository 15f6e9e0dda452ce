/*
 * mqchat-seed: builds a benchmark database in bulk, and the rooms file mqchat-loadgen reads.
 *
 *   mqchat-seed --db PATH|postgresql://... --users N --rooms R --members M --password PW
 *               [--iterations I] [--rooms-file FILE] [--prefix u]
 *
 * Users are <prefix>0..<prefix>N-1, all with password PW. The database (a SQLite file, or
 * a PostgreSQL database that exists) is created and migrated by the store library (the
 * same mqc_db_open(MQC_OPEN_MIGRATE) that `mqchat-admin init` uses), and the password hash
 * is made ONCE by mqc_password_hash (the same function `mqchat-admin user add` uses) and
 * copied to every row: hashing 10,000 passwords at 210,000 iterations would take twenty
 * minutes, and the benchmark measures the broker, not the seeding. SQLite: everything is
 * inserted in one transaction; PostgreSQL: in transactions of 1,000 rows (seedlib.c says why).
 *
 * Room r's members are users (r*M + j) mod N for j = 0..M-1, so with R*M = k*N every user
 * is in exactly k rooms. Room ids come from mqc_room_id_new (random, like real ones).
 * The rooms file has one line per room: "<room id> <member> <member> ...".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqchat_store.h"
#include "seedlib.h"

static void usage(void)
{
	fprintf(stderr, "usage: mqchat-seed --db PATH|URI --users N --rooms R --members M --password PW\n"
			"                   [--iterations I (default %u)] [--rooms-file FILE] [--prefix P (default u)]\n",
			MQC_PW_DEFAULT_ITERATIONS);
}

int main(int argc, char **argv)
{
	const char *dbpath = NULL, *password = NULL, *rooms_file = NULL, *prefix = "u";
	unsigned long users = 0, rooms = 0, members = 0, iterations = MQC_PW_DEFAULT_ITERATIONS;
	char hash[MQC_PW_HASH_MAX], name[MQC_NAME_MAX + 1], room[23];
	struct seed_db db = { 0 };
	FILE *rf = NULL;
	int rc = 1;

	seed_prog = "mqchat-seed";
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
		else if(!strcmp(a, "--prefix")) prefix = v;
		else if(!strcmp(a, "--users")) bad = seed_parse_num(a, v, 1, 10000000, &users);
		else if(!strcmp(a, "--rooms")) bad = seed_parse_num(a, v, 0, 10000000, &rooms);
		else if(!strcmp(a, "--members")) bad = seed_parse_num(a, v, 1, 100000, &members);
		else if(!strcmp(a, "--iterations")) bad = seed_parse_num(a, v, 1, 10000000, &iterations);
		else{
			fprintf(stderr, "mqchat-seed: unknown option %s\n", a);
			usage();
			return 2;
		}
		if(bad) return 2;
		i++;
	}
	if(!dbpath || !password || !users || (rooms && members > users)){
		fprintf(stderr, "mqchat-seed: --db, --password and --users are required, and --members must not exceed --users\n");
		usage();
		return 2;
	}
	if(strlen(prefix) + 8 > MQC_NAME_MAX || !mqc_name_valid(prefix, strlen(prefix))){
		fprintf(stderr, "mqchat-seed: --prefix '%s' is not a valid start of a user name\n", prefix);
		return 2;
	}

	if(mqc_password_hash(password, strlen(password), (unsigned)iterations, hash, sizeof(hash))){
		fprintf(stderr, "mqchat-seed: cannot hash the password (%lu iterations)\n", iterations);
		goto fail;
	}
	if(seed_open(dbpath, false, &db)) goto fail;
	if(rooms_file && !(rf = fopen(rooms_file, "w"))){
		fprintf(stderr, "mqchat-seed: cannot create %s: %s\n", rooms_file, strerror(errno));
		goto fail;
	}
	if(seed_prepare_rows(&db)) goto fail;
	if(seed_begin(&db)) goto fail;
	int64_t now = mqc_now_ms();
	for(unsigned long u = 0; u < users; u++){
		snprintf(name, sizeof(name), "%s%lu", prefix, u);
		if(seed_user(&db, name, hash, now)) goto fail;
	}
	for(unsigned long r = 0; r < rooms; r++){
		char rname[32];
		if(mqc_room_id_new(room)){
			fprintf(stderr, "mqchat-seed: no randomness for a room id\n");
			goto fail;
		}
		snprintf(rname, sizeof(rname), "bench %lu", r);
		snprintf(name, sizeof(name), "%s%lu", prefix, (r * members) % users);
		if(seed_room(&db, room, rname, name, now)) goto fail;
		if(rf) fputs(room, rf);
		for(unsigned long j = 0; j < members; j++){
			snprintf(name, sizeof(name), "%s%lu", prefix, (r * members + j) % users);
			if(seed_member(&db, room, name, now)) goto fail;
			if(rf) fprintf(rf, " %s", name);
		}
		if(rf) fputc('\n', rf);
	}
	if(seed_commit(&db)) goto fail;
	if(rf && fclose(rf)){
		rf = NULL;
		fprintf(stderr, "mqchat-seed: cannot write %s: %s\n", rooms_file, strerror(errno));
		goto fail;
	}
	rf = NULL;
	fprintf(stderr, "mqchat-seed: %s: %lu users, %lu rooms of %lu members\n", dbpath, users, rooms, members);
	rc = 0;
fail:
	if(rf) fclose(rf);
	seed_close(&db);
	return rc;
}
