/* schedule.c: warmup + cosine / linear learning-rate schedules (see schedule.h). */
#include "kernels/schedule.h"

#include <math.h>

double lr_schedule_at(const lr_schedule *s, long step) {
    if (step < s->warmup) return s->lr * (double)step / (double)(s->warmup > 1 ? s->warmup : 1);
    double span = (double)(s->total - s->warmup > 1 ? s->total - s->warmup : 1);
    double progress = (double)(step - s->warmup) / span, f = 1.0;
    switch (s->kind) {
    case LR_CONSTANT: return s->lr;
    case LR_COSINE: f = progress >= 1 ? 0.0 : 0.5 * (1.0 + cos(M_PI * progress)); break;
    case LR_LINEAR: f = progress >= 1 ? 0.0 : 1.0 - progress; break;
    }
    if (f < 0) f = 0;
    return s->lr * (s->min_lr_ratio + (1.0 - s->min_lr_ratio) * f);
}
