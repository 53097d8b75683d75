/* bench_store.c: how fast `smelt query` answers over a large store. Builds a store with
 * RUNS runs x 6 stages x POINTS metric points (default 1,000 x 6 x 1,000 = 6 million points),
 * then times the latest value of one metric across all runs three ways: the latest_metrics
 * view (maintained on write), the same answer computed from the raw metrics (the naive query a
 * store without metric_latest would need), and the whole `smelt query` process.
 * Usage: bench_store [DIR] [RUNS] [POINTS]   (prints a table; asserts nothing) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "store/runs.h"
#include "store/store.h"

static const char *const stage_names[6] = {"data", "teacher", "student", "prune", "quantize", "evaluate"};

static double time_query(store *s, const char *sql, int *rows) {
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        sqlite3_stmt *st;
        double t0 = time_monotonic();
        if (store_prepare(s, &st, sql)) {
            fprintf(stderr, "%s\n", err_msg());
            exit(1);
        }
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) n++;
        sqlite3_finalize(st);
        double t = time_monotonic() - t0;
        if (t < best) best = t;
        *rows = n;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp/smelt-bench-store";
    int runs = argc > 2 ? atoi(argv[2]) : 1000, points = argc > 3 ? atoi(argv[3]) : 1000;
    store *s;
    int fresh = !store_exists(dir);
    if (store_open(&s, dir, STORE_CREATE)) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    if (fresh) {
        double t0 = time_monotonic();
        metric_point *pts = malloc(sizeof *pts * (size_t)points * 2);
        for (int r = 0; r < runs; r++) {
            char id[RUN_ID_MAX];
            snprintf(id, sizeof id, "20260101-%06d-bnch", r);
            if (store_run_create(s, id, "bench", NULL, "smelt: 1\n", "[]", 1)) {
                fprintf(stderr, "%s\n", err_msg());
                return 1;
            }
            int bad = store_begin(s);
            for (int k = 0; k < 6 && !bad; k++) {
                bad = store_stage_create(s, id, stage_names[k], "command", 1, k, 1, 0);
                for (int p = 0; p < points; p++) {
                    pts[2 * p] = (metric_point){"loss", p, 1.0 / (1 + p) + r * 1e-6};
                    pts[2 * p + 1] = (metric_point){"auc", p, 0.5 + 0.4 * p / points + k * 1e-3 + r * 1e-7};
                }
                if (!bad) bad = store_metrics_put(s, id, stage_names[k], pts, points * 2);
            }
            if (bad || store_commit(s)) {
                fprintf(stderr, "%s\n", err_msg());
                return 1;
            }
            if ((r + 1) % 100 == 0) fprintf(stderr, "built %d runs (%.0fs)\n", r + 1, time_monotonic() - t0);
        }
        free(pts);
        printf("built %d runs x 6 stages x %d points x 2 metrics in %.1fs\n", runs, points, time_monotonic() - t0);
    }
    struct stat sb;
    char *db = fs_join(dir, "smelt.db");
    stat(db, &sb);
    printf("store %s: %.0f MB\n", db, sb.st_size / 1e6);
    free(db);
    int rows;
    double fast = time_query(s, "SELECT run_id, stage, value FROM latest_metrics WHERE key = 'auc'", &rows);
    printf("%-58s %8.2f ms  (%d rows)\n", "latest auc, every run and stage (latest_metrics view)", fast * 1e3, rows);
    double best = time_query(s, "SELECT run_id, value FROM latest_metrics WHERE key = 'auc' AND stage = 'evaluate' "
                                "ORDER BY value DESC LIMIT 1", &rows);
    printf("%-58s %8.2f ms  (%d rows)\n", "best run by latest auc of one stage (latest_metrics)", best * 1e3, rows);
    double naive = time_query(s, "SELECT m.run_id, m.stage, m.value FROM metrics m JOIN (SELECT run_id, stage, "
                                 "max(step) AS step FROM metrics WHERE key = 'auc' GROUP BY run_id, stage) x ON "
                                 "x.run_id = m.run_id AND x.stage = m.stage AND x.step = m.step WHERE m.key = 'auc'",
                              &rows);
    printf("%-58s %8.2f ms  (%d rows)\n", "same answer from raw metrics (no latest table)", naive * 1e3, rows);
    store_close(s);
    return 0;
}
