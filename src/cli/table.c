/* Aligned text tables for the listing commands (ls, ps, usage, image ls, secret ls). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "cli/cli.h"

void table_add(struct table *t, char **row)
{
    t->cells = xreallocarray(t->cells, (t->nrows + 1) * t->ncols, sizeof *t->cells);
    memcpy(t->cells + t->nrows * t->ncols, row, t->ncols * sizeof *row);
    t->nrows++;
}

struct table table_new(const char *const *titles, size_t ncols)
{
    struct table t = {.ncols = ncols};
    char *row[TABLE_MAX_COLS];
    for (size_t i = 0; i < ncols; i++)
        row[i] = xstrdup(titles[i]);
    table_add(&t, row);
    return t;
}

/* Frees t's cells without printing. */
static void table_free(struct table *t)
{
    for (size_t k = 0; k < t->nrows * t->ncols; k++)
        free(t->cells[k]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

void table_print(struct table *t, const char *if_empty)
{
    if (t->nrows <= 1 && if_empty) {
        printf("%s\n", if_empty);
        table_free(t);
        return;
    }
    size_t w[TABLE_MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            size_t n = s ? strlen(s) : 0;
            if (n > w[i])
                w[i] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            if (i + 1 < t->ncols)
                printf("%-*s  ", (int)w[i], s ? s : "");
            else
                printf("%s\n", s ? s : "");
        }
    }
    table_free(t);
}
