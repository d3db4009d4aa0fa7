/* route.h - choosing, per block, SKIP, BASE or FULL (spec section 11): what
 * each choice costs in resident bytes, what it is predicted to cost in
 * output quality (the file's router, or its static policy), and the choice
 * of the least damage that fits a memory budget. */
#ifndef NSQ_ROUTE_H
#define NSQ_ROUTE_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"

/* Metadata key of the static policy: mean damage per block and choice. */
#define ROUTE_STATIC_KEY "router.static_damage"
/* Prompt tokens the router looks at when the file does not say. */
#define ROUTE_PROMPT_TOKENS 32

typedef struct {
    uint32_t n_blocks;
    uint8_t *mask;           /* [block] allowed choices, bit 1 << c */
    uint64_t (*cost)[3];     /* [block][c] resident bytes */
    double (*fixed)[3];      /* [block][c] the static policy, NULL when the file has none */
    int has_router;
    nsq_router router;
    uint32_t prompt_tokens; /* leading tokens the router looks at (provenance.router.prompt_tokens) */
} route_table;

/* Costs and masks for m's file: the router's masks when it has one, else
 * every layer block may be skipped and every block with refinements run FULL. */
int route_init(const model *m, route_table *t, char *err, size_t errlen);
void route_free(route_table *t);

/* Every block at its most precise allowed choice: FULL, else BASE. */
void route_all_full(const route_table *t, uint8_t *choice);
/* Whether route_measure measures choice c under mask: SKIP when allowed,
 * BASE when FULL is allowed too (otherwise BASE is the reference). */
static inline int route_measured(uint8_t mask, int c)
{
    return c != ROUTE_FULL && (mask >> c & 1) && (c == ROUTE_SKIP || (mask >> ROUTE_FULL & 1));
}

/* Feature 1 (spec 11.2): the mean of the prompt's token embeddings, decoded
 * from the embedding block's base. x has hidden elements. */
void route_features(const model *m, const int32_t *ids, uint32_t n, float *x);
/* The router's predicted damage for the prompt, made monotone: skipping never
 * costs less than the base, the base never less than FULL, nothing below 0. */
int route_predict(const route_table *t, const model *m, const int32_t *ids, uint32_t n, double (*dmg)[3]);

/* The choices (one per block, within mask) of least total damage whose
 * resident bytes fit budget (0: no limit). Ties go to the more precise
 * choice. -1 when even the cheapest choices do not fit. */
int route_select(const route_table *t, const uint8_t *mask, const double (*dmg)[3], uint64_t budget, uint8_t *choice);
/* Bytes of the cheapest choices within mask: the smallest budget that works. */
uint64_t route_minimum(const route_table *t, const uint8_t *mask);

/* Measured damage: with every block resident at FULL, the mean KL divergence
 * per scored position (positions n_prompt-1..n-2, which predict the tokens
 * after the prompt) of each block's SKIP and BASE from the all-FULL run, on tokens
 * ids[0..n). dmg[b][FULL] = 0; choices outside the mask are left at 0.
 * Leaves every block at FULL. -1 when the forward pass fails. */
int route_measure(model *m, model_state *s, const route_table *t, const int32_t *ids, uint32_t n, uint32_t n_prompt,
                  double (*dmg)[3]);

/* ---- what nsq-run and nsq-perplexity ask for ---- */
typedef enum {
    ROUTE_OFF,       /* no routing: every block, streamed under a budget */
    ROUTE_ROUTER,    /* the router's prediction for this prompt */
    ROUTE_STATIC,    /* the file's static policy */
    ROUTE_TOP,       /* run k blocks, skip the rest (router, else static, picks which) */
    ROUTE_SKIP_ONLY, /* static policy, each block skipped or FULL */
    ROUTE_RANDOM,    /* random damages: a baseline */
    ROUTE_ORACLE     /* damages measured on the text itself: a ceiling */
} route_mode;

typedef struct {
    route_mode mode;
    uint32_t k;         /* ROUTE_TOP */
    uint64_t seed;      /* ROUTE_RANDOM */
    uint8_t *forced;    /* --skip-blocks: [block] 1 = skip; NULL: none */
    int print;          /* --route-print */
} route_opts;

/* Parses a --route argument: "router", "static", "skip-only", "random[:SEED]",
 * "oracle", "none" or a block count. -1 when it is none of these. */
int route_parse(const char *s, route_opts *o);
const char *route_mode_name(route_mode m);
/* getopt_long's --route with an optional argument: --route=MODE, or
 * --route MODE when the next word parses as one (then *next, getopt's optind,
 * moves past it), else the router. -1 when --route=MODE does not parse. */
int route_option(const char *arg, int argc, char **argv, int *next, route_opts *o);
/* Parses --skip-blocks "2,3" into o->forced for n_blocks blocks. */
int route_parse_skip(const char *s, uint32_t n_blocks, route_opts *o, char *err, size_t errlen);

/* The choices for a prompt, ids[0..n_prompt) (the router reads at most
 * t->prompt_tokens of it; ROUTE_ORACLE measures on all of ids[0..n) and
 * needs s). dmg receives the
 * damages the choice was made on; *predicted their sum over the choices. */
int route_choose(model *m, model_state *s, const route_table *t, const route_opts *o, uint64_t budget,
                 const int32_t *ids, uint32_t n, uint32_t n_prompt, uint8_t *choice, double (*dmg)[3],
                 double *predicted, char *err, size_t errlen);
/* One line per block on f: its choice, bytes and predicted damage. */
void route_print(FILE *f, const route_table *t, const uint8_t *choice, const double (*dmg)[3]);

#endif
