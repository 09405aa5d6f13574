/* Internals of gust-init shared by its files: the runner channel, signals, and running
 * the command (common.c), and the entry point of each mode (one file each). main.c
 * parses the arguments and picks the mode. */
#ifndef GUST_INIT_INIT_H
#define GUST_INIT_INIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/frame.h"

#define INIT_CHAN FRAME_CHILD_FD

/* The signalfd of SIGCHLD, SIGTERM and SIGINT (set by init_setup_signals). */
extern int init_sigfd;
/* The worker closed the runner channel or went away; per_input mode then ends. */
extern bool init_chan_eof;

/* Prints "gust-init: " and fmt with its one argument arg on stderr; exits 2. */
__attribute__((noreturn)) void init_die(const char *fmt, const char *arg);

/* Sends a frame on the channel; a worker that went away sets init_chan_eof. Nothing
 * is sent once it is set. */
void init_chan_send(uint8_t type, uint64_t id, const void *body, size_t len);
/* init_chan_send of an ERROR frame of kind with message msg. */
void init_chan_send_error(uint64_t id, enum frame_error_kind kind, const char *msg);

/* Opens /dev/null on any of fds 0-2 that is closed, so pipes never land there. */
void init_fix_std_fds(void);
/* Blocks SIGCHLD, SIGTERM and SIGINT into init_sigfd and ignores SIGPIPE; dies on
 * failure. */
void init_setup_signals(void);
/* The next signal read from init_sigfd: its number, 0 when none is pending, or -errno
 * when the read failed (-EINTR included). */
int init_next_signal(void);

/* Running the command: the forked child execs (init_child_exec) or reports errno e
 * (init_exec_failed) on errfd, the write end ep[1] of a CLOEXEC pipe ep; the parent
 * learns the outcome with init_await_exec. */
/* In a forked child: default signal state, then execvp(cmd); never returns. */
__attribute__((noreturn)) void init_child_exec(char **cmd, int errfd);
/* In a forked child: writes e to errfd and exits 127. */
__attribute__((noreturn)) void init_exec_failed(int errfd, int e);
/* In the parent after forking child pid: closes ep[1], waits for the exec (EOF on
 * ep[0]) or an errno from the child, and closes ep[0]. Returns 0, or that errno after
 * reaping the child. */
int init_await_exec(pid_t pid, int ep[2]);

/* Closes *fd if open and sets it to -1. */
void init_close_fd(int *fd);
/* Forwards what is available on the non-blocking pipe *fd as LOG frames of stream
 * (1 stdout, 2 stderr) until it would block; closes *fd at EOF or on error. Each
 * chunk forwarded is also passed to keep, unless keep is NULL. */
void init_forward_pipe(int *fd, uint64_t stream, void (*keep)(void *ud, const char *data, size_t n), void *ud);

/* The modes (see main.c); each returns gust-init's exit status. */
int init_run_per_input(char **cmd, unsigned concurrency);
int init_run_runner(char **cmd, bool template);
int init_run_exec(char **cmd);
int init_run_snap_child(void);

#endif
