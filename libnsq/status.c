/* status.c - status names, messages and the diagnostics record. */
#include "internal.h"

#include <stdio.h>

const char *nsq_strerror(nsq_status s)
{
    switch (s) {
#define NSQ__MSG(name, val, msg) case NSQ_##name: return msg;
        NSQ_STATUS_MAP(NSQ__MSG)
#undef NSQ__MSG
    }
    return "unknown status";
}

const char *nsq_status_name(nsq_status s)
{
    switch (s) {
#define NSQ__NAME(name, val, msg) case NSQ_##name: return "NSQ_" #name;
        NSQ_STATUS_MAP(NSQ__NAME)
#undef NSQ__NAME
    }
    return "NSQ_UNKNOWN";
}

const char *nsq_version_string(void) { return NSQ_VERSION_STRING; }

nsq_status nsq__fail(nsq_diag *d, nsq_status s, uint64_t offset, const char *rule, const char *fmt, ...)
{
    if (!d) return s;
    d->status = s;
    d->offset = offset;
    snprintf(d->rule, sizeof d->rule, "%s", rule ? rule : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
    return s;
}
