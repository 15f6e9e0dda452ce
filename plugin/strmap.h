/*
 * A string-keyed open-addressing hash table (linear probing), used for the membership
 * snapshot and the auth cache. Lookups take (pointer, length), so a room id can be looked
 * up straight out of a topic without copying it.
 *
 * Ownership: the table never frees keys or values. It does not store the key either: every
 * value is a struct whose FIRST member is its key (`char *name;`), NUL-terminated, living as
 * long as the entry. That keeps a slot at 16 bytes (the snapshot holds millions of them).
 * Deletion shifts the following run back (no tombstones), so tables that churn (the
 * dedupe window) stay as fast as fresh ones. Not thread-safe: each table has one owner.
 */
#ifndef MQCHAT_STRMAP_H
#define MQCHAT_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap_slot {
	uint32_t hash;   /* 0 marks an empty slot; real hashes are forced non-zero */
	uint32_t keylen;
	void *val;       /* *(const char **)val is the key */
};

struct strmap {
	struct strmap_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t len;
};

uint32_t strmap__hash(const char *key, size_t len);

/* Returns the value for key, or NULL. */
void *strmap__get(const struct strmap *m, const char *key, size_t len);

/* Inserts or replaces; returns the previous value (NULL if none), or sets *err on ENOMEM.
 * key/len must be the value's own key (its first member). */
void *strmap__put(struct strmap *m, const char *key, size_t len, void *val, int *err);

/* Removes key; returns its value, or NULL if it was not there. */
void *strmap__del(struct strmap *m, const char *key, size_t len);

/* Makes room for n entries up front (building a snapshot knows its size). 0 or -1. */
int strmap__reserve(struct strmap *m, size_t n);

void strmap__free(struct strmap *m);

#define STRMAP_FOREACH(m, slot) \
	for(struct strmap_slot *slot = (m)->slots; slot && slot < (m)->slots + (m)->cap; slot++) \
		if(slot->hash)

#endif
