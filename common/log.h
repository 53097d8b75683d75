/* log.h: leveled logging to stderr, time helpers, and a progress bar that draws itself on a
 * terminal and falls back to plain periodic lines when stderr is a file (stage logs). */
#ifndef SMELT_LOG_H
#define SMELT_LOG_H

#include <stdint.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

void log_set_level(log_level lv);   /* default LOG_INFO; SMELT_LOG=debug raises it */
void log_msg(log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

double time_now(void);        /* wall clock, seconds since the epoch */
double time_monotonic(void);  /* monotonic seconds, for durations */
/* "2026-11-29T04:12:33Z" into buf (at least 21 bytes). */
void time_iso8601(char *buf, double t);

/* Progress of a loop of `total` steps. On a terminal: one redrawn line with a bar, rate and
 * ETA; otherwise one plain line every `every_s` seconds. */
typedef struct {
    const char *label;
    int64_t total;
    double start, last_print, every_s;
    int tty;
} progress;

void progress_start(progress *p, const char *label, int64_t total);
/* `extra` is appended to the line (for example "loss 2.31"); may be NULL. */
void progress_update(progress *p, int64_t done, const char *extra);
void progress_finish(progress *p, const char *extra);

#endif
