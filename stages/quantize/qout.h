/* qout.h: the output of the `quantize` stage: the quantized checkpoint in the asked format, the
 * tokenizer files beside it, and the totals (bytes, bits_per_weight, rel_error_mean). */
#ifndef SMELT_STAGES_QUANTIZE_QOUT_H
#define SMELT_STAGES_QUANTIZE_QOUT_H

#include "stages/quantize/qstage.h"

/* Writes dir (rank 0). model_path: the input model, whose tokenizer files are copied. 0 or -1. */
int qout_write(const char *dir, qrun *qr, const char *model_path);

#endif
