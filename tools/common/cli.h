/* cli.h - helpers shared by the nsq command-line tools: argument parsing with
 * --help/--version, error reports for nsq_diag, and a streaming JSON writer. */
#ifndef NSQ_CLI_H
#define NSQ_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nsq.h"

/* Exit statuses shared by every tool. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_INVALID = 1, CLI_EXIT_USAGE = 2 };

/* ---- arguments ---- */
typedef struct {
    const char *name; /* "--json" */
    const char *help;
    int *flag;        /* set to 1 when given */
} cli_flag;

typedef struct {
    const char *name;    /* "nsq-inspect" */
    const char *summary; /* one line: what the tool does */
    const cli_flag *flags;
    size_t n_flags;
} cli_tool;

/*! cli_parse() : parses argv into the tool's flags and exactly one FILE.
 *  @return -1 to go on, or the status to exit with (after --help, --version or
 *  a usage error, which this has already reported). */
int cli_parse(const cli_tool *t, int argc, char **argv, const char **file);
void cli_usage(const cli_tool *t, FILE *out);

/* ---- errors ---- */
/* A diag that no call has filled yet: cli_report() tells it from a real one. */
void cli_diag_init(nsq_diag *d);
/* Prints "TOOL: FILE: NSQ_E_xxx: message (rule R-.., offset N)" on stderr. */
void cli_report(const char *tool, const char *file, nsq_status st, const nsq_diag *d);
/* The message to show for st: d's when d describes st, else the generic one. */
const char *cli_message(const char *file, nsq_status st, const nsq_diag *d);
/* Flushes stdout; a failed write there (full disk, closed pipe) is an error. */
int cli_finish_stdout(const char *tool);

/* ---- files and time ---- */
/* A whole file in a malloc'ed buffer (NUL-terminated, *size bytes), or NULL. */
char *cli_read_file(const char *path, size_t *size);
/* Seconds on a monotonic clock. */
double cli_now(void);
/* This process's peak resident set so far, in MiB. */
double cli_peak_rss_mib(void);

/* "512M", "2G", "1.5GiB", "1000000": bytes (K, M, G, T are powers of 1024). -1 if malformed or 0. */
int cli_parse_size(const char *s, uint64_t *bytes);

/* ---- text ---- */
/* s[0..len) as the inside of a JSON string: control characters as \u00XX,
 * valid UTF-8 as is, each byte of an invalid sequence as \uFFFD. */
void cli_escape(FILE *out, const char *s, size_t len);

/* ---- JSON ---- */
#define CLI_JSON_MAX_DEPTH 32

typedef struct {
    FILE *out;
    int depth;
    int after_key;                        /* the next value completes a "key": pair */
    unsigned char first[CLI_JSON_MAX_DEPTH]; /* nothing written yet at this depth */
} cli_json;

void cli_json_init(cli_json *j, FILE *out);
void cli_json_object(cli_json *j); /* { */
void cli_json_array(cli_json *j);  /* [ */
void cli_json_end_object(cli_json *j);
void cli_json_end_array(cli_json *j);
/* Ends the document with a newline. */
void cli_json_done(cli_json *j);

void cli_json_key(cli_json *j, const char *key);
void cli_json_str(cli_json *j, const char *s, size_t len);
void cli_json_cstr(cli_json *j, const char *s); /* NULL writes null */
void cli_json_u64(cli_json *j, uint64_t v);
void cli_json_i64(cli_json *j, int64_t v);
void cli_json_f64(cli_json *j, double v);       /* "%.17g"; non-finite writes null */
void cli_json_fixed6(cli_json *j, double v);    /* "%.6f"; non-finite writes null */
void cli_json_bool(cli_json *j, int v);
void cli_json_null(cli_json *j);

/* "key": value in one call. */
void cli_json_kv_cstr(cli_json *j, const char *key, const char *s);
void cli_json_kv_u64(cli_json *j, const char *key, uint64_t v);
void cli_json_kv_f64(cli_json *j, const char *key, double v);
void cli_json_kv_fixed6(cli_json *j, const char *key, double v);
void cli_json_kv_bool(cli_json *j, const char *key, int v);

#endif
