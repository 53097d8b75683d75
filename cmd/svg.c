/* svg.c: inline-SVG charts (svg.h). Ticks: a linear axis takes a step of 1, 2 or 5 times a power
 * of ten giving 4 to 10 ticks and widens its range to multiples of it; a log axis widens its
 * range to 1-2-5 values and labels those (only the powers of ten beyond 10 of them). */
#include "cmd/svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cmd/util.h"

#define MARGIN_LEFT 70
#define MARGIN_RIGHT 14
#define MARGIN_TOP 30
#define MARGIN_BOTTOM 46
#define FONT "font-family=\"DejaVu Sans, Arial, sans-serif\""

const char *svg_color(int i) {
    static const char *const pal[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
    return pal[(i % 10 + 10) % 10];
}

void svg_range(double *lo, double *hi, const double *v, int n, int log) {
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i]) || (log && v[i] <= 0)) continue;
        if (isnan(*lo) || v[i] < *lo) *lo = v[i];
        if (isnan(*hi) || v[i] > *hi) *hi = v[i];
    }
}

int svg_longest(const char *const *names, int n) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (names[i] && text_width(names[i]) > m) m = text_width(names[i]);
    return m;
}

int svg_wide(double lo, double hi, double ratio) { return lo > 0 && hi > 0 && hi / lo > ratio; }

/* Compact tick labels: 950, 63.2K, 1.5M, 0.25, 1e-05; sizes 500 MB, 2 GB. */
static void tick_label(char *buf, size_t n, double v, int bytes) {
    double a = fabs(v);
    if (bytes) {
        static const char *const u[] = {"B", "KB", "MB", "GB", "TB", "PB"};
        int k = 0;
        while (a >= 1000 && k < 5) a /= 1000, v /= 1000, k++;
        snprintf(buf, n, "%g %s", v, u[k]);
    } else if (a >= 1e9) snprintf(buf, n, "%gB", v / 1e9);
    else if (a >= 1e6) snprintf(buf, n, "%gM", v / 1e6);
    else if (a >= 1e4) snprintf(buf, n, "%gK", v / 1e3);
    else snprintf(buf, n, "%.4g", v + 0.0);
}

static double nice_step(double span, int target) {
    double raw = span / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/* The 1-2-5 value at or below v (down) or at or above it. */
static double log125(double v, int down) {
    static const double mant[] = {1, 2, 5, 10};
    double p = pow(10, floor(log10(v)));
    if (down) {
        for (int i = 3; i >= 0; i--)
            if (mant[i] * p <= v * (1 + 1e-9)) return mant[i] * p;
        return p;
    }
    for (int i = 0; i < 4; i++)
        if (mant[i] * p >= v * (1 - 1e-9)) return mant[i] * p;
    return 10 * p;
}

/* Widens [lo, hi] for an axis and fills its ticks (at most 24). */
static int axis_ticks(double *lo, double *hi, int log, int integer, double *ticks) {
    if (isnan(*lo) || isnan(*hi)) *lo = log ? 1 : 0, *hi = log ? 10 : 1;
    if (log) {
        if (*hi <= *lo) *lo /= 2, *hi *= 2;
        *lo = log125(*lo, 1), *hi = log125(*hi, 0);
        int n = 0;
        for (double p = pow(10, floor(log10(*lo))); p <= *hi * (1 + 1e-9) && n < 24; p *= 10) {
            static const double mant[] = {1, 2, 5};
            for (int i = 0; i < 3 && n < 24; i++) {
                double v = mant[i] * p;
                if (v >= *lo * (1 - 1e-9) && v <= *hi * (1 + 1e-9)) ticks[n++] = v;
            }
        }
        if (n > 10) { /* keep the powers of ten */
            int k = 0;
            for (int i = 0; i < n; i++) {
                double m = ticks[i] / pow(10, floor(log10(ticks[i]) + 1e-9));
                if (fabs(m - 1) < 1e-6) ticks[k++] = ticks[i];
            }
            n = k;
        }
        return n;
    }
    if (*hi <= *lo) {
        double d = *lo != 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d, *hi += d;
    }
    double step = nice_step(*hi - *lo, 5);
    if (integer && step < 1) step = 1;
    *lo = floor(*lo / step + 1e-9) * step, *hi = ceil(*hi / step - 1e-9) * step;
    int n = 0;
    for (double v = *lo; v <= *hi + step * 1e-6 && n < 24; v += step) ticks[n++] = fabs(v) < step * 1e-9 ? 0 : v;
    return n;
}

static double px_x(const svg_plot *p, double v) {
    double t = p->xlog ? log10(v) : v, a = p->xlog ? log10(p->xmin) : p->xmin, b = p->xlog ? log10(p->xmax) : p->xmax;
    return p->left + (t - a) / (b - a) * p->w;
}

static double px_y(const svg_plot *p, double v) {
    double t = p->ylog ? log10(v) : v, a = p->ylog ? log10(p->ymin) : p->ymin, b = p->ylog ? log10(p->ymax) : p->ymax;
    return p->top + p->h - (t - a) / (b - a) * p->h;
}

static int point_ok(const svg_plot *p, double x, double y) {
    return isfinite(x) && isfinite(y) && (!p->xlog || x > 0) && (!p->ylog || y > 0);
}

void svg_begin(svg_plot *p, doc *d, const svg_axes *a) {
    memset(p, 0, sizeof *p);
    p->d = d;
    p->xlog = a->xlog, p->ylog = a->ylog;
    p->xmin = a->xmin, p->xmax = a->xmax, p->ymin = a->ymin, p->ymax = a->ymax;
    double xt[24], yt[24];
    int nx = axis_ticks(&p->xmin, &p->xmax, p->xlog, a->xint, xt), ny = axis_ticks(&p->ymin, &p->ymax, p->ylog, 0, yt);
    p->left = MARGIN_LEFT, p->top = MARGIN_TOP;
    p->w = a->width - MARGIN_LEFT - MARGIN_RIGHT;
    p->h = a->height - MARGIN_TOP - MARGIN_BOTTOM;
    const int width = a->width + (a->legend ? (int)(40 + 6.4 * a->legend) : 0);
    doc_printf(d, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" " FONT " font-size=\"11\">\n", width, a->height, width, a->height);
    doc_printf(d, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", width, a->height);
    doc_printf(d, "<text class=\"title\" x=\"%.1f\" y=\"18\" font-size=\"13\" font-weight=\"bold\">", p->left);
    /* bold 13 px: about 7.8 px per character; a longer title ends with an ellipsis */
    int fit = (int)((width - p->left - 8) / 7.8), tw = text_width(a->title);
    if (tw <= fit) doc_text(d, a->title);
    else {
        char buf[512];
        int keep = fit - 1, k = 0;
        for (const char *c = a->title; *c && k < (int)sizeof buf - 4; c++) {
            if (((unsigned char)*c & 0xC0) != 0x80 && keep-- <= 0) break;
            buf[k++] = *c;
        }
        snprintf(buf + k, sizeof buf - (size_t)k, "\xe2\x80\xa6");
        doc_text(d, buf);
    }
    doc_printf(d, "</text>\n");
    for (int i = 0; i < nx; i++) {
        double x = px_x(p, xt[i]);
        char lab[32];
        tick_label(lab, sizeof lab, xt[i], a->xbytes);
        doc_printf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#333\">%s</text>\n",
                   x, p->top, x, p->top + p->h, x, p->top + p->h + 14, lab);
    }
    for (int i = 0; i < ny; i++) {
        double y = px_y(p, yt[i]);
        char lab[32];
        tick_label(lab, sizeof lab, yt[i], 0);
        doc_printf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#333\">%s</text>\n",
                   p->left, y, p->left + p->w, y, p->left - 5, y + 4, lab);
    }
    doc_printf(d, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#555\"/>\n",
               p->left, p->top, p->w, p->h);
    doc_printf(d, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", p->left + p->w / 2,
               (double)a->height - 10);
    doc_text(d, a->xlabel);
    doc_printf(d, "</text>\n<text class=\"ylabel\" transform=\"translate(16 %.1f) rotate(-90)\" "
                  "text-anchor=\"middle\">", p->top + p->h / 2);
    doc_text(d, a->ylabel);
    doc_printf(d, "</text>\n");
}

void svg_line(svg_plot *p, const double *x, const double *y, int n, const char *color, int dashed, int step) {
    int started = 0;
    double ly = 0;
    for (int i = 0; i < n; i++) {
        if (!point_ok(p, x[i], y[i])) continue;
        double px = px_x(p, x[i]), py = px_y(p, y[i]);
        if (!started) doc_printf(p->d, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s d=\"M%.1f %.1f", color,
                                 dashed ? " stroke-dasharray=\"5 3\"" : "", px, py);
        else if (step) doc_printf(p->d, " L%.1f %.1f L%.1f %.1f", px, ly, px, py);
        else doc_printf(p->d, " L%.1f %.1f", px, py);
        started = 1, ly = py;
    }
    if (started) doc_printf(p->d, "\"/>\n");
}

static void add_box(svg_plot *p, double x0, double y0, double x1, double y1) {
    if (p->n_boxes >= SVG_MAX_BOXES) return;
    double *b = p->boxes[p->n_boxes++];
    b[0] = x0, b[1] = y0, b[2] = x1, b[3] = y1;
}

void svg_markers(svg_plot *p, const double *x, const double *y, int n, const char *color, int filled,
                 const char *const *labels) {
    for (int i = 0; i < n; i++) {
        if (!point_ok(p, x[i], y[i])) continue;
        double px = px_x(p, x[i]), py = px_y(p, y[i]);
        doc_printf(p->d, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1.5\"/>\n",
                   px, py, filled ? color : "#fff", color);
        add_box(p, px - 5, py - 5, px + 5, py + 5); /* labels keep off the points */
    }
    if (labels) svg_labels(p, x, y, n, labels);
}

static int overlaps(const svg_plot *p, const double *b) {
    for (int i = 0; i < p->n_boxes; i++) {
        const double *o = p->boxes[i];
        if (b[0] < o[2] && o[0] < b[2] && b[1] < o[3] && o[1] < b[3]) return 1;
    }
    return 0;
}

/* A point's label beside it: right-above, right-below, left-above, left-below, then further
 * away, the first spot that overlaps no earlier label or point and stays inside the plot. */
void svg_labels(svg_plot *p, const double *x, const double *y, int n, const char *const *labels) {
    for (int i = 0; i < n; i++) {
        if (!labels[i] || !point_ok(p, x[i], y[i])) continue;
        double px = px_x(p, x[i]), py = px_y(p, y[i]);
        const double w = 6.2 * (double)text_width(labels[i]), h = 12;
        double best[4] = {px + 7, py - 14, px + 7 + w, py - 2};
        int far = 0;
        for (int k = 0; k < 16; k++) {
            int left = k % 4 >= 2, below = k % 2;
            double x0 = left ? px - 7 - w : px + 7, y1 = below ? py + 14 + 12 * (k / 4) : py - 2 - 12 * (k / 4);
            double b[4] = {x0, y1 - h, x0 + w, y1};
            if (b[0] < p->left || b[2] > p->left + p->w + 40 || b[1] < p->top - 12 || b[3] > p->top + p->h + 12)
                continue;
            if (!overlaps(p, b)) {
                memcpy(best, b, sizeof best);
                far = k >= 4;
                break;
            }
        }
        add_box(p, best[0], best[1], best[2], best[3]);
        if (far) { /* a leader from the point to the label's nearer end */
            double lx = best[0] > px ? best[0] - 1 : best[2] + 1, ly = best[3] - 6;
            doc_printf(p->d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#aaa\"/>\n", px, py,
                       lx, ly);
        }
        doc_printf(p->d, "<text class=\"point\" x=\"%.1f\" y=\"%.1f\" fill=\"#222\">", best[0], best[3] - 3);
        doc_text(p->d, labels[i]);
        doc_printf(p->d, "</text>\n");
    }
}

void svg_legend_entry(svg_plot *p, const char *name, const char *color, int dashed, int marker) {
    double x = p->left + p->w + 14, y = p->top + 8 + 16 * p->n_legend++;
    if (marker)
        doc_printf(p->d, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>", x + 11, y, color);
    else
        doc_printf(p->d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>", x,
                   y, x + 22, y, color, dashed ? " stroke-dasharray=\"5 3\"" : "");
    doc_printf(p->d, "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", x + 28, y + 4);
    doc_text(p->d, name);
    doc_printf(p->d, "</text>\n");
}

void svg_note(svg_plot *p, const char *text) {
    doc_printf(p->d, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#777\">", p->left + p->w / 2,
               p->top + p->h / 2);
    doc_text(p->d, text);
    doc_printf(p->d, "</text>\n");
}

void svg_end(svg_plot *p) { doc_printf(p->d, "</svg>\n"); }
