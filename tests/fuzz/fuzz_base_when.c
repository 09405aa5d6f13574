/* libFuzzer target: parse_when (src/base/util.h), the times `gust logs --since/--until`
 * and `gust usage --since` take: RFC 3339, durations back from now, Unix seconds. The
 * input is NUL-terminated and parsed at a fixed now; a time it accepts must be a
 * finite number, never negative, and a duration's never after now. Nothing may crash
 * or read past the text. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    const double now = 1.8e9;
    double t;
    if (parse_when(s, now, &t)) {
        if (!isfinite(t) || t < 0)
            __builtin_trap();
        size_t n = strlen(s);
        char unit = n ? s[n - 1] : 0;
        if ((unit == 's' || unit == 'm' || unit == 'h' || unit == 'd') && t > now)
            __builtin_trap();
    }
    free(s);
    return 0;
}
