/* registry.c: the one table of stage kinds. Adding a kind is one row here and one folder. */
#include <string.h>

#include "stages/stage.h"

extern const stage_kind stage_kind_command;
extern const stage_kind stage_kind_mpi_selftest;
extern const stage_kind stage_kind_data;
extern const stage_kind stage_kind_train;
extern const stage_kind stage_kind_evaluate;
extern const stage_kind stage_kind_prune;
extern const stage_kind stage_kind_quantize;
extern const stage_kind stage_kind_benchmark;

const stage_kind *const stage_kinds[] = {
    &stage_kind_command,
    &stage_kind_mpi_selftest,
    &stage_kind_data,
    &stage_kind_train,
    &stage_kind_evaluate,
    &stage_kind_prune,
    &stage_kind_quantize,
    &stage_kind_benchmark,
    NULL,
};

const stage_kind *stage_kind_find(const char *name) {
    for (int i = 0; stage_kinds[i]; i++)
        if (!strcmp(stage_kinds[i]->name, name)) return stage_kinds[i];
    return NULL;
}

int stage_output_index(const stage_kind *k, const char *name) {
    for (int i = 0; k->outputs[i].name; i++)
        if (!strcmp(k->outputs[i].name, name)) return i;
    return -1;
}
