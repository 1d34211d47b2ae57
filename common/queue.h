/* Intrusive lists as macros over a structure's own link fields (the idea of BSD's sys/queue.h):
 * the element carries its links, nothing is allocated, the owner keeps the ends wherever it
 * likes. The arguments are evaluated more than once: pass plain lvalues.
 *   SQ_*  a singly-linked FIFO known by its first and last element (push at tail, pop at head);
 *   DL_*  a doubly-linked list known by its first element only;
 *   DQ_*  a doubly-linked list known by its first and last element. */
#ifndef COMMON_QUEUE_H
#define COMMON_QUEUE_H

#include <stddef.h>

/* Appends elm after last. */
#define SQ_PUSH(first, last, elm, next)                                                            \
    do {                                                                                           \
        (elm)->next = NULL;                                                                        \
        if (last)                                                                                  \
            (last)->next = (elm);                                                                  \
        else                                                                                       \
            (first) = (elm);                                                                       \
        (last) = (elm);                                                                            \
    } while (0)

/* Takes the first element off into elm (the queue must not be empty) and clears its link. */
#define SQ_POP(first, last, elm, next)                                                             \
    do {                                                                                           \
        (elm) = (first);                                                                           \
        (first) = (elm)->next;                                                                     \
        if (!(first))                                                                              \
            (last) = NULL;                                                                         \
        (elm)->next = NULL;                                                                        \
    } while (0)

/* Puts elm in front of first. */
#define DL_INSERT_HEAD(first, elm, next, prev)                                                     \
    do {                                                                                           \
        (elm)->prev = NULL;                                                                        \
        (elm)->next = (first);                                                                     \
        if (first)                                                                                 \
            (first)->prev = (elm);                                                                 \
        (first) = (elm);                                                                           \
    } while (0)

/* Takes elm out wherever it is. */
#define DL_REMOVE(first, elm, next, prev)                                                          \
    do {                                                                                           \
        if ((elm)->prev)                                                                           \
            (elm)->prev->next = (elm)->next;                                                       \
        else                                                                                       \
            (first) = (elm)->next;                                                                 \
        if ((elm)->next)                                                                           \
            (elm)->next->prev = (elm)->prev;                                                       \
    } while (0)

/* Appends elm after last. */
#define DQ_PUSH_TAIL(first, last, elm, next, prev)                                                 \
    do {                                                                                           \
        (elm)->prev = (last);                                                                      \
        SQ_PUSH(first, last, elm, next);                                                           \
    } while (0)

/* Puts elm in front of first. */
#define DQ_PUSH_HEAD(first, last, elm, next, prev)                                                 \
    do {                                                                                           \
        if (!(first))                                                                              \
            (last) = (elm);                                                                        \
        DL_INSERT_HEAD(first, elm, next, prev);                                                    \
    } while (0)

/* Takes elm out wherever it is; its links are left as they were. */
#define DQ_REMOVE(first, last, elm, next, prev)                                                    \
    do {                                                                                           \
        if (!(elm)->next)                                                                          \
            (last) = (elm)->prev;                                                                  \
        DL_REMOVE(first, elm, next, prev);                                                         \
    } while (0)

#endif
