#include "base/hmap.h"

#include <assert.h>
#include <stdlib.h>

#include "base/xalloc.h"

uint64_t hmap_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void hmap_init(struct hmap *m, size_t initial_buckets)
{
    size_t n = 16;
    while (n < initial_buckets)
        n *= 2;
    m->buckets = xcalloc(n, sizeof *m->buckets);
    m->nbuckets = n;
    m->count = 0;
}

void hmap_free(struct hmap *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->count = 0;
}

static void hmap_grow(struct hmap *m)
{
    size_t n = m->nbuckets * 2;
    struct hmap_node **b = xcalloc(n, sizeof *b);
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct hmap_node *node = m->buckets[i];
        while (node) {
            struct hmap_node *next = node->next;
            size_t j = node->hash & (n - 1);
            node->next = b[j];
            b[j] = node;
            node = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void hmap_insert(struct hmap *m, struct hmap_node *node, uint64_t hash)
{
    /* The mask arithmetic below needs a power-of-two bucket count. */
    assert(m->nbuckets && (m->nbuckets & (m->nbuckets - 1)) == 0);
    if (m->count + 1 > m->nbuckets)
        hmap_grow(m);
    node->hash = hash;
    size_t i = hash & (m->nbuckets - 1);
    node->next = m->buckets[i];
    m->buckets[i] = node;
    m->count++;
    /* Grown at load factor 1, so the count never passes the bucket count. */
    assert(m->count <= m->nbuckets);
}

struct hmap_node *hmap_find(const struct hmap *m, uint64_t hash, hmap_eq_fn eq, const void *key)
{
    for (struct hmap_node *n = m->buckets[hash & (m->nbuckets - 1)]; n; n = n->next)
        if (n->hash == hash && eq(n, key))
            return n;
    return NULL;
}

void hmap_remove(struct hmap *m, struct hmap_node *node)
{
    struct hmap_node **p = &m->buckets[node->hash & (m->nbuckets - 1)];
    while (*p) {
        if (*p == node) {
            assert(m->count > 0);
            *p = node->next;
            node->next = NULL;
            m->count--;
            return;
        }
        p = &(*p)->next;
    }
}
