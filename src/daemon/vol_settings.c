/* See vol_settings.h. */
#include "daemon/vol_settings.h"

#include "backend/backend.h"

json_t *vol_settings_json(const struct volume_config *c)
{
    json_t *v = json_pack("{s:b, s:b, s:i}", "enabled", !c->disabled, "direct", c->backend.direct,
                          "conns", (int)c->backend.conns);
    if (v && c->readahead)
        json_object_set_new(v, "readahead", json_integer(c->readahead));
    if (v && c->backend.connect_timeout_ms)
        json_object_set_new(v, "connect_timeout_ms",
                            json_integer((json_int_t)c->backend.connect_timeout_ms));
    return v;
}

/* An integer key in lo..hi: 1 and *out, 0 when absent, -1 when bad. */
static int int_in(const json_t *v, const char *key, json_int_t lo, json_int_t hi, json_int_t *out)
{
    json_t *x = json_object_get(v, key);
    if (!x)
        return 0;
    if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi)
        return -1;
    *out = json_integer_value(x);
    return 1;
}

/* A boolean key: 1 and *out, 0 when absent, -1 when bad. */
static int flag(const json_t *v, const char *key, bool *out)
{
    json_t *x = json_object_get(v, key);
    if (!x)
        return 0;
    if (!json_is_boolean(x))
        return -1;
    *out = json_is_true(x);
    return 1;
}

const char *vol_settings_parse(const json_t *v, struct volume_config *c)
{
    static const char *const bad_flag = "a volume flag that is not true or false";
    const char *why = NULL;
    bool b;
    json_int_t n;
    int r;
    if ((r = flag(v, "enabled", &b)) > 0)
        c->disabled = !b;
    else if (r < 0)
        why = bad_flag;
    if ((r = flag(v, "direct", &b)) > 0)
        c->backend.direct = b;
    else if (r < 0 && !why)
        why = bad_flag;
    if ((r = int_in(v, "conns", 0, 64, &n)) > 0)
        c->backend.conns = (unsigned)n;
    else if (r < 0 && !why)
        why = "a volume's \"conns\" is not 0..64";
    if ((r = int_in(v, "readahead", -1, VOL_READAHEAD_MAX, &n)) > 0)
        c->readahead = (int32_t)n;
    else if (r < 0 && !why)
        why = "a volume's \"readahead\" is not -1..262144";
    if ((r = int_in(v, "connect_timeout_ms", 0, BACKEND_CONNECT_TIMEOUT_MAX_MS, &n)) > 0)
        c->backend.connect_timeout_ms = (uint32_t)n;
    else if (r < 0 && !why)
        why = "a volume's \"connect_timeout_ms\" is not 0..3600000";
    return why;
}
