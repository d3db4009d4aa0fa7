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

/* ---- input files ---- */
/* Opens path for reading if it is a regular file. A FIFO, device or
 * directory is refused without blocking: the open does not wait for a FIFO's
 * writer. -1 with the reason in why ("No such file or directory", "is a FIFO,
 * not a regular file", ...). */
int cli_open_input(const char *path, char *why, size_t n);
/* A whole regular file in a malloc'ed buffer (NUL-terminated, *size bytes),
 * or NULL with the reason in why. */
char *cli_read_file(const char *path, size_t *size, char *why, size_t n);

/* ---- output files ---- */
/* A file being written in place of path: unnamed until committed where the
 * file system allows (O_TMPFILE), else under a fresh temporary name that is
 * removed when the file is closed uncommitted or a signal (SIGHUP, SIGINT,
 * SIGQUIT, SIGTERM) ends the process. */
typedef struct {
    const char *path;
    int fd;
    char *tmp; /* the temporary name, where the file has one */
} cli_output;

/* Refuses to replace path when something there is not a regular file (a
 * directory, FIFO, device, socket, dangling symbolic link) or is the same file
 * as one of inputs[0..n_inputs) (NULL entries are skipped). 0 when path may be
 * written, -1 with the reason in why. */
int cli_output_check(const char *path, const char *const *inputs, size_t n_inputs, char *why, size_t n);
/* Creates the file in path's directory, readable as /proc/self/fd/FD; -1
 * with the reason in why. */
int cli_output_open(cli_output *o, const char *path, char *why, size_t n);
/* Gives the written file the name path, atomically replacing what is there;
 * -1 with the reason in why. */
int cli_output_commit(cli_output *o, char *why, size_t n);
/* Closes the file; one not committed leaves nothing behind. */
void cli_output_close(cli_output *o);
/* An unnamed temporary file in the directory of path, open for reading and
 * writing: nothing ever names it and it vanishes when closed or when the
 * process dies. The fd, or -1 with the reason in why. */
int cli_tmpfile(const char *path, char *why, size_t n);

/* ---- time and memory ---- */
/* Seconds on a monotonic clock. */
double cli_now(void);
/* This process's peak resident set so far, in MiB. */
double cli_peak_rss_mib(void);

/* "512M", "2G", "1.5GiB", "1000000": bytes (K, M, G, T are powers of 1024). -1 if malformed or 0. */
int cli_parse_size(const char *s, uint64_t *bytes);

/* s[0..len) as decimal digits only (no sign, space or 0x), at most max;
 * -1 otherwise. Every decimal number the tools read goes through it. */
int cli_parse_count(const char *s, size_t len, uint64_t max, uint64_t *v);

/* Numeric option values: the whole of s, within the range; integers in plain
 * decimal (a '-' only for cli_opt_int), reals finite, in [lo, hi] or, with
 * lo_open, (lo, hi]. On a bad value they print "TOOL: OPT wants ..., not 'S'"
 * on stderr and return -1 (a usage error for the caller); *v is untouched. */
int cli_opt_uint(const char *tool, const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *v);
int cli_opt_int(const char *tool, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *v);
int cli_opt_real(const char *tool, const char *opt, const char *s, double lo, double hi, int lo_open, double *v);

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
