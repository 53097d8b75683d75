/* report_plots.h: the figures of the HTML report, each an inline SVG in a <figure> with a
 * caption: AUC against parameters and against TTFT with the Pareto front, per-layer pruning and
 * quantization errors, training loss curves, latency distributions and per-layer serving time.
 * Each returns how many figures it wrote, or -1 (a store read failed; the error slot says why);
 * a figure whose data is absent is left out. */
#ifndef SMELT_CMD_REPORT_PLOTS_H
#define SMELT_CMD_REPORT_PLOTS_H

#include "cmd/report_data.h"
#include "cmd/rtable.h"

int plot_auc_tradeoffs(doc *d, const rmodel *ms, int n);
int plot_pruning(doc *d, const rrun *r, store *s);
int plot_quantization(doc *d, const rrun *r, store *s);
int plot_training(doc *d, const rrun *r, store *s);
int plot_latency(doc *d, const rrun *r, store *s);

#endif
