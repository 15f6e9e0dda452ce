/*
 * History paging (docs/protocol.md "history") over 1,000 messages with 50-per-page
 * cursors, in both directions, while another client keeps sending into the same room:
 * paging back (before = the oldest id of the last page) goes newest to oldest and never
 * meets a message that arrived after it began; paging forward (after = the newest id of
 * the last page) goes oldest to newest and reaches the new messages in order. Neither
 * skips nor repeats a message.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api_client.h"

#define ORIGINALS 1000
#define PAGE 50
#define MAX_SEEN 20000

static char room[65];

struct sender {
	h_client *c;
	atomic_bool stop;
	atomic_int sent;   /* accepted live messages, bodies live-0 .. live-(sent-1) */
	atomic_int failed;
};

static void *send_live(void *arg)
{
	struct sender *s = arg;
	char body[32];

	while(!atomic_load(&s->stop)) {
		snprintf(body, sizeof(body), "live-%d", atomic_load(&s->sent));
		if(api_send(s->c, room, body) == 0) atomic_fetch_add(&s->sent, 1);
		else atomic_fetch_add(&s->failed, 1);
		h_sleep_ms(4);
	}
	return NULL;
}

struct seen {
	json_int_t id[MAX_SEEN];
	char body[MAX_SEEN][16];
	int n;
};

static struct seen back, fwd;

static void add_seen(struct seen *s, json_t *m)
{
	if(s->n >= MAX_SEEN) return;
	s->id[s->n] = json_integer_value(json_object_get(m, "id"));
	snprintf(s->body[s->n], sizeof(s->body[0]), "%s", json_string_value(json_object_get(m, "body")) ? json_string_value(json_object_get(m, "body")) : "?");
	s->n++;
}

/* One page; returns the messages array (a new reference) and sets *more. */
static json_t *page(api_user *u, const char *cursor, json_int_t at, bool *more)
{
	json_t *req = json_pack("{s:s,s:s,s:i}", "op", "history", "room", room, "limit", PAGE);
	if(cursor) json_object_set_new(req, cursor, json_integer(at));
	json_t *ans = api_call_at(__FILE__, __LINE__, u, req);
	json_t *res = json_object_get(ans, "result");
	json_t *msgs = json_incref(json_object_get(res, "messages"));

	*more = json_is_true(json_object_get(res, "more"));
	if(!msgs) {
		char *s = api_dump(ans);
		h_fail(__FILE__, __LINE__, "history page failed: %s", s);
		free(s);
	}
	json_decref(ans);
	return msgs;
}

/* The ids of a page are strictly descending; returns false (recorded) if not. */
static bool page_descending(json_t *msgs)
{
	for(size_t i = 1; i < json_array_size(msgs); i++) {
		if(json_integer_value(json_object_get(json_array_get(msgs, i - 1), "id"))
				<= json_integer_value(json_object_get(json_array_get(msgs, i), "id"))) {
			h_fail(__FILE__, __LINE__, "a history page is not newest first at index %zu", i);
			return false;
		}
	}
	return true;
}

/* Checks that the originals m0000..m0999 appear once each in s, in the order asc or not,
 * and that the live messages that appear do so in send order. */
static void check_order(const struct seen *s, bool ascending, const char *what)
{
	int next_orig = ascending ? 0 : ORIGINALS - 1, last_live = ascending ? -1 : 1 << 30, origs = 0;

	for(int i = 0; i < s->n; i++) {
		int k;
		if(i > 0 && (ascending ? s->id[i] <= s->id[i - 1] : s->id[i] >= s->id[i - 1])) {
			h_fail(__FILE__, __LINE__, "%s: id %lld at position %d is out of order after %lld", what,
					(long long)s->id[i], i, (long long)s->id[i - 1]);
			return;
		}
		if(sscanf(s->body[i], "m%d", &k) == 1) {
			if(k != next_orig) {
				h_fail(__FILE__, __LINE__, "%s: position %d holds %s, expected m%04d", what, i, s->body[i], next_orig);
				return;
			}
			next_orig += ascending ? 1 : -1;
			origs++;
		} else if(sscanf(s->body[i], "live-%d", &k) == 1) {
			if(ascending ? k != last_live + 1 : k >= last_live) {
				h_fail(__FILE__, __LINE__, "%s: %s after live-%d", what, s->body[i], last_live);
				return;
			}
			last_live = k;
		} else {
			h_fail(__FILE__, __LINE__, "%s: unexpected message body %s", what, s->body[i]);
			return;
		}
	}
	H_CHECK_INT(origs, ==, ORIGINALS);
}

static long long count_upto(h_env *env, json_int_t id)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", (long long)id);
	return h_db_int(env, "SELECT count(*) FROM messages WHERE room_id = ?1 AND id <= CAST(?2 AS INTEGER)", room, buf,
			(char *)NULL);
}

static void paging_both_ways_while_sending(h_env *env)
{
	api_user A, B;
	h_client *alice = h_login(env, "alice", H_PROTO_V5);
	struct sender s = { .c = h_login(env, "carol", H_PROTO_V5) };
	pthread_t th;
	char body[32];
	bool more = true;
	json_t *msgs;
	size_t i;
	json_t *m;

	H_REQUIRE(alice && s.c && API_OPEN(env, &A, "alice", H_PROTO_V5) && API_OPEN(env, &B, "bob", H_PROTO_V311));
	for(int k = 0; k < ORIGINALS; k++) {
		snprintf(body, sizeof(body), "m%04d", k);
		if(api_send(alice, room, body) != 0) {
			h_fail(__FILE__, __LINE__, "send %s refused", body);
			return;
		}
	}
	H_REQUIRE_INT(h_db_wait_int(env, ORIGINALS, 20000, "SELECT count(*) FROM messages WHERE room_id = ?1", room,
			(char *)NULL), ==, ORIGINALS);
	H_REQUIRE_INT(pthread_create(&th, NULL, send_live, &s), ==, 0);
	while(atomic_load(&s.sent) < 5) h_sleep_ms(5);

	/* Back: newest to oldest. */
	int live_at_start = atomic_load(&s.sent), pages = 0;
	json_int_t before = 0;
	while(more && pages < 1000) {
		msgs = page(&A, pages ? "before" : NULL, before, &more);
		if(!msgs || !page_descending(msgs)) {
			json_decref(msgs);
			break;
		}
		if(more) H_CHECK_INT(json_array_size(msgs), ==, PAGE);
		json_array_foreach(msgs, i, m) add_seen(&back, m);
		if(json_array_size(msgs)) before = json_integer_value(json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "id"));
		json_decref(msgs);
		pages++;
	}
	int live_after_back = atomic_load(&s.sent);

	/* Forward: oldest to newest, each page reversed into place, while carol sends on. */
	json_int_t after = 0;
	int fwd_pages = 0;
	more = true;
	while(more && fwd_pages < 1000) {
		msgs = page(&B, "after", after, &more);
		if(!msgs || !page_descending(msgs)) {
			json_decref(msgs);
			break;
		}
		if(more) H_CHECK_INT(json_array_size(msgs), ==, PAGE);
		for(size_t k = json_array_size(msgs); k-- > 0;) add_seen(&fwd, json_array_get(msgs, k));
		if(json_array_size(msgs)) after = json_integer_value(json_object_get(json_array_get(msgs, 0), "id"));
		json_decref(msgs);
		fwd_pages++;
	}
	int live_after_fwd = atomic_load(&s.sent);
	atomic_store(&s.stop, true);
	pthread_join(th, NULL);
	H_CHECK_INT(atomic_load(&s.failed), ==, 0);
	fprintf(stderr, "paging: %d pages back, %d forward; live messages %d at start, %d after back, %d after forward\n",
			pages, fwd_pages, live_at_start, live_after_back, live_after_fwd);
	/* The paging really ran while messages arrived. */
	H_CHECK_INT(live_after_back, >, live_at_start);
	H_CHECK_INT(live_after_fwd, >, live_after_back);

	/* Back: every message up to the newest of its first page, exactly once, newest first;
	 * the last page ends at the first message and says no more. */
	check_order(&back, false, "paging back");
	H_CHECK_INT(back.n, ==, count_upto(env, back.id[0]));
	H_CHECK_STR(back.body[back.n - 1], "m0000");
	H_CHECK_INT(pages, ==, (back.n + PAGE - 1) / PAGE);

	/* Forward, caught up after the sender stopped: then the whole room, in order. */
	long long total = ORIGINALS + atomic_load(&s.sent);
	H_CHECK_INT(h_db_wait_int(env, total, 10000, "SELECT count(*) FROM messages WHERE room_id = ?1", room,
			(char *)NULL), ==, total);
	more = true;
	while(more && fwd_pages < 2000) {
		msgs = page(&B, "after", after, &more);
		if(!msgs || !page_descending(msgs)) {
			json_decref(msgs);
			break;
		}
		for(size_t k = json_array_size(msgs); k-- > 0;) add_seen(&fwd, json_array_get(msgs, k));
		if(json_array_size(msgs)) after = json_integer_value(json_object_get(json_array_get(msgs, 0), "id"));
		json_decref(msgs);
		fwd_pages++;
	}
	check_order(&fwd, true, "paging forward");
	H_CHECK_INT(fwd.n, ==, total);
	H_CHECK_STR(fwd.body[0], "m0000");
	snprintf(body, sizeof(body), "live-%d", atomic_load(&s.sent) - 1);
	H_CHECK_STR(fwd.body[fwd.n - 1], body);
	/* Caught up: the same after again gives nothing, and says so. */
	msgs = page(&B, "after", after, &more);
	H_CHECK_INT(json_array_size(msgs), ==, 0);
	H_CHECK(!more);
	json_decref(msgs);
	/* Both directions agree on the originals' ids. */
	static json_int_t id_back[ORIGINALS], id_fwd[ORIGINALS];
	for(int k = 0, o; k < back.n; k++) if(sscanf(back.body[k], "m%d", &o) == 1 && o >= 0 && o < ORIGINALS) id_back[o] = back.id[k];
	for(int k = 0, o; k < fwd.n; k++) if(sscanf(fwd.body[k], "m%d", &o) == 1 && o >= 0 && o < ORIGINALS) id_fwd[o] = fwd.id[k];
	for(int o = 0; o < ORIGINALS; o++) {
		if(id_back[o] != id_fwd[o]) {
			h_fail(__FILE__, __LINE__, "m%04d has id %lld paging back, %lld paging forward", o, (long long)id_back[o],
					(long long)id_fwd[o]);
			break;
		}
	}
	h_client_close(alice);
	h_client_close(s.c);
	h_client_close(A.c);
	h_client_close(B.c);
}

/* The from filter pages too: only alice's 1000, by 100, with before. */
static void paging_from_one_sender(h_env *env)
{
	api_user B;
	json_int_t before = 0;
	bool more = true;
	int n = 0, pages = 0;

	H_REQUIRE(API_OPEN(env, &B, "bob", H_PROTO_V5));
	while(more && pages < 100) {
		json_t *req = json_pack("{s:s,s:s,s:i,s:s}", "op", "history", "room", room, "limit", 100, "from", "alice");
		if(pages) json_object_set_new(req, "before", json_integer(before));
		json_t *ans = api_call_at(__FILE__, __LINE__, &B, req);
		json_t *res = json_object_get(ans, "result"), *m;
		size_t i;
		more = json_is_true(json_object_get(res, "more"));
		json_array_foreach(json_object_get(res, "messages"), i, m) {
			char want[16];
			snprintf(want, sizeof(want), "m%04d", ORIGINALS - 1 - n);
			H_CHECK_STR(json_string_value(json_object_get(m, "from")), "alice");
			H_CHECK_STR(json_string_value(json_object_get(m, "body")), want);
			before = json_integer_value(json_object_get(m, "id"));
			n++;
		}
		if(!res) more = false;
		json_decref(ans);
		pages++;
	}
	H_CHECK_INT(n, ==, ORIGINALS);
	H_CHECK_INT(pages, ==, ORIGINALS / 100);
	h_client_close(B.c);
}

int main(void)
{
	h_env *env = h_env_new("api_history");

	h_user(env, "alice");
	h_user(env, "bob");
	h_user(env, "carol");
	if(h_room_create(env, room, "--name", "busy", "alice", "bob", "carol", (char *)NULL)) {
		h_failures++;
		return h_env_finish(env);
	}
	h_env_no_limits(env);
	h_env_start(env);
	H_RUN(env, paging_both_ways_while_sending);
	H_RUN(env, paging_from_one_sender);
	return h_env_finish(env);
}
