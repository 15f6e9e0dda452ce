/*
 * String-keyed hash table for the plugin's in-memory state (see strmap.h for ownership).
 * Load factor is kept at or below 1/2, so probe runs stay short on the delivery hot path.
 */
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

/* FNV-1a, 64 bit, with a final avalanche, folded to 32 bits: keys are short ids (<= 64
 * bytes); tables stay below 2^31 slots. */
uint32_t strmap__hash(const char *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for(size_t i = 0; i < len; i++){
		h ^= (unsigned char)key[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	uint32_t r = (uint32_t)(h ^ (h >> 32));
	return r ? r : 1;
}

static const char *slot_key(const struct strmap_slot *s)
{
	return *(const char *const *)s->val;
}

static struct strmap_slot *find_slot(struct strmap_slot *slots, size_t cap, uint32_t h,
		const char *key, size_t len)
{
	size_t mask = cap - 1;
	for(size_t i = (size_t)h & mask;; i = (i + 1) & mask){
		struct strmap_slot *s = &slots[i];
		if(s->hash == 0) return s;
		if(s->hash == h && s->keylen == len && memcmp(slot_key(s), key, len) == 0) return s;
	}
}

static int grow(struct strmap *m, size_t want)
{
	size_t cap = m->cap ? m->cap : 16;
	while(cap < want * 2) cap *= 2;
	if(cap == m->cap) return 0;

	struct strmap_slot *slots = calloc(cap, sizeof(*slots));
	if(!slots) return -1;
	size_t mask = cap - 1;
	for(size_t i = 0; i < m->cap; i++){
		struct strmap_slot *o = &m->slots[i];
		if(!o->hash) continue;
		/* keys are unique: the first empty slot, no key to compare (or to dereference) */
		size_t j = (size_t)o->hash & mask;
		while(slots[j].hash) j = (j + 1) & mask;
		slots[j] = *o;
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	return 0;
}

void *strmap__get(const struct strmap *m, const char *key, size_t len)
{
	if(m->len == 0) return NULL;
	struct strmap_slot *s = find_slot(m->slots, m->cap, strmap__hash(key, len), key, len);
	return s->hash ? s->val : NULL;
}

void *strmap__put(struct strmap *m, const char *key, size_t len, void *val, int *err)
{
	*err = 0;
	if((m->len + 1) * 2 > m->cap && grow(m, m->len + 1)){
		*err = -1;
		return NULL;
	}
	uint32_t h = strmap__hash(key, len);
	struct strmap_slot *s = find_slot(m->slots, m->cap, h, key, len);
	void *old = s->hash ? s->val : NULL;
	if(!s->hash) m->len++;
	s->hash = h;
	s->keylen = (uint32_t)len;
	s->val = val;
	return old;
}

void *strmap__del(struct strmap *m, const char *key, size_t len)
{
	if(m->len == 0) return NULL;
	struct strmap_slot *s = find_slot(m->slots, m->cap, strmap__hash(key, len), key, len);
	if(!s->hash) return NULL;
	void *val = s->val;
	size_t mask = m->cap - 1, hole = (size_t)(s - m->slots);
	/* Backward-shift: move later entries of the run into the hole when their home slot
	 * is at or before it (cyclically), so every entry stays reachable from its home. */
	for(size_t i = (hole + 1) & mask; m->slots[i].hash; i = (i + 1) & mask){
		size_t home = (size_t)m->slots[i].hash & mask;
		if(((i - home) & mask) >= ((i - hole) & mask)){
			m->slots[hole] = m->slots[i];
			hole = i;
		}
	}
	memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
	m->len--;
	return val;
}

int strmap__reserve(struct strmap *m, size_t n)
{
	return grow(m, n);
}

void strmap__free(struct strmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->len = 0;
}
