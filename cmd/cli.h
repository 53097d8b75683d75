/* cli.h: what the subcommands of cmd/ share: the command table's row type, exit codes, and
 * the one place that turns the error slot into a message on stderr and an exit status. */
#ifndef SMELT_CLI_H
#define SMELT_CLI_H

/* Exit statuses (README "Exit codes"). */
enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1, /* a stage or an operation failed */
    EXIT_USAGE = 2,  /* bad usage or bad input */
};

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv); /* argv[0] is the command name; returns an exit status */
    const char *summary;              /* one line for `smelt --help` */
    const char *usage;                /* the full text of `smelt NAME --help` */
    int hidden;                       /* internal commands (exec) are not listed */
} cli_command;

extern const cli_command cli_commands[];

/* Prints "smelt NAME: <err_msg()>" on stderr and returns the exit status for its kind. */
int cli_fail(const char *cmd);
/* Prints a usage error and the command's usage hint; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the usage text of a command on stdout; returns EXIT_OK. */
int cli_help(const char *cmd);
/* 1 when argv holds -h or --help before any "--". */
int cli_wants_help(int argc, char **argv);

#endif
