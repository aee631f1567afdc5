# Two commands for a new user (each installs what is missing, then builds):
#   make test   - every test (C++ GoogleTest + pytest, through CTest)
#   make demo   - edge + cloud collaborating on the shipped model (loopback)
# Other targets: deps, build, bench, bench-suite, install, install-python, asan-test, fuzz, clean.
BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= 2
PREFIX     ?= /usr/local
PYTHON     ?= /usr/bin/python3
CMAKE_ARGS ?=

TANDEM     := $(BUILD)/examples/tandem
# The shipped model once its weights are committed; until then a random model
# of the same architecture with the shipped tokenizer.
SHIPPED    := models/tandem-tiny
DEMO_MODEL := $(if $(wildcard $(SHIPPED)/model.safetensors),$(SHIPPED),$(BUILD)/demo-model)

.PHONY: all deps configure build test demo bench bench-suite bench-pipelined bench-load install install-python asan-test fuzz clean

all: build

deps:
	tools/install_deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DPython_EXECUTABLE=$(PYTHON) $(CMAKE_ARGS)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j$(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

$(BUILD)/demo-model/config.json: | build
	$(TANDEM) random-model --out $(BUILD)/demo-model --tokenizer $(SHIPPED)/tokenizer.json \
	    --layers 8 --hidden 256 --heads 8 --kv-heads 4 --intermediate 688

# Edge and cloud collaborating on loopback: examples/quickstart starts
# tandem-cloud, runs an edge session against it and prints a summary.
demo: build $(DEMO_MODEL)/config.json
	$(BUILD)/examples/quickstart --model $(DEMO_MODEL) --prompt "And it came to pass" --tokens 48

bench: build
	$(BUILD)/bench/tandem_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

# The end-to-end benchmark suite (bench/README.md): every mode over emulated
# networks, baselines, micro-benchmarks; writes bench/results/<date>-<host>.json
# and a report with plots. ~15 minutes on 2 cores.
bench-suite: build
	tools/install_bench_deps.sh
	$(PYTHON) bench/suite/run_suite.py --build $(BUILD) --command "make bench-suite"

# Collaborative mode at several RTTs: pipelined (confirmed) vs blocking vs
# standalone, medians over alternated repeats (issue 9). Minutes; not in CI.
bench-pipelined: build
	$(BUILD)/bench/tandem_pipelined_bench | tee bench/results/pipelined-$$(date +%Y-%m-%d)-$$(hostname).md

# The server under idle streams (threads, RSS) and the bounded load-and-fault
# test: 64 edge sessions, hostile clients, the server killed and restarted.
# A few minutes; not in CI. Writes bench/results/load-<date>-<host>.md.
bench-load: build
	nice env OPENBLAS_NUM_THREADS=1 $(BUILD)/bench/load/tandem_idle_streams \
	    --server $(BUILD)/cloud/tandem-cloud --model models/tandem-tiny --label this \
	    | tee bench/results/load-$$(date +%Y-%m-%d)-$$(hostname).md
	nice env OPENBLAS_NUM_THREADS=1 $(BUILD)/bench/load/tandem_load_fault \
	    --server $(BUILD)/cloud/tandem-cloud \
	    | tee -a bench/results/load-$$(date +%Y-%m-%d)-$$(hostname).md

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# The Python module alone, into PREFIX/lib/python3.X/dist-packages (with the
# default PREFIX=/usr/local: on the path of Debian's /usr/bin/python3).
install-python: build
	cmake --install $(BUILD) --prefix $(PREFIX) --component python

# The C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan-test: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DTANDEM_SANITIZE=ON \
	    -DTANDEM_BUILD_PYTHON=OFF -DTANDEM_BUILD_BENCH=OFF -DPython_EXECUTABLE=$(PYTHON)
	cmake --build $(BUILD)-asan -j$(JOBS)
	ctest --test-dir $(BUILD)-asan --output-on-failure -j$(JOBS)

# libFuzzer targets with clang + ASan/UBSan, FUZZ_SECONDS each (not CI).
FUZZ_SECONDS ?= 60
fuzz: deps
	tools/install_fuzz_deps.sh
	BUILD=$(BUILD)-fuzz JOBS=$(JOBS) tools/fuzz.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz
