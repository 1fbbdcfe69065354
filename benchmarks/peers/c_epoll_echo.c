/*
 * c_epoll_echo.c - a minimal single-threaded epoll echo server: the floor that
 * sockkit's engines are compared against.
 *
 * Build:  cc -O2 -o c_epoll_echo c_epoll_echo.c
 * Usage:  c_epoll_echo HOST PORT     (PORT 0 picks a free port)
 *
 * Prints "listening on HOST:PORT" on stderr once bound, echoes every byte of
 * every connection, and exits 0 on SIGTERM or SIGINT.  Level-triggered epoll,
 * non-blocking sockets, one shared read buffer; bytes the peer cannot take yet
 * are kept per connection and reading from that connection pauses until they
 * are sent (backpressure, so memory stays bounded).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)

struct conn {
    int fd;
    char *pending; /* unsent echo bytes, or NULL */
    size_t off, len;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void close_conn(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Send c's pending bytes; 0 when all sent, 1 when the socket is full, -1 on error. */
static int flush_pending(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN ? 1 : -1;
        c->off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->off = c->len = 0;
    return 0;
}

static void set_events(int ep, struct conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_readable(int ep, struct conn *c, char *buf)
{
    ssize_t n = recv(c->fd, buf, BUF_SIZE, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        close_conn(ep, c);
        return;
    }
    if (n < 0)
        return;
    ssize_t sent = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN) {
        close_conn(ep, c);
        return;
    }
    if (sent < 0)
        sent = 0;
    if (sent < n) {
        c->len = (size_t)(n - sent);
        c->off = 0;
        c->pending = malloc(c->len);
        if (!c->pending) {
            close_conn(ep, c);
            return;
        }
        memcpy(c->pending, buf + sent, c->len);
        set_events(ep, c, EPOLLOUT); /* stop reading until the echo drains */
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "c_epoll_echo: bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("c_epoll_echo: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    fprintf(stderr, "listening on %s:%d\n", argv[1], ntohs(addr.sin_port));
    fflush(stderr);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    char *buf = malloc(BUF_SIZE);
    struct epoll_event events[256];

    while (!stopping) {
        int n = epoll_wait(ep, events, 256, 500);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) { /* the listener: accept everything queued */
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break; /* EAGAIN, or EMFILE: retried on the next wakeup */
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->pending) {
                int r = flush_pending(c);
                if (r < 0)
                    close_conn(ep, c);
                else if (r == 0)
                    set_events(ep, c, EPOLLIN);
                continue;
            }
            on_readable(ep, c, buf);
        }
    }
    free(buf);
    close(lfd);
    close(ep);
    return 0;
}
