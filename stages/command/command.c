/* command.c: the `command` stage kind: runs a shell command with its inputs, parameters and
 * output directory in the environment. Useful on its own (glue steps, external tools) and the
 * kind the orchestrator is tested with. Every rank runs the command; rank 0's output counts. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "stages/stage.h"

static const param_spec command_input_ref = {.name = "input", .type = P_REF, .help = "a stage whose output is read"};
static const param_spec command_param_value = {.name = "value", .type = P_SCALAR, .help = "a parameter value"};
static const param_spec command_file_path = {.name = "file", .type = P_PATH, .help = "a file or folder outside the store"};

static const param_spec command_params[] = {
    {.name = "run", .type = P_STRING, .required = 1, .help = "the shell command (run with /bin/sh -c)"},
    {.name = "inputs", .type = P_MAP, .def = "{}", .elem = &command_input_ref,
     .help = "NAME: STAGE pairs; SMELT_INPUT_<NAME> holds the stage's output files"},
    {.name = "params", .type = P_MAP, .def = "{}", .elem = &command_param_value,
     .help = "KEY: VALUE pairs exported as SMELT_PARAM_<KEY>; part of the cache key"},
    {.name = "files", .type = P_MAP, .def = "{}", .elem = &command_file_path,
     .help = "NAME: PATH pairs (files or folders outside the store) exported as SMELT_FILE_<NAME>; their "
             "content is part of the cache key"},
    {.name = NULL},
};

static const stage_output_spec command_outputs[] = {
    {.name = "output", .kind = "files"},
    {.name = NULL},
};

/* NAME -> SMELT_<prefix>_NAME with letters upper-cased and other bytes as '_'. */
static char *env_name(const char *prefix, const char *name) {
    char *s = xasprintf("SMELT_%s_%s", prefix, name);
    if (!s) return NULL;
    for (char *p = s + strlen("SMELT_") + strlen(prefix) + 1; *p; p++)
        *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    return s;
}

static int setenv_checked(const char *k, const char *v) {
    if (setenv(k, v, 1)) return err_errno("cannot set %s", k);
    return 0;
}

/* Text of a scalar parameter value as the command sees it. */
static char *scalar_text(const cJSON *v) {
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    if (cJSON_IsBool(v)) return xstrdup(cJSON_IsTrue(v) ? "true" : "false");
    if (cJSON_IsNull(v)) return xstrdup("");
    char *p = cJSON_PrintUnformatted(v);
    char *s = p ? xstrdup(p) : NULL;
    cJSON_free(p);
    return s;
}

static volatile sig_atomic_t child_pgid;

static void forward_signal(int sig) {
    if (child_pgid > 0) kill(-child_pgid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int command_run(stage_ctx *ctx) {
    const char *cmd;
    if (param_string(ctx->params, "run", &cmd)) return -1;
    char buf[64];
    int rc = 0;
    rc |= setenv_checked("SMELT_OUTPUT_DIR", ctx->output_dirs[0]);
    rc |= setenv_checked("SMELT_CHECKPOINT_DIR", ctx->checkpoint_dir);
    rc |= setenv_checked("SMELT_METRICS", ctx->metrics_path);
    rc |= setenv_checked("SMELT_RUN_ID", ctx->run_id);
    rc |= setenv_checked("SMELT_STAGE", ctx->stage);
    snprintf(buf, sizeof buf, "%d", ctx->attempt);
    rc |= setenv_checked("SMELT_ATTEMPT", buf);
    snprintf(buf, sizeof buf, "%d", ctx->rank);
    rc |= setenv_checked("SMELT_RANK", buf);
    snprintf(buf, sizeof buf, "%d", ctx->world);
    rc |= setenv_checked("SMELT_WORLD_SIZE", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)ctx->seed);
    rc |= setenv_checked("SMELT_SEED", buf);
    if (rc) return -1;
    /* The recipe's folder, for scripts that live beside the recipe. */
    run_row rr;
    if (store_run_load(ctx->st, ctx->run_id, &rr)) return -1;
    char *rdir = rr.recipe_path ? xstrdup(rr.recipe_path) : xstrdup(".");
    run_row_free(&rr);
    if (!rdir) return -1;
    char *slash = strrchr(rdir, '/');
    if (slash) *slash = 0;
    rc = setenv_checked("SMELT_RECIPE_DIR", rdir[0] ? rdir : "/");
    free(rdir);
    if (rc) return -1;
    for (int i = 0; i < ctx->n_inputs; i++) {
        stage_input *in = &ctx->inputs[i];
        const char *dir;
        if (strncmp(in->name, "inputs.", 7)) continue;
        char *k = env_name("INPUT", in->name + 7);
        rc = !k || stage_input_dir(ctx, in, &dir) || setenv_checked(k, dir);
        free(k);
        if (rc) return -1;
    }
    const cJSON *files = param_get(ctx->params, "files"), *f;
    cJSON_ArrayForEach(f, files) {
        char *k = env_name("FILE", f->string);
        rc = !k || !cJSON_IsString(f) || setenv_checked(k, f->valuestring);
        free(k);
        if (rc) return -1;
    }
    const cJSON *params = param_get(ctx->params, "params"), *p;
    cJSON_ArrayForEach(p, params) {
        char *k = env_name("PARAM", p->string), *v = scalar_text(p);
        rc = !k || !v || setenv_checked(k, v);
        free(k);
        free(v);
        if (rc) return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return err_errno("cannot fork to run the command of stage %s", ctx->stage);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* A fresh, private working directory per attempt: nothing leaks between stages. */
        if (chdir(ctx->scratch_dir)) _exit(126);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        fprintf(stderr, "smelt: cannot run /bin/sh: %s\n", strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    child_pgid = pid;
    signal(SIGTERM, forward_signal);
    signal(SIGINT, forward_signal);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return err_errno("waiting for the command of stage %s", ctx->stage);
    }
    child_pgid = 0;
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status))
        return err_set(ERR_STAGE, "the command of stage %s exited with status %d", ctx->stage, WEXITSTATUS(status));
    return err_set(ERR_STAGE, "the command of stage %s was killed by signal %d", ctx->stage, WTERMSIG(status));
}

const stage_kind stage_kind_command = {
    .name = "command",
    .version = 1,
    .summary = "run a shell command; its files in $SMELT_OUTPUT_DIR become the stage's output",
    .params = command_params,
    .outputs = command_outputs,
    .supports_ranks = 1,
    .copy_inputs = 1,
    .run = command_run,
};
