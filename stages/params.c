/* params.c: reading resolved stage parameters by dotted path. */
#include "stages/params.h"

#include <math.h>
#include <string.h>

#include "common/error.h"

const cJSON *param_get(const cJSON *params, const char *path) {
    const cJSON *cur = params;
    char key[256];
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof key) return NULL;
        memcpy(key, path, n);
        key[n] = 0;
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, key) : NULL;
        path += n + (dot ? 1 : 0);
    }
    return cur;
}

int param_int(const cJSON *params, const char *path, int64_t *out) {
    const cJSON *v = param_get(params, path);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return err_set(ERR_INPUT, "parameter '%s' is missing or not an integer", path);
    *out = (int64_t)v->valuedouble;
    return 0;
}

int param_float(const cJSON *params, const char *path, double *out) {
    const cJSON *v = param_get(params, path);
    if (!cJSON_IsNumber(v)) return err_set(ERR_INPUT, "parameter '%s' is missing or not a number", path);
    *out = v->valuedouble;
    return 0;
}

int param_bool(const cJSON *params, const char *path, int *out) {
    const cJSON *v = param_get(params, path);
    if (!cJSON_IsBool(v)) return err_set(ERR_INPUT, "parameter '%s' is missing or not true/false", path);
    *out = cJSON_IsTrue(v);
    return 0;
}

int param_string(const cJSON *params, const char *path, const char **out) {
    const cJSON *v = param_get(params, path);
    if (!cJSON_IsString(v)) return err_set(ERR_INPUT, "parameter '%s' is missing or not a string", path);
    *out = v->valuestring;
    return 0;
}
