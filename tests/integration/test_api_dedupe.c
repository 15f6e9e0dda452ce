/*
 * Direct-room dedupe (issue 3): for 50 different pairs, A asks room.create for B and B
 * for A at the same moment, from two clients (both requests published before either
 * answer is read). Exactly one room per pair: both answers name the same room, exactly
 * one says created, and the database holds one direct room per pair.
 */
#include <stdlib.h>
#include <string.h>

#include "api_client.h"

#define PAIRS 50

static api_user U[2 * PAIRS];

static void concurrent_create_gives_one_room(h_env *env)
{
	char ids[2 * PAIRS][128], rooms[PAIRS][65] = { { 0 } };

	/* Round 1: every request of every pair in flight at once. */
	for(int p = 0; p < PAIRS; p++) {
		api_user *a = &U[2 * p], *b = &U[2 * p + 1];
		H_CHECK_INT(api_post(a, json_pack("{s:s,s:[s]}", "op", "room.create", "participants", b->user), ids[2 * p]), ==, 0);
		H_CHECK_INT(api_post(b, json_pack("{s:s,s:[s]}", "op", "room.create", "participants", a->user), ids[2 * p + 1]), ==, 0);
	}
	for(int p = 0; p < PAIRS; p++) {
		json_t *ra = api_collect_at(__FILE__, __LINE__, &U[2 * p], ids[2 * p]);
		json_t *rb = api_collect_at(__FILE__, __LINE__, &U[2 * p + 1], ids[2 * p + 1]);
		json_t *xa = json_object_get(ra, "result"), *xb = json_object_get(rb, "result");
		const char *ia = json_string_value(json_object_get(xa, "id"));
		const char *ib = json_string_value(json_object_get(xb, "id"));
		if(!json_is_true(json_object_get(ra, "ok")) || !json_is_true(json_object_get(rb, "ok")) || !ia || !ib) {
			char *sa = api_dump(ra), *sb = api_dump(rb);
			h_fail(__FILE__, __LINE__, "pair %d: %s / %s", p, sa, sb);
			free(sa);
			free(sb);
		} else {
			H_CHECK_STR(ia, ib);
			H_CHECK_STR(json_string_value(json_object_get(xa, "kind")), "direct");
			/* exactly one of the two made it */
			H_CHECK_INT(json_is_true(json_object_get(xa, "created")) + json_is_true(json_object_get(xb, "created")), ==, 1);
			snprintf(rooms[p], sizeof(rooms[p]), "%s", ia);
		}
		json_decref(ra);
		json_decref(rb);
	}
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM rooms WHERE kind = 'direct'", (char *)NULL), ==, PAIRS);
	H_CHECK_INT(h_db_int(env, "SELECT count(DISTINCT room_id) FROM room_participants", (char *)NULL), ==, PAIRS);
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM room_participants", (char *)NULL), ==, 2 * PAIRS);

	/* Rounds 2 and 3: the same pairs again at the same moment, B naming both users this
	 * time: still the same room, never created again. */
	for(int round = 0; round < 2; round++) {
		for(int p = 0; p < PAIRS; p++) {
			api_user *a = &U[2 * p], *b = &U[2 * p + 1];
			H_CHECK_INT(api_post(b, json_pack("{s:s,s:[s,s]}", "op", "room.create", "participants", a->user, b->user), ids[2 * p + 1]), ==, 0);
			H_CHECK_INT(api_post(a, json_pack("{s:s,s:[s]}", "op", "room.create", "participants", b->user), ids[2 * p]), ==, 0);
		}
		for(int i = 0; i < 2 * PAIRS; i++) {
			json_t *r = api_collect_at(__FILE__, __LINE__, &U[i], ids[i]);
			json_t *x = json_object_get(r, "result");
			H_CHECK_STR(json_string_value(json_object_get(x, "id")), rooms[i / 2]);
			H_CHECK(json_is_false(json_object_get(x, "created")));
			json_decref(r);
		}
	}
	/* Each side finds it with room.direct. */
	for(int p = 0; p < PAIRS; p += 7) {
		json_t *r = API_OK(&U[2 * p + 1], "{s:s,s:s}", "op", "room.direct", "with", U[2 * p].user);
		H_CHECK_STR(json_string_value(json_object_get(r, "room")), rooms[p]);
		json_decref(r);
	}
	H_CHECK_INT(h_db_int(env, "SELECT count(*) FROM rooms WHERE kind = 'direct'", (char *)NULL), ==, PAIRS);
	for(int i = 0; i < 2 * PAIRS; i++) API_NO_MORE(&U[i], i == 0 ? 500 : 0);
}

int main(void)
{
	h_env *env = h_env_new("api_dedupe");
	char name[32];

	for(int i = 0; i < 2 * PAIRS; i++) {
		snprintf(name, sizeof(name), "u%03d", i);
		h_user(env, name);
	}
	h_env_start(env);
	for(int i = 0; i < 2 * PAIRS; i++) {
		snprintf(name, sizeof(name), "u%03d", i);
		/* Mixed protocols: even users MQTT 5, odd users 3.1.1. */
		if(!API_OPEN(env, &U[i], name, i % 2 ? H_PROTO_V311 : H_PROTO_V5)) return h_env_finish(env);
	}
	H_RUN(env, concurrent_create_gives_one_room);
	return h_env_finish(env);
}
