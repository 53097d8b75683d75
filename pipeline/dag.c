/* dag.c: resolves stage references and needs: to indices, rejects dangling references and
 * cycles (naming the cycle), and sorts the stages topologically, keeping file order among
 * stages that are ready at the same time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "pipeline/recipe.h"

static int add_dep(recipe_stage *st, int d) {
    for (int i = 0; i < st->n_deps; i++)
        if (st->deps[i] == d) return 0;
    int *nd = xrealloc(st->deps, (size_t)(st->n_deps + 1) * sizeof *nd);
    if (!nd) return -1;
    st->deps = nd;
    st->deps[st->n_deps++] = d;
    return 0;
}

static int dangling(const recipe *r, const char *file, int line, int col, const char *stage, const char *what,
                    const char *target) {
    strbuf sb = STRBUF_INIT;
    for (int i = 0; i < r->n_stages && i < 12; i++) sb_printf(&sb, "%s%s", i ? ", " : "", r->stages[i].name);
    if (r->n_stages > 12) sb_puts(&sb, ", ...");
    err_set(ERR_INPUT, "%s:%d:%d: stage '%s': %s refers to stage '%s', which is not defined; stages are: %s", file, line,
            col, stage, what, target, sb_str(&sb));
    sb_free(&sb);
    return -1;
}

/* DFS colors: 0 unvisited, 1 on the stack, 2 done. On a back edge, prints the cycle. */
static int dfs(const recipe *r, int v, int *color, int *stack, int depth) {
    color[v] = 1;
    stack[depth] = v;
    const recipe_stage *st = &r->stages[v];
    for (int i = 0; i < st->n_deps; i++) {
        int d = st->deps[i];
        if (color[d] == 1) {
            strbuf sb = STRBUF_INIT;
            int start = depth;
            while (start > 0 && stack[start] != d) start--;
            for (int k = start; k <= depth; k++) sb_printf(&sb, "%s -> ", r->stages[stack[k]].name);
            sb_puts(&sb, r->stages[d].name);
            err_set(ERR_INPUT, "%s:%d:%d: the stages form a cycle: %s (each needs the next); break it", st->file,
                    r->stages[d].line, r->stages[d].col, sb_str(&sb));
            sb_free(&sb);
            return -1;
        }
        if (color[d] == 0 && dfs(r, d, color, stack, depth + 1)) return -1;
    }
    color[v] = 2;
    return 0;
}

int dag_resolve(recipe *r) {
    int n = r->n_stages;
    for (int i = 0; i < n; i++) {
        recipe_stage *st = &r->stages[i];
        for (int k = 0; k < st->n_refs; k++) {
            recipe_ref *ref = &st->refs[k];
            int d = recipe_stage_index(r, ref->target);
            if (d < 0) return dangling(r, ref->file, ref->line, ref->col, st->name, ref->path, ref->target);
            if (d == i)
                return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' refers to the stage itself", ref->file, ref->line,
                               ref->col, st->name, ref->path);
            const stage_kind *tk = r->stages[d].kind;
            if (ref->output) {
                if (stage_output_index(tk, ref->output) < 0) {
                    strbuf sb = STRBUF_INIT;
                    for (int o = 0; tk->outputs[o].name; o++) sb_printf(&sb, "%s%s", o ? ", " : "", tk->outputs[o].name);
                    err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' refers to output '%s' of stage '%s' (kind %s), which "
                            "has outputs: %s", ref->file, ref->line, ref->col, st->name, ref->path, ref->output,
                            ref->target, tk->name, sb_str(&sb));
                    sb_free(&sb);
                    return -1;
                }
            } else if (!(ref->output = xstrdup(tk->outputs[0].name))) {
                return -1;
            }
            ref->dep = d;
            if (add_dep(st, d)) return -1;
        }
        for (int k = 0; k < st->n_needs; k++) {
            int d = recipe_stage_index(r, st->needs[k]);
            if (d < 0) return dangling(r, st->file, st->needs_line[k], st->needs_col[k], st->name, "needs", st->needs[k]);
            if (d == i)
                return err_set(ERR_INPUT, "%s:%d:%d: stage '%s' needs itself", st->file, st->needs_line[k],
                               st->needs_col[k], st->name);
            if (add_dep(st, d)) return -1;
        }
    }
    int *color = xcalloc((size_t)n + 1, sizeof *color), *stack = xcalloc((size_t)n + 1, sizeof *stack);
    int rc = (!color || !stack) ? -1 : 0;
    for (int i = 0; i < n && !rc; i++)
        if (color[i] == 0) rc = dfs(r, i, color, stack, 0);
    free(color);
    free(stack);
    if (rc) return -1;
    /* Kahn's algorithm, always taking the earliest stage in file order among the ready ones. */
    int *order = xcalloc((size_t)n + 1, sizeof *order), *done = xcalloc((size_t)n + 1, sizeof *done);
    int *remap = xcalloc((size_t)n + 1, sizeof *remap);
    recipe_stage *sorted = xcalloc((size_t)n + 1, sizeof *sorted);
    if (!order || !done || !remap || !sorted) {
        free(order);
        free(done);
        free(remap);
        free(sorted);
        return -1;
    }
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < n; i++) {
            if (done[i]) continue;
            int ready = 1;
            for (int j = 0; j < r->stages[i].n_deps && ready; j++) ready = done[r->stages[i].deps[j]];
            if (ready) {
                done[i] = 1;
                order[k] = i;
                remap[i] = k;
                break;
            }
        }
    }
    for (int k = 0; k < n; k++) {
        sorted[k] = r->stages[order[k]];
        for (int j = 0; j < sorted[k].n_deps; j++) sorted[k].deps[j] = remap[sorted[k].deps[j]];
        for (int j = 0; j < sorted[k].n_refs; j++) sorted[k].refs[j].dep = remap[sorted[k].refs[j].dep];
    }
    free(r->stages);
    r->stages = sorted;
    free(order);
    free(done);
    free(remap);
    return 0;
}
