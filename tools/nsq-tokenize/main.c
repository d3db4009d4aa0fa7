/* nsq-tokenize - encodes text to token ids and decodes ids to text with the
 * tokenizer of an .nsq model or of tokenizer files.
 *
 *   nsq-tokenize MODEL.nsq|TOKENIZER [--ids|--decode] [--jsonl] [--add-special]
 *                [--skip-special] [--bench FILE]
 *
 * TOKENIZER is a tokenizer.json, or a directory holding tokenizer.json or
 * vocab.json + merges.txt (tokenizer_config.json beside them is read too).
 *
 * --ids (the default) reads all of stdin as one text and prints its ids on
 * one line, separated by spaces. --decode reads ids separated by white space
 * and prints the text exactly (no newline added). With --jsonl, every input
 * line is one JSON string (encode) or one JSON array of ids (decode), and
 * every output line the JSON array of its ids, or its text as a JSON string.
 * --add-special adds what the tokenizer's post-processor adds (e.g. BOS);
 * --skip-special leaves special tokens out of decoded text.
 *
 * --bench FILE encodes FILE (stdin is not read) and reports the throughput on
 * stderr: "FILE: N bytes, N tokens, X MB/s (best of N runs)".
 *
 * Errors go to stderr as "nsq-tokenize: FILE: NSQ_E_xxx: message".
 * Exit status: 0 success, 1 unreadable or invalid tokenizer or input, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "nsq.h"

#define TOOL "nsq-tokenize"

typedef struct {
    const char *path, *bench;
    int decode, jsonl, add_special, skip_special;
} options;

static void usage(FILE *out)
{
    fputs("Usage: " TOOL " MODEL.nsq|TOKENIZER [--ids|--decode] [--jsonl] [--add-special] [--skip-special]\n"
          "                    [--bench FILE]\n"
          "Encode text to token ids, or decode ids to text, with the tokenizer of an .nsq model\n"
          "or of tokenizer files (a tokenizer.json, or a directory with tokenizer.json or\n"
          "vocab.json + merges.txt).\n\n"
          "Options:\n"
          "  --ids           encode stdin, print the ids on one line (the default)\n"
          "  --decode        read ids from stdin, print the text\n"
          "  --jsonl         one input per line: a JSON string (encode) or a JSON array of ids\n"
          "                  (decode); one JSON array or string per output line\n"
          "  --add-special   add what the tokenizer adds around a text (e.g. BOS)\n"
          "  --skip-special  leave special tokens out of decoded text\n"
          "  --bench FILE    encode FILE and report MB/s on stderr (stdin is not read)\n"
          "  --help          show this help and exit\n"
          "  --version       show the version and exit\n"
          "  --              end of options\n"
          "\nExit status:\n"
          "  0  success\n"
          "  1  the tokenizer or the input is invalid or unreadable\n"
          "  2  usage error\n",
          out);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\n", TOOL, what, arg ? " " : "", arg ? arg : "");
    usage(stderr);
    return CLI_EXIT_USAGE;
}

/* -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, options *o)
{
    int opts = 1, ids = 0;
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts && a[0] == '-' && a[1]) {
            if (!strcmp(a, "--")) opts = 0;
            else if (!strcmp(a, "--help")) {
                usage(stdout);
                return cli_finish_stdout(TOOL);
            } else if (!strcmp(a, "--version")) {
                printf("%s %s (format %d.%d)\n", TOOL, nsq_version_string(), NSQ_FORMAT_MAJOR, NSQ_FORMAT_MINOR);
                return cli_finish_stdout(TOOL);
            } else if (!strcmp(a, "--ids")) ids = 1;
            else if (!strcmp(a, "--decode")) o->decode = 1;
            else if (!strcmp(a, "--jsonl")) o->jsonl = 1;
            else if (!strcmp(a, "--add-special")) o->add_special = 1;
            else if (!strcmp(a, "--skip-special")) o->skip_special = 1;
            else if (!strcmp(a, "--bench")) {
                if (++i == argc) return usage_error("--bench needs a FILE", NULL);
                o->bench = argv[i];
            } else if (!strncmp(a, "--bench=", 8) && a[8]) o->bench = a + 8;
            else return usage_error("unknown option", a);
            continue;
        }
        if (o->path) return usage_error("more than one tokenizer:", a);
        o->path = a;
    }
    if (!o->path) return usage_error("missing MODEL.nsq or TOKENIZER", NULL);
    if (ids && o->decode) return usage_error("--ids and --decode exclude each other", NULL);
    if (o->bench && o->decode) return usage_error("--bench encodes: not with --decode", NULL);
    return -1;
}

/*-************************************
 *  Loading
 **************************************/
/* The whole of a regular file (or of stdin when path is NULL); NULL with the
 * reason in why. */
static uint8_t *slurp(const char *path, size_t *len, char *why, size_t wn)
{
    int fd = path ? cli_open_input(path, why, wn) : -1;
    FILE *fp = !path ? stdin : fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!fp) {
        if (fd >= 0) snprintf(why, wn, "%s", strerror(errno)), close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *p = malloc(cap);
    while (p) {
        n += fread(p + n, 1, cap - n, fp);
        if (n < cap) break;
        uint8_t *q = cap > SIZE_MAX / 2 ? NULL : realloc(p, cap * 2);
        if (!q) {
            free(p);
            p = NULL;
            errno = ENOMEM;
            break;
        }
        p = q;
        cap *= 2;
    }
    if (p && ferror(fp)) {
        free(p);
        p = NULL;
        errno = EIO;
    }
    if (path) fclose(fp);
    if (!p) snprintf(why, wn, "%s", strerror(errno));
    *len = n;
    return p;
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) snprintf(p, a + b + 2, "%s/%s", dir, name);
    return p;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

typedef struct {
    uint32_t n;
    const char *names[4];
    uint8_t *data[4];
    uint64_t sizes[4];
} fileset;

/* Adds dir/name (or the path itself with dir NULL); 0 ok, -1 failed (reported). */
static int add_file(fileset *fs, const char *dir, const char *name, const char *path)
{
    char *full = dir ? join(dir, name) : NULL;
    const char *p = dir ? full : path;
    size_t len = 0;
    char why[256] = "out of memory";
    uint8_t *data = p ? slurp(p, &len, why, sizeof why) : NULL;
    if (!data) {
        fprintf(stderr, "%s: %s: %s\n", TOOL, p ? p : name, why);
        free(full);
        return -1;
    }
    free(full);
    fs->names[fs->n] = name;
    fs->data[fs->n] = data;
    fs->sizes[fs->n++] = len;
    return 0;
}

/* Directory part of path ("." when none); malloc'ed. */
static char *dir_of(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s) return strdup(".");
    size_t n = s == path ? 1 : (size_t)(s - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = 0;
    }
    return d;
}

static nsq_status load_files(const char *path, nsq_tokenizer **t, nsq_diag *diag, int *reported)
{
    struct stat st;
    fileset fs = {0};
    nsq_tokenizer_kind kind = NSQ_TOK_HF_JSON;
    char *dir = NULL;
    int rc = 0;
    *reported = 0;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        dir = strdup(path);
    } else {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        if (!strcmp(base, "vocab.json") || !strcmp(base, "merges.txt") || !strcmp(base, "tokenizer.json"))
            dir = dir_of(path);
        else
            rc = add_file(&fs, NULL, "tokenizer.json", path); /* a tokenizer.json by another name */
    }
    if (dir) {
        char *tj = join(dir, "tokenizer.json"), *vj = join(dir, "vocab.json"), *mt = join(dir, "merges.txt"),
             *tc = join(dir, "tokenizer_config.json"), *sp = join(dir, "tokenizer.model");
        if (is_file(tj)) {
            rc = add_file(&fs, dir, "tokenizer.json", NULL);
        } else if (is_file(vj) && is_file(mt)) {
            kind = NSQ_TOK_GPT2_BPE;
            rc = add_file(&fs, dir, "vocab.json", NULL);
            if (!rc) rc = add_file(&fs, dir, "merges.txt", NULL);
        } else if (is_file(sp)) {
            kind = NSQ_TOK_SENTENCEPIECE;
        } else {
            fprintf(stderr, "%s: %s: no tokenizer.json, vocab.json + merges.txt or tokenizer.model\n", TOOL, dir);
            rc = -1;
        }
        if (!rc && is_file(tc)) rc = add_file(&fs, dir, "tokenizer_config.json", NULL);
        free(tj), free(vj), free(mt), free(tc), free(sp);
    }
    nsq_status s = NSQ_E_IO;
    if (rc) *reported = 1;
    else s = nsq_tokenizer_from_files(kind, fs.n, fs.names, (const uint8_t *const *)fs.data, fs.sizes, t, diag);
    for (uint32_t i = 0; i < fs.n; i++) free(fs.data[i]);
    free(dir);
    return s;
}

/* 1 if path starts with the .nsq magic. */
static int is_nsq(const char *path)
{
    unsigned char m[8];
    char why[256];
    int fd = cli_open_input(path, why, sizeof why);
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!fp) {
        if (fd >= 0) close(fd);
        return 0;
    }
    int yes = fread(m, 1, 8, fp) == 8 && memcmp(m, "\x89NSQ\r\n\x1a\n", 8) == 0;
    fclose(fp);
    return yes;
}

static nsq_tokenizer *load(const char *path)
{
    nsq_diag d;
    nsq_tokenizer *t = NULL;
    nsq_status st;
    int reported = 0;
    cli_diag_init(&d);
    if (is_nsq(path)) {
        nsq_file *f;
        st = nsq_open(path, 0, &f, &d);
        if (!st) {
            cli_diag_init(&d);
            st = nsq_tokenizer_load(f, &t, &d);
            nsq_close(f);
        }
    } else {
        st = load_files(path, &t, &d, &reported);
    }
    if (st && !reported) cli_report(TOOL, path, st, &d);
    return st ? NULL : t;
}

/*-************************************
 *  Encoding and decoding
 **************************************/
static void print_ids(const int32_t *ids, size_t n, int json)
{
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? (json ? ",%" PRId32 : " %" PRId32) : "%" PRId32, ids[i]);
    fputs(json ? "]\n" : "\n", stdout);
}

static int encode_one(const nsq_tokenizer *t, const options *o, const char *s, size_t n, int json)
{
    int32_t *ids;
    size_t n_ids;
    nsq_diag d;
    cli_diag_init(&d);
    nsq_status st = nsq_tokenize_diag(t, s, n, o->add_special, &ids, &n_ids, &d);
    if (st) {
        fprintf(stderr, "%s: encoding failed: %s: %s\n", TOOL, nsq_status_name(st), cli_message("", st, &d));
        return CLI_EXIT_INVALID;
    }
    print_ids(ids, n_ids, json);
    free(ids);
    return CLI_EXIT_OK;
}

static int decode_one(const nsq_tokenizer *t, const options *o, const int32_t *ids, size_t n, int json)
{
    char *text;
    size_t len;
    nsq_status st = nsq_detokenize(t, ids, n, o->skip_special, &text, &len);
    if (st) {
        fprintf(stderr, "%s: decoding failed: %s: %s\n", TOOL, nsq_status_name(st), nsq_strerror(st));
        return CLI_EXIT_INVALID;
    }
    if (json) {
        putchar('"');
        cli_escape(stdout, text, len);
        fputs("\"\n", stdout);
    } else {
        fwrite(text, 1, len, stdout);
    }
    free(text);
    return CLI_EXIT_OK;
}

/* Whitespace-separated ids of s[0..n); -1 (reported) on anything else. */
static int parse_ids(const char *s, size_t n, int32_t **ids, size_t *n_ids)
{
    size_t cap = 16, k = 0;
    int32_t *p = malloc(cap * sizeof *p);
    for (size_t i = 0; p && i < n;) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
            i++;
            continue;
        }
        size_t j = i;
        long long v = 0;
        int neg = s[j] == '-';
        j += (size_t)neg;
        while (j < n && s[j] >= '0' && s[j] <= '9' && v <= INT32_MAX) v = v * 10 + (s[j++] - '0');
        if (j == i + (size_t)neg || (j < n && s[j] != ' ' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r') ||
            v > INT32_MAX) {
            fprintf(stderr, "%s: stdin: \"%.*s\" is not a token id\n", TOOL, (int)(j - i + 1 > 20 ? 20 : j - i + 1), s + i);
            free(p);
            return -1;
        }
        if (k == cap) {
            int32_t *q = realloc(p, 2 * cap * sizeof *q);
            if (!q) break;
            p = q;
            cap *= 2;
        }
        p[k++] = (int32_t)(neg ? -v : v);
        i = j;
    }
    if (!p) {
        fprintf(stderr, "%s: out of memory\n", TOOL);
        return -1;
    }
    *ids = p;
    *n_ids = k;
    return 0;
}

/* One --jsonl line: a JSON string, or an array of ids (decode). */
static int jsonl_line(const nsq_tokenizer *t, const options *o, const char *line, size_t n, size_t lineno)
{
    json_error_t e;
    json_t *j = json_loadb(line, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    int rc = CLI_EXIT_INVALID;
    if (!j) {
        fprintf(stderr, "%s: stdin line %zu: invalid JSON: %s\n", TOOL, lineno, e.text);
    } else if (!o->decode) {
        if (json_is_string(j)) rc = encode_one(t, o, json_string_value(j), json_string_length(j), 1);
        else fprintf(stderr, "%s: stdin line %zu: not a JSON string\n", TOOL, lineno);
    } else if (!json_is_array(j)) {
        fprintf(stderr, "%s: stdin line %zu: not a JSON array of ids\n", TOOL, lineno);
    } else {
        size_t k = json_array_size(j);
        int32_t *ids = malloc((k ? k : 1) * sizeof *ids);
        int ok = ids != NULL;
        for (size_t i = 0; ok && i < k; i++) {
            json_t *v = json_array_get(j, i);
            ok = json_is_integer(v) && json_integer_value(v) >= INT32_MIN && json_integer_value(v) <= INT32_MAX;
            if (ok) ids[i] = (int32_t)json_integer_value(v);
        }
        if (ok) rc = decode_one(t, o, ids, k, 1);
        else fprintf(stderr, "%s: stdin line %zu: not a JSON array of ids\n", TOOL, lineno);
        free(ids);
    }
    json_decref(j);
    return rc;
}

static int run_stdin(const nsq_tokenizer *t, const options *o)
{
    size_t n;
    char why[256];
    uint8_t *in = slurp(NULL, &n, why, sizeof why);
    if (!in) {
        fprintf(stderr, "%s: stdin: %s\n", TOOL, why);
        return CLI_EXIT_INVALID;
    }
    const char *s = (const char *)in;
    int rc = CLI_EXIT_OK;
    if (o->jsonl) {
        size_t lineno = 0;
        for (size_t i = 0; i < n && rc == CLI_EXIT_OK;) {
            const char *e = memchr(s + i, '\n', n - i);
            size_t len = e ? (size_t)(e - (s + i)) : n - i;
            lineno++;
            size_t k = 0;
            while (k < len && (s[i + k] == ' ' || s[i + k] == '\t' || s[i + k] == '\r')) k++;
            if (k < len) rc = jsonl_line(t, o, s + i, len, lineno); /* blank lines are skipped */
            i += len + 1;
        }
    } else if (o->decode) {
        int32_t *ids;
        size_t k;
        if (parse_ids(s, n, &ids, &k)) rc = CLI_EXIT_INVALID;
        else {
            rc = decode_one(t, o, ids, k, 0);
            free(ids);
        }
    } else {
        rc = encode_one(t, o, s, n, 0);
    }
    free(in);
    return rc;
}

/* Encodes the file at least 3 times and for at least a second; the best run counts. */
static int bench(const nsq_tokenizer *t, const options *o)
{
    size_t n;
    char why[256];
    uint8_t *in = slurp(o->bench, &n, why, sizeof why);
    if (!in) {
        fprintf(stderr, "%s: %s: %s\n", TOOL, o->bench, why);
        return CLI_EXIT_INVALID;
    }
    double best = 1e30, total = 0;
    size_t n_ids = 0;
    int runs = 0;
    while (runs < 3 || (total < 1.0 && runs < 1000)) {
        int32_t *ids;
        double t0 = cli_now();
        nsq_diag d;
        cli_diag_init(&d);
        nsq_status st = nsq_tokenize_diag(t, (const char *)in, n, o->add_special, &ids, &n_ids, &d);
        double dt = cli_now() - t0;
        if (st) {
            fprintf(stderr, "%s: %s: encoding failed: %s: %s\n", TOOL, o->bench, nsq_status_name(st),
                    cli_message("", st, &d));
            free(in);
            return CLI_EXIT_INVALID;
        }
        free(ids);
        total += dt;
        if (dt < best) best = dt;
        runs++;
    }
    fprintf(stderr, "%s: %zu bytes, %zu tokens, %.2f MB/s (best of %d runs)\n", o->bench, n, n_ids,
            best > 0 ? (double)n / best / 1e6 : 0.0, runs);
    free(in);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    nsq_tokenizer *t = load(o.path);
    if (!t) return CLI_EXIT_INVALID;
    rc = o.bench ? bench(t, &o) : run_stdin(t, &o);
    nsq_tokenizer_free(t);
    int out = cli_finish_stdout(TOOL);
    return rc ? rc : out;
}
