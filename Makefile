# nsq - build, test and fuzz. `make` builds everything; `make test` runs the suite.
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# Dequantization is specified as fl(d*q)+m: no fused multiply-add anywhere.
BASE    := $(WARN) -D_GNU_SOURCE -ffp-contract=off -fvisibility=hidden -Ilibnsq
# What libnsq links (xxhash is compiled in with XXH_INLINE_ALL); nsq.pc.in lists the same.
LIBS    := -lzstd -lpcre2-8 -lutf8proc -ljansson -lm
BLAS    := -lopenblas # the converter's dense linear algebra (LATTICE encoding)
BUILD   ?= build

# Installation directories (DESTDIR stages them, e.g. for packaging).
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The library's version, from nsq.h; the soname changes with its major number.
VERSION := $(shell sed -n 's/.*define NSQ_VERSION_STRING "\(.*\)"/\1/p' libnsq/nsq.h)
SONAME  := libnsq.so.$(firstword $(subst ., ,$(VERSION)))

LIB_SRC := $(wildcard libnsq/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_PIC := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
TOOLS   := nsq-inspect nsq-verify nsq-convert nsq-run nsq-perplexity nsq-tokenize
# The CPU runtime and the converter's core (all of nsq-convert but its main)
# are compiled once into static libraries that the tools, unit tests,
# benchmarks and fuzz targets link; cli.o holds the tools' shared helpers.
RUNTIME_SRC := $(wildcard tools/runtime/*.c)
RUNTIME_HDR := $(wildcard tools/runtime/*.h)
# the forward pass is plain loops: let the compiler vectorize them
RUNTIME_OPT ?= -O3
RUNTIME_LIB := $(BUILD)/libnsqrt.a
CONVERT_SRC := $(filter-out tools/nsq-convert/main.c,$(wildcard tools/nsq-convert/*.c))
CONVERT_HDR := $(wildcard tools/nsq-convert/*.h)
CONVERT_LIB := $(BUILD)/libnsqconv.a
CLI_OBJ := $(BUILD)/tools/common/cli.o
TOOL_BIN := $(TOOLS:%=$(BUILD)/%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(BUILD)/tests/mkfixtures $(BUILD)/tests/roundtrip $(BUILD)/tests/dequant_dump $(BUILD)/tests/nsq_edit \
                $(BUILD)/tests/hessian_check

.PHONY: all lib tools test test-deps asan fuzz fuzz-smoke fuzz-long demo conformance install uninstall clean
all: lib tools $(UNIT_BIN) $(TEST_HELPERS) $(BUILD)/bench/kernels $(BUILD)/bench/membw
lib: $(BUILD)/libnsq.a $(BUILD)/libnsq.so
tools: $(TOOL_BIN)

$(BUILD)/%.o: %.c $(wildcard libnsq/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) -c $< -o $@
$(BUILD)/pic/%.o: %.c $(wildcard libnsq/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) -fPIC -c $< -o $@
$(BUILD)/libnsq.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/libnsq.so: $(LIB_PIC)
	$(CC) -shared -Wl,-soname,$(SONAME) $(CFLAGS) $^ -o $@ $(LIBS)

$(BUILD)/tools/runtime/%.o: tools/runtime/%.c $(RUNTIME_HDR) $(wildcard libnsq/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $(RUNTIME_OPT) -c $< -o $@
$(RUNTIME_LIB): $(RUNTIME_SRC:%.c=$(BUILD)/%.o)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/tools/nsq-convert/%.o: tools/nsq-convert/%.c $(CONVERT_HDR) $(RUNTIME_HDR) tools/common/cli.h $(wildcard libnsq/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itools/common -Itools/runtime $(CFLAGS) $(RUNTIME_OPT) -c $< -o $@
$(CONVERT_LIB): $(CONVERT_SRC:%.c=$(BUILD)/%.o)
	rm -f $@ && ar rcs $@ $^
$(CLI_OBJ): tools/common/cli.c tools/common/cli.h tools/common/cli_route.h tools/runtime/nsqrt.h $(wildcard libnsq/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itools/runtime $(CFLAGS) -c $< -o $@

# --calib runs the runtime's forward pass; the Hessians of the encoder are OpenBLAS products
# calib_text.S builds the default calibration text in
$(BUILD)/tools/nsq-convert/calib_text.o: tools/nsq-convert/calib_text.S tools/nsq-convert/calib-default.txt
	@mkdir -p $(dir $@)
	$(CC) -c $< -o $@
$(BUILD)/nsq-convert: tools/nsq-convert/main.c $(BUILD)/tools/nsq-convert/calib_text.o $(CONVERT_HDR) $(CONVERT_LIB) $(RUNTIME_LIB) $(CLI_OBJ) $(BUILD)/libnsq.a
	$(CC) $(BASE) -Itools/common -Itools/runtime $(CFLAGS) $(RUNTIME_OPT) $< $(BUILD)/tools/nsq-convert/calib_text.o $(CLI_OBJ) -o $@ $(CONVERT_LIB) $(RUNTIME_LIB) $(BUILD)/libnsq.a -ljansson -lyaml -lpthread $(BLAS) $(LIBS)

$(BUILD)/nsq-run $(BUILD)/nsq-perplexity: $(BUILD)/nsq-%: tools/nsq-%/main.c $(RUNTIME_HDR) $(RUNTIME_LIB) $(CLI_OBJ) $(BUILD)/libnsq.a
	$(CC) $(BASE) -Itools/common -Itools/runtime $(CFLAGS) $(RUNTIME_OPT) $< $(CLI_OBJ) -o $@ $(RUNTIME_LIB) $(BUILD)/libnsq.a -lpthread $(LIBS)

# --model runs the runtime's model check
$(BUILD)/nsq-verify: tools/nsq-verify/main.c $(RUNTIME_HDR) $(RUNTIME_LIB) $(CLI_OBJ) $(BUILD)/libnsq.a
	$(CC) $(BASE) -Itools/common -Itools/runtime $(CFLAGS) $< $(CLI_OBJ) -o $@ $(RUNTIME_LIB) $(BUILD)/libnsq.a -lpthread $(LIBS)

$(BUILD)/nsq-%: tools/nsq-%/main.c $(CLI_OBJ) $(BUILD)/libnsq.a
	$(CC) $(BASE) -Itools/common $(CFLAGS) $< $(CLI_OBJ) -o $@ $(BUILD)/libnsq.a $(LIBS)

# Unit tests link the libraries: only the objects a test uses come in, so a
# test may define a converter function itself to stand in for its module.
TEST_LIBS := $(CONVERT_LIB) $(RUNTIME_LIB) $(BUILD)/libnsq.a
$(BUILD)/tests/%: tests/unit/%.c tests/unit/testutil.h $(CONVERT_HDR) $(RUNTIME_HDR) $(TEST_LIBS) $(CLI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itests/unit -Itools/runtime -Itools/nsq-convert $(CFLAGS) $< $(CLI_OBJ) -o $@ $(TEST_LIBS) -lcmocka -ljansson -lyaml -lxxhash -lpthread $(BLAS) $(LIBS)
# the converter's config and recipe readers and the tools' option parsers
$(BUILD)/tests/test_parse: tests/unit/test_parse.c tests/unit/testutil.h $(CONVERT_HDR) $(CLI_OBJ) $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itests/unit -Itools/common -Itools/nsq-convert -Itools/runtime $(CFLAGS) $< $(CLI_OBJ) -o $@ $(TEST_LIBS) -lcmocka -ljansson -lyaml $(BLAS) $(LIBS)
$(BUILD)/bench/kernels: bench/kernels.c $(RUNTIME_HDR) $(RUNTIME_LIB) $(BUILD)/libnsq.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itools/runtime $(CFLAGS) $(RUNTIME_OPT) $< -o $@ $(RUNTIME_LIB) $(BUILD)/libnsq.a $(LIBS)
$(BUILD)/bench/membw: bench/membw.c $(RUNTIME_HDR) $(RUNTIME_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itools/runtime $(CFLAGS) $(RUNTIME_OPT) $< -o $@ $(RUNTIME_LIB) -lpthread
$(BUILD)/tests/roundtrip: tests/roundtrip.c $(CONVERT_HDR) $(CONVERT_LIB) $(BUILD)/libnsq.a $(CLI_OBJ) $(RUNTIME_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itools/nsq-convert $(CFLAGS) $< $(CLI_OBJ) -o $@ $(CONVERT_LIB) $(RUNTIME_LIB) $(BUILD)/libnsq.a -ljansson -lpthread $(BLAS) $(LIBS)
$(BUILD)/tests/hessian_check: tests/hessian_check.c $(CONVERT_HDR) $(RUNTIME_HDR) $(TEST_LIBS) $(CLI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -Itools/runtime -Itools/nsq-convert $(CFLAGS) $< $(CLI_OBJ) -o $@ $(TEST_LIBS) -ljansson -lpthread $(BLAS) $(LIBS)
$(BUILD)/tests/mkfixtures: tests/mkfixtures.c $(BUILD)/libnsq.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ $(BUILD)/libnsq.a $(LIBS)
$(BUILD)/tests/nsq_edit: tests/nsq_edit.c $(BUILD)/libnsq.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ $(BUILD)/libnsq.a $(LIBS)
$(BUILD)/tests/dequant_dump: tests/dequant_dump.c $(BUILD)/libnsq.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(CFLAGS) $< -o $@ $(BUILD)/libnsq.a $(LIBS)

ASAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

# The whole suite: plain and sanitizer builds, then the fuzz smoke runs.
test: all
	$(MAKE) --no-print-directory BUILD=build-asan CC=clang CFLAGS="$(ASAN_CFLAGS)" RUNTIME_OPT= all
	FUZZ=1 tests/run.sh $(BUILD) build-asan

# Node.js and the Kaitai Struct compiler, for the spec/nsq.ksy check.
test-deps:
	tests/deps.sh

asan:
	$(MAKE) --no-print-directory BUILD=build-asan CC=clang CFLAGS="$(ASAN_CFLAGS)" RUNTIME_OPT= all
	tests/run.sh build-asan

# libFuzzer targets: every fuzz/fuzz_*.c, linked with the libraries built in
# build-fuzz with coverage; fuzz/<target>.dict, if present, is
# its dictionary. FUZZ_TIME seconds per target in
# fuzz-smoke; fuzz-long runs each target for FUZZ_RUNS executions on FUZZ_JOBS
# processes (see fuzz/README.md).
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard fuzz/fuzz_*.c)))
FUZZ_TIME ?= 20
FUZZ_RUNS ?= 10000000
FUZZ_JOBS ?= $(shell nproc)
FUZZ_SAN := address,undefined -fno-sanitize-recover=all
FUZZ_INC := -Itools/common -Itools/runtime -Itools/nsq-convert
fuzz:
	$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,$(FUZZ_SAN)" RUNTIME_OPT= \
	    $(FUZZ_TARGETS:%=build-fuzz/%)
$(BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $(wildcard tools/*/*.h) $(TEST_LIBS) $(CLI_OBJ)
	clang $(BASE) $(FUZZ_INC) -O1 -g -fsanitize=fuzzer,$(FUZZ_SAN) $< $(CLI_OBJ) -o $@ $(TEST_LIBS) $(BLAS) $(LIBS) -ljansson -lyaml -lpthread
fuzz-smoke: fuzz
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus-$$t; \
	  build-fuzz/$$t -max_total_time=$(FUZZ_TIME) -timeout=25 -print_final_stats=1 $$([ -f fuzz/$$t.dict ] && echo -dict=fuzz/$$t.dict) \
	    -artifact_prefix=build-fuzz/ build-fuzz/corpus-$$t fuzz/corpus/$$t >build-fuzz/$$t.log 2>&1; rc=$$?; \
	  grep -E "stat::number_of_executed_units|ERROR|SUMMARY" build-fuzz/$$t.log; \
	  [ $$rc -eq 0 ] || { tail -40 build-fuzz/$$t.log; exit 1; }; \
	done
fuzz-long: fuzz
	fuzz/long.sh $(FUZZ_RUNS) $(FUZZ_JOBS) $(FUZZ_TARGETS)

# The main job on a bundled model: convert it to 4 bits per weight (LATTICE, calibrated), verify
# the file, and continue a prompt with it.
demo: tools
	@mkdir -p $(BUILD)/demo
	$(BUILD)/nsq-convert fixtures/models/tiny-llama $(BUILD)/demo/tiny-llama.nsq
	$(BUILD)/nsq-verify $(BUILD)/demo/tiny-llama.nsq
	$(BUILD)/nsq-run $(BUILD)/demo/tiny-llama.nsq "The history of science is" -n 40 --stats

# Regenerates fixtures/conformance (commit the result with any format change).
conformance: all
	tests/gen-conformance.sh $(BUILD) fixtures/conformance

# Headers, both libraries (libnsq.so.VERSION with its soname and development
# links), the tools and nsq.pc for pkg-config.
install: lib tools
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' libnsq/nsq.pc.in >$(BUILD)/nsq.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 libnsq/nsq.h tools/runtime/nsqrt.h $(DESTDIR)$(INCLUDEDIR)
	install -m 644 $(RUNTIME_LIB) $(DESTDIR)$(LIBDIR)/libnsqrt.a
	install -m 644 $(BUILD)/libnsq.a $(DESTDIR)$(LIBDIR)/libnsq.a
	install -m 755 $(BUILD)/libnsq.so $(DESTDIR)$(LIBDIR)/libnsq.so.$(VERSION)
	ln -sf libnsq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libnsq.so
	install -m 644 $(BUILD)/nsq.pc $(DESTDIR)$(PKGCONFIGDIR)/nsq.pc
	install -m 755 $(TOOL_BIN) $(DESTDIR)$(BINDIR)

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/nsq.h $(DESTDIR)$(INCLUDEDIR)/nsqrt.h $(DESTDIR)$(PKGCONFIGDIR)/nsq.pc $(TOOLS:%=$(DESTDIR)$(BINDIR)/%)
	rm -f $(DESTDIR)$(LIBDIR)/libnsq.a $(DESTDIR)$(LIBDIR)/libnsqrt.a $(DESTDIR)$(LIBDIR)/libnsq.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	    $(DESTDIR)$(LIBDIR)/libnsq.so

clean:
	rm -rf build build-asan build-fuzz
