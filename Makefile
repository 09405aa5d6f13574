# Gust build. Two build trees: build/ (release, -O2) and build-asan/ (ASan+UBSan,
# used by `make test`). Sources are discovered per component directory, so adding a
# file to src/<component>/ needs no edit here.

CC      ?= cc
CSTD    := -std=c17 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
INC     := -Iinclude -Isrc
LIBS    := -ljansson -lsqlite3 -lseccomp -lzstd -lssl -lcrypto -lz -lpthread -ldl -lm

MODE    ?= release
ifeq ($(MODE),asan)
  B       := build-asan
  OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDOPT   := -fsanitize=address,undefined
else
  B       := build
  OPT     := -O2 -g
  LDOPT   :=
endif
CFLAGS_ALL := $(CSTD) $(WARN) $(INC) $(OPT) $(CFLAGS)

# Internal libraries, lowest layer first (docs/ARCHITECTURE.md holds the rules).
LIB_DIRS := base proto http evloop spec runtime cas image store worker build control api client trace sim
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard src/$(d)/*.c))
LIB_OBJS := $(patsubst src/%.c,$(B)/obj/%.o,$(LIB_SRCS)) $(B)/obj/gen/ui_bundle.o
LIB_A    := $(B)/libgust-internal.a

# libgust: the public C client (include/gust.h) and what it needs.
CLIENT_DIRS := base http client
CLIENT_OBJS := $(patsubst src/%.c,$(B)/obj/%.o,$(foreach d,$(CLIENT_DIRS),$(wildcard src/$(d)/*.c)))

# gust: the command-line client, one file per command group, over libgust; spec
# (base only) parses spec files so the client finds the host paths it uploads.
CLI_SRCS := $(wildcard src/cli/*.c)
CLI_SPEC_OBJS := $(patsubst src/%.c,$(B)/obj/%.o,$(wildcard src/spec/*.c))

# gust-init is static and unsanitized: it runs as PID 1 inside containers whose
# rootfs has no libc of ours.
INIT_SRCS := $(wildcard src/init/*.c) $(wildcard src/proto/*.c) $(wildcard src/base/*.c) \
             src/runtime/confine.c src/runtime/netlink.c

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
EXAMPLE_SRCS := $(wildcard examples/*/*.c)
EXAMPLE_BINS := $(patsubst examples/%.c,$(B)/examples/%,$(EXAMPLE_SRCS))

BINS := $(B)/gustd $(B)/gust-sim $(B)/gust $(B)/gust-init $(B)/libgust.a $(B)/libgust.so

.PHONY: all asan test unit integration bench run fuzz clean deps check-layers
HOSTILE_BIN := $(B)/tests/hostile
FAKE_NVML := $(B)/tests/fake-nvml/libnvidia-ml.so.1

all: $(BINS) $(EXAMPLE_BINS) $(UNIT_BINS) $(HOSTILE_BIN) $(FAKE_NVML)

$(B)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC -MMD -MP -c $< -o $@

# The dashboard (ui/, docs/ARCHITECTURE.md). ui/dist is committed, so a build without
# node uses it as is. With node and ui/node_modules (npm ci in ui/, which
# scripts/install-deps.sh runs) it is rebuilt when a source is newer; make itself never
# goes to the network. test_ui.py checks that the committed bundle matches the sources.
UI_SRCS := $(wildcard ui/src/*) ui/package.json ui/package-lock.json ui/build.mjs
ui/dist/index.html: $(UI_SRCS)
	@if command -v node >/dev/null 2>&1 && [ -d ui/node_modules/esbuild ]; then \
	    (cd ui && node build.mjs) || echo "note: rebuilding ui/dist failed; the committed bundle is used" >&2; \
	else echo "note: ui/ is newer than ui/dist, but node or ui/node_modules is missing (npm ci in ui/;" \
	    "scripts/install-deps.sh does it): the committed ui/dist is used" >&2; fi

# The bundle's bytes as C (src/api/ui.h), so gustd serves /ui from its own binary.
$(B)/gen/ui_bundle.c: ui/dist/index.html $(wildcard ui/dist/*) scripts/embed-ui.py
	@mkdir -p $(dir $@)
	python3 scripts/embed-ui.py ui/dist $@

$(B)/obj/gen/ui_bundle.o: $(B)/gen/ui_bundle.c src/api/ui.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC -c $< -o $@

$(LIB_A): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/libgust.a: $(CLIENT_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/libgust.so: $(CLIENT_OBJS)
	$(CC) -shared $(LDOPT) -o $@ $^ -ljansson -lssl -lcrypto

$(B)/gustd: src/gustd/main.c $(LIB_A)
	$(CC) $(CFLAGS_ALL) $(LDOPT) -o $@ $< $(LIB_A) $(LIBS)

# gust-sim: the trace-driven simulator, a thin main over src/sim (docs/ARCHITECTURE.md).
$(B)/gust-sim: src/gust-sim/main.c $(LIB_A)
	$(CC) $(CFLAGS_ALL) $(LDOPT) -o $@ $< $(LIB_A) $(LIBS)

$(B)/gust: $(CLI_SRCS) $(wildcard src/cli/*.h) $(B)/libgust.a $(CLI_SPEC_OBJS)
	$(CC) $(CFLAGS_ALL) $(LDOPT) -o $@ $(CLI_SRCS) $(CLI_SPEC_OBJS) $(B)/libgust.a -ljansson -lssl -lcrypto -lseccomp -lm

$(B)/gust-init: $(INIT_SRCS) $(wildcard src/init/*.h src/proto/*.h src/base/*.h src/runtime/confine.h src/runtime/netlink.h)
	@mkdir -p $(B)
	$(CC) $(CSTD) $(WARN) $(INC) -O2 -g -static -o $@ $(INIT_SRCS)

$(B)/tests/%: tests/unit/%.c tests/unit/unit.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDOPT) -Itests/unit -o $@ $< $(LIB_A) $(LIBS)

# Examples are static: they run inside busybox containers that have no libc.
$(B)/examples/%: examples/%.c $(wildcard src/proto/*.c src/base/*.c)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(INC) -O2 -g -static -o $@ $< $(wildcard src/proto/*.c) $(wildcard src/base/*.c)

# NVML's entry points for the GPU unit test (tests/unit/test_gpu.c loads it by dlopen).
$(FAKE_NVML): tests/unit/fake_nvml/fake_nvml.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O2 -fPIC -shared -Wl,-soname,libnvidia-ml.so.1 -o $@ $<

# The hostile function of the sandbox tests; static, for busybox images.
$(HOSTILE_BIN): tests/integration/hostile/hostile.c $(wildcard src/proto/*.c src/base/*.c src/proto/*.h src/base/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(INC) -O2 -static -o $@ $< $(wildcard src/proto/*.c) $(wildcard src/base/*.c)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

deps:
	@scripts/install-deps.sh

check-layers:
	@scripts/check-layers.sh

asan:
	$(MAKE) MODE=asan all

unit: asan
	@scripts/run-unit.sh build-asan

integration: asan
	@GUST_BUILD=build-asan scripts/run-integration.sh

test: deps
	$(MAKE) MODE=asan all
	@scripts/run-tests.sh build-asan

bench: deps
	$(MAKE) MODE=release all
	@scripts/bench.sh build

run: deps
	$(MAKE) MODE=release all
	@scripts/run-example.sh build

fuzz:
	@scripts/build-fuzz.sh

clean:
	rm -rf build build-asan build-fuzz
