/* Tables and value formatting for shoalctl; see table.h. */
#include "cli/table.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct table {
    unsigned ncols;
    char *align;
    char **cells; /* rows * ncols, row 0 = headers */
    size_t rows, cap;
};

/* Cells come from the server: control characters (a newline in a path,
 * an escape sequence) are shown as '?' so they cannot garble the terminal. */
static char *dup_cell(const char *s)
{
    char *d = strdup(s ? s : "-");
    if (!d)
        abort(); /* a CLI out of memory has nothing better to do */
    return str_printable(d);
}

struct table *table_new(unsigned ncols, const char *const *headers, const char *align)
{
    struct table *t = calloc(1, sizeof *t);
    if (!t)
        abort();
    t->ncols = ncols;
    t->align = dup_cell(align);
    if (headers)
        table_add(t, headers);
    return t;
}

void table_add(struct table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = realloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
        if (!t->cells)
            abort();
    }
    for (unsigned i = 0; i < t->ncols; i++)
        t->cells[t->rows * t->ncols + i] = dup_cell(cells[i]);
    t->rows++;
}

void table_print(const struct table *t, FILE *f)
{
    size_t width[32] = {0};
    unsigned ncols = MIN(t->ncols, (unsigned)ARRAY_SIZE(width));
    for (size_t r = 0; r < t->rows; r++)
        for (unsigned c = 0; c < ncols; c++)
            width[c] = MAX(width[c], strlen(t->cells[r * t->ncols + c]));
    for (size_t r = 0; r < t->rows; r++) {
        for (unsigned c = 0; c < ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            bool last = c + 1 == ncols;
            bool right = c < strlen(t->align) && t->align[c] == 'r';
            if (right)
                fprintf(f, "%*s", (int)width[c], cell);
            else if (last)
                fputs(cell, f); /* no trailing blanks */
            else
                fprintf(f, "%-*s", (int)width[c], cell);
            fputs(last ? "\n" : "  ", f);
        }
    }
}

void table_free(struct table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->align);
    free(t);
}

void fmt_size_short(double bytes, char *buf, size_t len)
{
    static const char units[] = "BKMGTP";
    unsigned u = 0;
    while (bytes >= 1024 && u + 1 < sizeof units - 1) {
        bytes /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%.0f", bytes);
    else
        snprintf(buf, len, bytes < 10 ? "%.1f%c" : "%.0f%c", bytes, units[u]);
}

void fmt_stat(const char *name, json_t *val, char *buf, size_t len)
{
    bool bytes = strstr(name, "bytes") != NULL;
    size_t n = strlen(name);
    bool ratio = (n > 6 && strcmp(name + n - 6, "_ratio") == 0) ||
                 (n > 6 && strcmp(name + n - 6, "_share") == 0);
    if (json_is_integer(val)) {
        json_int_t v = json_integer_value(val);
        if (bytes && v >= 0)
            format_size((uint64_t)v, buf, len);
        else
            snprintf(buf, len, "%" JSON_INTEGER_FORMAT, v);
    } else if (json_is_real(val)) {
        double v = json_real_value(val);
        /* Dedup is a factor (logical/unique), the other ratios are shares. */
        if (ratio && strstr(name, "dedup"))
            snprintf(buf, len, "%.2fx", v);
        else if (ratio)
            snprintf(buf, len, "%.1f%%", v * 100);
        else if (bytes)
            snprintf(buf, len, "%.1f B", v);
        else if (n > 8 && strcmp(name + n - 8, "_seconds") == 0)
            snprintf(buf, len,
                     v >= 1      ? "%.2f s"
                     : v >= 1e-3 ? "%.2f ms"
                                 : "%.0f us",
                     v >= 1      ? v
                     : v >= 1e-3 ? v * 1e3
                                 : v * 1e6);
        else
            snprintf(buf, len, "%.4g", v);
    } else if (json_is_boolean(val)) {
        snprintf(buf, len, "%s", json_is_true(val) ? "yes" : "no");
    } else if (json_is_string(val)) {
        snprintf(buf, len, "%s", json_string_value(val));
    } else {
        snprintf(buf, len, "-");
    }
}
