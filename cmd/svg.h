/* svg.h: small inline-SVG charts for the HTML pages of `smelt report` and `smelt compare`: a
 * frame with nice ticks (linear, or logarithmic with 1-2-5 subdivisions), labelled axes and a
 * title, then lines (straight or steps), markers with optional labels, and a legend on the right.
 * No script, no network: the page renders as is. */
#ifndef SMELT_CMD_SVG_H
#define SMELT_CMD_SVG_H

#include "cmd/rtable.h"

#define SVG_MAX_BOXES 512

typedef struct {
    const char *title, *xlabel, *ylabel; /* labels say the unit: "TTFT p50 (ms)" */
    int width, height;                    /* of the svg without its legend column, in px */
    int xlog, ylog;
    int xint;                             /* integer ticks only on x (layers, steps) */
    int xbytes;                           /* x ticks as sizes: 500 MB, 2 GB */
    double xmin, xmax, ymin, ymax;        /* the data's range (svg_range); widened to nice ticks */
    int legend;                           /* a legend column on the right for names this long (chars) */
} svg_axes;

typedef struct {
    doc *d;
    double left, top, w, h;               /* the plot area in px */
    double xmin, xmax, ymin, ymax;        /* after widening (log axes: the values, not logs) */
    int xlog, ylog, n_legend;
    int n_boxes;                          /* points and labels placed so far (labels avoid them) */
    double boxes[SVG_MAX_BOXES][4];       /* x0, y0, x1, y1 */
} svg_plot;

/* Widens [*lo, *hi] (start both at NAN) over the finite values of v (positive ones on a log axis). */
void svg_range(double *lo, double *hi, const double *v, int n, int log);
/* 1 when a positive range spans more than `ratio` (choose a log axis). */
int svg_wide(double lo, double hi, double ratio);
void svg_begin(svg_plot *p, doc *d, const svg_axes *a);
/* A polyline through the finite points; step: horizontal then vertical (a CDF, a Pareto front). */
void svg_line(svg_plot *p, const double *x, const double *y, int n, const char *color, int dashed, int step);
/* Circles (filled or hollow), then their labels (labels may be NULL). */
void svg_markers(svg_plot *p, const double *x, const double *y, int n, const char *color, int filled,
                 const char *const *labels);
/* Labels beside points, placed off the points and labels drawn so far (draw every series' markers
 * first, then the labels). */
void svg_labels(svg_plot *p, const double *x, const double *y, int n, const char *const *labels);
/* One legend entry (the plot must have been begun with legend set to its longest name's length). */
void svg_legend_entry(svg_plot *p, const char *name, const char *color, int dashed, int marker);
/* A sentence inside the plot area (for a plot that has no data). */
void svg_note(svg_plot *p, const char *text);
void svg_end(svg_plot *p);
/* The length of the longest of n names, in characters (for svg_axes.legend). */
int svg_longest(const char *const *names, int n);
/* The i-th color of a palette that stays distinguishable for 10 series. */
const char *svg_color(int i);

#endif
