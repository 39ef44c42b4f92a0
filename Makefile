# The README's two commands. Everything else is CMake (CMakeLists.txt).
#   make demo   install missing build packages, build, run the example tests
#   make check  install what the tests need, build with -Werror, run ctest,
#               then the same suite built with ASan+UBSan, then the threaded
#               parts built with TSan, then the parsers' fuzz targets
BUILD       ?= build
ASAN_BUILD  ?= build-asan
TSAN_BUILD  ?= build-tsan
FUZZ_BUILD  ?= build-fuzz
DEB_BUILD   ?= build-deb
FUZZ_SECONDS ?= 7
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
DEMO_DIR    ?= atx-results/demo

BUILD_PKGS = cmake make gcc libc6-dev pkg-config python3 libjson-c-dev libxml2-dev libyaml-dev \
             libssh-dev libcmocka-dev libsqlite3-dev libcurl4-openssl-dev
TEST_PKGS  = $(BUILD_PKGS) libxml2-utils python3-junitparser clang libclang-rt-14-dev \
             openssh-server openssh-client podman runc busybox-static sqlite3 \
             chromium python3-pytest python3-jsonschema iproute2 procps \
             debhelper dpkg-dev lintian munge slurmctld slurmd slurm-client util-linux

.PHONY: all build demo check test test-asan test-tsan test-fuzz deps-build deps-test deb clean

all: build

# Install the Debian packages that are missing (nothing if all are there).
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "make: need root (or sudo) to install:$$missing" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps-build:
	$(call install_missing,$(BUILD_PKGS))

deps-test:
	$(call install_missing,$(TEST_PKGS))

build: deps-build
	cmake -S . -B $(BUILD) -DATX_WERROR=ON
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	@rm -rf $(DEMO_DIR)
	$(BUILD)/bin/atx run --plan examples/demo/plan.json -o $(DEMO_DIR)
	@echo "demo: reports in $(DEMO_DIR)/junit.xml and $(DEMO_DIR)/results.jsonl"

test: deps-test
	cmake -S . -B $(BUILD) -DATX_WERROR=ON -DATX_TEST_AREAS=
	cmake --build $(BUILD) -j $(JOBS)
	ctest --test-dir $(BUILD) -j $(JOBS) --output-on-failure

test-asan: deps-test
	cmake -S . -B $(ASAN_BUILD) -DATX_WERROR=ON -DATX_SANITIZE=address,undefined \
	      -DCMAKE_BUILD_TYPE=Debug -DATX_TEST_AREAS=
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) -j $(JOBS) --output-on-failure

# ThreadSanitizer over the threaded parts: the orchestrator's tests, the
# agent's connection (its pump thread), the process primitive, systems that
# stop answering, reboots over ssh (agents stopped and started again under a
# test), secrets masked by the workers, the outcome history read and
# annotated beside the aggregator thread, and the end-to-end runs of the atx
# command.
test-tsan: deps-test
	cmake -S . -B $(TSAN_BUILD) -DATX_WERROR=ON -DATX_SANITIZE=thread \
	      -DCMAKE_BUILD_TYPE=Debug "-DATX_TEST_AREAS=orchestrator;agent;process;liveness;containment;fmfrun;bud;status;hostile_local;slurm;reboot;changes;flaky" -DATX_EXAMPLES=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir $(TSAN_BUILD) -j $(JOBS) --output-on-failure

# The parsers' fuzz targets (clang's libFuzzer with ASan+UBSan), each for a
# bounded time from the seed corpus in tests/fuzz/corpus.
test-fuzz: deps-test
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DATX_WERROR=ON -DATX_FUZZ=ON \
	      -DATX_SANITIZE=address,undefined -DATX_TEST_AREAS=fuzz -DATX_EXAMPLES=OFF \
	      -DATX_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz
	ctest --test-dir $(FUZZ_BUILD) -j $(JOBS) --output-on-failure

# Debian packages (libatx1, libatx-dev, atx-plugins, atx) in $(DEB_BUILD),
# built by dpkg-buildpackage from the tracked files as they are, then checked
# by lintian.
DEB_PKGS = debhelper dpkg-dev lintian
deb: deps-build
	$(call install_missing,$(DEB_PKGS))
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/atx
	git ls-files -z | xargs -0 tar -c | tar -x -C $(DEB_BUILD)/atx
	cd $(DEB_BUILD)/atx && dpkg-buildpackage -b -us -uc -j$(JOBS) > ../build.log 2>&1 || \
	  { tail -40 ../build.log; exit 1; }
	cd $(DEB_BUILD) && lintian --allow-root --fail-on error *.changes
	@ls $(DEB_BUILD)/*.deb

check: test test-asan test-tsan test-fuzz

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
