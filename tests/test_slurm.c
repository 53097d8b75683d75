/* test_slurm.c: the parts of Slurm submission that need no cluster: submit options and their
 * JSON round trip, a stage's resources (defaults, recipe overrides, impossible combinations),
 * batch scripts (lines, dependency, quoting checked by /bin/sh itself, values refused), running
 * commands (exit status, both streams, large output, a missing command), the squeue and sacct
 * parsers, and one batched state query through fake squeue/sacct programs that count calls. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "pipeline/recipe.h"
#include "pipeline/slurm.h"
#include "tests/check.h"

static char root[256];

static void test_opts(void) {
    slurm_opts o = {0}, back = {0}, over = {0};
    char *json = NULL;
    CHECK_OK(slurm_opts_to_json(&o, &json));
    CHECK_STR(json, "{}");
    free(json);
    o.partition = xstrdup("gpu");
    o.account = xstrdup("recsys");
    o.time = xstrdup("2-00:00:00");
    o.mem = xstrdup("64G");
    o.launcher = xstrdup("srun --mpi=pmix");
    o.nodes = 2;
    o.gpus_per_node = 8;
    o.cpus_per_task = 12;
    CHECK_OK(slurm_opts_to_json(&o, &json));
    CHECK_OK(slurm_opts_from_json(&back, json));
    CHECK_STR(back.partition, "gpu");
    CHECK_STR(back.account, "recsys");
    CHECK_STR(back.time, "2-00:00:00");
    CHECK_STR(back.mem, "64G");
    CHECK_STR(back.launcher, "srun --mpi=pmix");
    CHECK_INT(back.nodes, 2);
    CHECK_INT(back.gpus_per_node, 8);
    CHECK_INT(back.cpus_per_task, 12);
    free(json);
    /* Merging: set fields of `over` win, the others stay. */
    over.time = xstrdup("1:00:00");
    over.cpus_per_task = 4;
    CHECK_OK(slurm_opts_merge(&back, &over));
    CHECK_STR(back.time, "1:00:00");
    CHECK_STR(back.partition, "gpu");
    CHECK_INT(back.cpus_per_task, 4);
    CHECK_INT(back.gpus_per_node, 8);
    slurm_opts_free(&over);
    CHECK(slurm_opts_from_json(&over, "[1, 2]") == -1);
    CHECK_INT(err_kind_get(), ERR_CORRUPT);
    err_clear();
    slurm_opts_free(&o);
    slurm_opts_free(&back);
    slurm_opts_free(&over);
}

static const char *recipe_text = "smelt: 1\n"
                                 "name: res\n"
                                 "stages:\n"
                                 "  train:\n"
                                 "    kind: command\n"
                                 "    ranks: 4\n"
                                 "    resources: {nodes: 2, gpus: 0, time: '1:00', partition: big}\n"
                                 "    run: 'true'\n"
                                 "  eval:\n"
                                 "    kind: command\n"
                                 "    inputs: {m: train}\n"
                                 "    run: 'true'\n"
                                 "  wide:\n"
                                 "    kind: command\n"
                                 "    resources: {nodes: 3}\n"
                                 "    run: 'true'\n";

static void test_resources_and_scripts(void) {
    recipe *r = NULL;
    CHECK_OK(recipe_parse(&r, "res.yaml", recipe_text, strlen(recipe_text), NULL, 0));
    if (!r) return;
    slurm_opts o = {.partition = "small", .time = "2:00", .nodes = 8, .gpus_per_node = 2, .cpus_per_task = 3};
    slurm_resources res;
    const recipe_stage *train = &r->stages[recipe_stage_index(r, "train")];
    const recipe_stage *eval = &r->stages[recipe_stage_index(r, "eval")];
    const recipe_stage *wide = &r->stages[recipe_stage_index(r, "wide")];
    CHECK_OK(slurm_stage_resources(train, &o, &res));
    CHECK_INT(res.ntasks, 4);
    CHECK_INT(res.nodes, 2);
    CHECK_INT(res.gpus_per_node, 0); /* an explicit 0 overrides the default */
    CHECK_INT(res.cpus_per_task, 3);
    CHECK_STR(res.time, "1:00");
    CHECK_STR(res.partition, "big");
    CHECK(res.account == NULL && res.mem == NULL);
    CHECK_OK(slurm_stage_resources(eval, &o, &res));
    CHECK_INT(res.ntasks, 1);
    CHECK_INT(res.nodes, 1); /* the default of 8 nodes is capped at the stage's one rank */
    CHECK_INT(res.gpus_per_node, 2);
    CHECK_STR(res.time, "2:00");
    CHECK_STR(res.partition, "small");
    CHECK(slurm_stage_resources(wide, &o, &res) == -1);
    CHECK_INT(err_kind_get(), ERR_INPUT);
    CHECK(strstr(err_msg(), "res.yaml:13:3: stage 'wide': resources.nodes is 3") != NULL);
    err_clear();

    /* The script of train: every resource line, the dependency, and the exec line. */
    strbuf sb = STRBUF_INIT;
    CHECK_OK(slurm_stage_resources(train, &o, &res));
    const char *self = "/opt/it's here/smelt";
    CHECK_OK(slurm_script(&sb, train, &res, self, "/shared/store", "20261129-041233-a3f9", "afterok:5:6"));
    const char *want[] = {"#!/bin/sh\n",
                          "\n#SBATCH --job-name=smelt-20261129-041233-a3f9\n",
                          "\n#SBATCH --comment=train\n",
                          "\n#SBATCH --output=/shared/store/logs/20261129-041233-a3f9/train.slurm-%j.log\n",
                          "\n#SBATCH --chdir=/shared/store\n",
                          "\n#SBATCH --ntasks=4\n",
                          "\n#SBATCH --nodes=2\n",
                          "\n#SBATCH --cpus-per-task=3\n",
                          "\n#SBATCH --time=1:00\n",
                          "\n#SBATCH --partition=big\n",
                          "\n#SBATCH --dependency=afterok:5:6\n#SBATCH --kill-on-invalid-dep=yes\n"};
    CHECK(!strncmp(sb.buf, want[0], strlen(want[0])));
    for (size_t i = 1; i < sizeof want / sizeof *want; i++) {
        if (!strstr(sb.buf, want[i])) fprintf(stderr, "missing %s in:\n%s", want[i], sb.buf);
        CHECK(strstr(sb.buf, want[i]) != NULL);
    }
    CHECK(strstr(sb.buf, "--gpus-per-node") == NULL); /* gpus: 0 */
    CHECK(strstr(sb.buf, "--mem") == NULL && strstr(sb.buf, "--account") == NULL);
    /* The exec line, run by /bin/sh with printf in place of exec, gives back the exact words. */
    const char *ex = strstr(sb.buf, "\nexec ");
    CHECK(ex != NULL);
    if (ex) {
        char *cmd = xasprintf("printf '%%s|' %s", ex + 6);
        FILE *p = popen(cmd, "r");
        char got[1024] = "";
        size_t n = p ? fread(got, 1, sizeof got - 1, p) : 0;
        got[n] = 0;
        if (p) pclose(p);
        CHECK_STR(got, "/opt/it's here/smelt|slurm-stage|--store|/shared/store|--run|20261129-041233-a3f9|--stage|train|");
        free(cmd);
    }
    sb_free(&sb);
    /* No dependency: no dependency lines. */
    CHECK_OK(slurm_stage_resources(eval, &o, &res));
    CHECK_OK(slurm_script(&sb, eval, &res, self, "/shared/store", "r1", ""));
    CHECK(strstr(sb.buf, "--dependency") == NULL && strstr(sb.buf, "--kill-on-invalid-dep") == NULL);
    CHECK(strstr(sb.buf, "\n#SBATCH --gpus-per-node=2\n") != NULL);
    sb_free(&sb);
    /* Values that cannot be an #SBATCH word are refused, naming the value. */
    slurm_resources bad = res;
    bad.partition = "gpu a100";
    CHECK(slurm_script(&sb, eval, &bad, self, "/shared/store", "r1", "") == -1);
    CHECK(strstr(err_msg(), "'gpu a100'") != NULL);
    err_clear();
    sb_free(&sb);
    CHECK(slurm_script(&sb, eval, &res, self, "/shared/100%store", "r1", "") == -1);
    err_clear();
    sb_free(&sb);
    char name[64];
    slurm_job_name(name, sizeof name, "r1");
    CHECK_STR(name, "smelt-r1");
    recipe_free(r);
}

static void test_cmd(void) {
    char *out = NULL, *err = NULL;
    int code = -1;
    char *a1[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    CHECK_OK(slurm_cmd(a1, &out, &err, &code));
    CHECK_STR(out, "out\n");
    CHECK_STR(err, "err\n");
    CHECK_INT(code, 3);
    free(out);
    free(err);
    /* More than a pipe's buffer on both streams at once: read without a deadlock. */
    char *a2[] = {"sh", "-c", "head -c 1000000 /dev/zero; head -c 300000 /dev/zero >&2", NULL};
    CHECK_OK(slurm_cmd(a2, &out, &err, &code));
    CHECK_INT(code, 0);
    free(out);
    free(err);
    char *a3[] = {"smelt-no-such-slurm-command", NULL};
    CHECK(slurm_cmd(a3, &out, &err, &code) == -1);
    CHECK_INT(err_kind_get(), ERR_INPUT);
    CHECK(strstr(err_msg(), "not on PATH") != NULL);
    err_clear();
}

static void test_parsers(void) {
    slurm_live *l = NULL;
    int n = 0;
    /* Lines as squeue -o '%i|%T|%M|%N|%r|%k' prints them. */
    CHECK_OK(slurm_parse_squeue("14|CANCELLED|0:01|vm|None|s3\n15|PENDING|0:00||DependencyNeverSatisfied|s4\n"
                                "16|RUNNING|1-02:03:04|node[1-2]|None|(null)\n\n",
                                &l, &n));
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(l[0].job_id, "14");
        CHECK_STR(l[0].state, "CANCELLED");
        CHECK_STR(l[0].elapsed, "0:01");
        CHECK_STR(l[0].node, "vm");
        CHECK_STR(l[0].reason, "");
        CHECK_STR(l[0].stage, "s3");
        CHECK_STR(l[1].reason, "DependencyNeverSatisfied");
        CHECK_STR(l[1].node, "");
        CHECK_STR(l[2].node, "node[1-2]");
        CHECK_STR(l[2].elapsed, "1-02:03:04");
        CHECK_STR(l[2].stage, "");
    }
    free(l);
    /* sacct -P -o JobID,State,Elapsed,NodeList,Reason: "CANCELLED by 0", "None assigned". */
    CHECK_OK(slurm_parse_sacct("123|CANCELLED by 0|00:00:05|node1|None\n124|PENDING|00:00:00|None assigned|Dependency\n",
                               &l, &n));
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(l[0].state, "CANCELLED");
        CHECK_STR(l[0].elapsed, "00:00:05");
        CHECK_STR(l[1].node, "");
        CHECK_STR(l[1].reason, "Dependency");
    }
    free(l);
    CHECK_OK(slurm_parse_squeue("", &l, &n));
    CHECK_INT(n, 0);
    free(l);
    CHECK(slurm_parse_squeue("slurm_load_jobs error: Socket timed out\n", &l, &n) == -1);
    CHECK(strstr(err_msg(), "Socket timed out") != NULL);
    err_clear();
    CHECK(slurm_parse_sacct("12|RUNNING\n", &l, &n) == -1);
    err_clear();
    /* A state cut by sacct ends in '+'; a state that is only a '+' is no state (found by fuzzing). */
    CHECK_OK(slurm_parse_sacct("9|CANCELLED+|00:00:01|n|None\n", &l, &n));
    CHECK(n == 1 && !strcmp(l[0].state, "CANCELLED"));
    free(l);
    CHECK(slurm_parse_sacct("9|+ENDING|00:00:01|n|None\n", &l, &n) == -1);
    err_clear();
    static const char *const active[] = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED"};
    static const char *const ended[] = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                                        "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "LOST", "VANISHED"};
    for (size_t i = 0; i < sizeof active / sizeof *active; i++) CHECK(slurm_state_active(active[i]));
    for (size_t i = 0; i < sizeof ended / sizeof *ended; i++) CHECK(!slurm_state_active(ended[i]));
}

static void write_exec(const char *path, const char *text) {
    CHECK_OK(fs_write_atomic(path, text, strlen(text)));
    chmod(path, 0755);
}

/* A fake squeue (and a failing sacct) on PATH: one call answers for every job; jobs it does not
 * list take the state the job recorded in the store. */
static void test_view(void) {
    char bin[300], log[300], path[700], *text;
    snprintf(bin, sizeof bin, "%s/bin", root);
    snprintf(log, sizeof log, "%s/calls.log", root);
    fs_mkdir_p(bin, 0755);
    char *sq = xasprintf("#!/bin/sh\necho \"squeue $*\" >> %s\nprintf '7|RUNNING|0:42|n1|None|b\\n8|PENDING|0:00||"
                         "Dependency|c\\n'\n", log);
    char *sa = xasprintf("#!/bin/sh\necho \"sacct $*\" >> %s\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n",
                         log);
    char *p1 = fs_join(bin, "squeue"), *p2 = fs_join(bin, "sacct");
    write_exec(p1, sq);
    write_exec(p2, sa);
    snprintf(path, sizeof path, "%s:%s", bin, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    char *old_path = xstrdup(getenv("PATH") ? getenv("PATH") : "");
    setenv("PATH", path, 1);
    unsetenv("SMELT_SLURM_QUERY");
    slurm_job_row jobs[5] = {{.stage = "a", .job_id = "6", .state = "completed", .started_at = 100, .finished_at = 161},
                             {.stage = "b", .job_id = "7", .state = "started"},
                             {.stage = "c", .job_id = "8", .state = "submitted"},
                             {.stage = "d", .job_id = "9", .state = "started", .node = "n2"},
                             {.stage = "e", .job_id = "10", .state = "submitted"}};
    slurm_view v[5];
    int calls = 0;
    CHECK_OK(slurm_run_view("squeue", "r1", jobs, 5, v, &calls));
    CHECK_INT(calls, 1);
    CHECK_STR(v[0].state, "COMPLETED");
    CHECK_INT(v[0].live, 0);
    CHECK_STR(v[0].elapsed, "0:01:01");
    CHECK_STR(v[1].state, "RUNNING");
    CHECK_INT(v[1].live, 1);
    CHECK_INT(v[1].active, 1);
    CHECK_STR(v[1].node, "n1");
    CHECK_STR(v[2].state, "PENDING");
    CHECK_STR(v[2].reason, "Dependency");
    CHECK_STR(v[3].state, "LOST"); /* started, never reported an end, unknown to Slurm */
    CHECK_STR(v[3].node, "n2");
    CHECK_INT(v[3].active, 0);
    CHECK_STR(v[4].state, "VANISHED");
    size_t n;
    CHECK_OK(fs_read_file(log, 0, &text, &n));
    CHECK_STR(text, "squeue -h -t all --name=smelt-r1 -o %i|%T|%M|%N|%r|%k\n");
    free(text);
    /* sacct fails (no accounting): squeue answers, two calls in all. */
    unlink(log);
    CHECK_OK(slurm_run_view("sacct", "r1", jobs, 5, v, &calls));
    CHECK_INT(calls, 2);
    CHECK_STR(v[1].state, "RUNNING");
    CHECK_OK(fs_read_file(log, 0, &text, &n));
    const char *want = "sacct -n -X -P -j 6,7,8,9,10 -o JobID,State,Elapsed,NodeList,Reason\nsqueue ";
    CHECK(!strncmp(text, want, strlen(want)));
    free(text);
    /* No job: no call at all. */
    CHECK_OK(slurm_run_view("squeue", "r1", jobs, 0, v, &calls));
    CHECK_INT(calls, 0);
    setenv("PATH", old_path, 1);
    free(old_path);
    free(sq);
    free(sa);
    free(p1);
    free(p2);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/test_slurm.%d", (int)getpid());
    fs_rm_rf(root);
    if (fs_mkdir_p(root, 0755)) {
        fprintf(stderr, "cannot create %s: %s\n", root, err_msg());
        return 1;
    }
    test_opts();
    test_resources_and_scripts();
    test_cmd();
    test_parsers();
    test_view();
    fs_rm_rf(root);
    return check_report("test_slurm");
}
