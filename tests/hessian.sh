# tests/hessian.sh - the converter's per-layer input Hessians (hessian.c),
# through tests/hessian_check.c on lossless conversions of the bundled models:
# against the ordinary forward pass, across thread counts, and their errors.
# Sourced by tests/run.sh, whose check helper and $TMP it uses:
#   hessian_tests BUILD_DIR

hessian_tests() {
    local b=$1 d="$TMP/hess-$1" name
    mkdir -p "$d"
    # one layer a block, and several in a compressed block
    check "$b hessian: convert tiny-llama --layers-per-block 4 --zstd" \
        "$b/nsq-convert" --quiet --lossless --layers-per-block 4 --zstd fixtures/models/tiny-llama "$d/tiny-llama-4.nsq"
    for name in tiny-llama tiny-gpt2; do
        check "$b hessian: convert $name --lossless" "$b/nsq-convert" --quiet --lossless "fixtures/models/$name" "$d/$name.nsq"
    done
    # 300 tokens in windows of 128: two whole windows and a short one
    for name in tiny-llama tiny-llama-4 tiny-gpt2; do
        check "$b hessian: $name matches the forward pass, any thread count" \
            "$b/tests/hessian_check" "$d/$name.nsq" fixtures/corpus/calib-small.txt 300 128
    done
}
