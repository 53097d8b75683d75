/* fuzz_slurm_output.c: libFuzzer target for what smelt reads from Slurm and from mounts: any
 * bytes as squeue or sacct output must parse into jobs with NUL-terminated fields or fail with an
 * ERR_IO message; as the JSON of recorded options, fill them or fail with ERR_CORRUPT; as a
 * mount's type and options, give one of the three file-system classes. Never a crash or a leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "pipeline/slurm.h"
#include "store/fscheck.h"

static void check_jobs(const slurm_live *l, int n) {
    for (int i = 0; i < n; i++)
        if (!memchr(l[i].job_id, 0, sizeof l[i].job_id) || !memchr(l[i].state, 0, sizeof l[i].state) ||
            !memchr(l[i].node, 0, sizeof l[i].node) || !l[i].job_id[0] || !l[i].state[0])
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    slurm_live *l = NULL;
    int n = 0;
    if (slurm_parse_squeue(text, &l, &n) == 0) check_jobs(l, n);
    else if (err_kind_get() != ERR_IO && err_kind_get() != ERR_NOMEM) abort();
    free(l);
    l = NULL;
    if (slurm_parse_sacct(text, &l, &n) == 0) check_jobs(l, n);
    else if (err_kind_get() != ERR_IO && err_kind_get() != ERR_NOMEM) abort();
    free(l);
    slurm_opts o = {0};
    if (slurm_opts_from_json(&o, text) == 0) {
        char *json = NULL;
        if (slurm_opts_to_json(&o, &json)) abort();
        free(json);
        slurm_opts_free(&o);
    } else if (err_kind_get() != ERR_CORRUPT && err_kind_get() != ERR_NOMEM) {
        abort();
    }
    /* The first line as the type name, the rest as the options. */
    char *nl = strchr(text, '\n');
    if (nl) *nl = 0;
    store_fs_info fi;
    unsigned long magic = size >= 4 ? (unsigned long)data[0] | (unsigned long)data[1] << 8 |
                                          (unsigned long)data[2] << 16 | (unsigned long)data[3] << 24
                                    : 0;
    store_fs_classify(magic, text, nl ? nl + 1 : "", &fi);
    if (fi.cls != FS_LOCAL && fi.cls != FS_SHARED && fi.cls != FS_UNSAFE) abort();
    if (!memchr(fi.type, 0, sizeof fi.type) || !memchr(fi.why, 0, sizeof fi.why)) abort();
    err_clear();
    free(text);
    return 0;
}
