// A delaying TCP relay: every byte read on one side is written to the other
// D microseconds after it arrived, both ways, bandwidth unlimited (the model
// is toxiproxy's latency toxic; this kernel has no netem qdisc). Used by
// tools/bench_latency.py to put a network between the ScenePS processes on
// loopback (issue 22 §4).
//
//   cc -O2 -pthread -o /tmp/delay_relay tools/delay_relay.c
//   /tmp/delay_relay --delay-us 500 LISTEN_PORT=TARGET_HOST:TARGET_PORT [...]
//
// Each LISTEN_PORT is bound on 127.0.0.1 and every connection accepted there
// is relayed to its target. It prints `ready` once every port listens, runs
// until killed, and exits 2 on bad arguments or a port it cannot bind.
// Per direction a reader thread stamps each chunk with its arrival time and a
// writer thread sends it at arrival + D (absolute-deadline sleeps, so delays
// do not add up across chunks); end of stream and errors are relayed the same
// way, after the delay.
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long delay_ns;

typedef struct chunk {
    struct chunk *next;
    struct timespec due;
    ssize_t len;  // 0 = end of stream
    char data[];
} chunk;

typedef struct {
    int from, to;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    chunk *head, *tail;
    int refs;  // reader + writer of this direction, + the peer direction's (both close the sockets)
    struct conn *conn;
} direction;

typedef struct conn {
    int a, b;
    pthread_mutex_t lock;
    int live;  // threads still running (4); the last closes both sockets
} conn;

static void conn_done(conn *c) {
    pthread_mutex_lock(&c->lock);
    int left = --c->live;
    pthread_mutex_unlock(&c->lock);
    if (left == 0) {
        close(c->a);
        close(c->b);
        free(c);
    }
}

static void add_ns(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) { t->tv_nsec -= 1000000000L; t->tv_sec++; }
}

static void *reader(void *arg) {
    direction *d = arg;
    enum { CAP = 256 * 1024 };
    for (;;) {
        chunk *c = malloc(sizeof(chunk) + CAP);
        if (!c) abort();
        ssize_t n = read(d->from, c->data, CAP);
        if (n < 0 && errno == EINTR) { free(c); continue; }
        clock_gettime(CLOCK_MONOTONIC, &c->due);
        add_ns(&c->due, delay_ns);
        c->len = n > 0 ? n : 0;
        c->next = NULL;
        pthread_mutex_lock(&d->lock);
        if (d->tail) d->tail->next = c; else d->head = c;
        d->tail = c;
        pthread_cond_signal(&d->cond);
        pthread_mutex_unlock(&d->lock);
        if (n <= 0) break;
    }
    conn_done(d->conn);
    return NULL;
}

static void *writer(void *arg) {
    direction *d = arg;
    int failed = 0;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        while (!d->head) pthread_cond_wait(&d->cond, &d->lock);
        chunk *c = d->head;
        d->head = c->next;
        if (!d->head) d->tail = NULL;
        pthread_mutex_unlock(&d->lock);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &c->due, NULL) == EINTR) {}
        ssize_t len = c->len;
        if (len == 0) {
            free(c);
            shutdown(d->to, SHUT_WR);   // the peer's end of stream, delayed like its data
            shutdown(d->from, SHUT_RD);
            break;
        }
        for (ssize_t off = 0; !failed && off < len;) {
            ssize_t w = write(d->to, c->data + off, (size_t)(len - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { failed = 1; break; }
            off += w;
        }
        free(c);
        if (failed) {   // the target is gone: end both directions
            shutdown(d->to, SHUT_RDWR);
            shutdown(d->from, SHUT_RDWR);
            // drain what the reader still queues until it sees the end
            for (;;) {
                pthread_mutex_lock(&d->lock);
                while (!d->head) pthread_cond_wait(&d->cond, &d->lock);
                chunk *r = d->head;
                d->head = r->next;
                if (!d->head) d->tail = NULL;
                pthread_mutex_unlock(&d->lock);
                ssize_t l = r->len;
                free(r);
                if (l == 0) break;
            }
            break;
        }
    }
    conn_done(d->conn);
    return NULL;
}

static void start_direction(conn *c, int from, int to) {
    direction *d = calloc(1, sizeof(direction));
    if (!d) abort();
    d->from = from;
    d->to = to;
    d->conn = c;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    // The direction struct is small and lives as long as the process (one per connection direction).
    if (pthread_create(&t, &attr, reader, d) || pthread_create(&t, &attr, writer, d)) abort();
    pthread_attr_destroy(&attr);
}

typedef struct {
    int listen_fd;
    struct sockaddr_storage target;
    socklen_t target_len;
    char name[128];
} route;

static void *acceptor(void *arg) {
    route *r = arg;
    for (;;) {
        int a = accept(r->listen_fd, NULL, NULL);
        if (a < 0) { if (errno == EINTR || errno == ECONNABORTED) continue; perror("delay_relay: accept"); exit(1); }
        int b = socket(r->target.ss_family, SOCK_STREAM, 0);
        if (b < 0 || connect(b, (struct sockaddr *)&r->target, r->target_len) != 0) {
            // The target is not up (yet): refuse this one, as a dead host would; ZeroMQ retries.
            if (b >= 0) close(b);
            close(a);
            continue;
        }
        int one = 1;
        setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof(conn));
        if (!c) abort();
        c->a = a;
        c->b = b;
        c->live = 4;
        pthread_mutex_init(&c->lock, NULL);
        start_direction(c, a, b);
        start_direction(c, b, a);
    }
    return NULL;
}

static void usage(void) {
    fprintf(stderr,
            "usage: delay_relay --delay-us D LISTEN_PORT=TARGET_HOST:TARGET_PORT [...]\n"
            "Relays every connection to 127.0.0.1:LISTEN_PORT to its target, each byte D microseconds late\n"
            "each way (D >= 0). Prints 'ready' once listening; runs until killed.\n");
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    long delay_us = -1;
    int nroutes = 0;
    route *routes = calloc((size_t)argc, sizeof(route));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(); return 0; }
        if (!strcmp(argv[i], "--delay-us")) {
            char *end;
            if (i + 1 >= argc) { fprintf(stderr, "delay_relay: --delay-us needs a value\n"); return 2; }
            delay_us = strtol(argv[++i], &end, 10);
            if (*end || delay_us < 0 || delay_us > 10000000) {
                fprintf(stderr, "delay_relay: --delay-us: '%s' is not a number of microseconds in 0...10000000\n", argv[i]);
                return 2;
            }
            continue;
        }
        char spec[256], *eq, *colon;
        snprintf(spec, sizeof spec, "%s", argv[i]);
        if (!(eq = strchr(spec, '=')) || !(colon = strrchr(eq, ':'))) {
            fprintf(stderr, "delay_relay: '%s' is not LISTEN_PORT=TARGET_HOST:TARGET_PORT\n", argv[i]);
            return 2;
        }
        *eq = 0;
        *colon = 0;
        char *end;
        long lp = strtol(spec, &end, 10);
        if (*end || lp < 1 || lp > 65535) { fprintf(stderr, "delay_relay: '%s': bad listen port '%s'\n", argv[i], spec); return 2; }
        struct addrinfo hints = {0}, *res;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(eq + 1, colon + 1, &hints, &res);
        if (rc != 0) { fprintf(stderr, "delay_relay: '%s': target: %s\n", argv[i], gai_strerror(rc)); return 2; }
        route *r = &routes[nroutes++];
        memcpy(&r->target, res->ai_addr, res->ai_addrlen);
        r->target_len = res->ai_addrlen;
        freeaddrinfo(res);
        snprintf(r->name, sizeof r->name, "%s", argv[i]);
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)lp);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
            fprintf(stderr, "delay_relay: cannot listen on 127.0.0.1:%ld: %s\n", lp, strerror(errno));
            return 2;
        }
        r->listen_fd = fd;
    }
    if (delay_us < 0 || nroutes == 0) { usage(); return 2; }
    delay_ns = delay_us * 1000L;
    for (int i = 0; i < nroutes; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, acceptor, &routes[i])) abort();
        pthread_detach(t);
    }
    printf("ready %d routes, %ld us each way\n", nroutes, delay_us);
    fflush(stdout);
    for (;;) pause();
}
