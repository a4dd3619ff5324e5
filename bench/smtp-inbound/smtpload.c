/*
 * smtpload: a small SMTP load generator for Facteur's inbound benchmark.
 *
 * C threads with blocking sockets, so the generator costs little CPU next to the
 * server on a 2-core machine. Each client thread opens an SMTP session (RFC 5321),
 * sends EHLO, then for each message pipelines MAIL FROM, RCPT TO and DATA in one
 * write (RFC 2920 §3.1: DATA ends a group), waits for 250/250/354, sends the message
 * and the "." line in one write, and waits for the 250. The latency measured is from
 * the moment that last write returned to the moment the 250 was read.
 *
 * Usage: smtpload -p PORT [-h 127.0.0.1] [-c CLIENTS] [-n MESSAGES] [-s SIZE]
 *                 [-t SECONDS] [-u USERS] [-d DOMAIN] [-m MESSAGES_PER_CONNECTION]
 *                 [-P 1|0]   (-P 0: no pipelining, one command per round trip)
 * Prints one line of key=value results on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port = 0, clients = 1, users = 100, size = 10240, per_connection = 100, pipelining = 1;
static long total = 5000;
static double time_cap = 60.0;
static const char *domain = "localhost";

static atomic_long next_message;
static atomic_long errors;
static double deadline;

struct client {
    int id;
    double *latencies;
    long count;
    char error[256];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct conn {
    int fd;
    char buf[16384];
    size_t len;
};

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one (possibly multiline) reply; returns its code, or -1. */
static int read_reply(struct conn *c) {
    for (;;) {
        char *start = c->buf;
        char *end = c->buf + c->len;
        for (;;) {
            char *nl = memchr(start, '\n', (size_t)(end - start));
            if (!nl) break;
            size_t line_len = (size_t)(nl - start + 1);
            if (line_len >= 5 && start[3] == ' ') {
                int code = (start[0] - '0') * 100 + (start[1] - '0') * 10 + (start[2] - '0');
                size_t used = (size_t)(nl + 1 - c->buf);
                memmove(c->buf, nl + 1, c->len - used);
                c->len -= used;
                return code;
            }
            if (line_len < 4 || start[3] != '-') return -1;
            start = nl + 1;
        }
        if (c->len == sizeof c->buf) return -1;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c->len += (size_t)r;
    }
}

static int connect_to(struct conn *c) {
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
    c->len = 0;
    if (read_reply(c) != 220) return -1;
    const char *ehlo = "EHLO smtpload.bench\r\n";
    if (write_all(c->fd, ehlo, strlen(ehlo)) < 0 || read_reply(c) != 250) return -1;
    return 0;
}

static void *run_client(void *arg) {
    struct client *me = arg;
    struct conn c = {.fd = -1};
    /* One buffer: a fixed-width header (numbers rewritten per message), the body, ".". */
    size_t cap = (size_t)size + 1024;
    char *msg = malloc(cap);
    char envelope[512];
    int in_connection = 0;
    for (;;) {
        long n = atomic_fetch_add(&next_message, 1);
        if (n >= total || now() > deadline) break;
        if (c.fd < 0 || (per_connection > 0 && in_connection >= per_connection)) {
            if (c.fd >= 0) {
                write_all(c.fd, "QUIT\r\n", 6);
                read_reply(&c);
                close(c.fd);
            }
            if (connect_to(&c) < 0) {
                snprintf(me->error, sizeof me->error, "connect/EHLO failed: %s", strerror(errno));
                atomic_fetch_add(&errors, 1);
                if (c.fd >= 0) close(c.fd);
                c.fd = -1;
                usleep(100000);
                continue;
            }
            in_connection = 0;
        }
        int user = (int)(n % users) + 1;
        int hl = snprintf(msg, cap,
                          "From: Bench <bench@example.org>\r\nTo: user%d@%s\r\nSubject: bench message %010ld\r\n"
                          "Message-ID: <%010ld.%d@smtpload.bench>\r\nDate: Thu, 27 Nov 2025 10:00:00 +0000\r\n"
                          "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
                          user, domain, n, n, me->id);
        size_t len = (size_t)hl;
        while (len + 80 < (size_t)size) {
            memcpy(msg + len, "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrst\r\n", 78);
            len += 78;
        }
        memcpy(msg + len, ".\r\n", 3);
        len += 3;
        int el = snprintf(envelope, sizeof envelope, "MAIL FROM:<bench@example.org> SIZE=%zu\r\nRCPT TO:<user%d@%s>\r\nDATA\r\n",
                          len, user, domain);
        int r1, r2, r3;
        if (pipelining) {
            if (write_all(c.fd, envelope, (size_t)el) < 0) goto broken;
            r1 = read_reply(&c); r2 = read_reply(&c); r3 = read_reply(&c);
        } else {
            /* One command per round trip: the three lines of `envelope`, one by one. */
            char *line = envelope;
            int codes[3] = {-1, -1, -1};
            for (int i = 0; i < 3; i++) {
                char *end = strstr(line, "\r\n") + 2;
                if (write_all(c.fd, line, (size_t)(end - line)) < 0) goto broken;
                codes[i] = read_reply(&c);
                line = end;
            }
            r1 = codes[0]; r2 = codes[1]; r3 = codes[2];
        }
        if (r1 != 250 || r2 != 250 || r3 != 354) {
            snprintf(me->error, sizeof me->error, "MAIL/RCPT/DATA replied %d/%d/%d", r1, r2, r3);
            if (r3 == 354) { write_all(c.fd, ".\r\n", 3); read_reply(&c); }
            atomic_fetch_add(&errors, 1);
            write_all(c.fd, "RSET\r\n", 6);
            if (read_reply(&c) != 250) goto broken;
            continue;
        }
        if (write_all(c.fd, msg, len) < 0) goto broken;
        double t0 = now();
        int r4 = read_reply(&c);
        double t1 = now();
        if (r4 != 250) {
            snprintf(me->error, sizeof me->error, "end of data replied %d", r4);
            atomic_fetch_add(&errors, 1);
            if (r4 < 0) goto broken;
            continue;
        }
        me->latencies[me->count++] = t1 - t0;
        in_connection++;
        continue;
    broken:
        snprintf(me->error, sizeof me->error, "connection broken: %s", strerror(errno));
        atomic_fetch_add(&errors, 1);
        close(c.fd);
        c.fd = -1;
    }
    if (c.fd >= 0) {
        write_all(c.fd, "QUIT\r\n", 6);
        read_reply(&c);
        close(c.fd);
    }
    free(msg);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "h:p:c:n:s:t:u:d:m:P:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': clients = atoi(optarg); break;
        case 'n': total = atol(optarg); break;
        case 's': size = atoi(optarg); break;
        case 't': time_cap = atof(optarg); break;
        case 'u': users = atoi(optarg); break;
        case 'd': domain = optarg; break;
        case 'm': per_connection = atoi(optarg); break;
        case 'P': pipelining = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s -p PORT [-h HOST] [-c CLIENTS] [-n MESSAGES] [-s SIZE] [-t SECONDS] [-u USERS] [-d DOMAIN] [-m PER_CONNECTION] [-P 0|1]\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || clients <= 0 || total <= 0 || size < 512 || users <= 0) {
        fprintf(stderr, "smtpload: bad arguments\n");
        return 2;
    }
    struct client *cs = calloc((size_t)clients, sizeof *cs);
    pthread_t *threads = calloc((size_t)clients, sizeof *threads);
    double start = now();
    deadline = start + time_cap;
    for (int i = 0; i < clients; i++) {
        cs[i].id = i;
        cs[i].latencies = calloc((size_t)total, sizeof(double));
        pthread_create(&threads[i], NULL, run_client, &cs[i]);
    }
    for (int i = 0; i < clients; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - start;

    long delivered = 0;
    for (int i = 0; i < clients; i++) delivered += cs[i].count;
    double *all = calloc((size_t)(delivered ? delivered : 1), sizeof(double));
    long k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + k, cs[i].latencies, (size_t)cs[i].count * sizeof(double));
        k += cs[i].count;
        if (cs[i].error[0]) fprintf(stderr, "smtpload: client %d: last error: %s\n", i, cs[i].error);
    }
    qsort(all, (size_t)delivered, sizeof(double), cmp_double);
    double p50 = delivered ? all[(long)(0.50 * (delivered - 1))] : 0;
    double p99 = delivered ? all[(long)(0.99 * (delivered - 1))] : 0;
    double max = delivered ? all[delivered - 1] : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("pipelining=%d clients=%d delivered=%ld errors=%ld seconds=%.3f msgs_per_s=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f generator_cpu_s=%.3f\n",
           pipelining, clients, delivered, (long)atomic_load(&errors), elapsed, delivered / elapsed, p50 * 1000, p99 * 1000, max * 1000, cpu);
    return delivered > 0 ? 0 : 1;
}
