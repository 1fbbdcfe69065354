/*
 * The relay's copy loop for directions with no toxic, no dump and no TLS:
 * one native thread with its own epoll moves bytes src -> dst through a
 * bounded buffer per direction, with the interpreter lock never taken.
 *
 * Rules of a direction (the Python side, sockkit.relay._pump_native, owns
 * the sockets; this file only ever holds duplicates of their descriptors):
 *
 * - src is watched for reading while the buffer has room and no end of
 *   stream was seen; dst is watched for writing only while bytes wait that
 *   dst could not take.  A full buffer stops the reading: a slow consumer
 *   costs at most CAP bytes here, never more.
 * - A read that fills the whole buffer means bulk: from then on the
 *   direction goes socket -> pipe -> socket with splice(2), and reads again
 *   only once the pipe is empty (at most PIPE_CAP bytes, in the kernel).
 * - recv() returning 0 is the end of src's stream; once every buffered byte
 *   is written the direction finishes with DONE_EOF (Python then half-closes
 *   dst).  An error on either socket finishes it with DONE_ERROR and the
 *   errno (Python then resets both sides, as its own path does).
 * - A finished direction drops its descriptors at once and is reported on
 *   the eventfd; it stays in its slot until Python releases it.
 * - release() may come at any time (a toxic was added, the connection is
 *   closed, the relay stops): the direction leaves the loop at once and
 *   Python gets back the bytes read from src but not yet written to dst, so
 *   nothing is lost or reordered when the Python path carries on.
 *
 * Every slot is touched only with `lock` held; the thread holds it while it
 * handles one batch of events, Python while it adds, releases or counts.
 * An event names its slot and the slot's generation, so an event for a
 * direction released meanwhile (its slot perhaps reused) is ignored.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define CAP (64 * 1024) /* bytes a direction may hold: the slow-consumer bound */
#define PIPE_CAP (256 * 1024) /* a bulk direction's pipe, in the kernel */
#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
#define BATCH 64        /* events per epoll_wait */
#define STOP_TOKEN UINT64_MAX

enum { RUNNING = 0, DONE_EOF = 1, DONE_ERROR = 2 };

typedef struct {
    int used;
    uint32_t gen;
    int src, dst;           /* our duplicates; -1 once dropped */
    int src_watched, dst_watched;
    int eof, state, error;
    char *buf;
    size_t start, end;      /* buf[start:end] read from src, not yet written */
    int pipe_r, pipe_w;     /* bulk: the pipe; -1 while copying */
    size_t piped;           /* bytes in the pipe */
    unsigned long long moved; /* bytes written to dst */
} Dir;

typedef struct {
    PyObject_HEAD
    int epfd, notify, stop; /* epoll; eventfd to Python; eventfd to the thread */
    pthread_t thread;
    int running;
    pthread_mutex_t lock;
    Dir *dirs;
    size_t ndirs;
    uint64_t *done;         /* handles finished since Python last asked */
    size_t ndone, done_cap;
    int overflow;           /* the list could not grow: finished() looks at every slot */
} Engine;

static uint64_t handle_of(size_t slot, uint32_t gen) { return ((uint64_t)gen << 32) | slot; }
static uint64_t token(size_t slot, uint32_t gen, int role)
{
    return ((uint64_t)gen << 32) | ((uint64_t)slot << 1) | (uint64_t)role;
}

static void watch(Engine *e, Dir *d, size_t slot, int role, int on)
{
    int *flag = role ? &d->dst_watched : &d->src_watched;
    int fd = role ? d->dst : d->src;
    if (*flag == on || fd < 0)
        return;
    struct epoll_event ev = {.events = role ? EPOLLOUT : EPOLLIN};
    ev.data.u64 = token(slot, d->gen, role);
    epoll_ctl(e->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
    *flag = on;
}

static void drop_fds(Engine *e, Dir *d, size_t slot)
{
    watch(e, d, slot, 0, 0);
    watch(e, d, slot, 1, 0);
    int fds[] = {d->src, d->dst, d->pipe_r, d->pipe_w};
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    d->src = d->dst = d->pipe_r = d->pipe_w = -1;
}

static void finish(Engine *e, Dir *d, size_t slot, int state, int error)
{
    d->state = state;
    d->error = error;
    drop_fds(e, d, slot);
    if (e->ndone == e->done_cap) {
        size_t cap = e->done_cap ? 2 * e->done_cap : 64;
        uint64_t *grown = realloc(e->done, cap * sizeof *grown);
        if (grown != NULL) {
            e->done = grown;
            e->done_cap = cap;
        }
    }
    if (e->ndone < e->done_cap)
        e->done[e->ndone++] = handle_of(slot, d->gen);
    else
        e->overflow = 1;
    uint64_t one = 1;
    ssize_t unused = write(e->notify, &one, sizeof one);
    (void)unused;
}

/* Write what is buffered, then what is piped; then decide what to watch next. */
static void flush(Engine *e, Dir *d, size_t slot)
{
    ssize_t n = 0;
    while (d->start < d->end || (d->start == d->end && d->piped > 0)) {
        if (d->start < d->end)
            n = send(d->dst, d->buf + d->start, d->end - d->start, MSG_NOSIGNAL | MSG_DONTWAIT);
        else
            n = splice(d->pipe_r, NULL, d->dst, NULL, d->piped, SPLICE_FLAGS);
        if (n > 0) {
            if (d->start < d->end)
                d->start += (size_t)n;
            else
                d->piped -= (size_t)n;
            d->moved += (unsigned long long)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            finish(e, d, slot, DONE_ERROR, n < 0 ? errno : EPIPE);
            return;
        }
    }
    if (d->start == d->end)
        d->start = d->end = 0;
    if (d->end == 0 && d->piped == 0) {
        watch(e, d, slot, 1, 0);
        if (d->eof) {
            finish(e, d, slot, DONE_EOF, 0);
            return;
        }
        watch(e, d, slot, 0, 1);
    } else {
        watch(e, d, slot, 1, 1);
        if (d->eof || d->end == CAP || d->pipe_w >= 0)
            watch(e, d, slot, 0, 0);
    }
}

static void go_bulk(Dir *d)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return; /* no pipe: keep copying */
    fcntl(fds[1], F_SETPIPE_SZ, PIPE_CAP);
    d->pipe_r = fds[0];
    d->pipe_w = fds[1];
}

static void readable(Engine *e, Dir *d, size_t slot)
{
    ssize_t n;
    if (d->pipe_w >= 0)
        n = splice(d->src, NULL, d->pipe_w, NULL, PIPE_CAP, SPLICE_FLAGS);
    else
        n = recv(d->src, d->buf + d->end, CAP - d->end, MSG_DONTWAIT);
    if (n > 0) {
        if (d->pipe_w >= 0) {
            d->piped += (size_t)n;
        } else {
            if ((size_t)n == CAP)
                go_bulk(d);
            d->end += (size_t)n;
        }
    } else if (n == 0) {
        d->eof = 1;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return;
    } else {
        finish(e, d, slot, DONE_ERROR, errno);
        return;
    }
    flush(e, d, slot);
}

static void *loop(void *arg)
{
    Engine *e = arg;
    struct epoll_event evs[BATCH];
    pthread_setname_np(pthread_self(), "sockkit-relay"); /* as top -H and /proc show it */
    for (;;) {
        int n = epoll_wait(e->epfd, evs, BATCH, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        pthread_mutex_lock(&e->lock);
        for (int i = 0; i < n; i++) {
            uint64_t t = evs[i].data.u64;
            if (t == STOP_TOKEN) {
                pthread_mutex_unlock(&e->lock);
                return NULL;
            }
            size_t slot = (size_t)((t & 0xffffffffu) >> 1);
            uint32_t gen = (uint32_t)(t >> 32);
            if (slot >= e->ndirs)
                continue;
            Dir *d = &e->dirs[slot];
            if (!d->used || d->gen != gen || d->state != RUNNING)
                continue; /* released or finished since the event was queued */
            if (t & 1)
                flush(e, d, slot);
            else if (d->src_watched)
                readable(e, d, slot);
        }
        pthread_mutex_unlock(&e->lock);
    }
}

/* ---- the Python type ---------------------------------------------------- */

static void lock(Engine *e)
{
    if (pthread_mutex_trylock(&e->lock) != 0) {
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&e->lock);
        Py_END_ALLOW_THREADS
    }
}

static Dir *find(Engine *e, unsigned long long handle, size_t *slot)
{
    size_t s = (size_t)(handle & 0xffffffffu);
    if (s >= e->ndirs || !e->dirs[s].used || e->dirs[s].gen != (uint32_t)(handle >> 32)) {
        PyErr_SetString(PyExc_KeyError, "no such direction");
        return NULL;
    }
    *slot = s;
    return &e->dirs[s];
}

static int Engine_init(Engine *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist))
        return -1;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "engine already started");
        return -1;
    }
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->notify = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    self->stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (self->epfd < 0 || self->notify < 0 || self->stop < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.u64 = STOP_TOKEN;
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->stop, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_init(&self->lock, NULL);
    int rc = pthread_create(&self->thread, NULL, loop, self);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->running = 1;
    return 0;
}

static PyObject *Engine_close(Engine *self, PyObject *unused)
{
    if (!self->running)
        Py_RETURN_NONE;
    uint64_t one = 1;
    ssize_t w = write(self->stop, &one, sizeof one);
    (void)w;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS
    self->running = 0;
    /* Directions still in the loop stay releasable; they just stop moving. */
    Py_RETURN_NONE;
}

static PyObject *Engine_add(Engine *self, PyObject *args)
{
    int src, dst;
    if (!PyArg_ParseTuple(args, "ii", &src, &dst))
        return NULL;
    if (!self->running) {
        PyErr_SetString(PyExc_RuntimeError, "engine closed");
        return NULL;
    }
    char *buf = malloc(CAP);
    if (buf == NULL)
        return PyErr_NoMemory();
    int s = fcntl(src, F_DUPFD_CLOEXEC, 0);
    int d = s < 0 ? -1 : fcntl(dst, F_DUPFD_CLOEXEC, 0);
    if (d < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        if (s >= 0)
            close(s);
        free(buf);
        return NULL;
    }
    lock(self);
    size_t slot = 0;
    while (slot < self->ndirs && self->dirs[slot].used)
        slot++;
    if (slot == self->ndirs) {
        size_t n = self->ndirs ? 2 * self->ndirs : 64;
        Dir *grown = realloc(self->dirs, n * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&self->lock);
            close(s);
            close(d);
            free(buf);
            return PyErr_NoMemory();
        }
        memset(grown + self->ndirs, 0, (n - self->ndirs) * sizeof *grown);
        self->dirs = grown;
        self->ndirs = n;
    }
    Dir *dir = &self->dirs[slot];
    uint32_t gen = dir->gen + 1;
    memset(dir, 0, sizeof *dir);
    dir->used = 1;
    dir->gen = gen;
    dir->src = s;
    dir->dst = d;
    dir->pipe_r = dir->pipe_w = -1;
    dir->buf = buf;
    watch(self, dir, slot, 0, 1);
    uint64_t handle = handle_of(slot, gen);
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromUnsignedLongLong(handle);
}

static PyObject *Engine_release(Engine *self, PyObject *arg)
{
    unsigned long long handle = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    lock(self);
    size_t slot;
    Dir *d = find(self, handle, &slot);
    if (d == NULL) {
        pthread_mutex_unlock(&self->lock);
        return NULL;
    }
    /* the bytes held: the buffer's, then the pipe's (read out before it is closed) */
    size_t held = d->end - d->start;
    char *out = malloc(held + d->piped + 1);
    if (out != NULL) {
        memcpy(out, d->buf + d->start, held);
        while (d->piped > 0) {
            ssize_t n = read(d->pipe_r, out + held, d->piped);
            if (n <= 0)
                break;
            held += (size_t)n;
            d->piped -= (size_t)n;
        }
    }
    drop_fds(self, d, slot);
    unsigned long long moved = d->moved;
    int state = d->state, error = d->error;
    free(d->buf);
    d->buf = NULL;
    d->used = 0;
    pthread_mutex_unlock(&self->lock);
    if (out == NULL)
        return PyErr_NoMemory();
    PyObject *pending = PyBytes_FromStringAndSize(out, (Py_ssize_t)held);
    free(out);
    if (pending == NULL)
        return NULL;
    return Py_BuildValue("(KNii)", moved, pending, state, error);
}

static PyObject *Engine_moved(Engine *self, PyObject *arg)
{
    unsigned long long handle = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    lock(self);
    size_t slot;
    Dir *d = find(self, handle, &slot);
    unsigned long long moved = d ? d->moved : 0;
    pthread_mutex_unlock(&self->lock);
    if (d == NULL)
        return NULL;
    return PyLong_FromUnsignedLongLong(moved);
}

static PyObject *Engine_finished(Engine *self, PyObject *unused)
{
    uint64_t count;
    ssize_t r = read(self->notify, &count, sizeof count);
    (void)r;
    lock(self);
    PyObject *out = PyList_New(0);
    size_t total = self->overflow ? self->ndirs : self->ndone;
    for (size_t i = 0; out != NULL && i < total; i++) {
        uint64_t handle = self->overflow ? handle_of(i, self->dirs[i].gen) : self->done[i];
        size_t slot = (size_t)(handle & 0xffffffffu);
        Dir *d = &self->dirs[slot];
        if (!d->used || d->gen != (uint32_t)(handle >> 32) || d->state == RUNNING)
            continue; /* released meanwhile (or, scanning, still running) */
        PyObject *item = Py_BuildValue("(Kii)", (unsigned long long)handle, d->state, d->error);
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    self->ndone = 0;
    self->overflow = 0;
    pthread_mutex_unlock(&self->lock);
    return out;
}

static PyObject *Engine_fileno(Engine *self, PyObject *unused)
{
    return PyLong_FromLong(self->notify);
}

static PyObject *Engine_count(Engine *self, PyObject *unused)
{
    lock(self);
    long n = 0;
    for (size_t i = 0; i < self->ndirs; i++)
        n += self->dirs[i].used && self->dirs[i].state == RUNNING;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromLong(n);
}

static void Engine_dealloc(Engine *self)
{
    Engine_close(self, NULL);
    for (size_t i = 0; i < self->ndirs; i++) {
        if (self->dirs[i].used) {
            drop_fds(self, &self->dirs[i], i);
            free(self->dirs[i].buf);
        }
    }
    free(self->dirs);
    free(self->done);
    if (self->epfd >= 0)
        close(self->epfd);
    if (self->notify >= 0)
        close(self->notify);
    if (self->stop >= 0)
        close(self->stop);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Engine *self = (Engine *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->epfd = self->notify = self->stop = -1;
    return (PyObject *)self;
}

static PyMethodDef Engine_methods[] = {
    {"add", (PyCFunction)Engine_add, METH_VARARGS,
     "add(src, dst) -> handle: move src's bytes to dst in the native loop from now on."},
    {"release", (PyCFunction)Engine_release, METH_O,
     "release(handle) -> (moved, pending, state, errno): take the direction back."},
    {"moved", (PyCFunction)Engine_moved, METH_O, "moved(handle) -> bytes written to dst so far."},
    {"finished", (PyCFunction)Engine_finished, METH_NOARGS,
     "finished() -> [(handle, state, errno)] of directions that ended since the last call."},
    {"fileno", (PyCFunction)Engine_fileno, METH_NOARGS,
     "fileno() -> the eventfd that becomes readable when a direction ends."},
    {"running", (PyCFunction)Engine_count, METH_NOARGS,
     "running() -> directions moving in the native loop now."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS, "close(): stop the native thread."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sockkit.relay._fastpath.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A native thread relaying directions src -> dst with epoll.",
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath", "The relay's native copy loop.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "RUNNING", RUNNING);
    PyModule_AddIntConstant(m, "DONE_EOF", DONE_EOF);
    PyModule_AddIntConstant(m, "DONE_ERROR", DONE_ERROR);
    PyModule_AddIntConstant(m, "CAPACITY", CAP);
    PyModule_AddIntConstant(m, "PIPE_CAPACITY", PIPE_CAP);
    return m;
}
