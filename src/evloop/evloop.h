/* A small epoll event loop (one per thread): fd watches, one-shot timers, deferred
 * callbacks. Level-triggered. All callbacks run on the loop's thread. It is safe to
 * delete any watch or timer from inside any callback, including its own. */
#ifndef GUST_EVLOOP_EVLOOP_H
#define GUST_EVLOOP_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;

#define EV_READ 0x1u
#define EV_WRITE 0x2u
#define EV_ERROR 0x4u /* reported: EPOLLERR/EPOLLHUP */

typedef void (*ev_io_cb)(struct ev_loop *loop, int fd, uint32_t events, void *data);
typedef void (*ev_cb)(struct ev_loop *loop, void *data);

int ev_loop_new(struct ev_loop **out);
void ev_loop_free(struct ev_loop *loop);

/* Watches fd for events (EV_READ|EV_WRITE); one watch per fd. Returns 0 or -errno. */
int ev_io_add(struct ev_loop *loop, int fd, uint32_t events, ev_io_cb cb, void *data);
int ev_io_mod(struct ev_loop *loop, int fd, uint32_t events);
int ev_io_del(struct ev_loop *loop, int fd);

/* One-shot timer after delay_ms. Returns an id > 0 for ev_timer_cancel (never 0: the
 * loop's tables grow through xalloc, whose failure aborts). */
uint64_t ev_timer_add(struct ev_loop *loop, uint64_t delay_ms, ev_cb cb, void *data);
/* Cancelling an id that already fired or was cancelled is a no-op. */
void ev_timer_cancel(struct ev_loop *loop, uint64_t id);

/* Runs cb once at the end of the current loop iteration (before blocking again).
 * Returns 0, or -EINVAL when cb is NULL. */
int ev_defer(struct ev_loop *loop, ev_cb cb, void *data);

/* A wake-up another thread can send: ev_async_send (thread-safe, never blocks)
 * makes cb run once on the loop's thread soon after; sends before cb runs coalesce
 * into one call, and a send after cb has begun runs it again. An eventfd watched by
 * the loop. ev_async_free (on the loop's thread, with no sender left) drops it. */
struct ev_async;
int ev_async_new(struct ev_loop *loop, ev_cb cb, void *data, struct ev_async **out);
void ev_async_send(struct ev_async *a);
void ev_async_free(struct ev_async *a);

/* Runs until ev_stop. Returns 0, or -errno if epoll_wait fails for a reason other than EINTR. */
int ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);

/* Monotonic ms, cached at the start of each iteration. */
uint64_t ev_now_ms(struct ev_loop *loop);

#endif
