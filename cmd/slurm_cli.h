/* slurm_cli.h: what `submit`, `plan --slurm`, `status` and `resume` share about Slurm
 * (cmd/cmd_slurm.c): the job-default options and the status table of a Slurm run. */
#ifndef SMELT_CMD_SLURM_CLI_H
#define SMELT_CMD_SLURM_CLI_H

#include <getopt.h>

#include "pipeline/slurm.h"
#include "store/runs.h"

/* getopt_long codes of the Slurm options (above any short option character). */
enum {
    OPT_SLURM = 1000,
    OPT_PARTITION,
    OPT_ACCOUNT,
    OPT_TIME,
    OPT_NODES,
    OPT_GPUS_PER_NODE,
    OPT_CPUS_PER_TASK,
    OPT_MEM,
    OPT_LAUNCHER,
};

#define SLURM_LONG_OPTIONS                                                                                             \
    {"slurm", no_argument, 0, OPT_SLURM}, {"partition", required_argument, 0, OPT_PARTITION},                         \
        {"account", required_argument, 0, OPT_ACCOUNT}, {"time", required_argument, 0, OPT_TIME},                     \
        {"nodes", required_argument, 0, OPT_NODES}, {"gpus-per-node", required_argument, 0, OPT_GPUS_PER_NODE},       \
        {"cpus-per-task", required_argument, 0, OPT_CPUS_PER_TASK}, {"mem", required_argument, 0, OPT_MEM},           \
        {"launcher", required_argument, 0, OPT_LAUNCHER}

#define SLURM_OPTIONS_HELP                                                                                             \
    "  --partition P        the partition of every job (sbatch --partition)\n"                                        \
    "  --account A          the account charged (sbatch --account)\n"                                                 \
    "  --time T             the wall-clock limit of every job, Slurm syntax (1:00:00, 2-00:00:00)\n"                  \
    "  --nodes N            nodes per job (never more than the stage's ranks)\n"                                      \
    "  --gpus-per-node G    GPUs per node (sbatch --gpus-per-node)\n"                                                 \
    "  --cpus-per-task C    CPUs per rank (sbatch --cpus-per-task)\n"                                                 \
    "  --mem M              memory per node, Slurm syntax (16G)\n"                                                    \
    "  --launcher L         how stages with ranks > 1 start inside their allocation: mpirun (default:\n"            \
    "                       mpirun -np RANKS) or a command line such as 'srun --mpi=pmix'\n"                          \
    "A stage's resources: {time, gpus, cpus, mem, partition, account, nodes} override these.\n"

/* Handles one Slurm option code: 1 handled (stored in o; --slurm sets *slurm), 0 not a Slurm
 * option, -1 a bad value (a usage error was printed). */
int cli_slurm_option(const char *cmd, int c, const char *arg, slurm_opts *o, int *slurm);
/* 1 when any job default is set in o. */
int cli_slurm_opts_set(const slurm_opts *o);

/* Prints the stages of a Slurm run with their jobs' states (one batched Slurm query).
 * Returns an exit status. */
int cli_slurm_status(store *s, const run_row *rr, const slurm_run_row *sr);

#endif
