/* Terminal output helpers for shoalctl: aligned text tables and the
 * formatting of stat values, chosen from the stat's name (sizes for *bytes*,
 * percentages for *_ratio, ...) so that a stat added to the engine's list
 * prints sensibly without a change here. */
#ifndef SHOAL_CLI_TABLE_H
#define SHOAL_CLI_TABLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

struct table;

/* `align` has one letter per column: 'l' or 'r'. headers may be NULL (no
 * header row). */
struct table *table_new(unsigned ncols, const char *const *headers, const char *align);
/* Copy one row of ncols cells (NULL prints as "-"). */
void table_add(struct table *t, const char *const *cells);
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);

/* Format a stat value for humans, using its name as the hint. */
void fmt_stat(const char *name, json_t *val, char *buf, size_t len);
/* Compact sizes for tables ("1.5G", "512K", "0"). */
void fmt_size_short(double bytes, char *buf, size_t len);

#endif
