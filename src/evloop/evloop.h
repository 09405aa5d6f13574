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

/* Monotonic ms, cached at the start of each iteration; on a virtual loop, the
 * virtual time. */
uint64_t ev_now_ms(struct ev_loop *loop);
/* Nanoseconds for measuring spans (busy time): a real loop reads the monotonic clock
 * now (not the cached ms, so sub-ms spans within one iteration still count); a virtual
 * loop returns its virtual time in ns. Only differences are meaningful. */
uint64_t ev_now_ns(struct ev_loop *loop);

/* ---------- virtual time (trace-driven simulation, tests) ----------
 *
 * A virtual loop never sleeps and never reads a clock: ev_now_ms starts at 0 and moves
 * only when the loop runs out of ready work, straight to the next timer's deadline.
 * Deferred callbacks run at the current virtual time; timers fire in (deadline,
 * creation) order, exactly as on a real loop with no lateness. fd watches may be added;
 * they are polled without waiting, once per iteration, while any is active (a virtual
 * loop does not wait for I/O, so code that must wait for a descriptor does not belong
 * on one). ev_async works the same way (its eventfd is polled). */
int ev_loop_new_virtual(struct ev_loop **out);
bool ev_loop_is_virtual(const struct ev_loop *loop);
/* Runs deferred work and due timers, advancing virtual time to each timer's deadline,
 * until virtual time would pass t_ms (then the clock is set to t_ms), ev_stop is called,
 * or nothing is left to do (no timers, no deferred work: the clock moves to t_ms unless
 * t_ms is UINT64_MAX). Timers due exactly at t_ms fire. Time never goes back: a t_ms in
 * the past only runs what is due now. Returns 0, -EINVAL on a real loop, or -errno
 * when polling fds fails. ev_run on a virtual loop is ev_run_until(loop, UINT64_MAX). */
int ev_run_until(struct ev_loop *loop, uint64_t t_ms);

#endif
