/* movielens.c: the `movielens` source. Reads GroupLens archives as downloaded (zip through
 * libarchive) or their extracted folders: the ml-latest / ml-20m / ml-25m layout (ratings.csv +
 * movies.csv, UTF-8 CSV) and the older ml-100k layout (u.data tab-separated, u.item pipe-separated
 * with Latin-1 titles, u.user and u.genre when present). Tasks: `like` (rating >= threshold) over
 * every movie, and any genre name (Comedy, Drama, ...) restricted to that genre's movies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "stages/data/source.h"
#include "stages/params.h"

#define ML_MAX_BYTES ((size_t)4 << 30)

typedef struct {
    double threshold;
} ml_ctx;

static char *ml_instruction(void *vctx, const char *name) {
    const ml_ctx *x = vctx;
    if (!strcmp(name, "like"))
        return xasprintf("Will the member rate the candidate movie %g stars or more? Answer yes or no.", x->threshold);
    return xasprintf("Will the member rate the candidate %s movie %g stars or more? Answer yes or no.", name,
                     x->threshold);
}

static const char *ml_filter(void *vctx, const char *name) {
    (void)vctx;
    return strcmp(name, "like") ? name : NULL;
}

/* "Toy Story (1995)" + "Adventure|Animation" -> "Toy Story (1995) (Adventure, Animation)" */
static char *item_text(const char *title, const char *genres) {
    strbuf sb = STRBUF_INIT;
    sb_puts(&sb, title);
    if (genres && genres[0] && strcmp(genres, "(no genres listed)")) {
        sb_puts(&sb, " (");
        for (const char *p = genres; *p; p++) {
            if (*p == '|') sb_puts(&sb, ", ");
            else sb_putc(&sb, *p);
        }
        sb_putc(&sb, ')');
    }
    return sb.buf ? sb_detach(&sb) : NULL;
}

static int add_item(rs_corpus *c, strmap *ids, const char *id_text, uint32_t id, const char *title, const char *genres,
                    const char *where) {
    int r = strmap_put(ids, id_text, c->n_items);
    if (r < 0) return -1;
    if (r == 1) return err_set(ERR_INPUT, "%s: movie id %s appears twice; each movie must be listed once", where, id_text);
    if ((c->n_items & (c->n_items - 1)) == 0) {
        rs_item *p = xrealloc(c->items, (size_t)(c->n_items ? 2 * c->n_items : 1) * sizeof *p);
        if (!p) return -1;
        c->items = p;
    }
    rs_item *it = &c->items[c->n_items];
    memset(it, 0, sizeof *it);
    it->id = id;
    it->text = item_text(title, genres);
    it->tags = xstrdup(genres ? genres : "");
    if (!it->text || !it->tags) {
        free(it->text);
        free(it->tags);
        return -1;
    }
    c->n_items++;
    return 0;
}

static int parse_id(const csv_reader *r, int col, const char *name, uint32_t *out) {
    int64_t v;
    if (csv_int64(r, col, name, &v)) return -1;
    if (v < 0 || v > UINT32_MAX - 1)
        return err_set(ERR_INPUT, "%s:%lld: %s %lld is out of range (0 .. 2^32-2)", r->name, (long long)r->line, name,
                       (long long)v);
    *out = (uint32_t)v;
    return 0;
}

static int add_event(rs_corpus *c, int64_t *cap, uint32_t member, uint32_t item, int64_t time, double rating,
                     double threshold) {
    if (c->n_events == *cap) {
        *cap = *cap ? 2 * *cap : 65536;
        rs_event *p = xrealloc(c->events, (size_t)*cap * sizeof *p);
        if (!p) return -1;
        c->events = p;
    }
    char act[32];
    snprintf(act, sizeof act, "rated %.1f", rating);
    int a = rs_action_id(c, act);
    if (a < 0) return -1;
    rs_event *e = &c->events[c->n_events++];
    memset(e, 0, sizeof *e);
    e->member = member; /* the source's user id for now; remapped to an index afterwards */
    e->item = item;
    e->time = time;
    e->action = (uint32_t)a;
    uint32_t all = c->n_tasks >= 32 ? UINT32_MAX : (1u << c->n_tasks) - 1;
    e->in_task = all; /* genre tasks are restricted by their filter in the builder */
    e->yes = rating >= threshold ? all : 0;
    e->value = (float)rating;
    return 0;
}

/* Users become indices 0..n-1 in increasing id order; events are then sorted by (member, time). */
static int index_members(rs_corpus *c) {
    uint32_t max_id = 0;
    for (int64_t i = 0; i < c->n_events; i++)
        if (c->events[i].member > max_id) max_id = c->events[i].member;
    /* ids are dense in every GroupLens release; bound the table anyway */
    if (max_id > 100000000u) return err_set(ERR_INPUT, "user id %u is above the supported 100,000,000", max_id);
    int32_t *idx = xmalloc(((size_t)max_id + 1) * sizeof *idx);
    if (!idx) return -1;
    for (uint32_t u = 0; u <= max_id; u++) idx[u] = -1;
    for (int64_t i = 0; i < c->n_events; i++) idx[c->events[i].member] = 0;
    int n = 0;
    for (uint32_t u = 0; u <= max_id; u++)
        if (idx[u] == 0) idx[u] = n++;
    c->n_members = n;
    c->member_ids = xmalloc((size_t)(n ? n : 1) * sizeof *c->member_ids);
    if (!c->member_ids) {
        free(idx);
        return -1;
    }
    for (uint32_t u = 0; u <= max_id; u++)
        if (idx[u] >= 0) c->member_ids[idx[u]] = u;
    for (int64_t i = 0; i < c->n_events; i++) c->events[i].member = (uint32_t)idx[c->events[i].member];
    free(idx);
    return rs_sort_events(c);
}

static int load_latest(rs_corpus *c, const char *path, double threshold, char *ratings, size_t rlen,
                       const char *rname) {
    char *movies = NULL, *mname = NULL;
    size_t mlen;
    int found, rc = -1;
    strmap ids = {0};
    csv_reader r;
    memset(&r, 0, sizeof r);
    if (rs_bundle_read(path, "movies.csv", ML_MAX_BYTES, &movies, &mlen, &mname, &found)) goto out;
    if (!found) {
        err_set(ERR_INPUT, "%s has ratings.csv but no movies.csv; the MovieLens layout needs both", path);
        goto out;
    }
    csv_init(&r, mname, movies, mlen, ',', 1);
    int st = csv_next(&r), ci, ct, cg;
    if (st <= 0) {
        if (st == 0) err_set(ERR_INPUT, "%s is empty; it needs the header movieId,title,genres", mname);
        goto out;
    }
    if ((ci = csv_column(&r, "movieId", 1)) < 0 || (ct = csv_column(&r, "title", 1)) < 0 ||
        (cg = csv_column(&r, "genres", 1)) < 0)
        goto out;
    while ((st = csv_next(&r)) > 0) {
        uint32_t id;
        if (parse_id(&r, ci, "movieId", &id)) goto out;
        if (ct >= r.n_fields || cg >= r.n_fields) {
            err_set(ERR_INPUT, "%s:%lld: %d fields, expected movieId,title,genres", mname, (long long)r.line, r.n_fields);
            goto out;
        }
        char *where_full = xasprintf("%s:%lld", mname, (long long)r.line);
        int e = !where_full || add_item(c, &ids, r.fields[ci], id, r.fields[ct], r.fields[cg], where_full);
        free(where_full);
        if (e) goto out;
    }
    if (st < 0) goto out;
    csv_free(&r);
    csv_init(&r, rname, ratings, rlen, ',', 1);
    int cu, cm, cr, cts;
    st = csv_next(&r);
    if (st <= 0) {
        if (st == 0) err_set(ERR_INPUT, "%s is empty; it needs the header userId,movieId,rating,timestamp", rname);
        goto out;
    }
    if ((cu = csv_column(&r, "userId", 1)) < 0 || (cm = csv_column(&r, "movieId", 1)) < 0 ||
        (cr = csv_column(&r, "rating", 1)) < 0 || (cts = csv_column(&r, "timestamp", 1)) < 0)
        goto out;
    int64_t cap = 0;
    while ((st = csv_next(&r)) > 0) {
        uint32_t user, movie;
        double rating;
        int64_t ts;
        if (parse_id(&r, cu, "userId", &user) || parse_id(&r, cm, "movieId", &movie) ||
            csv_double(&r, cr, "rating", &rating) || csv_int64(&r, cts, "timestamp", &ts))
            goto out;
        if (rating < 0 || rating > 10) {
            err_set(ERR_INPUT, "%s:%lld: rating %g is outside 0..10", rname, (long long)r.line, rating);
            goto out;
        }
        int32_t it = strmap_get(&ids, r.fields[cm]);
        if (it < 0) {
            err_set(ERR_INPUT, "%s:%lld: movieId %s is not in %s; the two files must come from the same release",
                    rname, (long long)r.line, r.fields[cm], mname);
            goto out;
        }
        if (add_event(c, &cap, user, (uint32_t)it, ts, rating, threshold)) goto out;
    }
    if (st < 0) goto out;
    rc = 0;
out:
    csv_free(&r);
    strmap_free(&ids);
    free(movies);
    free(mname);
    return rc;
}

/* Latin-1 bytes to UTF-8 (each byte >= 0x80 becomes two bytes). */
static char *latin1_to_utf8(const char *s, size_t n, size_t *out_len) {
    char *o = xmalloc(2 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x80) o[k++] = (char)ch;
        else o[k++] = (char)(0xc0 | ch >> 6), o[k++] = (char)(0x80 | (ch & 0x3f));
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

static const char *const ml100k_genres[19] = {"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                                              "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                                              "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"};

static int load_100k(rs_corpus *c, const char *path, double threshold, char *data, size_t dlen, const char *dname,
                     char ***profiles, uint32_t *n_prof) {
    char *raw = NULL, *items = NULL, *iname = NULL, *users = NULL, *uname = NULL;
    size_t rawlen, ilen, ulen;
    int found, rc = -1;
    strmap ids = {0};
    csv_reader r;
    memset(&r, 0, sizeof r);
    strbuf genres = STRBUF_INIT;
    if (rs_bundle_read(path, "u.item", ML_MAX_BYTES, &raw, &rawlen, &iname, &found)) goto out;
    if (!found) {
        err_set(ERR_INPUT, "%s has u.data but no u.item; the ml-100k layout needs both", path);
        goto out;
    }
    if (!(items = latin1_to_utf8(raw, rawlen, &ilen))) goto out;
    csv_init(&r, iname, items, ilen, '|', 0);
    int st;
    while ((st = csv_next(&r)) > 0) {
        uint32_t id;
        if (parse_id(&r, 0, "movie id", &id)) goto out;
        if (r.n_fields != 24) {
            err_set(ERR_INPUT, "%s:%lld: %d fields, expected 24 (id|title|release|video|url|19 genre flags)", iname,
                    (long long)r.line, r.n_fields);
            goto out;
        }
        sb_reset(&genres);
        for (int g = 0; g < 19; g++) {
            const char *f = r.fields[5 + g];
            if (strcmp(f, "0") && strcmp(f, "1")) {
                err_set(ERR_INPUT, "%s:%lld: genre flag %d is '%s', expected 0 or 1", iname, (long long)r.line, g, f);
                goto out;
            }
            if (f[0] == '1') sb_printf(&genres, "%s%s", genres.len ? "|" : "", ml100k_genres[g]);
        }
        char *where = xasprintf("%s:%lld", iname, (long long)r.line);
        int e = !where || add_item(c, &ids, r.fields[0], id, r.fields[1], sb_str(&genres), where);
        free(where);
        if (e) goto out;
    }
    if (st < 0) goto out;
    csv_free(&r);
    csv_init(&r, dname, data, dlen, '\t', 0);
    int64_t cap = 0;
    while ((st = csv_next(&r)) > 0) {
        uint32_t user, movie;
        double rating;
        int64_t ts;
        if (r.n_fields != 4) {
            err_set(ERR_INPUT, "%s:%lld: %d fields, expected 4 (user, item, rating, timestamp separated by tabs)", dname,
                    (long long)r.line, r.n_fields);
            goto out;
        }
        if (parse_id(&r, 0, "user id", &user) || parse_id(&r, 1, "item id", &movie) ||
            csv_double(&r, 2, "rating", &rating) || csv_int64(&r, 3, "timestamp", &ts))
            goto out;
        int32_t it = strmap_get(&ids, r.fields[1]);
        if (it < 0) {
            err_set(ERR_INPUT, "%s:%lld: item id %s is not in %s", dname, (long long)r.line, r.fields[1], iname);
            goto out;
        }
        if (add_event(c, &cap, user, (uint32_t)it, ts, rating, threshold)) goto out;
    }
    if (st < 0) goto out;
    /* member profiles from u.user (age|gender|occupation|zip), when present, by user id */
    if (rs_bundle_read(path, "u.user", ML_MAX_BYTES, &users, &ulen, &uname, &found)) goto out;
    if (found) {
        csv_free(&r);
        csv_init(&r, uname, users, ulen, '|', 0);
        while ((st = csv_next(&r)) > 0) {
            uint32_t uid;
            if (parse_id(&r, 0, "user id", &uid)) goto out;
            if (r.n_fields != 5) {
                err_set(ERR_INPUT, "%s:%lld: %d fields, expected 5 (id|age|gender|occupation|zip)", uname,
                        (long long)r.line, r.n_fields);
                goto out;
            }
            if (uid > 10000000u) {
                err_set(ERR_INPUT, "%s:%lld: user id %u is above 10,000,000", uname, (long long)r.line, uid);
                goto out;
            }
            if (uid >= *n_prof) {
                uint32_t n = uid + 1 > 2 * *n_prof ? uid + 1 : 2 * *n_prof;
                char **p = xrealloc(*profiles, (size_t)n * sizeof *p);
                if (!p) goto out;
                memset(p + *n_prof, 0, (size_t)(n - *n_prof) * sizeof *p);
                *profiles = p;
                *n_prof = n;
            }
            free((*profiles)[uid]);
            if (!((*profiles)[uid] = xasprintf("Member %u: age %s, %s, %s", uid, r.fields[1], r.fields[2], r.fields[3])))
                goto out;
        }
        if (st < 0) goto out;
    }
    rc = 0;
out:
    csv_free(&r);
    strmap_free(&ids);
    sb_free(&genres);
    free(raw);
    free(items);
    free(iname);
    free(users);
    free(uname);
    return rc;
}

int movielens_load(rs_corpus *c, const cJSON *params) {
    const char *path;
    double threshold;
    if (param_string(params, "path", &path) || param_float(params, "threshold", &threshold)) return -1;
    ml_ctx x = {threshold};
    if (rs_tasks_from_params(c, params, ml_instruction, ml_filter, &x)) return -1;
    char *data = NULL, *name = NULL, **profiles = NULL;
    uint32_t n_prof = 0;
    size_t len;
    int found, rc = -1;
    if (rs_bundle_read(path, "ratings.csv", ML_MAX_BYTES, &data, &len, &name, &found)) return -1;
    if (found) {
        rc = load_latest(c, path, threshold, data, len, name);
    } else {
        if (rs_bundle_read(path, "u.data", ML_MAX_BYTES, &data, &len, &name, &found)) return -1;
        if (!found) {
            err_set(ERR_INPUT, "%s holds neither ratings.csv (ml-latest, ml-25m) nor u.data (ml-100k); give a "
                    "GroupLens MovieLens zip or its extracted folder", path);
            goto out;
        }
        rc = load_100k(c, path, threshold, data, len, name, &profiles, &n_prof);
    }
    if (rc) goto out;
    c->raw_events = c->n_events;
    c->raw_items = c->n_items;
    rc = index_members(c);
    if (rc) goto out;
    c->raw_members = c->n_members;
    if (profiles) {
        if (!(c->member_text = xcalloc((size_t)(c->n_members ? c->n_members : 1), sizeof *c->member_text))) goto out;
        for (int m = 0; m < c->n_members; m++) {
            uint32_t id = c->member_ids[m];
            if (id < n_prof && profiles[id]) c->member_text[m] = profiles[id], profiles[id] = NULL;
        }
    }
    /* a genre task must name a genre some movie has */
    for (int t = 0; t < c->n_tasks; t++) {
        const char *f = c->tasks[t].filter;
        if (!f) continue;
        int any = 0;
        for (int i = 0; i < c->n_items && !any; i++) {
            for (const char *p = c->items[i].tags; p && *p && !any;) {
                const char *bar = strchr(p, '|');
                size_t l = bar ? (size_t)(bar - p) : strlen(p);
                any = l == strlen(f) && !memcmp(p, f, l);
                p = bar ? bar + 1 : NULL;
            }
        }
        if (!any) {
            rc = err_set(ERR_INPUT, "task '%s': no movie has the genre '%s'; use like or a genre such as Comedy, Drama, "
                         "Action (names as in the data, case-sensitive)", c->tasks[t].name, f);
            goto out;
        }
    }
out:
    for (uint32_t i = 0; i < n_prof; i++) free(profiles[i]);
    free(profiles);
    free(data);
    free(name);
    return rc;
}
