/*
 * The membership snapshot: users (for authentication) and rooms with their participants
 * (for every ACL check), in memory, so the broker thread never asks the database anything.
 *
 * cache__load runs on the reload thread and reads everything in one read transaction
 * (on PostgreSQL REPEATABLE READ: every statement of it sees the same state).
 * Everything else runs on the broker thread, which owns a snapshot once it is swapped in.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "plugin.h"

#define ARENA_CHUNK (4u << 20)

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	_Alignas(16) char data[];
};

static void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	struct arena_chunk *ch = a->head;
	if(!ch || ch->cap - ch->used < n){
		size_t size = sizeof(*ch) + n > ARENA_CHUNK ? sizeof(*ch) + n : ARENA_CHUNK;
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if(p == MAP_FAILED) return NULL;
		ch = p;
		ch->cap = size - sizeof(*ch);
		ch->used = 0;
		ch->next = a->head;
		a->head = ch;
	}
	void *r = ch->data + ch->used;
	ch->used += n;
	return r;
}

static char *arena_strndup(struct arena *a, const char *s, size_t len)
{
	char *d = arena_alloc(a, len + 1);
	if(d){
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static void arena_free(struct arena *a)
{
	struct arena_chunk *ch = a->head;
	while(ch){
		struct arena_chunk *next = ch->next;
		munmap(ch, ch->cap + sizeof(*ch));
		ch = next;
	}
	a->head = NULL;
}

void *cache__arena_alloc(struct cache *c, size_t n)
{
	void *p = arena_alloc(&c->arena, n);
	if(p) memset(p, 0, n);
	return p;
}

char *cache__arena_strdup(struct cache *c, const char *s)
{
	return arena_strndup(&c->arena, s, strlen(s));
}

/* Users and rooms live in the arena (mmap memory is zeroed). */
static struct cache_user *user_add(struct cache *c, const char *name, size_t len)
{
	struct cache_user *u = arena_alloc(&c->arena, sizeof(*u));
	if(!u || !(u->name = arena_strndup(&c->arena, name, len))) return NULL;
	if(c->nusers == c->users_cap){
		uint32_t cap = c->users_cap ? c->users_cap * 2 : 64;
		struct cache_user **arr = realloc(c->users_by_idx, cap * sizeof(*arr));
		if(!arr) return NULL;
		c->users_by_idx = arr;
		c->users_cap = cap;
	}
	int err;
	strmap__put(&c->users, u->name, len, u, &err);
	if(err) return NULL;
	u->idx = c->nusers;
	c->users_by_idx[c->nusers++] = u;
	return u;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static struct cache_room *room_add(struct cache *c, const char *id, size_t len)
{
	struct cache_room *r = arena_alloc(&c->arena, sizeof(*r));
	if(!r || !(r->id = arena_strndup(&c->arena, id, len))) return NULL;
	int err;
	strmap__put(&c->rooms, r->id, len, r, &err);
	return err ? NULL : r;
}

struct cache_user *cache__user(const struct cache *c, const char *name, size_t len)
{
	return strmap__get(&c->users, name, len);
}

struct cache_room *cache__room(const struct cache *c, const char *id, size_t len)
{
	return strmap__get(&c->rooms, id, len);
}

bool cache__is_member(const struct cache_room *room, const struct cache_user *u)
{
	uint32_t lo = 0, hi = room->nmembers, want = u->idx;
	while(lo < hi){
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t v = room->members[mid];
		if(v == want) return true;
		if(v < want) lo = mid + 1;
		else hi = mid;
	}
	return false;
}

static int step_fail(mqc_db *db, const char *what, char *reason, size_t reasonlen)
{
	snprintf(reason, reasonlen, "reading %s: %s", what, mqc_db_errmsg(db));
	return -1;
}

/* The members of the room being read, gathered here, then copied to the arena sorted. */
struct member_buf {
	uint32_t *v;
	uint32_t n, cap;
};

static int member_push(struct member_buf *b, uint32_t idx)
{
	if(b->n == b->cap){
		uint32_t cap = b->cap ? b->cap * 2 : 64;
		uint32_t *v = realloc(b->v, cap * sizeof(*v));
		if(!v) return -1;
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = idx;
	return 0;
}

static int room_set_members(struct cache *c, struct cache_room *r, struct member_buf *b)
{
	qsort(b->v, b->n, sizeof(uint32_t), cmp_u32);
	r->members = arena_alloc(&c->arena, (b->n ? b->n : 1) * sizeof(uint32_t));
	if(!r->members) return -1;
	memcpy(r->members, b->v, b->n * sizeof(uint32_t));
	r->nmembers = b->n;
	b->n = 0;
	return 0;
}

struct cache *cache__load(mqc_db *db, char *reason, size_t reasonlen)
{
	struct cache *c = calloc(1, sizeof(*c));
	mqc_stmt *st = NULL;
	int rc;
	bool in_txn = false;

	if(!c){
		snprintf(reason, reasonlen, "out of memory");
		return NULL;
	}
	if(mqc_exec(db, MQC_Q_SNAP_BEGIN)){
		step_fail(db, "BEGIN", reason, reasonlen);
		goto fail;
	}
	in_txn = true;

	/* Sizes first, so the tables are allocated once. */
	if(!(st = mqc_q(db, MQC_Q_SNAP_COUNTS)) || mqc_step(st) != MQC_ROW){
		step_fail(db, "counts", reason, reasonlen);
		goto fail;
	}
	c->acl_version = mqc_col_int64(st, 0);
	int64_t nusers = mqc_col_int64(st, 1);
	int64_t nrooms = mqc_col_int64(st, 2);
	c->max_msg_id = (uint64_t)mqc_col_int64(st, 3);
	mqc_reset(st);
	st = NULL;
	if(strmap__reserve(&c->users, (size_t)nusers + 16) || strmap__reserve(&c->rooms, (size_t)nrooms + 16)){
		snprintf(reason, reasonlen, "out of memory for %lld users, %lld rooms",
				(long long)nusers, (long long)nrooms);
		goto fail;
	}

	if(!(st = mqc_q(db, MQC_Q_SNAP_USERS))){
		step_fail(db, "users", reason, reasonlen);
		goto fail;
	}
	while((rc = mqc_step(st)) == MQC_ROW){
		const char *name = mqc_col_text(st, 0);
		const char *hash = mqc_col_text(st, 1);
		if(!name || !mqc_name_valid(name, strlen(name))) continue; /* cannot be an MQTT username */
		struct cache_user *u = user_add(c, name, strlen(name));
		if(!u || !(u->pwhash = arena_strndup(&c->arena, hash ? hash : "", hash ? strlen(hash) : 0))){
			snprintf(reason, reasonlen, "out of memory loading users");
			goto fail;
		}
		u->disabled = mqc_col_int64(st, 2) != 0;
	}
	if(rc != MQC_DONE){
		step_fail(db, "users", reason, reasonlen);
		goto fail;
	}
	mqc_reset(st);
	st = NULL;

	if(!(st = mqc_q(db, MQC_Q_SNAP_ROOMS))){
		step_fail(db, "rooms", reason, reasonlen);
		goto fail;
	}
	while((rc = mqc_step(st)) == MQC_ROW){
		const char *id = mqc_col_text(st, 0);
		if(!id) continue;
		struct cache_room *r = room_add(c, id, strlen(id));
		if(!r){
			snprintf(reason, reasonlen, "out of memory loading rooms");
			goto fail;
		}
		r->enabled = mqc_col_int64(st, 1) != 0;
		r->version = mqc_col_int64(st, 2);
	}
	if(rc != MQC_DONE){
		step_fail(db, "rooms", reason, reasonlen);
		goto fail;
	}
	mqc_reset(st);
	st = NULL;

	/* Ordered by room, so each room's members arrive together. */
	if(!(st = mqc_q(db, MQC_Q_SNAP_PARTICIPANTS))){
		step_fail(db, "room_participants", reason, reasonlen);
		goto fail;
	}
	struct cache_room *cur = NULL;
	struct member_buf buf = {0};
	while((rc = mqc_step(st)) == MQC_ROW){
		const char *rid = mqc_col_text(st, 0);
		const char *uid = mqc_col_text(st, 1);
		if(!rid || !uid) continue;
		if(!cur || strcmp(cur->id, rid) != 0){
			if(cur && room_set_members(c, cur, &buf)) break;
			/* A participant row without its room cannot be (foreign keys): skipped. */
			cur = cache__room(c, rid, strlen(rid));
		}
		struct cache_user *u = cur ? cache__user(c, uid, strlen(uid)) : NULL;
		if(u && member_push(&buf, u->idx)) break;
	}
	if(rc == MQC_ROW || (cur && room_set_members(c, cur, &buf))){
		free(buf.v);
		snprintf(reason, reasonlen, "out of memory loading participants");
		goto fail;
	}
	free(buf.v);
	if(rc != MQC_DONE){
		step_fail(db, "room_participants", reason, reasonlen);
		goto fail;
	}
	mqc_reset(st);
	st = NULL;

	/* Device tokens (schema 003): by the hash of their secret. */
	if(!(st = mqc_q(db, MQC_Q_SNAP_TOKENS))){
		step_fail(db, "tokens", reason, reasonlen);
		goto fail;
	}
	while((rc = mqc_step(st)) == MQC_ROW){
		const char *id = mqc_col_text(st, 0);
		const char *uid = mqc_col_text(st, 1);
		const char *hash = mqc_col_text(st, 2);
		if(!id || !uid || !hash) continue;
		if(cache__token_add(c, uid, id, hash, mqc_col_int64(st, 3), false)){
			snprintf(reason, reasonlen, "out of memory loading tokens");
			goto fail;
		}
	}
	if(rc != MQC_DONE){
		step_fail(db, "tokens", reason, reasonlen);
		goto fail;
	}
	mqc_reset(st);
	/* Nothing was written: a failed COMMIT loses nothing, and the snapshot is what was
	 * read. A connection that is gone is the reload thread's to notice. */
	mqc_exec(db, MQC_Q_COMMIT);
	return c;

fail:
	mqc_reset(st);
	/* Only while a transaction is open: after a lost connection there is none, and
	 * mqc_db_fault_last still says why the load failed. */
	if(in_txn && mqc_db_in_txn(db)) mqc_exec(db, MQC_Q_ROLLBACK);
	cache__free(c);
	return NULL;
}

/* ------------------------------------------------------------------ device tokens (token.c) */

static void token_free(struct cache_token *t)
{
	if(!t || !t->heap) return;
	free(t->hash);
	free(t->byid.id);
	free(t);
}

struct cache_token *cache__token(const struct cache *c, const char *hash)
{
	return strmap__get(&c->tokens, hash, strlen(hash));
}

struct cache_token *cache__token_by_id(const struct cache *c, const char *id)
{
	struct token_idref *r = strmap__get(&c->tokens_by_id, id, strlen(id));
	return r ? r->t : NULL;
}

bool cache__token_del(struct cache *c, const char *id)
{
	struct token_idref *r = strmap__del(&c->tokens_by_id, id, strlen(id));
	if(!r) return false;
	struct cache_token *t = r->t;
	strmap__del(&c->tokens, t->hash, strlen(t->hash));
	token_free(t);
	return true;
}

bool cache__token_hash_valid(const char *h)
{
	if(!h || strlen(h) != MQC_TOKEN_HASH_HEX) return false;
	for(const char *p = h; *p; p++){
		if(!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
	}
	return true;
}

bool cache__token_id_valid(const char *id)
{
	return id && strlen(id) == MQC_TOKEN_ID_LEN && mqc_name_valid(id, MQC_TOKEN_ID_LEN);
}

int cache__token_add(struct cache *c, const char *user, const char *id, const char *hash, int64_t expires_at, bool heap)
{
	/* a row written behind the bridge's back (sqlite3, psql) that no secret could match, or
	 * whose id could not be named in a log line or a control message: not loaded */
	if(!cache__token_id_valid(id) || !cache__token_hash_valid(hash)) return 0;
	size_t ulen = strlen(user);
	struct cache_user *u = cache__user(c, user, ulen);
	if(!u) return 0; /* a token of a user this snapshot does not know cannot log anyone in */
	cache__token_del(c, id);
	struct cache_token *old = cache__token(c, hash);
	if(old) cache__token_del(c, old->byid.id);
	struct cache_token *t = heap ? calloc(1, sizeof(*t)) : cache__arena_alloc(c, sizeof(*t));
	if(!t) return -1;
	t->heap = heap;
	t->hash = heap ? strdup(hash) : cache__arena_strdup(c, hash);
	t->byid.id = heap ? strdup(id) : cache__arena_strdup(c, id);
	t->byid.t = t;
	t->user = u;
	t->expires_at = expires_at;
	if(!t->hash || !t->byid.id){
		token_free(t);
		return -1;
	}
	int err = 0;
	strmap__put(&c->tokens, t->hash, strlen(t->hash), t, &err);
	if(err){
		token_free(t);
		return -1;
	}
	strmap__put(&c->tokens_by_id, t->byid.id, strlen(t->byid.id), &t->byid, &err);
	if(err){
		strmap__del(&c->tokens, t->hash, strlen(t->hash));
		token_free(t);
		return -1;
	}
	return 0;
}

void cache__tokens_free(struct cache *c)
{
	STRMAP_FOREACH(&c->tokens, s){
		token_free(s->val);
	}
	strmap__free(&c->tokens);
	strmap__free(&c->tokens_by_id);
}

void cache__free(struct cache *c)
{
	if(!c) return;
	STRMAP_FOREACH(&c->rooms, s){
		struct cache_room *r = s->val;
		if(r->members_heap) free(r->members);
	}
	free(c->users_by_idx);
	cache__tokens_free(c);
	strmap__free(&c->rooms);
	strmap__free(&c->users);
	arena_free(&c->arena);
	free(c);
}

int cache__apply(struct cache *c, const struct room_update *u)
{
	size_t idlen = strlen(u->room);
	struct cache_room *r = cache__room(c, u->room, idlen);
	if(r && r->version >= u->version) return 0;

	uint32_t *members = malloc((u->nmembers ? u->nmembers : 1) * sizeof(*members));
	if(!members) return -1;
	uint32_t n = 0;
	for(uint32_t i = 0; i < u->nmembers; i++){
		size_t len = strlen(u->members[i]);
		struct cache_user *cu = cache__user(c, u->members[i], len);
		/* A user created after this snapshot was read: known by name now, able to log in
		 * after the next reload brings its password hash. */
		if(!cu) cu = user_add(c, u->members[i], len);
		if(!cu){
			free(members);
			return -1;
		}
		members[n++] = cu->idx;
	}
	qsort(members, n, sizeof(*members), cmp_u32);
	if(!r && !(r = room_add(c, u->room, idlen))){
		free(members);
		return -1;
	}
	if(r->members_heap) free(r->members);
	r->members = members;
	r->members_heap = true;
	r->nmembers = n;
	r->version = u->version;
	r->enabled = u->enabled;
	return 1;
}

void room_update__free(struct room_update *u)
{
	for(uint32_t i = 0; i < u->nmembers; i++) free(u->members[i]);
	free(u->members);
	free(u->room);
	memset(u, 0, sizeof(*u));
}
