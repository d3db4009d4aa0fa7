#!/bin/bash
# Writes the conformance set into DIR: the files from mkfixtures (with MANIFEST,
# and VERSION: the format version from nsq.h), plus, for each valid file, the
# expected `nsq-inspect --json --blocks --tensors` output.
#   tests/gen-conformance.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=$1 out=$2
rm -rf "$out"
mkdir -p "$out"
"$build/tests/mkfixtures" "$out"
grep -v '^#' "$out/MANIFEST" | while read -r file status _; do
    if [ "$status" = NSQ_OK ]; then
        (cd "$out" && "$OLDPWD/$build/nsq-inspect" --json --blocks --tensors "$file") > "$out/${file%.nsq}.json"
    fi
done
