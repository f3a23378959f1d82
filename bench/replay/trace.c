/* Trace parsers for shoal-replay (formats described in trace.h). */
#include "trace.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

/* Where we are in the file, for error messages. */
struct pos {
    const char *path;
    const struct trace_opts *o;
    uint64_t line; /* line (text) or record (binary) number, from 1 */
    bool binary;
    uint64_t reported;
};

const char *trace_format_name(enum trace_format f)
{
    switch (f) {
    case TRACE_MSR:
        return "msr";
    case TRACE_BLKPARSE:
        return "blkparse";
    case TRACE_VSCSI:
        return "vscsi";
    case TRACE_DISKSIM:
        return "disksim";
    case TRACE_FIU:
        return "fiu";
    default:
        return "auto";
    }
}

int trace_format_parse(const char *s, enum trace_format *out)
{
    static const enum trace_format all[] = {TRACE_AUTO,  TRACE_MSR,     TRACE_BLKPARSE,
                                            TRACE_VSCSI, TRACE_DISKSIM, TRACE_FIU};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, trace_format_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -EINVAL;
}

/* Report a malformed record. Returns -EINVAL when the load must stop
 * (strict), else 0 (the record is skipped). */
__attribute__((format(printf, 3, 4))) static int malformed(struct trace *t, struct pos *p,
                                                           const char *fmt, ...)
{
    t->malformed++;
    bool strict = p->o->strict;
    if (strict || p->reported < p->o->max_reports) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "%s:%s%llu: malformed record%s: ", p->path, p->binary ? "record " : "",
                (unsigned long long)p->line, strict ? "" : " skipped");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        p->reported++;
    }
    return strict ? -EINVAL : 0;
}

/* Room for one more record (and its MD5 when the trace keeps them). */
static int grow(struct trace *t, bool md5)
{
    if (t->n == t->cap) {
        uint64_t cap = t->cap ? t->cap * 2 : 4096;
        struct trace_rec *r = realloc(t->recs, cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        t->recs = r;
        if (t->md5) {
            uint8_t(*m)[16] = realloc(t->md5, cap * sizeof *m);
            if (!m)
                return -ENOMEM;
            t->md5 = m;
        }
        t->cap = cap;
    }
    if (md5 && !t->md5) {
        /* FIU traces have an MD5 on every line: the array starts with the first. */
        t->md5 = calloc(t->cap, sizeof *t->md5);
        if (!t->md5)
            return -ENOMEM;
    }
    return 0;
}

static int push_dev(struct trace *t, uint64_t ts_ns, uint64_t offset, uint64_t len,
                    enum trace_op op, uint16_t dev, const uint8_t *md5)
{
    /* Split long records so each fits one NBD request (an MD5 record is one
     * block: never split). */
    while (len > 0) {
        uint32_t piece = len > TRACE_MAX_REC_LEN ? TRACE_MAX_REC_LEN : (uint32_t)len;
        int r = grow(t, md5 != NULL);
        if (r < 0)
            return r;
        if (t->md5)
            memcpy(t->md5[t->n], md5 ? md5 : (const uint8_t[16]){0}, 16);
        t->recs[t->n++] = (struct trace_rec){
            .ts_ns = ts_ns, .offset = offset, .len = piece, .dev = dev, .op = (uint8_t)op};
        if (op == TRACE_READ) {
            t->reads++;
            t->read_bytes += piece;
        } else {
            t->writes++;
            t->write_bytes += piece;
        }
        if (piece > t->max_len)
            t->max_len = piece;
        if (offset + piece > t->max_end)
            t->max_end = offset + piece;
        offset += piece;
        len -= piece;
    }
    return 0;
}

static int push(struct trace *t, uint64_t ts_ns, uint64_t offset, uint64_t len, enum trace_op op)
{
    return push_dev(t, ts_ns, offset, len, op, 0, NULL);
}

/* Whole-string unsigned decimal. */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* ---- MSR Cambridge CSV ---- */

static int msr_line(struct trace *t, struct pos *p, char *line, bool *seen_record)
{
    line = trim(line);
    if (!*line || *line == '#') {
        t->ignored++;
        return 0;
    }
    char *f[8];
    int nf = 0;
    for (char *s = line; nf < 8;) {
        f[nf++] = s;
        char *comma = strchr(s, ',');
        if (!comma)
            break;
        *comma = '\0';
        s = comma + 1;
    }
    for (int i = 0; i < nf; i++)
        f[i] = trim(f[i]);
    if (!*seen_record && nf >= 1 && !isdigit((unsigned char)f[0][0])) {
        t->ignored++; /* header line */
        *seen_record = true;
        return 0;
    }
    *seen_record = true;
    if (nf != 7)
        return malformed(t, p, "expected 7 comma-separated fields, got %d", nf);
    uint64_t ts, off, size;
    if (!parse_u64(f[0], &ts))
        return malformed(t, p, "bad Timestamp '%s'", f[0]);
    enum trace_op op;
    if (strcasecmp(f[3], "Read") == 0)
        op = TRACE_READ;
    else if (strcasecmp(f[3], "Write") == 0)
        op = TRACE_WRITE;
    else
        return malformed(t, p, "bad Type '%s' (Read or Write)", f[3]);
    if (!parse_u64(f[4], &off))
        return malformed(t, p, "bad Offset '%s'", f[4]);
    if (!parse_u64(f[5], &size))
        return malformed(t, p, "bad Size '%s'", f[5]);
    if (size > TRACE_MAX_IO_LEN)
        return malformed(t, p, "Size %llu too large", (unsigned long long)size);
    if (off > UINT64_MAX - size || ts > UINT64_MAX / 100)
        return malformed(t, p, "offset or timestamp out of range");
    if (p->o->disk && strcmp(p->o->disk, f[2]) != 0) {
        t->filtered++;
        return 0;
    }
    if (size == 0) {
        t->ignored++;
        return 0;
    }
    return push(t, ts * 100, off, size, op);
}

/* ---- blkparse text ---- */

static bool is_devno(const char *s)
{
    const char *c = strchr(s, ',');
    if (!c || c == s || !c[1])
        return false;
    for (const char *q = s; *q; q++)
        if (q != c && !isdigit((unsigned char)*q))
            return false;
    return true;
}

/* "SECONDS.NANOSECONDS" without going through a double. */
static bool parse_blk_time(const char *s, uint64_t *ns)
{
    char buf[64];
    if (strlen(s) >= sizeof buf)
        return false;
    strcpy(buf, s);
    char *dot = strchr(buf, '.');
    uint64_t sec, frac = 0;
    if (dot)
        *dot = '\0';
    if (!parse_u64(buf, &sec) || sec > UINT64_MAX / 1000000000ull - 1)
        return false;
    if (dot) {
        const char *d = dot + 1;
        size_t nd = strlen(d);
        if (nd == 0 || nd > 9 || !parse_u64(d, &frac))
            return false;
        for (size_t i = nd; i < 9; i++)
            frac *= 10;
    }
    *ns = sec * 1000000000ull + frac;
    return true;
}

static int blk_line(struct trace *t, struct pos *p, char *line)
{
    char *tok[12];
    int nt = 0;
    for (char *save = NULL, *s = strtok_r(line, " \t\r\n", &save); s && nt < 12;
         s = strtok_r(NULL, " \t\r\n", &save))
        tok[nt++] = s;
    if (nt == 0 || !is_devno(tok[0])) {
        t->ignored++; /* blank, summary or header text */
        return 0;
    }
    if (nt < 7)
        return malformed(t, p, "event line with %d fields (need at least 7)", nt);
    const char *action = tok[5], *rwbs = tok[6];
    if (action[0] != p->o->blk_action || action[1]) {
        t->ignored++;
        return 0;
    }
    if (nt == 7 || tok[7][0] == '[') {
        t->ignored++; /* no sector range: a bare flush or a barrier */
        return 0;
    }
    uint64_t ts, sector, nsec;
    if (!parse_blk_time(tok[3], &ts))
        return malformed(t, p, "bad time '%s'", tok[3]);
    if (nt < 10 || !parse_u64(tok[7], &sector) || strcmp(tok[8], "+") != 0 ||
        !parse_u64(tok[9], &nsec))
        return malformed(t, p, "expected 'sector + nsectors' after '%s %s'", action, rwbs);
    if (nsec > TRACE_MAX_IO_LEN >> 9)
        return malformed(t, p, "%llu sectors: too large", (unsigned long long)nsec);
    if (sector > (UINT64_MAX >> 9) - nsec)
        return malformed(t, p, "sector out of range");
    if (p->o->disk && strcmp(p->o->disk, tok[0]) != 0) {
        t->filtered++;
        return 0;
    }
    enum trace_op op;
    if (strchr(rwbs, 'D') || nsec == 0) {
        t->ignored++; /* discard or a bare flush */
        return 0;
    } else if (strchr(rwbs, 'W')) {
        op = TRACE_WRITE;
    } else if (strchr(rwbs, 'R')) {
        op = TRACE_READ;
    } else {
        t->ignored++;
        return 0;
    }
    return push(t, ts, sector << 9, nsec << 9, op);
}

/* ---- whitespace-separated formats: DiskSim ASCII, FIU ---- */

/* Split in place on blanks; returns the number of fields, max + 1 when
 * there are more than max (only the first max are stored). */
static int split_ws(char *line, char **tok, int max)
{
    int n = 0;
    for (char *save = NULL, *s = strtok_r(line, " \t\r\n", &save); s;
         s = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == max)
            return max + 1;
        tok[n++] = s;
    }
    return n;
}

/* DiskSim arrival time: an integer is nanoseconds (MQSim's reading), a
 * decimal "MS.FRACTION" milliseconds (DiskSim's unit), no double involved. */
static bool parse_disksim_time(const char *s, uint64_t *ns)
{
    const char *dot = strchr(s, '.');
    if (!dot)
        return parse_u64(s, ns);
    char buf[32];
    size_t il = (size_t)(dot - s), fl = strlen(dot + 1);
    if (il == 0 || il >= sizeof buf || fl == 0 || fl > 6)
        return false;
    memcpy(buf, s, il);
    buf[il] = '\0';
    uint64_t ms, frac;
    if (!parse_u64(buf, &ms) || !parse_u64(dot + 1, &frac) || ms > UINT64_MAX / 1000000ull - 1)
        return false;
    for (size_t i = fl; i < 6; i++)
        frac *= 10;
    *ns = ms * 1000000ull + frac;
    return true;
}

static int disksim_line(struct trace *t, struct pos *p, char *line)
{
    char *f[5];
    int nf = split_ws(line, f, 5);
    if (nf == 0 || f[0][0] == '#') {
        t->ignored++;
        return 0;
    }
    if (nf != 5)
        return malformed(t, p, "expected 5 fields (arrival device sector nsectors type), got %s%d",
                         nf > 5 ? "more than " : "", nf > 5 ? 5 : nf);
    uint64_t ts, dev, sector, nsec, type;
    if (!parse_disksim_time(f[0], &ts))
        return malformed(t, p, "bad arrival time '%s'", f[0]);
    if (!parse_u64(f[1], &dev) || dev > UINT16_MAX)
        return malformed(t, p, "bad device '%s' (0 to 65535)", f[1]);
    if (!parse_u64(f[2], &sector))
        return malformed(t, p, "bad sector '%s'", f[2]);
    if (!parse_u64(f[3], &nsec))
        return malformed(t, p, "bad size '%s'", f[3]);
    if (!parse_u64(f[4], &type) || type > 1)
        return malformed(t, p, "bad type '%s' (1 read, 0 write)", f[4]);
    if (nsec > TRACE_MAX_IO_LEN >> 9)
        return malformed(t, p, "%llu sectors: too large", (unsigned long long)nsec);
    if (sector > (UINT64_MAX >> 9) - nsec)
        return malformed(t, p, "sector out of range");
    if (p->o->disk && strcmp(p->o->disk, f[1]) != 0) {
        t->filtered++;
        return 0;
    }
    if (nsec == 0) {
        t->ignored++;
        return 0;
    }
    return push_dev(t, ts, sector << 9, nsec << 9, type ? TRACE_READ : TRACE_WRITE, (uint16_t)dev,
                    NULL);
}

static bool parse_md5(const char *s, uint8_t out[16])
{
    if (strlen(s) != 32)
        return false;
    for (int i = 0; i < 32; i++) {
        int c = tolower((unsigned char)s[i]);
        int v = isdigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (v < 0)
            return false;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return true;
}

/* pandas' header line: the column numbers 0..8. */
static bool fiu_pandas_header(char **f, int nf)
{
    if (nf != 9)
        return false;
    for (int i = 0; i < 9; i++)
        if (f[i][0] != '0' + i || f[i][1])
            return false;
    return true;
}

static int fiu_line(struct trace *t, struct pos *p, char *line, bool *seen_record)
{
    char *tok[10];
    int nt = split_ws(line, tok, 10);
    if (nt == 0 || tok[0][0] == '#') {
        t->ignored++;
        return 0;
    }
    if (!*seen_record && fiu_pandas_header(tok, nt)) {
        t->ignored++;
        *seen_record = true;
        return 0;
    }
    *seen_record = true;
    char **f = tok;
    uint64_t row;
    if (nt == 10 && parse_u64(tok[0], &row)) { /* pandas' row index */
        f++;
        nt--;
    }
    if (nt != 9)
        return malformed(
            t, p,
            "expected 9 fields (ts pid process sector nsectors R|W major minor md5), got %s%d",
            nt > 9 ? "more than " : "", nt > 9 ? 9 : nt);
    uint64_t ts, sector, nsec, maj, min;
    uint8_t md5[16];
    if (!parse_u64(f[0], &ts))
        return malformed(t, p, "bad timestamp '%s'", f[0]);
    if (!parse_u64(f[3], &sector))
        return malformed(t, p, "bad sector '%s'", f[3]);
    if (!parse_u64(f[4], &nsec))
        return malformed(t, p, "bad size '%s'", f[4]);
    enum trace_op op;
    if (strcmp(f[5], "R") == 0)
        op = TRACE_READ;
    else if (strcmp(f[5], "W") == 0)
        op = TRACE_WRITE;
    else
        return malformed(t, p, "bad operation '%s' (R or W)", f[5]);
    if (!parse_u64(f[6], &maj) || !parse_u64(f[7], &min))
        return malformed(t, p, "bad device '%s %s'", f[6], f[7]);
    if (!parse_md5(f[8], md5))
        return malformed(t, p, "bad MD5 '%s' (32 hex digits)", f[8]);
    if (nsec != 8)
        return malformed(t, p, "%llu sectors: an FIU line is one 4 KiB block (8 sectors)",
                         (unsigned long long)nsec);
    if (sector > (UINT64_MAX >> 9) - 8)
        return malformed(t, p, "sector out of range");
    if (p->o->disk) {
        char devno[48];
        snprintf(devno, sizeof devno, "%llu,%llu", (unsigned long long)maj,
                 (unsigned long long)min);
        if (strcmp(p->o->disk, devno) != 0) {
            t->filtered++;
            return 0;
        }
    }
    return push_dev(t, ts, sector << 9, 4096, op, 0, md5);
}

static int load_text(FILE *f, struct pos *p, struct trace *t)
{
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    bool seen_record = false;
    while (getline(&line, &cap, f) >= 0) {
        p->line++;
        int r;
        switch (t->format) {
        case TRACE_MSR:
            r = msr_line(t, p, line, &seen_record);
            break;
        case TRACE_DISKSIM:
            r = disksim_line(t, p, line);
            break;
        case TRACE_FIU:
            r = fiu_line(t, p, line, &seen_record);
            break;
        default:
            r = blk_line(t, p, line);
        }
        if (r < 0)
            return r;
        if (p->o->limit && t->n >= p->o->limit)
            break;
    }
    return ferror(f) ? -EIO : 0;
}

/* ---- CloudPhysics vSCSI binary ---- */

static uint16_t le16(const uint8_t *b)
{
    return (uint16_t)(b[0] | b[1] << 8);
}
static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t le64(const uint8_t *b)
{
    return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

/* Version byte of record i, for layout v (1: ver at byte 14, 2: at byte 2). */
static unsigned vscsi_ver_at(const uint8_t *buf, size_t size, unsigned v, size_t i)
{
    size_t rs = v == 1 ? 32 : 40, at = i * rs + (v == 1 ? 14 : 2);
    if (at + 2 > size)
        return 0;
    return le16(buf + at) >> 8;
}

static int vscsi_op(uint16_t cmd, enum trace_op *op)
{
    switch (cmd) {
    case 0x08: /* READ(6) */
    case 0x28: /* READ(10) */
    case 0xa8: /* READ(12) */
    case 0x88: /* READ(16) */
        *op = TRACE_READ;
        return 1;
    case 0x0a: /* WRITE(6) */
    case 0x2a: /* WRITE(10) */
    case 0xaa: /* WRITE(12) */
    case 0x8a: /* WRITE(16) */
        *op = TRACE_WRITE;
        return 1;
    default:
        return 0;
    }
}

static int load_vscsi(FILE *f, const char *path, struct pos *p, struct trace *t)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            uint8_t *nb = realloc(buf, cap);
            if (!nb)
                return -ENOMEM;
            buf = nb;
        }
        size_t got = fread(buf + size, 1, cap - size, f);
        size += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        return -EIO;
    /* Which layout: the version byte of the first records must agree. */
    unsigned v = 0;
    if (size >= 40 && vscsi_ver_at(buf, size, 2, 0) == 2 &&
        (size < 80 || vscsi_ver_at(buf, size, 2, 1) == 2))
        v = 2;
    else if (size >= 32 && vscsi_ver_at(buf, size, 1, 0) == 1 &&
             (size < 64 || vscsi_ver_at(buf, size, 1, 1) == 1))
        v = 1;
    if (!v) {
        fprintf(stderr, "%s: not a vSCSI trace (no version 1 or 2 record header found)\n", path);
        return -EINVAL;
    }
    size_t rs = v == 1 ? 32 : 40;
    for (size_t i = 0; i * rs < size; i++) {
        p->line = i + 1;
        const uint8_t *r = buf + i * rs;
        if ((i + 1) * rs > size) {
            int e = malformed(t, p, "truncated: %zu of %zu bytes", size - i * rs, rs);
            if (e < 0)
                return e;
            break;
        }
        uint16_t cmd, ver;
        uint32_t len;
        uint64_t lbn, ts;
        if (v == 1) {
            len = le32(r + 4);
            cmd = le16(r + 12);
            ver = le16(r + 14);
            lbn = le64(r + 16);
            ts = le64(r + 24);
        } else {
            cmd = le16(r);
            ver = le16(r + 2);
            len = le32(r + 8);
            lbn = le64(r + 16);
            ts = le64(r + 24);
        }
        if (ver >> 8 != v) {
            int e = malformed(t, p, "version %u in a version %u trace", ver >> 8, v);
            if (e < 0)
                return e;
            continue;
        }
        if (lbn > (UINT64_MAX >> 9) - len || ts > UINT64_MAX / 1000) {
            int e = malformed(t, p, "lbn or timestamp out of range");
            if (e < 0)
                return e;
            continue;
        }
        enum trace_op op;
        if (!vscsi_op(cmd, &op) || len == 0) {
            t->ignored++;
            continue;
        }
        int e = push(t, ts * 1000, lbn << 9, len, op);
        if (e < 0)
            return e;
        if (p->o->limit && t->n >= p->o->limit)
            break;
    }
    return 0;
}

/* ---- detection and entry point ---- */

/* DiskSim: five numbers, the last 0 or 1. FIU: 9 or 10 fields, R or W
 * fourth from the end and an MD5 last. */
static enum trace_format detect_ws(const char *line)
{
    char buf[512], *f[10];
    if (strlen(line) >= sizeof buf)
        return TRACE_AUTO;
    strcpy(buf, line);
    int nf = split_ws(buf, f, 10);
    uint64_t v;
    if (nf == 5) {
        for (int i = 1; i < 5; i++)
            if (!parse_u64(f[i], &v))
                return TRACE_AUTO;
        return v <= 1 && isdigit((unsigned char)f[0][0]) ? TRACE_DISKSIM : TRACE_AUTO;
    }
    uint8_t md5[16];
    if ((nf == 9 || nf == 10) && parse_md5(f[nf - 1], md5) &&
        (!strcmp(f[nf - 4], "R") || !strcmp(f[nf - 4], "W")))
        return TRACE_FIU;
    return TRACE_AUTO;
}

static enum trace_format detect(FILE *f)
{
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    rewind(f);
    if (memchr(buf, '\0', n))
        return TRACE_VSCSI;
    buf[n] = '\0';
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        line = trim(line);
        if (!*line || *line == '#')
            continue;
        char first[64];
        if (sscanf(line, "%63s", first) == 1 && is_devno(first) && strpbrk(line, " \t"))
            return TRACE_BLKPARSE;
        enum trace_format ws = detect_ws(line);
        if (ws != TRACE_AUTO)
            return ws;
        int commas = 0;
        for (const char *c = line; *c; c++)
            commas += *c == ',';
        if (commas >= 6)
            return TRACE_MSR;
        /* A header or stray text: look at the next line. */
    }
    return TRACE_AUTO;
}

int trace_load(const char *path, const struct trace_opts *o, struct trace *t)
{
    memset(t, 0, sizeof *t);
    _cleanup_fclose_ FILE *f = strcmp(path, "-") == 0 ? fdopen(dup(0), "r") : fopen(path, "r");
    if (!f)
        return -errno;
    t->format = o->format == TRACE_AUTO ? detect(f) : o->format;
    if (t->format == TRACE_AUTO) {
        fprintf(stderr, "%s: cannot tell the trace format; use --format\n", path);
        return -EINVAL;
    }
    struct pos p = {.path = path, .o = o, .binary = t->format == TRACE_VSCSI};
    int r = t->format == TRACE_VSCSI ? load_vscsi(f, path, &p, t) : load_text(f, &p, t);
    if (r < 0) {
        trace_free(t);
        return r;
    }
    if (!o->strict && p.reported < t->malformed)
        fprintf(stderr, "%s: %llu more malformed records skipped\n", path,
                (unsigned long long)(t->malformed - p.reported));
    /* Times relative to the earliest record (blkparse interleaves CPUs). */
    uint64_t base = UINT64_MAX;
    for (uint64_t i = 0; i < t->n; i++)
        if (t->recs[i].ts_ns < base)
            base = t->recs[i].ts_ns;
    for (uint64_t i = 0; i < t->n; i++)
        t->recs[i].ts_ns -= base;
    return 0;
}

void trace_free(struct trace *t)
{
    free(t->recs);
    t->recs = NULL;
    free(t->md5);
    t->md5 = NULL;
    t->n = t->cap = 0;
}
