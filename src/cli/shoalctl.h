/* Shared between shoalctl's command files: the parsed command line. */
#ifndef SHOAL_CLI_SHOALCTL_H
#define SHOAL_CLI_SHOALCTL_H

#include <jansson.h>
#include <stdbool.h>

#include "cli/client.h"

static inline void cli_json_decrefp(json_t **j)
{
    json_decref(*j);
}
#define _cleanup_json_ __attribute__((cleanup(cli_json_decrefp)))

#define CLI_MAX_ARGS 8

/* Flags a command may accept. */
enum cli_flag {
    F_JSON = 1u << 0,
    F_READONLY = 1u << 1,
    F_DISABLED = 1u << 2,
    F_FORCE = 1u << 3,
    F_WAIT = 1u << 4,
    F_ONCE = 1u << 5,
    F_RAW = 1u << 6,     /* volume add: format "raw" (no image header check) */
    F_NO_WAIT = 1u << 7, /* volume add: reply once accepted, open in the background */
};

struct cli {
    const char *url;
    struct client *client;
    unsigned flags;                 /* F_* given on the command line */
    const char *args[CLI_MAX_ARGS]; /* positional arguments after the command word(s) */
    int nargs;
    const char *to; /* --to NODE (volume move) */
};

/* top.c */
int cmd_top(struct cli *cli);

/* cluster.c */
int cmd_cluster_status(struct cli *cli);
int cmd_cluster_add(struct cli *cli);
int cmd_cluster_remove(struct cli *cli);
int cmd_volume_move(struct cli *cli);
/* shoalctl.c: the answer as indented JSON (--json) */
void puts_json(json_t *j);

#endif
