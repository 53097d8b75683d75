/* embedding.h: token embedding lookup (gather) and its gradient (scatter-add). Token ids are
 * trusted here: the model checks them against the vocabulary before calling. */
#ifndef SMELT_KERNELS_EMBEDDING_H
#define SMELT_KERNELS_EMBEDDING_H

/* out: [n, dim] ASSIGNED rows table[tokens[i]]; table: [vocab, dim]; tokens: [n]. */
void embedding_forward(float *out, const float *table, const int *tokens, int n, int dim);
/* dtable: [vocab, dim] ACCUMULATED: dtable[tokens[i]] += dout[i]. Each column block is summed by one
 * thread in row order: repeated tokens never race and the result does not depend on threads. */
void embedding_backward(float *dtable, const float *dout, const int *tokens, int n, int dim);

void embedding_forward_ref(float *out, const float *table, const int *tokens, int n, int dim);
void embedding_backward_ref(float *dtable, const float *dout, const int *tokens, int n, int dim);

#endif
