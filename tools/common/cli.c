/* cli.c - helpers shared by the nsq command-line tools. */
#include "cli.h"
#include "cli_route.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
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

/*-************************************
 *  Files
 **************************************/
/* What a file of mode m is, when it is not a regular file. */
static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
           : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "a special file";
}

int cli_open_input(const char *path, char *why, size_t n)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer before fstat refuses it */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) snprintf(why, n, "%s", strerror(errno));
    else if (!S_ISREG(st.st_mode)) snprintf(why, n, "is %s, not a regular file", file_kind(st.st_mode));
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) snprintf(why, n, "%s", strerror(errno));
    else return fd;
    if (fd >= 0) close(fd);
    return -1;
}

char *cli_read_file(const char *path, size_t *size, char *why, size_t n)
{
    int fd = cli_open_input(path, why, n);
    struct stat st;
    char *p = NULL;
    size_t len = 0, want = 0;
    if (fd < 0) return NULL;
    if (fstat(fd, &st) != 0) snprintf(why, n, "%s", strerror(errno));
    else if ((uint64_t)st.st_size >= SIZE_MAX || !(p = malloc((want = (size_t)st.st_size) + 1)))
        snprintf(why, n, "out of memory");
    while (p && len < want) {
        ssize_t k = read(fd, p + len, want - len);
        if (k > 0) len += (size_t)k;
        else if (k < 0 && errno == EINTR) continue;
        else { /* an error, or the file shrank under us */
            snprintf(why, n, "%s", k < 0 ? strerror(errno) : "the file changed while being read");
            free(p);
            p = NULL;
        }
    }
    close(fd);
    if (p) {
        p[len] = 0;
        *size = len;
    }
    return p;
}

/* The directory part of path, malloc'ed. */
static char *dir_of(const char *path)
{
    char *copy = strdup(path), *dir = copy ? strdup(dirname(copy)) : NULL;
    free(copy);
    return dir;
}

/* Errors of open(O_TMPFILE) that mean the file system (or kernel) has no unnamed files. */
static int no_tmpfile(int e) { return e == EOPNOTSUPP || e == EISDIR; }

/* The signals that remove a named temporary file before ending the process. */
static const int caught[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM};
#define N_CAUGHT (sizeof caught / sizeof caught[0])
static char *volatile pending; /* the named temporary file, while there is one */
static struct sigaction saved[N_CAUGHT];

static void remove_pending(int sig)
{
    if (pending) unlink(pending);
    raise(sig); /* SA_RESETHAND restored the default action: it ends the process once this returns */
}

static void block_caught(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < N_CAUGHT; i++) sigaddset(&set, caught[i]);
    sigprocmask(SIG_BLOCK, &set, old);
}

/* Sets (name) or clears (NULL) the file the signal handlers remove; signals are blocked meanwhile. */
static void set_pending(char *name)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = remove_pending;
    sa.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_CAUGHT; i++) sigaddset(&sa.sa_mask, caught[i]);
    for (size_t i = 0; i < N_CAUGHT; i++) {
        if (name && !pending && sigaction(caught[i], NULL, &saved[i]) == 0 && saved[i].sa_handler != SIG_IGN)
            sigaction(caught[i], &sa, NULL); /* an ignored signal stays ignored */
        else if (!name && pending) sigaction(caught[i], &saved[i], NULL);
    }
    pending = name;
}

int cli_output_check(const char *path, const char *const *inputs, size_t n_inputs, char *why, size_t n)
{
    struct stat l, st, in;
    if (lstat(path, &l) != 0) return 0; /* nothing there: creating the file reports any problem */
    int link = S_ISLNK(l.st_mode);
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) snprintf(why, n, "is a dangling symbolic link: refusing to replace it");
        else snprintf(why, n, "is a symbolic link that cannot be followed (%s): refusing to replace it", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, n, "is %s%s, not a regular file: refusing to replace it", link ? "a symbolic link to " : "",
                 file_kind(st.st_mode));
        return -1;
    }
    for (size_t i = 0; i < n_inputs; i++)
        if (inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino) {
            snprintf(why, n, "is the same file as the input %s: refusing to replace it", inputs[i]);
            return -1;
        }
    return 0;
}

int cli_output_open(cli_output *o, const char *path, char *why, size_t n)
{
    char *dir = dir_of(path);
    sigset_t old;
    memset(o, 0, sizeof *o);
    o->path = path;
    o->fd = dir ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
    if (o->fd < 0 && dir && no_tmpfile(errno) && (o->tmp = malloc(strlen(path) + 16))) {
        snprintf(o->tmp, strlen(path) + 16, "%s.tmp-XXXXXX", path);
        block_caught(&old); /* no signal between creating the name and arranging its removal */
        o->fd = mkostemp(o->tmp, O_CLOEXEC);
        if (o->fd >= 0) set_pending(o->tmp);
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    if (o->fd < 0) {
        snprintf(why, n, "cannot create a temporary file: %s", dir ? strerror(errno) : "out of memory");
        free(o->tmp);
        o->tmp = NULL;
    } else {
        mode_t mask = umask(0); /* what a newly created file would get */
        umask(mask);
        fchmod(o->fd, 0666 & ~mask);
    }
    free(dir);
    return o->fd < 0 ? -1 : 0;
}

/* A name for the unnamed file o->fd next to o->path; NULL with the reason in why. */
static char *link_tmp(const cli_output *o, char *why, size_t n)
{
    char fdpath[32];
    size_t len = strlen(o->path) + 48;
    char *name = malloc(len);
    if (!name) return snprintf(why, n, "out of memory"), NULL;
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", o->fd);
    for (unsigned k = 0; k < 100; k++) { /* linkat never replaces a file: try fresh names */
        snprintf(name, len, "%s.tmp-%ld-%u", o->path, (long)getpid(), k);
        if (linkat(AT_FDCWD, fdpath, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0) return name;
        if (errno != EEXIST) break;
    }
    snprintf(why, n, "cannot link the finished file: %s", strerror(errno));
    free(name);
    return NULL;
}

int cli_output_commit(cli_output *o, char *why, size_t n)
{
    sigset_t old;
    block_caught(&old); /* a name made here is renamed or removed before a signal can end the process */
    int own = !o->tmp; /* the name is a link made here, not the file's own */
    char *name = own ? link_tmp(o, why, n) : o->tmp;
    int rc = name ? rename(name, o->path) : -1;
    if (name && rc != 0) {
        snprintf(why, n, "rename %s: %s", name, strerror(errno));
        if (own) unlink(name);
    }
    if (own) {
        free(name);
    } else if (rc == 0) {
        set_pending(NULL);
        free(o->tmp);
        o->tmp = NULL;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return -1;
    char *dir = dir_of(o->path);
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) fsync(dfd), close(dfd); /* the new name is durable too */
    free(dir);
    return 0;
}

void cli_output_close(cli_output *o)
{
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
    if (!o->tmp) return;
    sigset_t old;
    block_caught(&old);
    unlink(o->tmp);
    set_pending(NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    free(o->tmp);
    o->tmp = NULL;
}

int cli_tmpfile(const char *path, char *why, size_t n)
{
    char *dir = dir_of(path), *name = NULL;
    int fd = dir ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
    if (fd < 0 && dir && no_tmpfile(errno) && (name = malloc(strlen(dir) + 16))) {
        sigset_t old;
        snprintf(name, strlen(dir) + 16, "%s/.nsq-XXXXXX", dir);
        block_caught(&old); /* the name is gone before any signal ends the process */
        if ((fd = mkostemp(name, O_CLOEXEC)) >= 0) unlink(name);
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    if (fd < 0)
        snprintf(why, n, "cannot create a temporary file in %s: %s", dir ? dir : path,
                 dir ? strerror(errno) : "out of memory");
    free(name);
    free(dir);
    return fd;
}

/*-************************************
 *  Time and memory
 **************************************/
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

int cli_parse_count(const char *s, size_t len, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    if (!len) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || x > (max - d) / 10) return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* s as an optional '-' and decimal digits, the magnitude in *mag; -1 if it is
 * not one or the magnitude passes 2^64-1. */
static int parse_decimal(const char *s, int *neg, uint64_t *mag)
{
    *neg = *s == '-';
    s += *neg;
    return cli_parse_count(s, strlen(s), UINT64_MAX, mag);
}

int cli_opt_uint(const char *tool, const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *v)
{
    int neg;
    uint64_t m;
    if (!parse_decimal(s, &neg, &m) && !neg && m >= lo && m <= hi) return *v = m, 0;
    fprintf(stderr, "%s: %s wants an integer in %" PRIu64 "..%" PRIu64 ", not '%s'\n", tool, opt, lo, hi, s);
    return -1;
}

int cli_opt_int(const char *tool, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *v)
{
    int neg;
    uint64_t m;
    /* the magnitude checks keep the negation and conversion in range */
    if (!parse_decimal(s, &neg, &m) && m <= (uint64_t)INT64_MAX) {
        int64_t x = neg ? -(int64_t)m : (int64_t)m;
        if (x >= lo && x <= hi) return *v = x, 0;
    }
    fprintf(stderr, "%s: %s wants an integer in %" PRId64 "..%" PRId64 ", not '%s'\n", tool, opt, lo, hi, s);
    return -1;
}

int cli_opt_real(const char *tool, const char *opt, const char *s, double lo, double hi, int lo_open, double *v)
{
    char *end;
    double x = *s && !isspace((unsigned char)*s) ? strtod(s, &end) : NAN;
    if (!isnan(x) && !*end && isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi) return *v = x, 0;
    fprintf(stderr, "%s: %s wants a number in %c%g, %g], not '%s'\n", tool, opt, lo_open ? '(' : '[', lo, hi, s);
    return -1;
}

/* ---- routing options ---- */
static const char *const mode_names[] = {"none", "router", "static", "top", "skip-only", "random", "oracle"};

const char *cli_route_mode_name(nsqrt_route_mode m) { return mode_names[m]; }

int cli_route_parse(const char *s, nsqrt_route_opts *o)
{
    uint64_t v = 1;
    for (int i = 0; i < 7; i++)
        if (i != NSQRT_ROUTE_TOP && i != NSQRT_ROUTE_RANDOM && strcmp(s, mode_names[i]) == 0)
            return o->mode = (nsqrt_route_mode)i, 0;
    if (strncmp(s, "random", 6) == 0 && (!s[6] || s[6] == ':')) {
        if (s[6] && cli_parse_count(s + 7, strlen(s + 7), UINT64_MAX, &v)) return -1;
        o->mode = NSQRT_ROUTE_RANDOM, o->seed = v;
        return 0;
    }
    if (cli_parse_count(s, strlen(s), 65536, &v) || v == 0) return -1;
    o->mode = NSQRT_ROUTE_TOP, o->k = (uint32_t)v;
    return 0;
}

int cli_route_option(const char *arg, int argc, char **argv, int *next, nsqrt_route_opts *o)
{
    if (arg) return cli_route_parse(arg, o);
    if (*next < argc && !cli_route_parse(argv[*next], o)) return ++*next, 0;
    o->mode = NSQRT_ROUTE_ROUTER;
    return 0;
}

int cli_route_parse_skip(const char *s, uint32_t n_blocks, nsqrt_route_opts *o, char *err, size_t errlen)
{
    free(o->forced);
    if (!(o->forced = calloc(n_blocks, 1))) return snprintf(err, errlen, "out of memory"), -1;
    while (*s) {
        size_t len = strcspn(s, ",");
        uint64_t b;
        if (cli_parse_count(s, len, UINT64_MAX, &b) || (s[len] && !s[len + 1]))
            return snprintf(err, errlen, "--skip-blocks wants comma-separated block numbers"), -1;
        if (b >= n_blocks)
            return snprintf(err, errlen, "--skip-blocks: block %" PRIu64 " does not exist (the file has %u)", b, n_blocks),
                   -1;
        o->forced[b] = 1;
        s += len + (s[len] != 0);
    }
    return 0;
}
