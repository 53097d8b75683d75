/* fault_hook.c: the store's fault-injection point (store_fault, store/store.h) for the test
 * binary smelt_faults; smelt itself has none. SMELT_STORE_FAULT=COMMAND:N makes the Nth SQLite
 * operation (prepare, step, exec, begin, commit; counted from 1) of every `smelt COMMAND` process
 * fail once. Each such process appends to $SMELT_STORE_FAULT_LOG "fired COMMAND N WHAT" when the
 * fault fires and "count COMMAND TOTAL" when it exits, so that a test can sweep N over every
 * operation of a command and know which runs had a fault. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_fault(const char *what);

static int armed = -1; /* -1: not decided yet, 0: not this process, 1: counting */
static long target, calls;
static char command[64];

/* argv[1] of this process: the smelt command. */
static void read_command(void) {
    char buf[256] = "";
    FILE *f = fopen("/proc/self/cmdline", "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    size_t first = strlen(buf);
    snprintf(command, sizeof command, "%s", first + 1 < n ? buf + first + 1 : "");
}

static void log_line(const char *fmt, const char *what, long v) {
    const char *path = getenv("SMELT_STORE_FAULT_LOG");
    FILE *f = path && path[0] ? fopen(path, "a") : NULL;
    if (!f) return;
    fprintf(f, fmt, command, v, what);
    fclose(f);
}

static void at_exit(void) { log_line("count %s %ld%s\n", "", calls); }

int store_fault(const char *what) {
    if (armed < 0) {
        const char *spec = getenv("SMELT_STORE_FAULT");
        const char *colon = spec ? strchr(spec, ':') : NULL;
        read_command();
        armed = colon && (size_t)(colon - spec) == strlen(command) && !strncmp(spec, command, strlen(command));
        if (armed) {
            target = atol(colon + 1);
            atexit(at_exit);
        }
    }
    if (!armed) return 0;
    if (++calls != target) return 0;
    log_line("fired %s %ld %s\n", what, calls);
    return 1;
}
