/* cli_route.h - the routing options of nsq-run and nsq-perplexity (--route,
 * --skip-blocks), parsed into the runtime's nsqrt_route_opts (cli.c). */
#ifndef NSQ_CLI_ROUTE_H
#define NSQ_CLI_ROUTE_H

#include "nsqrt.h"

/* Parses a --route argument: "router", "static", "skip-only", "random[:SEED]",
 * "oracle", "none" or a block count. -1 when it is none of these. */
int cli_route_parse(const char *s, nsqrt_route_opts *o);
const char *cli_route_mode_name(nsqrt_route_mode m);
/* getopt_long's --route with an optional argument: --route=MODE, or
 * --route MODE when the next word parses as one (then *next, getopt's optind,
 * moves past it), else the router. -1 when --route=MODE does not parse. */
int cli_route_option(const char *arg, int argc, char **argv, int *next, nsqrt_route_opts *o);
/* Parses --skip-blocks "2,3" into o->forced for n_blocks blocks; -1 with a
 * message in err. */
int cli_route_parse_skip(const char *s, uint32_t n_blocks, nsqrt_route_opts *o, char *err, size_t errlen);

#endif
