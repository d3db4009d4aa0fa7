/* cli.c - helpers shared by the nsq command-line tools. */
#include "cli.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/stat.h>

/*-************************************
 *  Arguments
 **************************************/
static void print_version(const cli_tool *t)
{
    printf("%s %s (format %d.%d)\n", t->name, nsq_version_string(), NSQ_FORMAT_MAJOR, NSQ_FORMAT_MINOR);
}

void cli_usage(const cli_tool *t, FILE *out)
{
    fprintf(out, "Usage: %s FILE", t->name);
    for (size_t i = 0; i < t->n_flags; i++) fprintf(out, " [%s]", t->flags[i].name);
    fprintf(out, "\n%s\n\nOptions:\n", t->summary);
    for (size_t i = 0; i < t->n_flags; i++) fprintf(out, "  %-11s %s\n", t->flags[i].name, t->flags[i].help);
    fputs("  --help      show this help and exit\n"
          "  --version   show the version and exit\n"
          "  --          end of options (for a FILE that starts with -)\n"
          "\nExit status:\n"
          "  0  success: the file is valid\n"
          "  1  the file is invalid or unreadable\n"
          "  2  usage error\n",
          out);
}

static int usage_error(const cli_tool *t, const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\n", t->name, what, arg ? " " : "", arg ? arg : "");
    cli_usage(t, stderr);
    return CLI_EXIT_USAGE;
}

/* 1 if arg named one of the tool's flags (and set it). */
static int take_flag(const cli_tool *t, const char *arg)
{
    for (size_t i = 0; i < t->n_flags; i++)
        if (strcmp(arg, t->flags[i].name) == 0) {
            *t->flags[i].flag = 1;
            return 1;
        }
    return 0;
}

int cli_parse(const cli_tool *t, int argc, char **argv, const char **file)
{
    int options = 1; /* until "--" */
    *file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* "-" alone is an ordinary name, as with most tools */
        if (options && a[0] == '-' && a[1] != '\0') {
            if (strcmp(a, "--") == 0) {
                options = 0;
            } else if (strcmp(a, "--help") == 0) {
                cli_usage(t, stdout);
                return cli_finish_stdout(t->name);
            } else if (strcmp(a, "--version") == 0) {
                print_version(t);
                return cli_finish_stdout(t->name);
            } else if (!take_flag(t, a)) {
                return usage_error(t, "unknown option", a);
            }
            continue;
        }
        if (*file) return usage_error(t, "more than one FILE:", a);
        *file = a;
    }
    return *file ? -1 : usage_error(t, "missing FILE", NULL);
}

/*-************************************
 *  Errors
 **************************************/
void cli_diag_init(nsq_diag *d)
{
    memset(d, 0, sizeof *d);
    d->status = NSQ_OK;
    d->offset = UINT64_MAX;
}

const char *cli_message(const char *file, nsq_status st, const nsq_diag *d)
{
    if (!d || d->status != st || st == NSQ_OK || d->message[0] == '\0') return nsq_strerror(st);
    /* I/O messages already start with the path, which the report names too */
    size_t n = strlen(file);
    if (strncmp(d->message, file, n) == 0 && d->message[n] == ':' && d->message[n + 1] == ' ')
        return d->message + n + 2;
    return d->message;
}

void cli_report(const char *tool, const char *file, nsq_status st, const nsq_diag *d)
{
    const char *msg = cli_message(file, st, d);
    int own = d && d->status == st && st != NSQ_OK;
    int rule = own && d->rule[0], off = own && d->offset != UINT64_MAX;
    fprintf(stderr, "%s: %s: %s: ", tool, file, nsq_status_name(st));
    cli_escape(stderr, msg, strlen(msg)); /* messages may quote file bytes */
    if (rule || off) {
        fputs(" (", stderr);
        if (rule) fprintf(stderr, "rule %s%s", d->rule, off ? ", " : "");
        if (off) fprintf(stderr, "offset %" PRIu64, d->offset);
        fputc(')', stderr);
    }
    fputc('\n', stderr);
}

int cli_finish_stdout(const char *tool)
{
    if (fflush(stdout) == 0 && !ferror(stdout)) return CLI_EXIT_OK;
    fprintf(stderr, "%s: error writing to standard output\n", tool);
    return CLI_EXIT_INVALID;
}

/*-************************************
 *  Text
 **************************************/
/* Length of the strictly valid UTF-8 sequence at s (no overlongs, surrogates
 * or code points above U+10FFFF), or 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000}; /* below it: overlong */
    unsigned c = s[0];
    size_t n = c >= 0xC0 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF8 ? 4 : 0;
    if (n == 0 || left < n) return 0;
    uint32_t cp = c & (0x7Fu >> n); /* the lead byte's payload bits */
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    return cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : n;
}

void cli_escape(FILE *out, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc((int)c, out);
        } else if (c < 0x20) {
            fprintf(out, "\\u%04X", c);
        } else if (c >= 0x80) {
            size_t n = utf8_seq(s + i, len - i);
            if (n) {
                fwrite(s + i, 1, n, out);
                i += n;
                continue;
            }
            fputs("\\uFFFD", out);
        } else {
            fputc((int)c, out);
        }
        i++;
    }
}

/*-************************************
 *  JSON
 **************************************/
void cli_json_init(cli_json *j, FILE *out)
{
    memset(j, 0, sizeof *j);
    j->out = out;
}

/* The comma before an array element or object member, unless it is the first. */
static void separate(cli_json *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth == 0) return;
    if (!j->first[j->depth - 1]) fputc(',', j->out);
    j->first[j->depth - 1] = 0;
}

static void open_nested(cli_json *j, int c)
{
    separate(j);
    assert(j->depth < CLI_JSON_MAX_DEPTH); /* the tools' schemas nest far less */
    fputc(c, j->out);
    j->first[j->depth++] = 1;
}

static void close_nested(cli_json *j, int c)
{
    assert(j->depth > 0 && !j->after_key);
    j->depth--;
    fputc(c, j->out);
}

void cli_json_object(cli_json *j) { open_nested(j, '{'); }
void cli_json_array(cli_json *j) { open_nested(j, '['); }
void cli_json_end_object(cli_json *j) { close_nested(j, '}'); }
void cli_json_end_array(cli_json *j) { close_nested(j, ']'); }

void cli_json_done(cli_json *j)
{
    assert(j->depth == 0);
    fputc('\n', j->out);
}

void cli_json_key(cli_json *j, const char *key)
{
    separate(j);
    fputc('"', j->out);
    cli_escape(j->out, key, strlen(key));
    fputs("\":", j->out);
    j->after_key = 1;
}

void cli_json_str(cli_json *j, const char *s, size_t len)
{
    separate(j);
    fputc('"', j->out);
    cli_escape(j->out, s, len);
    fputc('"', j->out);
}

void cli_json_cstr(cli_json *j, const char *s)
{
    if (s) cli_json_str(j, s, strlen(s));
    else cli_json_null(j);
}

void cli_json_u64(cli_json *j, uint64_t v)
{
    separate(j);
    fprintf(j->out, "%" PRIu64, v);
}

void cli_json_i64(cli_json *j, int64_t v)
{
    separate(j);
    fprintf(j->out, "%" PRId64, v);
}

/* JSON has no NaN or infinity: null is the only honest stand-in. */
static void json_double(cli_json *j, const char *fmt, double v)
{
    separate(j);
    if (isfinite(v)) fprintf(j->out, fmt, v);
    else fputs("null", j->out);
}

void cli_json_f64(cli_json *j, double v) { json_double(j, "%.17g", v); }
void cli_json_fixed6(cli_json *j, double v) { json_double(j, "%.6f", v); }

void cli_json_bool(cli_json *j, int v)
{
    separate(j);
    fputs(v ? "true" : "false", j->out);
}

void cli_json_null(cli_json *j)
{
    separate(j);
    fputs("null", j->out);
}

void cli_json_kv_cstr(cli_json *j, const char *key, const char *s)
{
    cli_json_key(j, key);
    cli_json_cstr(j, s);
}

void cli_json_kv_u64(cli_json *j, const char *key, uint64_t v)
{
    cli_json_key(j, key);
    cli_json_u64(j, v);
}

void cli_json_kv_f64(cli_json *j, const char *key, double v)
{
    cli_json_key(j, key);
    cli_json_f64(j, v);
}

void cli_json_kv_fixed6(cli_json *j, const char *key, double v)
{
    cli_json_key(j, key);
    cli_json_fixed6(j, v);
}

void cli_json_kv_bool(cli_json *j, const char *key, int v)
{
    cli_json_key(j, key);
    cli_json_bool(j, v);
}

char *cli_read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    char *p = NULL;
    struct stat st;
    if (fp && (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode))) { /* a directory opens, but has no size */
        fclose(fp);
        return NULL;
    }
    if (fp && fseek(fp, 0, SEEK_END) == 0) {
        long n = ftell(fp);
        rewind(fp);
        if (n >= 0 && (p = malloc((size_t)n + 1)) && fread(p, 1, (size_t)n, fp) != (size_t)n) {
            free(p);
            p = NULL;
        }
        if (p) p[n] = 0;
        *size = (size_t)n;
    }
    if (fp) fclose(fp);
    return p;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cli_peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

int cli_parse_size(const char *s, uint64_t *bytes)
{
    char *end;
    double v = strtod(s, &end);
    static const char units[] = "KMGT";
    double mul = 1;
    if (end == s || !(v > 0)) return -1;
    if (*end) {
        const char *u = strchr(units, *end >= 'a' ? *end - 32 : *end);
        if (!u) return -1;
        for (const char *k = units; k <= u; k++) mul *= 1024;
        end++;
        if (*end == 'i') end++;
        if (*end == 'B') end++;
    }
    if (*end || v * mul >= 1.8e19) return -1;
    *bytes = (uint64_t)(v * mul);
    return *bytes ? 0 : -1;
}
