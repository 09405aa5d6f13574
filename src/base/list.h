/* An intrusive doubly linked list with a sentinel head, for the records that many
 * parts keep in lists (apps, functions, versions, containers, waiters, maps, log
 * subscribers). A node is embedded in its record; list_entry gets the record back.
 * Removal is O(1) and a removed node is self-linked, so removing twice is harmless.
 * Iteration with list_for_each_safe may remove the current entry. */
#ifndef GUST_BASE_LIST_H
#define GUST_BASE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_node {
    struct list_node *prev, *next;
};

#define LIST_INIT(name) { &(name), &(name) }

static inline void list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

static inline bool list_empty(const struct list_node *head)
{
    return head->next == head;
}

/* A node that is in no list (initialised, or removed). */
static inline bool list_unlinked(const struct list_node *n)
{
    return n->next == n;
}

static inline void list_insert_between(struct list_node *n, struct list_node *prev, struct list_node *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void list_push_back(struct list_node *head, struct list_node *n)
{
    list_insert_between(n, head->prev, head);
}

static inline void list_push_front(struct list_node *head, struct list_node *n)
{
    list_insert_between(n, head, head->next);
}

static inline void list_remove(struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline size_t list_length(const struct list_node *head)
{
    size_t n = 0;
    for (const struct list_node *p = head->next; p != head; p = p->next)
        n++;
    return n;
}

#define list_entry(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define list_first_entry(head, type, member) (list_empty(head) ? NULL : list_entry((head)->next, type, member))

/* for (each record e of type in head, linked through member) */
#define list_for_each(e, head, type, member)                                                                  \
    for (type *e = list_entry((head)->next, type, member); &e->member != (head);                              \
         e = list_entry(e->member.next, type, member))
/* The same, where the body may remove e (tmp_ holds the next node). */
#define list_for_each_safe(e, head, type, member)                                                             \
    for (type *e = list_entry((head)->next, type, member), *e##_next_ = list_entry(e->member.next, type, member); \
         &e->member != (head); e = e##_next_, e##_next_ = list_entry(e->member.next, type, member))

#endif
