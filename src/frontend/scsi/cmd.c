/* A command's life (scsi.h): exec, done, put, end, and the core I/O a
 * command submits on the way. */
#include <string.h>

#include "frontend/scsi/scsi_int.h"

static void put_ref(struct scsi_cmd *c)
{
    if (__atomic_sub_fetch(&c->priv.refs, 1, __ATOMIC_ACQ_REL) == 0)
        c->end(c);
}

/* done's side: the result is out of our hands; done's reference goes. */
static void complete(struct scsi_cmd *c)
{
    c->done(c);
    put_ref(c);
}

void scsi_exec(struct scsi_cmd *c)
{
    c->status = SCSI_STATUS_GOOD;
    c->sense_len = 0;
    c->iov = NULL;
    c->niov = 0;
    c->data_in_len = 0;
    c->xfer_len = 0;
    c->priv.refs = 2;
    c->priv.held = false;
    c->priv.decided = false;
    c->priv.peek = c->priv.next = NULL;
    c->priv.step = 0;
    c->priv.cursor = 0;
    if (scsi_dispatch(c) == SCSI_DONE)
        complete(c);
}

void scsi_cmd_put(struct scsi_cmd *c)
{
    if (c->priv.held)
        vol_io_put(&c->priv.io); /* its end drops put's reference */
    else
        put_ref(c);
}

/* ---- core I/O ---- */

/* The core's result is ready. Without a next step the command ends here,
 * before the cache update (which runs after this returns): the response
 * goes out first, and io stays held until scsi_cmd_put. */
static void io_done(struct vol_io *io)
{
    struct scsi_cmd *c = io->opaque;
    scsi_peek_fn peek = (scsi_peek_fn)c->priv.peek;
    if (peek)
        peek(c, io);
    if (c->priv.next) {
        vol_io_put(io); /* next runs at io's end */
        return;
    }
    if (!c->priv.decided) {
        if (io->status < 0) {
            scsi_check_errno(c, io->status, io->op != VOL_IO_READ);
        } else if (io->op == VOL_IO_READ) {
            c->iov = io->iov;
            c->niov = io->niov;
            c->data_in_len = (uint32_t)(io->length < c->data_in_max ? io->length : c->data_in_max);
            c->priv.decided = true;
        } else {
            scsi_good(c);
        }
    }
    c->priv.held = true; /* scsi_cmd_put lets go of io */
    complete(c);
}

static void io_end(struct vol_io *io)
{
    struct scsi_cmd *c = io->opaque;
    if (c->priv.held) {
        put_ref(c); /* scsi_cmd_put's side, through vol_io_put */
        return;
    }
    scsi_next_fn next = (scsi_next_fn)c->priv.next;
    if (next && next(c, io) == SCSI_PENDING)
        return;
    complete(c);
}

enum scsi_exec_result scsi_submit(struct scsi_cmd *c, struct volume *v, scsi_peek_fn peek,
                                  scsi_next_fn next)
{
    struct vol_io *io = &c->priv.io;
    c->priv.peek = (void *)peek;
    c->priv.next = (void *)next;
    io->v = v;
    io->done = io_done;
    io->end = io_end;
    io->opaque = c;
    vol_submit(io);
    return SCSI_PENDING;
}
