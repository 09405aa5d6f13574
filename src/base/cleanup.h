/* Scope-bound cleanup helpers. Ownership is handed over explicitly with
 * TAKE_PTR / TAKE_FD, which return the value and disarm the cleanup. */
#ifndef GUST_BASE_CLEANUP_H
#define GUST_BASE_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_freep(void *p)
{
    free(*(void **)p);
}
static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void cleanup_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define AUTO_FREE __attribute__((cleanup(cleanup_freep)))
#define AUTO_FD __attribute__((cleanup(cleanup_closep)))
#define AUTO_FILE __attribute__((cleanup(cleanup_fclosep)))

#define TAKE_PTR(p) ({ __typeof__(p) take_tmp_ = (p); (p) = NULL; take_tmp_; })
#define TAKE_FD(fd) ({ int take_fd_ = (fd); (fd) = -1; take_fd_; })

#endif
