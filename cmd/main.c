/* main.c: the smelt command line: one table of subcommands, dispatch, and top-level help. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "common/error.h"
#include "stages/stage.h"

#define SMELT_VERSION "0.1.0"

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("smelt %s\n", SMELT_VERSION);
    return EXIT_OK;
}

/* The one table of subcommands. Keep it sorted as shown in `smelt --help`. */
const cli_command cli_commands[] = {
    COMMANDS_TABLE
    {"version", cmd_version, "print the version", "usage: smelt version\n", 0},
    {NULL, NULL, NULL, NULL, 0},
};

/* Lists the commands of the table and the stage kinds of the registry: only what exists. */
static void print_help(FILE *f) {
    fprintf(f, "usage: smelt <command> [options]\n\n"
               "smelt runs the recipes that compress fine-tuned language models for recommendation as a\n"
               "resumable pipeline over an artifact store.\n\ncommands:\n");
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!c->hidden) fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nstage kinds of a recipe:");
    for (int i = 0; stage_kinds[i]; i++) fprintf(f, "%s %s", i ? "," : "", stage_kinds[i]->name);
    fprintf(f, "\n\nRun 'smelt <command> --help' for a command's options.\n"
               "Exit status: 0 ok, 1 a stage or operation failed, 2 bad usage or bad input.\n");
}

int cli_fail(const char *cmd) {
    const char *m = err_msg();
    fprintf(stderr, "smelt %s: %s\n", cmd, m[0] ? m : "failed (no message was recorded: this is a bug)");
    switch (err_kind_get()) {
    case ERR_INPUT:
    case ERR_CORRUPT: return EXIT_USAGE;
    default: return EXIT_FAILED;
    }
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "smelt %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'smelt %s --help' for usage.\n", cmd);
    return EXIT_USAGE;
}

int cli_help(const char *cmd) {
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, cmd)) {
            fputs(c->usage, stdout);
            return EXIT_OK;
        }
    return EXIT_USAGE;
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) return 0;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    }
    return 0;
}

/* OpenMP threads that wait for work spin by default (libgomp: GOMP_SPINCOUNT, milliseconds of a
 * core after each parallel region). smelt shares machines with other processes and runs many
 * small kernels between parallel regions, so its threads sleep while they wait instead (measured
 * in docs/engine.md, "Threads and BLAS"). libgomp reads OMP_WAIT_POLICY once, when it is loaded
 * before main, so smelt sets the variable and executes itself once more (about 10 ms), unless the
 * user chose a policy or a spin count. The stages the runner starts inherit the variable. */
static void wait_policy_passive(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 0)) return;
    execv("/proc/self/exe", argv); /* returns only on failure: then the runtime keeps its default */
}

int main(int argc, char **argv) {
    wait_policy_passive(argv);
    if (argc < 2) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) return cli_help(argv[2]) == EXIT_OK ? EXIT_OK : EXIT_USAGE;
        print_help(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (const cli_command *c = cli_commands; c->name; c++) {
        if (strcmp(c->name, argv[1])) continue;
        if (cli_wants_help(argc - 1, argv + 1)) return cli_help(c->name);
        return c->fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "smelt: unknown command '%s'\nRun 'smelt --help' for the list of commands.\n", argv[1]);
    return EXIT_USAGE;
}
