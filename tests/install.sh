# tests/install.sh - `make install` into a temporary prefix; examples/consumer.c
# built out of tree with pkg-config against the installed shared and static
# libraries, its decoded tensors checked against tests/decode_ref.py (numpy,
# from the spec); the installed tools; `make uninstall`; a staged install
# (DESTDIR). Sourced by tests/run.sh, whose check/exit_code/stderr_says helpers
# and $TMP it uses:
#   install_tests BUILD_DIR

IN_PY=/usr/bin/python3
IN_VERSION=$(sed -n 's/.*define NSQ_VERSION_STRING "\(.*\)"/\1/p' libnsq/nsq.h)
IN_SONAME=libnsq.so.${IN_VERSION%%.*}
IN_TOOLS=(nsq-convert nsq-inspect nsq-perplexity nsq-run nsq-tokenize nsq-verify)

in_pc() { PKG_CONFIG_PATH="$1/lib/pkgconfig" pkg-config "${@:2}" nsq; }

# Every file and link an install puts under PREFIX (LIB: the library directory
# relative to it), and nothing else.
in_files_are() { # in_files_are PREFIX LIB
    local p=$1 lib=$2 t
    { for t in "${IN_TOOLS[@]}"; do echo "bin/$t"; done
      printf '%s\n' include/nsq.h include/nsqrt.h "$lib/libnsq.a" "$lib/libnsqrt.a" "$lib/libnsq.so.$IN_VERSION" "$lib/pkgconfig/nsq.pc" \
          "$lib/$IN_SONAME -> libnsq.so.$IN_VERSION" "$lib/libnsq.so -> $IN_SONAME"; } | sort >"$TMP/in-want"
    { find "$p" -type f -printf '%P\n'; find "$p" -type l -printf '%P -> %l\n'; } | sort >"$TMP/in-got"
    diff "$TMP/in-want" "$TMP/in-got"
}

in_pc_is() { # in_pc_is PREFIX WANT PKG-CONFIG-OPTION
    local got
    got=$(in_pc "$1" "$3") && got=${got% } && [ "$got" = "$2" ] || { echo "pkg-config $3: '$got', want '$2'"; return 1; }
}

in_pc_fields() { # in_pc_fields PREFIX: nsq.pc names the prefix, the version and -lnsq
    local p=$1
    in_pc_is "$p" "$IN_VERSION" --modversion && in_pc_is "$p" "$p" --variable=prefix &&
        in_pc_is "$p" "-I$p/include" --cflags && in_pc_is "$p" "-L$p/lib -lnsq" --libs
}

# The shared library's dynamic symbols are exactly the functions nsq.h marks NSQ_API.
in_exports() {
    # the name before the parameters, also of a function returning a pointer to an array: (*name(void))[8]
    sed -n 's/^NSQ_API[^(]*(\**\(nsq_[a-z0-9_]*\)(.*/\1/p; s/^NSQ_API[^(]* \**\(nsq_[a-z0-9_]*\)(.*/\1/p' \
        libnsq/nsq.h | sort >"$TMP/in-api"
    nm -D --defined-only "$1" | awk '{print $3}' | sort >"$TMP/in-syms"
    [ -s "$TMP/in-api" ] && diff "$TMP/in-api" "$TMP/in-syms"
}

# (Outputs are captured before grep -q, which would otherwise end the pipe
# early: with pipefail, the writer's SIGPIPE fails the check at random.)
in_soname() { local d; d=$(readelf -d "$1") && grep -q "(SONAME) *Library soname: \[$IN_SONAME\]" <<<"$d"; }

# nsq.pc's private libraries (for libnsq.a) are the ones libnsq.so needs.
in_private_libs() { # in_private_libs PREFIX
    local p=$1
    readelf -d "$p/lib/libnsq.so" | sed -n 's/.*(NEEDED).*\[lib\(.*\)\.so\..*\]/-l\1/p' | grep -vx -- -lc | sort >"$TMP/in-needed"
    in_pc "$p" --static --libs-only-l | tr ' ' '\n' | grep -v -e '^$' -e '^-lnsq$' | sort >"$TMP/in-private"
    diff "$TMP/in-needed" "$TMP/in-private"
}

# Builds the example in a directory of its own: nsq.h and the library come
# only from the prefix, through pkg-config. "whole" links every member of
# libnsq.a, so that all of --static's libraries are needed.
in_build_consumer() { # in_build_consumer PREFIX shared|static|whole
    local p=$1 libs
    mkdir -p "$TMP/in-oot" && cp examples/consumer.c "$TMP/in-oot/" || return 1
    case $2 in
    shared) libs=$(in_pc "$p" --libs) ;;
    static) libs=$(in_pc "$p" --static --libs | sed 's/-lnsq /-l:libnsq.a /') ;;
    whole) libs=$(in_pc "$p" --static --libs | sed 's/-lnsq /-Wl,--whole-archive -l:libnsq.a -Wl,--no-whole-archive /') ;;
    esac
    (cd "$TMP/in-oot" && cc -std=c11 -Wall -Wextra -Werror -O2 consumer.c $(in_pc "$p" --cflags) -o "consumer-$2" $libs)
}

# examples/generate.c, built out of tree against the installed runtime.
in_build_generate() { # in_build_generate PREFIX
    local p=$1
    mkdir -p "$TMP/in-oot" && cp examples/generate.c "$TMP/in-oot/" || return 1
    (cd "$TMP/in-oot" && cc -std=c11 -Wall -Wextra -Werror -O2 generate.c $(in_pc "$p" --cflags) -o generate \
        -L"$p/lib" -l:libnsqrt.a $(in_pc "$p" --static --libs | sed 's/-lnsq /-l:libnsq.a /') -lpthread -lm)
}

in_linkage() { # the shared build loads libnsq from the prefix; the static one needs no libnsq
    local p=$1 shared static
    shared=$(LD_LIBRARY_PATH="$p/lib" ldd "$TMP/in-oot/consumer-shared") &&
        static=$(readelf -d "$TMP/in-oot/consumer-static") || return 1
    grep -q "$IN_SONAME => $p/lib/$IN_SONAME" <<<"$shared" && ! grep -q 'libnsq' <<<"$static" ||
        { printf '%s\n' "$shared" "$static"; return 1; }
}

in_consumer() { LD_LIBRARY_PATH="$IN_PREFIX/lib" "$TMP/in-oot/consumer-$1" "${@:2}"; }

# Every tensor of FILE decodes to the values of decode_ref.py (the consumer's
# checksum is their XXH3-64), and the static build prints what the shared one
# does (checked on the default tensor, which must be the first, and the last).
in_consumer_matches() { # in_consumer_matches FILE
    local f=$1 dir=$TMP/in-ref i=0 name last file h out
    local -A want
    rm -rf "$dir" && mkdir -p "$dir" || return 1
    "$IN_PREFIX/bin/nsq-inspect" --json --blocks --tensors "$f" >"$dir.json" &&
        $IN_PY tests/decode_ref.py "$f" "$dir.json" "$dir" >"$dir.names" || return 1
    (cd "$dir" && xxhsum -H3 -- *.f32 2>/dev/null) >"$dir.sums" || return 1
    while read -r _ file _ h; do file=${file#(} && want[${file%.f32)}]=$h; done <"$dir.sums"
    while read -r name; do
        in_consumer shared "$f" "$name" >"$dir.shared" || return 1
        mapfile -t out <"$dir.shared"
        [ "${out[-1]}" = "xxh3_f32: ${want[$i]}" ] || { echo "$name: consumer ${out[-1]}, decode_ref.py ${want[$i]}"; return 1; }
        i=$((i + 1)) last=$name
    done <"$dir.names"
    [ $i -gt 0 ] && [ ${#want[@]} -eq $i ] || { echo "$i tensors, ${#want[@]} reference values"; return 1; }
    in_consumer static "$f" "$last" >"$dir.static" && cmp "$dir.shared" "$dir.static" &&
        in_consumer shared "$f" >"$dir.default" && in_consumer static "$f" >"$dir.static" && cmp "$dir.default" "$dir.static" &&
        in_consumer shared "$f" "$(head -1 "$dir.names")" >"$dir.shared" && cmp "$dir.default" "$dir.shared"
}

in_tool_version() { # "nsq-x VERSION (format M.N)" with the library's version
    local out
    out=$("$IN_PREFIX/bin/$1" --version) && [[ $out == "$1 $IN_VERSION (format "[0-9]*.[0-9]*")" ]] || { echo "$out"; return 1; }
}

in_staged() { # DESTDIR install with a library directory of its own, then its uninstall
    local d=$TMP/in-stage p=/opt/nsq b=$1
    make -s --no-print-directory BUILD="$b" DESTDIR="$d" PREFIX=$p LIBDIR=$p/lib64 install &&
        in_files_are "$d$p" lib64 || return 1
    grep -qx "prefix=$p" "$d$p/lib64/pkgconfig/nsq.pc" && grep -qx "libdir=$p/lib64" "$d$p/lib64/pkgconfig/nsq.pc" || return 1
    make -s --no-print-directory BUILD="$b" DESTDIR="$d" PREFIX=$p LIBDIR=$p/lib64 uninstall &&
        [ -z "$(find "$d" ! -type d)" ]
}

install_tests() {
    local b=$1 f t m name
    IN_PREFIX=$TMP/in-prefix
    check "make install PREFIX" make -s --no-print-directory BUILD="$b" PREFIX="$IN_PREFIX" install
    check "install: every file and link" in_files_are "$IN_PREFIX" lib
    check "install: nsq.pc prefix, version, flags" in_pc_fields "$IN_PREFIX"
    check "install: libnsq.so exports exactly the NSQ_API functions" in_exports "$IN_PREFIX/lib/libnsq.so.$IN_VERSION"
    check "install: libnsq.so soname" in_soname "$IN_PREFIX/lib/libnsq.so.$IN_VERSION"
    check "install: nsq.pc private libraries are libnsq.so's" in_private_libs "$IN_PREFIX"
    check "install: consumer.c builds with pkg-config (shared)" in_build_consumer "$IN_PREFIX" shared
    check "install: consumer.c builds with pkg-config --static" in_build_consumer "$IN_PREFIX" static
    check "install: all of libnsq.a links with pkg-config --static" in_build_consumer "$IN_PREFIX" whole
    check "install: consumer linkage" in_linkage "$IN_PREFIX"
    for t in "${IN_TOOLS[@]}"; do
        check "install: $t --version" in_tool_version "$t"
        check "install: $t --help" exit_code 0 "$IN_PREFIX/bin/$t" --help
    done
    for f in $(grep -v '^#' "$CONF/MANIFEST" | awk '$2 == "NSQ_OK" {print $1}'); do
        check "install: consumer decodes $f as decode_ref.py" in_consumer_matches "$CONF/$f"
    done
    mkdir -p "$TMP/in-models"
    for m in "tiny-llama|--refine 2 --zstd" "tiny-gpt2|--scheme tiered"; do # model|nsq-convert options
        name=${m%%|*} f=$TMP/in-models/${m%%|*}.nsq
        check "install: nsq-convert $name ${m#*|}" "$IN_PREFIX/bin/nsq-convert" --quiet ${m#*|} "fixtures/models/$name" "$f"
        check "install: nsq-verify $name" "$IN_PREFIX/bin/nsq-verify" "$f"
        check "install: consumer decodes converted $name as decode_ref.py" in_consumer_matches "$f"
    done
    check "install: nsq-run continues a prompt" bash -c "'$IN_PREFIX/bin/nsq-run' '$TMP/in-models/tiny-llama.nsq' \
        --prompt-ids 1,2,3 -n 4 --ignore-eos --print-ids | grep -qE '^[0-9]+( [0-9]+){3}$'"
    check "install: generate.c builds against the installed runtime" in_build_generate "$IN_PREFIX"
    check "install: generate.c continues a prompt as nsq-run does" bash -c "cmp <('$TMP/in-oot/generate' \
        '$TMP/in-models/tiny-gpt2.nsq' 5,6,7 12) <('$IN_PREFIX/bin/nsq-run' '$TMP/in-models/tiny-gpt2.nsq' \
        --prompt-ids 5,6,7 -n 12 --ignore-eos --print-ids --threads 1)"
    check "install: generate.c names a file that is no model" stderr_says "generate: .*R-HDR-2" \
        "$TMP/in-oot/generate" "$CONF/invalid/R-HDR-2.nsq" 1 1
    check "install: consumer reports the rule" stderr_says "(rule R-HDR-2)" in_consumer shared "$CONF/invalid/R-HDR-2.nsq"
    check "install: consumer reports a bad payload" stderr_says "(rule R-TIER-4)" in_consumer static \
        "$CONF/invalid/R-TIER-4.nsq" model.layers.0.self_attn.q_proj.weight
    check "install: consumer unknown tensor" exit_code 1 in_consumer shared "$CONF/f32.nsq" no.such.tensor
    check "install: consumer usage" exit_code 2 in_consumer shared
    check "make uninstall" make -s --no-print-directory BUILD="$b" PREFIX="$IN_PREFIX" uninstall
    check "uninstall: no file or link left" test -z "$(find "$IN_PREFIX" ! -type d)"
    check "uninstall: pkg-config no longer finds nsq" exit_code 1 in_pc "$IN_PREFIX" --exists
    check "install and uninstall with DESTDIR and LIBDIR" in_staged "$b"
}
