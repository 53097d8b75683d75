/* synthetic.c: the built-in deterministic generator of the `synthetic` source (the quickstart's
 * data), designed so that a tiny byte-level model can learn it in a few hundred steps. Items have
 * a made-up title, a format and one of 8 categories, written last in the item's text ("Vete (game,
 * horror)") so that the category sits at a fixed distance before "Answer:" and the 8 category
 * words end in distinct letter pairs. Categories have a global appeal a[k] shared by the tasks (a
 * seeded permutation of 8 evenly spaced values in [-1.5, 1.5]); for each task, each member likes 2
 * categories; members interact mostly with categories they like for the first task. The label is
 *   P(yes) = sigmoid((1 - noise) * (1.5 * affinity_t + a[category] + 0.5 * appeal_item) - 0.3 * noise),
 * affinity = +1 for a liked category, else -1. What a model can learn, from easy to hard: the
 * candidate's category (a fixed-offset lookup), the item's own appeal, and whether the history
 * shows the member saying yes to that category (attention from the candidate to the history). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/data/rng.h"
#include "stages/data/source.h"
#include "stages/params.h"

static const char *const categories[] = {"mystery", "comedy", "drama", "horror", "romance", "scifi", "fantasy", "western"};
static const char *const formats[] = {"film", "book", "game", "song"};
#define N_CAT 8
#define N_FMT 4

static char *synthetic_instruction(void *ctx, const char *name) {
    (void)ctx;
    return xasprintf("Will the member %s the candidate? Answer yes or no.", name);
}

static char *make_title(drng *r) {
    static const char cons[] = "bdfgklmnprstvz", vow[] = "aeiou";
    char t[16];
    int n = 2 + (int)drng_below(r, 2), k = 0;
    for (int i = 0; i < n; i++) {
        t[k++] = cons[drng_below(r, sizeof cons - 1)];
        t[k++] = vow[drng_below(r, sizeof vow - 1)];
    }
    t[k] = 0;
    t[0] = (char)(t[0] - 'a' + 'A');
    return xstrdup(t);
}

int synthetic_generate(rs_corpus *c, const cJSON *params, int64_t seed) {
    int64_t members, items, history, inter;
    double noise;
    if (param_int(params, "members", &members) || param_int(params, "items", &items) ||
        param_int(params, "history", &history) || param_float(params, "noise", &noise) ||
        param_int(params, "interactions", &inter))
        return -1;
    if (members == 0) members = 400; /* the documented default of the synthetic source */
    if (members < 1 || items < 2)
        return err_set(ERR_INPUT, "source synthetic needs members >= 1 and items >= 2 (got %lld and %lld)",
                       (long long)members, (long long)items);
    if (noise < 0 || noise > 1) return err_set(ERR_INPUT, "noise must be between 0 and 1, found %g", noise);
    if (inter <= 0) inter = 2 * history + 8;
    if (members * inter > 50000000)
        return err_set(ERR_INPUT, "synthetic: members x interactions = %lld events is above the limit of 50 million; "
                       "lower members or interactions", (long long)(members * inter));
    if (rs_tasks_from_params(c, params, synthetic_instruction, NULL, NULL)) return -1;
    drng r;
    drng_seed(&r, (uint64_t)seed ^ 0x5eed5eedull);

    c->n_items = (int)items;
    if (!(c->items = xcalloc((size_t)items, sizeof *c->items))) return -1;
    int *cat = xmalloc((size_t)items * sizeof *cat), *fmt = xmalloc((size_t)items * sizeof *fmt);
    int *by_cat[N_CAT] = {0}, n_by_cat[N_CAT] = {0};
    int rc = -1;
    if (!cat || !fmt) goto out;
    for (int64_t i = 0; i < items; i++) {
        rs_item *it = &c->items[i];
        cat[i] = (int)drng_below(&r, N_CAT);
        fmt[i] = (int)drng_below(&r, N_FMT);
        it->quality = (float)drng_normal(&r);
        it->id = (uint32_t)i;
        char *title = make_title(&r);
        if (!title) goto out;
        it->text = xasprintf("%s (%s, %s)", title, formats[fmt[i]], categories[cat[i]]);
        it->tags = xasprintf("%s|%s", categories[cat[i]], formats[fmt[i]]);
        free(title);
        if (!it->text || !it->tags) goto out;
    }
    for (int k = 0; k < N_CAT; k++) {
        if (!(by_cat[k] = xmalloc((size_t)items * sizeof(int)))) goto out;
        for (int64_t i = 0; i < items; i++)
            if (cat[i] == k) by_cat[k][n_by_cat[k]++] = (int)i;
    }
    c->n_members = (int)members;
    c->member_ids = xmalloc((size_t)members * sizeof *c->member_ids);
    c->member_text = xcalloc((size_t)members, sizeof *c->member_text);
    c->n_events = members * inter;
    c->events = xcalloc((size_t)c->n_events, sizeof *c->events);
    c->truth = xmalloc((size_t)c->n_events * (size_t)c->n_tasks * sizeof *c->truth);
    if (!c->member_ids || !c->member_text || !c->events || !c->truth) goto out;
    /* the categories' global appeal, shared by the tasks: a seeded permutation of evenly spaced values */
    double appeal[N_CAT];
    for (int k = 0; k < N_CAT; k++) appeal[k] = -1.5 + 3.0 * k / (N_CAT - 1);
    for (int k = N_CAT - 1; k > 0; k--) {
        int j = (int)drng_below(&r, (uint64_t)k + 1);
        double x = appeal[k];
        appeal[k] = appeal[j];
        appeal[j] = x;
    }
    int64_t e = 0;
    for (int64_t u = 0; u < members; u++) {
        c->member_ids[u] = (uint32_t)u;
        /* liked categories (2 of 8) per task */
        int liked_cat[RS_MAX_TASKS][2];
        for (int t = 0; t < c->n_tasks; t++) {
            liked_cat[t][0] = (int)drng_below(&r, N_CAT);
            liked_cat[t][1] = (liked_cat[t][0] + 1 + (int)drng_below(&r, N_CAT - 1)) % N_CAT;
        }
        int64_t t0 = 1500000000 + (int64_t)drng_below(&r, 86400 * 365);
        for (int64_t j = 0; j < inter; j++, e++) {
            rs_event *ev = &c->events[e];
            int it;
            int k = liked_cat[0][drng_below(&r, 2)];
            if (drng_uniform(&r) < 0.5 && n_by_cat[k]) it = by_cat[k][drng_below(&r, (uint64_t)n_by_cat[k])];
            else it = (int)drng_below(&r, (uint64_t)items);
            ev->member = (uint32_t)u;
            ev->item = (uint32_t)it;
            ev->value = NAN; /* labels are yes/no words, not ratings */
            ev->time = t0 + j * 86400 + (int64_t)drng_below(&r, 3600);
            /* the history shows every task's answer with the answer words: "like yes, save no" */
            char act[512] = "";
            size_t al = 0;
            for (int t = 0; t < c->n_tasks; t++) {
                int aff = cat[it] == liked_cat[t][0] || cat[it] == liked_cat[t][1];
                double logit = (1 - noise) * (1.5 * (aff ? 1 : -1) + appeal[cat[it]] + 0.5 * c->items[it].quality) -
                               0.3 * noise;
                double p = 1 / (1 + exp(-logit));
                c->truth[e * c->n_tasks + t] = (float)p;
                ev->in_task |= 1u << t;
                int yes = drng_uniform(&r) < p;
                if (yes) ev->yes |= 1u << t;
                al += (size_t)snprintf(act + al, al < sizeof act ? sizeof act - al : 0, "%s%s %s", t ? ", " : "",
                                       c->tasks[t].name, yes ? "yes" : "no");
            }
            if (al >= sizeof act) al = sizeof act - 1;
            act[al] = 0;
            int a = rs_action_id(c, act);
            if (a < 0) goto out;
            ev->action = (uint32_t)a;
        }
    }
    c->raw_events = c->n_events;
    c->raw_members = c->n_members;
    c->raw_items = c->n_items;
    rc = rs_sort_events(c);
out:
    for (int k = 0; k < N_CAT; k++) free(by_cat[k]);
    free(cat);
    free(fmt);
    return rc;
}
