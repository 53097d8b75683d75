/* key.h: cache keys. key = sha256 of canonical JSON {kind, version, seed, params} where
 * params has defaults filled, keys sorted, and every stage reference replaced by the digest
 * of the artifact it names (a Merkle chain through the DAG). Stage names, comments, key
 * order, ranks, retries and resources never enter a key. */
#ifndef SMELT_PIPELINE_KEY_H
#define SMELT_PIPELINE_KEY_H

#include <cjson/cJSON.h>

#include "common/strbuf.h"
#include "pipeline/recipe.h"

/* Canonical JSON: objects with sorted keys, no whitespace, integers without exponent,
 * other numbers with 17 significant digits, strings with minimal escapes. */
int canon_json(strbuf *sb, const cJSON *v);

/* The input digests of a stage, one per reference, in st->refs order. */
typedef struct {
    char digest[65];
} ref_digest;

/* Builds the key JSON and its sha256. ref_digests: one per st->refs; path_digests: the content
 * digest of each st->paths (key_path_digests). *key_json is owned by the caller. */
int key_compute(const recipe_stage *st, const ref_digest *ref_digests, const ref_digest *path_digests,
                char **key_json, char key[65]);
/* Hashes the content of every external file or folder a stage names (P_PATH parameters);
 * *out is allocated with st->n_paths entries (caller frees). ERR_INPUT names a vanished path. */
int key_path_digests(const recipe_stage *st, ref_digest **out);
/* The resolved parameters a stage process reads: the typed params plus "seed". */
int key_params_json(const recipe_stage *st, char **params_json);

/* Field-level difference of two key JSONs: appends "path: old -> new" lines to sb and
 * returns how many fields differ (-1 on error). */
int key_diff(strbuf *sb, const char *old_json, const char *new_json);

#endif
