/* params.h: parameter schemas of stage kinds. The recipe validator (pipeline/) checks every
 * stage against its kind's schema and fills defaults; the stage reads the result as JSON. */
#ifndef SMELT_STAGES_PARAMS_H
#define SMELT_STAGES_PARAMS_H

#include <cjson/cJSON.h>
#include <stdint.h>

typedef enum {
    P_INT,    /* integer */
    P_FLOAT,  /* number (integers accepted) */
    P_BOOL,   /* true/false (on/off, yes/no accepted in recipes) */
    P_STRING, /* text; `choices` restricts it */
    P_SCALAR, /* any scalar, typed by YAML's core schema (free-form values) */
    P_REF,    /* a stage reference: "stage" (its main output) or "stage.output"; never contains '/' */
    P_PATH,   /* an existing file or directory outside the store, relative to the recipe's folder;
               * the stage reads the absolute path, the cache key holds the content's digest */
    P_MAP,    /* a mapping: with `fields` a fixed schema, else free keys whose values are `elem` */
    P_LIST,   /* a sequence of `elem` values */
    P_UNION,  /* the first of `alts` whose shape fits (a reference or a mapping, say); among several
               * fixed-schema mapping alternatives, the one whose first field is a key of the mapping */
} param_type;

typedef struct param_spec param_spec;
struct param_spec {
    const char *name;
    param_type type;
    int required;
    const char *def;                 /* default as YAML text ("0.01", "cosine", "[]"); NULL: none */
    const char *help;                /* one line, shown in errors and docs */
    int has_min, has_max;
    double min, max;                 /* bounds for P_INT and P_FLOAT */
    const char *const *choices;      /* NULL-terminated, for P_STRING */
    const param_spec *fields;        /* P_MAP with a fixed schema: NULL-name-terminated */
    const param_spec *elem;          /* P_LIST, free-form P_MAP: the element schema */
    const param_spec *alts;          /* P_UNION: NULL-name-terminated alternatives */
    int min_items;                   /* P_LIST: fewest entries (0: any) */
    int increasing;                  /* P_LIST of P_INT: strictly increasing (no repeats) */
};

/* Helpers for reading resolved parameters (a cJSON object) by dotted path ("optim.lr").
 * Each returns 0 or -1 (ERR_INPUT naming the path) when missing or of the wrong type. */
const cJSON *param_get(const cJSON *params, const char *path);
int param_int(const cJSON *params, const char *path, int64_t *out);
int param_float(const cJSON *params, const char *path, double *out);
int param_bool(const cJSON *params, const char *path, int *out);
int param_string(const cJSON *params, const char *path, const char **out);

#endif
