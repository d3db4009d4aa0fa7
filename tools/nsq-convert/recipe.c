/* recipe.c - `--recipe FILE.yaml`: conversion options and per-tensor
 * overrides in one file, read with libyaml. The schema is in the README
 * (section "Recipes"); an unknown key is an error naming its line. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

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

static int parse_number(reader *r, const char *key, double lo, double hi, double *v)
{
    const char *s = scalar(r);
    char *end;
    if (!s) return fail(r, "expected a number for", key);
    *v = strtod(s, &end);
    if (!*s || *end || !(*v >= lo && *v <= hi)) return fail(r, "value out of range for", key);
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
    double a, b, c;
    char extra;
    if (!s || sscanf(s, "%lf:%lf:%lf%c", &a, &b, &c, &extra) != 3 || a < 0 || b < 0 || c < 0 || a + b + c < 99.999999 ||
        a + b + c > 100.000001)
        return fail(r, "expected \"Q8:Q4:Q2\" percentages summing to 100 for", key);
    split[0] = a / 100, split[1] = b / 100, split[2] = c / 100;
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
        double v;
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
            if (parse_number(r, key, 32, 256, &v) || ((unsigned)v & ((unsigned)v - 1)) || v != (unsigned)v)
                return fail(r, "group_size is 32, 64, 128 or 256:", key);
            t->group_size = (uint32_t)v;
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
    if (strcmp(key, "tiers") == 0) return parse_split(r, key, q->split);
    if (strcmp(key, "embed") == 0) return parse_policy_name(r, key, &q->embed);
    if (strcmp(key, "head") == 0) return parse_policy_name(r, key, &q->head);
    if (strcmp(key, "bpw") == 0) return parse_number(r, key, 1e-9, 32, &q->bpw);
    if (strcmp(key, "lossless") == 0) {
        const char *s = scalar(r);
        if (!s || (strcmp(s, "true") && strcmp(s, "false"))) return fail(r, "expected true or false for", key);
        q->lossless = strcmp(s, "true") == 0;
        return 0;
    }
    struct { const char *name; double lo, hi; uint32_t *dst; } ints[] = {
        {"group_size", 32, 256, &q->group_size}, {"refine", 1, 8, &q->refine_bits},
        {"layers_per_block", 1, 65536, &o->layers_per_block}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcmp(key, ints[i].name) == 0) {
            if (parse_number(r, key, ints[i].lo, ints[i].hi, &v) || v != (uint32_t)v) return fail(r, "expected an integer for", key);
            *ints[i].dst = (uint32_t)v;
            return 0;
        }
    if (strcmp(key, "zstd") == 0) {
        if (parse_number(r, key, -7, 22, &v) || v != (int)v) return fail(r, "expected a zstd level for", key);
        o->zstd = 1;
        o->zstd_level = (int)v;
        return 0;
    }
    return fail(r, "unknown key", key);
}

int recipe_load(const char *path, recipe_opts *o, quant_opts *q, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return snprintf(err, errlen, "%s: cannot open", path), -1;
    reader r = {.path = path, .err = err, .errlen = errlen};
    yaml_parser_initialize(&r.p);
    yaml_parser_set_input_file(&r.p, fp);
    int rc = 0, depth = 0;
    while (!rc && !(rc = next(&r)) && r.ev.type != YAML_STREAM_END_EVENT) {
        if (r.ev.type == YAML_MAPPING_START_EVENT && ++depth > 1) rc = fail(&r, "unexpected nested mapping", NULL);
        else if (r.ev.type == YAML_SCALAR_EVENT && depth == 1) {
            char key[64];
            snprintf(key, sizeof key, "%s", scalar(&r));
            rc = next(&r) ? -1 : parse_top(&r, o, q, key);
        } else if (r.ev.type == YAML_MAPPING_END_EVENT) depth--;
        else if (r.ev.type == YAML_SCALAR_EVENT || r.ev.type == YAML_SEQUENCE_START_EVENT)
            rc = fail(&r, "a recipe is a mapping of keys", NULL);
    }
    yaml_event_delete(&r.ev);
    yaml_parser_delete(&r.p);
    fclose(fp);
    return rc;
}

const tensor_rule *recipe_match(const quant_opts *q, const char *name)
{
    for (size_t i = 0; i < q->n_rules; i++)
        if (fnmatch(q->rules[i].match, name, 0) == 0) return &q->rules[i];
    return NULL;
}
