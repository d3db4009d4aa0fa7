/* recipe.c - `--recipe FILE.yaml`: conversion options and per-tensor
 * overrides in one file, read with libyaml. The schema is in the README
 * (section "Recipes"); an unknown key is an error naming its line. */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "cli.h"
#include "convert.h"

typedef struct {
    yaml_parser_t p;
    yaml_event_t ev;
    const char *path;
    char *err;
    size_t errlen;
} reader;

static int next(reader *r)
{
    yaml_event_delete(&r->ev);
    if (!yaml_parser_parse(&r->p, &r->ev)) {
        snprintf(r->err, r->errlen, "%s:%zu: %s", r->path, r->p.problem_mark.line + 1,
                 r->p.problem ? r->p.problem : "YAML syntax error");
        return -1;
    }
    return 0;
}

static size_t line(const reader *r) { return r->ev.start_mark.line + 1; }

static int fail(reader *r, const char *what, const char *key)
{
    snprintf(r->err, r->errlen, "%s:%zu: %s%s%s", r->path, line(r), what, key ? " " : "", key ? key : "");
    return -1;
}

/* The current event as a scalar string (valid until the next event). */
static const char *scalar(reader *r)
{
    return r->ev.type == YAML_SCALAR_EVENT ? (const char *)r->ev.data.scalar.value : NULL;
}

/* Shared with the command line, so both refuse the same values. */
int option_tiers(const char *s, double split[3])
{
    double a, b, c;
    char extra;
    if (sscanf(s, "%lf:%lf:%lf%c", &a, &b, &c, &extra) != 3 || !(a >= 0 && a <= 100) || !(b >= 0 && b <= 100) ||
        !(c >= 0 && c <= 100) || fabs(a + b + c - 100) > 1e-6) /* written so that NaN fails */
        return -1;
    split[0] = a / 100, split[1] = b / 100, split[2] = c / 100;
    return 0;
}

int option_group_size(uint64_t g) { return g == 32 || g == 64 || g == 128 || g == 256 ? 0 : -1; }

int option_refine(uint64_t bits) { return bits == 1 || bits == 2 || bits == 4 || bits == 8 ? 0 : -1; }

static int parse_number(reader *r, const char *key, double lo, double hi, double *v)
{
    const char *s = scalar(r);
    char *end;
    if (!s) return fail(r, "expected a number for", key);
    *v = strtod(s, &end);
    if (!*s || *end || !(*v >= lo && *v <= hi)) return fail(r, "value out of range for", key);
    return 0;
}

/* An integer in lo..hi (written as a number, e.g. 64 or 6.4e1) that valid,
 * if given, accepts; else an error saying it must be what range says. */
static int parse_int(reader *r, const char *key, double lo, double hi, int (*valid)(uint64_t), const char *range, double *out)
{
    double v;
    if (parse_number(r, key, lo, hi, &v) || v != floor(v) || (valid && valid((uint64_t)v)))
        return fail(r, key, range);
    *out = v;
    return 0;
}

static int parse_group_size(reader *r, const char *key, uint32_t *g)
{
    double v;
    if (parse_int(r, key, 32, 256, option_group_size, "must be 32, 64, 128 or 256", &v)) return -1;
    *g = (uint32_t)v;
    return 0;
}

static int parse_policy_name(reader *r, const char *key, dense_policy *p)
{
    static const char *names[] = {"source", "f16", "q8", "q4", "q2"};
    const char *s = scalar(r);
    for (int i = 0; s && i < 5; i++)
        if (strcmp(s, names[i]) == 0) return *p = (dense_policy)i, 0;
    return fail(r, "expected source, f16, q8, q4 or q2 for", key);
}

static int parse_split(reader *r, const char *key, double split[3])
{
    const char *s = scalar(r);
    if (!s || option_tiers(s, split)) return fail(r, "expected \"Q8:Q4:Q2\" percentages in 0..100 summing to 100 for", key);
    return 0;
}

/* One entry of `tensors:`, a mapping with `match` and one override. */
static int parse_rule(reader *r, tensor_rule *t)
{
    memset(t, 0, sizeof *t);
    if (r->ev.type != YAML_MAPPING_START_EVENT) return fail(r, "each tensors entry must be a mapping", NULL);
    for (;;) {
        if (next(r)) return -1;
        if (r->ev.type == YAML_MAPPING_END_EVENT) break;
        char key[64];
        const char *k = scalar(r);
        if (!k) return fail(r, "expected a key", NULL);
        snprintf(key, sizeof key, "%s", k);
        if (next(r)) return -1;
        if (strcmp(key, "match") == 0) {
            const char *s = scalar(r);
            if (!s || !*s || strlen(s) >= sizeof t->match) return fail(r, "expected a tensor name pattern for", key);
            snprintf(t->match, sizeof t->match, "%s", s);
        } else if (strcmp(key, "policy") == 0) {
            if (parse_policy_name(r, key, &t->policy)) return -1;
            t->has_policy = 1;
        } else if (strcmp(key, "tiers") == 0) {
            if (parse_split(r, key, t->split)) return -1;
            t->has_split = 1;
        } else if (strcmp(key, "group_size") == 0) {
            if (parse_group_size(r, key, &t->group_size)) return -1;
        } else {
            return fail(r, "unknown key", key);
        }
    }
    if (!t->match[0]) return fail(r, "tensors entry without match", NULL);
    return 0;
}

static int parse_rules(reader *r, quant_opts *q)
{
    if (r->ev.type != YAML_SEQUENCE_START_EVENT) return fail(r, "tensors must be a list", NULL);
    for (;;) {
        if (next(r)) return -1;
        if (r->ev.type == YAML_SEQUENCE_END_EVENT) return 0;
        if (q->n_rules >= RECIPE_MAX_RULES) {
            snprintf(r->err, r->errlen, "%s:%zu: more than %d tensors entries", r->path, line(r), RECIPE_MAX_RULES);
            return -1;
        }
        tensor_rule *rules = realloc(q->rules, (q->n_rules + 1) * sizeof *rules);
        if (!rules) return fail(r, "out of memory", NULL);
        q->rules = rules;
        if (parse_rule(r, &q->rules[q->n_rules])) return -1;
        q->n_rules++;
    }
}

static int parse_top(reader *r, recipe_opts *o, quant_opts *q, const char *key)
{
    double v;
    if (strcmp(key, "tensors") == 0) return parse_rules(r, q);
    if (strcmp(key, "scheme") == 0) {
        const char *s = scalar(r);
        if (!s || (strcmp(s, "lattice") && strcmp(s, "tiered"))) return fail(r, "expected lattice or tiered for", key);
        o->scheme = strcmp(s, "lattice") == 0;
        return 0;
    }
    if (strcmp(key, "tiers") == 0 || strcmp(key, "group_size") == 0 || strcmp(key, "refine") == 0) o->tiered = 1;
    if (strcmp(key, "tiers") == 0) return parse_split(r, key, q->split);
    if (strcmp(key, "embed") == 0) return parse_policy_name(r, key, &q->embed);
    if (strcmp(key, "head") == 0) return parse_policy_name(r, key, &q->head);
    if (strcmp(key, "bpw") == 0) return parse_number(r, key, 1e-9, 32, &q->bpw) ? fail(r, key, "must be a number in (0, 32]") : 0;
    if (strcmp(key, "group_size") == 0) return parse_group_size(r, key, &q->group_size);
    if (strcmp(key, "lossless") == 0) {
        const char *s = scalar(r);
        if (!s || (strcmp(s, "true") && strcmp(s, "false"))) return fail(r, "expected true or false for", key);
        q->lossless = strcmp(s, "true") == 0;
        return 0;
    }
    if (strcmp(key, "refine") == 0) {
        if (parse_int(r, key, 1, 8, option_refine, "must be 1, 2, 4 or 8", &v)) return -1;
        q->refine_bits = (uint32_t)v;
        return 0;
    }
    if (strcmp(key, "layers_per_block") == 0) {
        if (parse_int(r, key, 1, 65536, NULL, "must be an integer in 1..65536", &v)) return -1;
        o->layers_per_block = (uint32_t)v;
        return 0;
    }
    if (strcmp(key, "zstd") == 0) {
        if (parse_int(r, key, -7, 22, NULL, "must be a zstd level in -7..22", &v)) return -1;
        o->zstd = 1;
        o->zstd_level = (int)v;
        return 0;
    }
    return fail(r, "unknown key", key);
}

/* The events of one mapping of keys, nothing nested but `tensors:`. */
static int parse_events(reader *r, recipe_opts *o, quant_opts *q)
{
    int rc = 0, depth = 0;
    while (!rc && !(rc = next(r)) && r->ev.type != YAML_STREAM_END_EVENT) {
        switch (r->ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT: break;
        case YAML_MAPPING_START_EVENT: rc = depth++ ? fail(r, "unexpected nested mapping", NULL) : 0; break;
        case YAML_MAPPING_END_EVENT: depth--; break;
        case YAML_SCALAR_EVENT:
            if (depth != 1) {
                rc = fail(r, "a recipe is a mapping of keys", NULL);
                break;
            }
            char key[64];
            snprintf(key, sizeof key, "%s", scalar(r));
            rc = next(r) ? -1 : parse_top(r, o, q, key);
            break;
        default: rc = fail(r, "a recipe is a mapping of keys", NULL);
        }
    }
    return rc;
}

int recipe_parse(const char *name, const char *text, size_t len, recipe_opts *o, quant_opts *q, char *err, size_t errlen)
{
    if (len > RECIPE_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than the %u bytes a recipe may have", name, RECIPE_MAX_BYTES);
        recipe_free(q);
        return -1;
    }
    reader r = {.path = name, .err = err, .errlen = errlen};
    if (!yaml_parser_initialize(&r.p)) {
        snprintf(err, errlen, "%s: out of memory", name);
        recipe_free(q);
        return -1;
    }
    yaml_parser_set_input_string(&r.p, (const unsigned char *)text, len);
    int rc = parse_events(&r, o, q);
    yaml_event_delete(&r.ev);
    yaml_parser_delete(&r.p);
    if (rc) recipe_free(q);
    return rc;
}

int recipe_load(const char *path, recipe_opts *o, quant_opts *q, char *err, size_t errlen)
{
    char why[256];
    struct stat st;
    size_t len = 0;
    char *text = NULL;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > RECIPE_MAX_BYTES)
        snprintf(err, errlen, "%s: larger than the %u bytes a recipe may have", path, RECIPE_MAX_BYTES);
    else if (!(text = cli_read_file(path, &len, why, sizeof why)))
        snprintf(err, errlen, "%s: cannot read: %s", path, why);
    if (!text) {
        recipe_free(q);
        return -1;
    }
    int rc = recipe_parse(path, text, len, o, q, err, errlen);
    free(text);
    return rc;
}

const tensor_rule *recipe_match(const quant_opts *q, const char *name)
{
    for (size_t i = 0; i < q->n_rules; i++)
        if (fnmatch(q->rules[i].match, name, 0) == 0) return &q->rules[i];
    return NULL;
}

void recipe_free(quant_opts *q)
{
    free(q->rules);
    q->rules = NULL;
    q->n_rules = 0;
}
