/* The dashboard's files (index.html, app.js, style.css in this directory),
 * compiled into the daemon by embed.py so it needs nothing on disk and
 * nothing from the network at run time. static.c serves them. */
#ifndef SHOAL_MGMT_DASHBOARD_ASSETS_H
#define SHOAL_MGMT_DASHBOARD_ASSETS_H

#include <stddef.h>

struct dashboard_asset {
    const char *name; /* file name, e.g. "app.js" */
    const unsigned char *data;
    size_t len;
};

/* Generated (dashboard_assets.c in the build directory). */
extern const struct dashboard_asset dashboard_assets[];
extern const size_t dashboard_asset_count;

#endif
