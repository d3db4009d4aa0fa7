# tests/hostile_convert.sh - nsq-convert never destroys a file, never leaves
# one behind and never blocks on a FIFO; no tool blocks on a FIFO given as an
# input; a tokenizer that does not load is never embedded. Sourced by
# tests/run.sh, whose check/exit_code/stderr_says helpers and $TMP it uses:
#   hostile_convert_tests BUILD_DIR
# Every check runs for every build; the inputs are made under $TMP/hc.

HC=$TMP/hc
HC_CALIB=fixtures/corpus/calib-router.txt

# A copy of a fixture model under $HC (hard links and edits need one).
hc_copy() { # hc_copy NAME FIXTURE
    rm -rf "${HC:?}/$1" && cp -r "fixtures/models/$2" "$HC/$1"
}

# A model directory of symbolic links to FIXTURE's files, but for NAME=SPEC:
# "fifo" (a FIFO), "dir" (a directory), "none" (no such file) or a file whose
# content is SPEC.
hc_model() { # hc_model DIR FIXTURE [NAME=SPEC...]
    local dir=$1 src=fixtures/models/$2 f
    shift 2
    rm -rf "$dir" && mkdir -p "$dir" || return 1
    for f in "$src"/*; do ln -s "$PWD/$f" "$dir/$(basename "$f")"; done
    for f in "$@"; do
        rm -f "$dir/${f%%=*}"
        case ${f#*=} in
        fifo) mkfifo "$dir/${f%%=*}" ;;
        dir) mkdir "$dir/${f%%=*}" ;;
        none) ;;
        *) printf '%s' "${f#*=}" >"$dir/${f%%=*}" ;;
        esac
    done
}

# What ls says of every entry of DIR, file contents summed: a fingerprint
# that any new, removed, retyped or rewritten file changes.
hc_state() { # hc_state DIR
    ls -lA --time-style=+ "$1" | awk 'NR > 1 {print $1, $NF}'
    find "$1" -maxdepth 1 -type f -exec cksum {} + | sort
}

# fails WANT PATTERN DIR COMMAND...: the command exits WANT within 10 s, says
# PATTERN, reports no sanitizer error and leaves DIR as it was.
hc_fails() {
    local want=$1 pat=$2 dir=$3 before rc
    shift 3
    before=$(hc_state "$dir")
    timeout 10 "$@" </dev/null >"$TMP/hc.out" 2>"$TMP/hc.err"
    rc=$?
    [ $rc -ne 124 ] || { echo "blocked: $*"; return 1; }
    [ $rc -eq "$want" ] || { echo "exit $rc, want $want: $*"; cat "$TMP/hc.err"; return 1; }
    grep -q -- "$pat" "$TMP/hc.err" || { echo "stderr lacks '$pat':"; cat "$TMP/hc.err"; return 1; }
    ! grep -q "Sanitizer\|runtime error" "$TMP/hc.err" || { cat "$TMP/hc.err"; return 1; }
    [ "$before" = "$(hc_state "$dir")" ] || { echo "$dir changed:"; diff <(echo "$before") <(hc_state "$dir"); return 1; }
}

# refuses B OUT PATTERN SRC [OPTIONS...]: converting SRC to OUT is refused
# before anything is written; OUT's directory and OUT itself stay as they were.
hc_refuses() {
    local b=$1 out=$2 pat=$3
    shift 3
    hc_fails 1 "$out: .*$pat" "$(dirname "$out")" "$b/nsq-convert" "$@" "$out" --quiet || return 1
    [ ! -L "$out" ] || hc_fails 1 "$out: .*$pat" "$(dirname "$(readlink -f "$out")")" "$b/nsq-convert" "$@" "$out" --quiet
}

hc_output_tests() {
    local b=$1 o=$HC/out-dir g=$HC/gpt2 l=$HC/llama
    rm -rf "$o" && mkdir -p "$o"
    mkfifo "$o/fifo"
    check "$b convert: OUT a FIFO" hc_refuses "$b" "$o/fifo" "is a FIFO, not a regular file" "$g"
    check "$b convert: OUT a FIFO, still a FIFO" test -p "$o/fifo"
    check "$b convert: OUT a directory" hc_refuses "$b" "$o" "is a directory" "$g"
    ln -s "$o/nothing" "$o/dangling"
    check "$b convert: OUT a dangling symbolic link" hc_refuses "$b" "$o/dangling" "is a dangling symbolic link" "$g"
    python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$o/sock"
    check "$b convert: OUT a socket" hc_refuses "$b" "$o/sock" "is a socket" "$g"
    if [ "$(id -u)" -eq 0 ]; then # mknod needs root; never /dev/null itself
        mknod "$o/cdev" c 1 3
        check "$b convert: OUT a character device" hc_refuses "$b" "$o/cdev" "is a character device" "$g"
        check "$b convert: OUT a character device, still one" test -c "$o/cdev"
        ln -s cdev "$o/cdev-link"
        check "$b convert: OUT a symbolic link to a device" hc_refuses "$b" "$o/cdev-link" "symbolic link to a character device" "$g"
    fi
    # OUT is one of the inputs, by its own name, a symbolic or a hard link
    check "$b convert: OUT the weights" hc_refuses "$b" "$g/model.safetensors" "same file as the input" "$g"
    check "$b convert: OUT the config" hc_refuses "$b" "$g/config.json" "same file as the input" "$g"
    check "$b convert: OUT the tokenizer" hc_refuses "$b" "$g/vocab.json" "same file as the input" "$g"
    ln -s ../gpt2/tokenizer_config.json "$o/tc-link"
    check "$b convert: OUT a symbolic link to an input" hc_refuses "$b" "$o/tc-link" "same file as the input" "$g"
    ln "$g/model.safetensors" "$o/weights-link"
    check "$b convert: OUT a hard link to the weights" hc_refuses "$b" "$o/weights-link" "same file as the input" "$g"
    ln "$l/model-00002-of-00003.safetensors" "$o/shard-link"
    check "$b convert: OUT a hard link to a shard" hc_refuses "$b" "$o/shard-link" "same file as the input" "$l"
    check "$b convert: OUT the shard index" hc_refuses "$b" "$l/model.safetensors.index.json" "same file as the input" "$l"
    cp "$HC_CALIB" "$o/calib.txt"
    check "$b convert: OUT the --calib text" hc_refuses "$b" "$o/calib.txt" "same file as the input" "$g" --calib "$o/calib.txt"
    printf 'group_size: 64\n' >"$o/recipe.yaml"
    check "$b convert: OUT the --recipe file" hc_refuses "$b" "$o/recipe.yaml" "same file as the input" "$g" --recipe "$o/recipe.yaml"
    check "$b convert: --help says what OUT may be" bash -c "'$b/nsq-convert' --help | grep -q 'must be new or a regular file'"
}

# The number of files under DIR that process PID holds open.
hc_open_in() { # hc_open_in PID DIR
    local fd n=0
    for fd in "/proc/$1/fd/"*; do
        [[ $(readlink "$fd" 2>/dev/null) == "$2/"* ]] && n=$((n + 1))
    done
    echo $n
}

# SIGNAL while calibrating: OUT.nsq and a file of the user's named like the
# old scratch files stay as they were, and nothing appears in the directory.
hc_killed() { # hc_killed B SIGNAL
    local b=$1 sig=$2 dir=$HC/killed-$2 pid i rc before seen=
    rm -rf "$dir" && mkdir -p "$dir"
    echo "the user's own file" >"$dir/OUT.nsq.calib.tmp"
    echo "an older OUT.nsq" >"$dir/OUT.nsq"
    before=$(hc_state "$dir")
    "$b/nsq-convert" "$HC/llama" "$dir/OUT.nsq" --scheme tiered --calib "$HC_CALIB" --calib-tokens 4096 --quiet 2>"$HC/kill.err" &
    pid=$!
    for ((i = 0; i < 3000; i++)); do # the output and the scratch copy for calibration
        [ "$(hc_open_in $pid "$dir")" -ge 2 ] && seen=1 && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.01
    done
    kill "-$sig" $pid 2>/dev/null
    { wait $pid; } 2>/dev/null
    rc=$?
    [ -n "$seen" ] || { echo "never saw the scratch file open (exit $rc)"; cat "$HC/kill.err"; return 1; }
    [ $rc -eq $((128 + $(kill -l "$sig"))) ] || { echo "not killed by $sig mid-way (exit $rc)"; return 1; }
    [ "$before" = "$(hc_state "$dir")" ] || { echo "$dir changed:"; diff <(echo "$before") <(hc_state "$dir"); return 1; }
}

# A whole --calib --router --bpw conversion leaves only OUT.nsq next to the
# user's files with the names of the old scratch files.
hc_scratch_names() { # hc_scratch_names B
    local b=$1 dir=$HC/scratch f before
    rm -rf "$dir" && mkdir -p "$dir"
    for f in calib probe router; do echo "mine: $f" >"$dir/OUT.nsq.$f.tmp"; done
    before=$(hc_state "$dir")
    "$b/nsq-convert" "$HC/gpt2" "$dir/OUT.nsq" --quiet --calib "$HC_CALIB" --calib-tokens 2048 --calib-probe 64 \
        --scheme tiered --bpw 4 --router --router-windows 8 || return 1
    "$b/nsq-verify" "$dir/OUT.nsq" >/dev/null || return 1
    [ "$(hc_state "$dir" | grep -v 'OUT\.nsq$')" = "$(echo "$before")" ] || { echo "left behind:"; ls -lA "$dir"; return 1; }
}

# A FIFO, or a directory, where a tool expects an input file.
hc_input_tests() {
    local b=$1 m=$HC/in p=$HC/plain f
    for f in config.json tokenizer.json tokenizer_config.json model-00001-of-00003.safetensors \
        model.safetensors.index.json; do
        hc_model "$m" tiny-llama "$f=fifo"
        check "$b convert: $f a FIFO" hc_fails 1 "$f: .*is a FIFO\|$f: not a regular file" "$m" "$b/nsq-convert" "$m" "$HC/x.nsq"
    done
    for f in vocab.json merges.txt model.safetensors; do
        hc_model "$m" tiny-gpt2 tokenizer.json=none "$f=fifo"
        check "$b convert: gpt2 $f a FIFO" hc_fails 1 "$f: .*is a FIFO\|$f: not a regular file" "$m" "$b/nsq-convert" "$m" "$HC/x.nsq"
    done
    hc_model "$m" tiny-gpt2 config.json=dir
    check "$b convert: config.json a directory" hc_fails 1 "config.json: cannot open: is a directory" "$m" "$b/nsq-convert" "$m" "$HC/x.nsq"
    hc_model "$m" tiny-gpt2 tokenizer.json=dir
    check "$b convert: tokenizer.json a directory" hc_fails 1 "tokenizer.json: .*is a directory" "$m" "$b/nsq-convert" "$m" "$HC/x.nsq"
    rm -rf "$p" && mkdir -p "$p" && mkfifo "$p/fifo"
    check "$b convert: --calib a FIFO" hc_fails 1 "--calib $p/fifo: cannot read: is a FIFO" "$p" \
        "$b/nsq-convert" "$HC/gpt2" "$HC/x.nsq" --calib "$p/fifo"
    check "$b convert: --recipe a FIFO" hc_fails 2 "$p/fifo: .*is a FIFO" "$p" \
        "$b/nsq-convert" "$HC/gpt2" "$HC/x.nsq" --recipe "$p/fifo"
    check "$b convert: --recipe a directory" hc_fails 2 "$p: .*is a directory" "$p" \
        "$b/nsq-convert" "$HC/gpt2" "$HC/x.nsq" --recipe "$p"
    # the other tools
    for f in nsq-verify nsq-inspect; do
        check "$b $f: a FIFO" hc_fails 1 "not a regular file" "$p" "$b/$f" "$p/fifo"
    done
    check "$b nsq-verify: a directory" hc_fails 1 "is a directory" "$p" "$b/nsq-verify" "$p"
    check "$b nsq-run: model a FIFO" hc_fails 1 "not a regular file" "$p" "$b/nsq-run" "$p/fifo" "Hello" -n 1
    check "$b nsq-perplexity: model a FIFO" hc_fails 1 "not a regular file" "$p" "$b/nsq-perplexity" "$p/fifo" "$HC_CALIB"
    check "$b nsq-perplexity: text a FIFO" hc_fails 1 "$p/fifo: cannot read: is a FIFO" "$p" \
        "$b/nsq-perplexity" "$HC/gpt2.nsq" "$p/fifo"
    check "$b nsq-tokenize: tokenizer a FIFO" hc_fails 1 "$p/fifo: is a FIFO" "$p" "$b/nsq-tokenize" "$p/fifo" --ids
    check "$b nsq-tokenize: --bench a FIFO" hc_fails 1 "$p/fifo: is a FIFO" "$p" \
        "$b/nsq-tokenize" fixtures/models/tiny-gpt2 --bench "$p/fifo"
}

# A tokenizer that libnsq cannot build is refused before anything is written.
hc_tokenizer_tests() {
    local b=$1 m=$HC/tok o=$HC/tok-out tj
    rm -rf "$o" && mkdir -p "$o"
    hc_model "$m" tiny-llama tokenizer.json=
    check "$b convert: empty tokenizer.json" hc_fails 1 "the tokenizer does not load" "$o" "$b/nsq-convert" "$m" "$o/x.nsq"
    hc_model "$m" tiny-llama "tokenizer.json=not json"
    check "$b convert: tokenizer.json not JSON" hc_fails 1 "the tokenizer does not load" "$o" "$b/nsq-convert" "$m" "$o/x.nsq"
    tj=$(python3 -c "import json,sys; t=json.load(open(sys.argv[1]))
t['pre_tokenizer'] = {'type': 'Split', 'pattern': {'Regex': '('}, 'behavior': 'Isolated', 'invert': False}
print(json.dumps(t))" fixtures/models/tiny-gpt2/tokenizer.json)
    hc_model "$m" tiny-gpt2 "tokenizer.json=$tj"
    check "$b convert: tokenizer.json with an invalid regex" hc_fails 1 "the tokenizer does not load" "$o" \
        "$b/nsq-convert" "$m" "$o/x.nsq"
    hc_model "$m" tiny-gpt2 tokenizer.json=none vocab.json=
    check "$b convert: empty vocab.json" hc_fails 1 "the tokenizer does not load" "$o" "$b/nsq-convert" "$m" "$o/x.nsq"
}

# Failures once the output file exists leave OUT.nsq as it was, and nothing else.
hc_late_failures() {
    local b=$1 o=$HC/late m=$HC/late-model
    rm -rf "$o" && mkdir -p "$o" && echo "an older OUT.nsq" >"$o/OUT.nsq"
    hc_model "$m" tiny-llama "config.json=$(sed 's/"intermediate_size": 768/"intermediate_size": 512/' fixtures/models/tiny-llama/config.json)"
    check "$b convert: a shape error" hc_fails 1 "shape" "$o" "$b/nsq-convert" "$m" "$o/OUT.nsq"
    check "$b convert: a write error" hc_fails 1 "File too large" "$o" \
        bash -c 'trap "" XFSZ; ulimit -f 2000; exec "$@"' efbig "$b/nsq-convert" "$HC/llama" "$o/OUT.nsq" --scheme tiered
    printf 'Too short.' >"$HC/short.txt"
    check "$b convert: a calibration error" hc_fails 1 "calibration needs at least" "$o" \
        "$b/nsq-convert" "$HC/gpt2" "$o/OUT.nsq" --calib "$HC/short.txt"
    hc_copy trunc tiny-llama && truncate -s -100 "$HC/trunc/model-00003-of-00003.safetensors"
    check "$b convert: a truncated shard" hc_fails 1 "model-00003-of-00003.safetensors" "$o" \
        "$b/nsq-convert" "$HC/trunc" "$o/OUT.nsq"
}

hostile_convert_tests() {
    local b=$1
    mkdir -p "$HC"
    hc_copy gpt2 tiny-gpt2 && hc_copy llama tiny-llama
    [ -f "$HC/gpt2.nsq" ] || "$b/nsq-convert" "$HC/gpt2" "$HC/gpt2.nsq" --quiet --scheme tiered
    hc_output_tests "$b"
    hc_input_tests "$b"
    hc_tokenizer_tests "$b"
    hc_late_failures "$b"
    check "$b convert: SIGTERM while calibrating" hc_killed "$b" TERM
    check "$b convert: SIGKILL while calibrating" hc_killed "$b" KILL
    check "$b convert: the scratch files have no names" hc_scratch_names "$b"
}
