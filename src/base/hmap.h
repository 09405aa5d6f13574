/* Intrusive chained hash map. The user embeds struct hmap_node in its record and
 * supplies the hash and an equality callback for lookups; the map never allocates
 * nodes, only its bucket array (grown at load factor 1). */
#ifndef GUST_BASE_HMAP_H
#define GUST_BASE_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hmap_node {
    struct hmap_node *next;
    uint64_t hash;
};

struct hmap {
    struct hmap_node **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
};

typedef bool (*hmap_eq_fn)(const struct hmap_node *node, const void *key);

uint64_t hmap_hash_str(const char *s);
/* Bucket arrays come from xcalloc (allocation failure aborts). */
void hmap_init(struct hmap *m, size_t initial_buckets);
void hmap_free(struct hmap *m); /* frees buckets only; nodes belong to the user */
/* Inserts node (no duplicate check). */
void hmap_insert(struct hmap *m, struct hmap_node *node, uint64_t hash);
struct hmap_node *hmap_find(const struct hmap *m, uint64_t hash, hmap_eq_fn eq, const void *key);
void hmap_remove(struct hmap *m, struct hmap_node *node);

#endif
