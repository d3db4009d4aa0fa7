#!/bin/bash
# The conformance set is versioned with the format: passes only when the spec
# (its title and section 13), libnsq/nsq.h (NSQ_FORMAT_MAJOR/MINOR) and
# fixtures/conformance (VERSION, MANIFEST's first line) name one format version.
#   tests/check-version.sh [ROOT]      ROOT: a tree laid out as the repository's
set -uo pipefail
root=${1:-$(dirname "$0")/..}
spec=$root/spec/nsq-format.md hdr=$root/libnsq/nsq.h conf=$root/fixtures/conformance

title=$(sed -n '1s/^# The NSQ file format, version \([0-9]*\.[0-9]*\)$/\1/p' "$spec")
policy=$(sed -n 's/.*This document is version \([0-9]*\.[0-9]*\)\.$/\1/p' "$spec")
lib=$(sed -n 's/^#define NSQ_FORMAT_MAJOR \([0-9]*\)$/\1/p' "$hdr").$(sed -n 's/^#define NSQ_FORMAT_MINOR \([0-9]*\)$/\1/p' "$hdr")
set=$(cat "$conf/VERSION" 2>/dev/null)
manifest=$(sed -n '1s/^#.*(format \([0-9]*\.[0-9]*\))$/\1/p' "$conf/MANIFEST")

if [ -n "$title" ] && [ "$title" = "$policy" ] && [ "$lib" = "$title" ] && [ "$set" = "$title" ] &&
    [ "$manifest" = "$title" ]; then
    echo "format $title: spec, nsq.h and the conformance set agree"
    exit 0
fi
cat <<EOF
format versions disagree:
  spec/nsq-format.md title                   '$title'
  spec/nsq-format.md section 13              '$policy'
  libnsq/nsq.h NSQ_FORMAT_MAJOR.MINOR        '$lib'
  fixtures/conformance/VERSION               '$set'
  fixtures/conformance/MANIFEST first line   '$manifest'
A format version change updates them together: state the new version in the
spec's title and section 13, set NSQ_FORMAT_MAJOR and NSQ_FORMAT_MINOR in
libnsq/nsq.h to it, then run 'make conformance' and commit fixtures/conformance.
EOF
exit 1
