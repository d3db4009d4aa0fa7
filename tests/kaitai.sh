# tests/kaitai.sh - checks spec/nsq.ksy, the Kaitai Struct description of the
# format. Sourced by tests/run.sh, whose check helper and $TMP it uses:
#   kaitai_tests BUILD_DIR
# tests/kaitai/check.js compiles spec/nsq.ksy to JavaScript with the npm
# package kaitai-struct-compiler, parses every file of the conformance
# MANIFEST, compares what it reads from the valid ones with
# BUILD_DIR/nsq-inspect --json and checks that the invalid ones are rejected
# under their rule. Node.js and the packages of tests/kaitai/package.json are
# test dependencies, installed by `make test-deps` (tests/deps.sh)

KT_DIR=tests/kaitai

kt_ready() {
    if ! command -v node >/dev/null; then
        echo "node not found: run make test-deps"
        return 1
    fi
    local p
    for p in kaitai-struct-compiler kaitai-struct yaml; do
        [ -f "$KT_DIR/node_modules/$p/package.json" ] || { echo "$KT_DIR/node_modules/$p is missing: run make test-deps"; return 1; }
    done
}

kaitai_tests() {
    local b=$1
    check "kaitai: node and the $KT_DIR packages are installed" kt_ready
    check "kaitai: spec/nsq.ksy reads the conformance set as $b/nsq-inspect does" \
        node "$KT_DIR/check.js" "$TMP/kaitai" "$b/nsq-inspect"
}
