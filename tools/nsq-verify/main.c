/* nsq-verify - checks that an .nsq file is valid: everything nsq_open checks
 * (header, section checksums, metadata, tokenizer, directory, importance,
 * router, exact byte layout) and then everything nsq_verify checks (every
 * block and refinement checksum, decompression and tensor layout).
 *
 *   nsq-verify FILE [--json] [--no-mmap] [--model]
 *
 * --model then checks the file as a model, as the runtime does before it
 * uses a weight: hyperparameters finite and in range, every tensor name one
 * role of the architecture in the block that holds its layer, every shape,
 * every tokenizer id below the embedding's rows, every norm and bias finite.
 * A failure there has status "NSQ_E_MODEL" (the tools' own, not libnsq's).
 *
 * Human output: "FILE: OK (N blocks, N refinements, N tensors, N bytes
 * verified)" on stdout, or the first problem on stderr as
 * "nsq-verify: FILE: NSQ_E_xxx: message (rule R-..., offset N)".
 * "N bytes verified" is the file size: open and verify together cover every
 * byte (ranges by checksum, the padding between them by being zero).
 *
 * --json prints one object on stdout, whatever the outcome:
 *   {"file":"...","valid":true|false,"status":"NSQ_OK"|"NSQ_E_...",
 *    "rule":"R-..."|null,"offset":N|null,"message":"..."}
 * rule is null when the failure names no rule (I/O, memory) and on success;
 * offset is null when the failure has no file offset and on success; on
 * success message is the summary shown in parentheses above.
 *
 * Exit status: 0 valid, 1 invalid or unreadable, 2 usage error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "nsqrt.h"
#include "nsq.h"

#define TOOL "nsq-verify"

typedef struct {
    nsq_status status;
    nsq_diag diag;
    nsq_info info; /* valid only when status is NSQ_OK */
    char model_err[512]; /* the model-level failure, "" if none */
    nsqrt_config c;
} outcome;

static void check(const char *path, unsigned flags, int as_model, outcome *o)
{
    nsq_file *f = NULL;
    cli_diag_init(&o->diag);
    memset(&o->info, 0, sizeof o->info);
    o->model_err[0] = 0;
    o->status = nsq_open(path, flags, &f, &o->diag);
    if (o->status) return;
    nsq_get_info(f, &o->info);
    o->status = nsq_verify(f, &o->diag);
    char *e = o->model_err;
    size_t n = sizeof o->model_err;
    if (!o->status && as_model && (nsqrt_check_file(f, &o->c, NULL, e, n) || nsqrt_check_data(f, e, n)) && !e[0])
        snprintf(e, n, "model check failed");
    nsq_close(f);
}

static int failed(const outcome *o) { return o->status || o->model_err[0]; }

static void summary(const outcome *o, int as_model, char *buf, size_t n)
{
    const nsq_info *i = &o->info;
    int k = snprintf(buf, n, "%" PRIu32 " blocks, %" PRIu32 " refinements, %" PRIu32 " tensors, %" PRIu64 " bytes verified",
                     i->block_count, i->refinement_count, i->tensor_count, i->file_size);
    if (as_model && k > 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, ", a valid %s model of %" PRIu32 " layers", o->c.arch->name,
                 o->c.n_layers);
}

static void print_json(const char *path, const outcome *o, int as_model)
{
    const nsq_diag *d = &o->diag;
    int own = o->status && d->status == o->status; /* the diag describes this failure */
    char ok[256];
    summary(o, as_model, ok, sizeof ok);
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    cli_json_kv_cstr(&j, "file", path);
    cli_json_kv_bool(&j, "valid", !failed(o));
    cli_json_kv_cstr(&j, "status", o->status || !o->model_err[0] ? nsq_status_name(o->status) : "NSQ_E_MODEL");
    cli_json_kv_cstr(&j, "rule", own && d->rule[0] ? d->rule : NULL);
    cli_json_key(&j, "offset");
    if (own && d->offset != UINT64_MAX) cli_json_u64(&j, d->offset);
    else cli_json_null(&j);
    cli_json_kv_cstr(&j, "message", o->status ? cli_message(path, o->status, d) : o->model_err[0] ? o->model_err : ok);
    cli_json_end_object(&j);
    cli_json_done(&j);
}

static void print_human(const char *path, const outcome *o, int as_model)
{
    char ok[256];
    if (o->status) {
        cli_report(TOOL, path, o->status, &o->diag);
        return;
    }
    if (o->model_err[0]) {
        fprintf(stderr, "%s: %s: NSQ_E_MODEL: %s\n", TOOL, path, o->model_err);
        return;
    }
    summary(o, as_model, ok, sizeof ok);
    printf("%s: OK (%s)\n", path, ok);
}

int main(int argc, char **argv)
{
    int json = 0, no_mmap = 0, as_model = 0;
    const cli_flag flags[] = {
        {"--json", "print the result as one JSON object on stdout", &json},
        {"--no-mmap", "read with pread instead of mapping the file", &no_mmap},
        {"--model", "also check it as a model the runtime can run safely (names, shapes, ids, values)", &as_model},
    };
    const cli_tool tool = {TOOL, "Check every structure, checksum and tensor layout of an .nsq file.", flags,
                           sizeof flags / sizeof flags[0]};
    const char *path;
    int rc = cli_parse(&tool, argc, argv, &path);
    if (rc >= 0) return rc;
    outcome o;
    check(path, no_mmap ? NSQ_OPEN_PREAD : 0, as_model, &o);
    if (json) print_json(path, &o, as_model);
    else print_human(path, &o, as_model);
    rc = cli_finish_stdout(TOOL);
    return failed(&o) ? CLI_EXIT_INVALID : rc;
}
