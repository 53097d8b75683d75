/* log.c: logging and progress output, all on stderr. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static log_level log_cur = LOG_INFO;
static int log_env_read = 0;

void log_set_level(log_level lv) {
    log_cur = lv;
    log_env_read = 1;
}

void log_msg(log_level lv, const char *fmt, ...) {
    if (!log_env_read) {
        const char *e = getenv("SMELT_LOG");
        if (e && !strcmp(e, "debug")) log_cur = LOG_DEBUG;
        log_env_read = 1;
    }
    if (lv < log_cur) return;
    static const char *names[] = {"debug", "info", "warning", "error"};
    char ts[32];
    time_iso8601(ts, time_now());
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %s: %s\n", ts, names[lv], line);
}

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double time_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void time_iso8601(char *buf, double t) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

void progress_start(progress *p, const char *label, int64_t total) {
    p->label = label;
    p->total = total;
    p->start = time_monotonic();
    p->last_print = 0;
    p->every_s = 10;
    p->tty = isatty(STDERR_FILENO);
}

static void progress_print(progress *p, int64_t done, const char *extra, int final) {
    double now = time_monotonic(), el = now - p->start;
    double rate = el > 0 ? done / el : 0;
    char eta[32], elapsed[32];
    fmt_duration(eta, sizeof eta, rate > 0 ? (p->total - done) / rate : -1);
    fmt_duration(elapsed, sizeof elapsed, el);
    if (p->tty) {
        int width = 24, fill = p->total > 0 ? (int)(width * done / p->total) : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld %s%s %s\033[K", p->label, bar, (long long)done,
                (long long)p->total, extra ? extra : "", extra ? "," : "", final ? elapsed : eta);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s %lld/%lld%s%s elapsed %s eta %s\n", p->label, (long long)done,
                (long long)p->total, extra ? " " : "", extra ? extra : "", elapsed, final ? "0s" : eta);
    }
    fflush(stderr);
    p->last_print = now;
}

void progress_update(progress *p, int64_t done, const char *extra) {
    double now = time_monotonic();
    double every = p->tty ? 0.2 : p->every_s;
    if (now - p->last_print >= every) progress_print(p, done, extra, 0);
}

void progress_finish(progress *p, const char *extra) { progress_print(p, p->total, extra, 1); }
