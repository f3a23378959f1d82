/* Block traces for shoal-replay: the three on-disk formats are parsed into
 * one in-memory array of records (time, offset, length, read/write).
 *
 * Formats (see bench/README.md, "Trace formats", for the details):
 *   msr       MSR Cambridge CSV: Timestamp,Hostname,DiskNumber,Type,Offset,
 *             Size,ResponseTime; Timestamp in Windows filetime (100 ns) units,
 *             Offset and Size in bytes. An optional header line is skipped.
 *   blkparse  the default text output of `blkparse -i`: "maj,min cpu seq
 *             time pid action rwbs sector + nsectors [process]"; only lines
 *             with one action (default Q, queued) become records.
 *   vscsi     the CloudPhysics vSCSI binary records: version 1 is 32 bytes
 *             (u32 sn, u32 len, u32 nSG, u16 cmd, u16 ver, u64 lbn, u64 ts),
 *             version 2 is 40 bytes (u16 cmd, u16 ver, u32 sn, u32 len,
 *             u32 nSG, u64 lbn, u64 ts, u64 rt); little endian, ts in
 *             microseconds, lbn in 512-byte sectors, len in bytes, cmd a
 *             SCSI opcode; ver >> 8 is the version.
 *   disksim   DiskSim ASCII, as MQSim ships it: "arrival device sector
 *             nsectors type", whitespace-separated, sectors of 512 bytes,
 *             type 1 = read and 0 = write; an integer arrival is in
 *             nanoseconds (MQSim), one with a decimal point in milliseconds
 *             (DiskSim's own unit). The device becomes trace_rec.dev.
 *   fiu       FIU SyLab dedup traces: "ts_ns pid process sector nsectors R|W
 *             major minor md5", whitespace- or tab-separated, one 4 KiB
 *             block (8 sectors) a line with the MD5 of its content, kept in
 *             trace.md5. A pandas dump of it (a header "\t0\t1...8" and a
 *             row index in front of each line) is read as well.
 *
 * Malformed input: a record that cannot be parsed is reported on stderr as
 * FILE:LINE (text) or FILE:record N (binary) with the reason, and skipped; with
 * strict set, the first one fails the load instead (-EINVAL). Lines that are
 * not records at all (blank, '#' comments, blkparse's summary, other blkparse
 * actions, flushes, discards, non-I/O SCSI commands) are counted as ignored. */
#ifndef SHOAL_BENCH_TRACE_H
#define SHOAL_BENCH_TRACE_H

#include <stdbool.h>
#include <stdint.h>

enum trace_format { TRACE_AUTO, TRACE_MSR, TRACE_BLKPARSE, TRACE_VSCSI, TRACE_DISKSIM, TRACE_FIU };

enum trace_op { TRACE_READ = 0, TRACE_WRITE = 1 };

struct trace_rec {
    uint64_t ts_ns; /* relative to the first record */
    uint64_t offset;
    uint32_t len;
    uint16_t dev; /* disksim: the device number (separate disks); else 0 */
    uint8_t op;
};

struct trace_opts {
    enum trace_format format;
    bool strict;          /* first malformed record fails the load */
    char blk_action;      /* blkparse action to keep: 'Q' (default) or 'C' */
    const char *disk;     /* msr, disksim: the device number; blkparse, fiu: "maj,min";
                             NULL = all */
    uint64_t limit;       /* stop at the line that brings the records to this many (0 = all);
                             that line's pieces (TRACE_MAX_REC_LEN) may go past it */
    unsigned max_reports; /* malformed records reported one by one (rest counted) */
};

struct trace {
    enum trace_format format;
    struct trace_rec *recs;
    uint8_t (*md5)[16]; /* fiu: the content's MD5, one per record; else NULL */
    uint64_t n, cap;
    uint64_t reads, writes;
    uint64_t read_bytes, write_bytes;
    uint64_t malformed; /* skipped (or, with strict, the one that failed) */
    uint64_t ignored;   /* not I/O records, see above */
    uint64_t filtered;  /* other disks */
    uint64_t max_len;
    uint64_t max_end; /* highest offset + len */
};

/* Records longer than this are split into several (libnbd caps a request
 * at 64 MiB; servers usually at 32 MiB). */
#define TRACE_MAX_REC_LEN (8u << 20)
/* A trace line asking for more than this is malformed: no real I/O is that
 * large, and splitting a corrupt size like 2^60 would exhaust memory. */
#define TRACE_MAX_IO_LEN (4ull << 30)

const char *trace_format_name(enum trace_format f);
/* "msr", "blkparse", "vscsi", "disksim", "fiu" or "auto"; -EINVAL otherwise. */
int trace_format_parse(const char *s, enum trace_format *out);

/* Load the whole trace. 0, -EINVAL (malformed with strict, undetectable
 * format, or an empty trace), or a negative errno from reading the file. */
int trace_load(const char *path, const struct trace_opts *o, struct trace *t);
void trace_free(struct trace *t);

#endif
