/* Capability limits of a process that becomes (part of) a container. */
#ifndef GUST_BASE_CAPS_H
#define GUST_BASE_CAPS_H

#include <stdint.h>

#include "base/error.h"

/* What container root keeps (docs/SECURITY.md): CHOWN DAC_OVERRIDE FOWNER FSETID KILL
 * SETGID SETUID SETPCAP NET_BIND_SERVICE, as a bit mask of capability numbers. */
#define CAPS_CONTAINER 0x5fbull

/* Cuts the bounding, permitted and effective sets to keep, clears the inheritable
 * and ambient sets and sets no_new_privs (set-user-ID and file capabilities grant
 * nothing afterwards). Needs CAP_SETPCAP in the effective set. */
int caps_limit(uint64_t keep, struct gerr *err);

#endif
