# vekter: `make demo` and `make test` work on a fresh Debian 12 machine with only Rust.
# Cargo's build directory lives outside the checkout so fresh clones (CI) reuse the FAISS build.

CARGO_TARGET_DIR ?= $(HOME)/.cache/vekter/target
export CARGO_TARGET_DIR
VENV ?= $(HOME)/.cache/vekter/venv
WHEEL_VENV ?= $(HOME)/.cache/vekter/wheel-venv
PYTHON := $(VENV)/bin/python
LIB := dist/vekter.so
# A second build whose bundled FAISS is compiled with AVX2 (its own target dir: the FAISS cmake
# build depends on CXXFLAGS), and a third with AVX-512. vekter.so hands connections over to the
# best one the CPU allows. Their flags (AVX2_CXXFLAGS, AVX512_CXXFLAGS) are in src/simd.mk, which
# src/simd.rs also reads.
AVX2_TARGET_DIR ?= $(HOME)/.cache/vekter/target-avx2
AVX512_TARGET_DIR ?= $(HOME)/.cache/vekter/target-avx512
include src/simd.mk
ARCH := $(shell uname -m)

.PHONY: all build deps demo test test-rust test-golden test-python test-hostile test-wheels venv wheels golden-update fmt lint clean bench fuzz

all: build

deps:
	@scripts/install-deps.sh

# Libraries are installed by rename, never overwritten in place: a process that has the old
# file mapped (a running Datasette, a test) keeps a valid mapping.
build: deps
	cargo build --release
	@mkdir -p dist
	cp $(CARGO_TARGET_DIR)/release/libvekter.so dist/.vekter.so.tmp && mv -f dist/.vekter.so.tmp $(LIB)
ifeq ($(ARCH),x86_64)
	CARGO_TARGET_DIR=$(AVX2_TARGET_DIR) CXXFLAGS="$(AVX2_CXXFLAGS)" cargo build --release --features avx2
	cp $(AVX2_TARGET_DIR)/release/libvekter.so dist/.vekter_avx2.so.tmp && mv -f dist/.vekter_avx2.so.tmp dist/vekter_avx2.so
	CARGO_TARGET_DIR=$(AVX512_TARGET_DIR) CXXFLAGS="$(AVX512_CXXFLAGS)" cargo build --release --features avx512
	cp $(AVX512_TARGET_DIR)/release/libvekter.so dist/.vekter_avx512.so.tmp && mv -f dist/.vekter_avx512.so.tmp dist/vekter_avx512.so
endif

demo: build
	sqlite3 :memory: < sql/demo.sql

venv: deps
	@scripts/venv.sh $(VENV) tests/requirements.txt

test: build venv
	$(MAKE) --no-print-directory lint test-rust test-golden test-python test-hostile test-wheels

# The fuzz targets' corpus replay and the failure-injection tests need their test-only features.
TEST_FEATURES := fuzzing,failpoints

test-rust:
	cargo test --release --features $(TEST_FEATURES) -- --test-threads=2

test-golden:
	tests/golden.sh

test-python:
	VEKTER_LIB=$(CURDIR)/$(LIB) $(PYTHON) -m pytest -q tests/python

# Every case in its own sqlite3 process: a crash shows as a signal, a hang as a timeout.
test-hostile:
	$(PYTHON) tests/hostile/battery.py

# The wheels of SPEC §8 (python/build_wheels.py): vekter (the three builds, the libraries they
# need beyond the manylinux policy, the Python module), datasette-vekter, sqlite-utils-vekter.
# SOURCE_DATE_EPOCH: fixed timestamps in auditwheel's rewrite of the vekter wheel.
wheels: build
	@scripts/venv.sh $(WHEEL_VENV) python/requirements.txt
	PATH=$(WHEEL_VENV)/bin:$$PATH SOURCE_DATE_EPOCH=315532800 $(WHEEL_VENV)/bin/python python/build_wheels.py dist dist/wheels

# Each wheel installed into a fresh venv from /usr/bin/python3, used from another directory: the
# module, a real Datasette with only the plugin, the sqlite-utils CLI, auditwheel's verdict, and
# the golden SQL under APSW's current SQLite.
test-wheels: wheels venv
	VEKTER_WHEELS=$(CURDIR)/dist/wheels WHEEL_VENV=$(WHEEL_VENV) $(PYTHON) -m pytest -q tests/wheels

golden-update: build
	UPDATE=1 tests/golden.sh

fmt:
	cargo fmt

# Clippy twice: with the test features (all test code) and without (the shipped library, where
# the dead-code lint sees what only tests or fuzzing use).
lint: venv
	cargo fmt --check
	cargo clippy --release --all-targets --features $(TEST_FEATURES) -- -D warnings
	cargo clippy --release --lib -- -D warnings
	$(PYTHON) -m ruff check --no-cache bench python tests/wheels

clean:
	rm -rf dist
	cargo clean

# Side-by-side benchmark (bench/run.py): vekter vs raw FAISS, sqlite-vec, vectorlite (and sqlite-vss
# when it loads). Writes docs/benchmarks.md and docs/bench_*.png. QUICK=1: small sizes, a few minutes.
bench: build
	@scripts/venv.sh $(HOME)/.cache/vekter/bench-venv bench/requirements.txt
	$(HOME)/.cache/vekter/bench-venv/bin/pip install -q --disable-pip-version-check --no-deps -r bench/requirements-real.txt
	@scripts/install-deps.sh manpages manpages-dev perl-modules-5.36  # ann_real's corpus, with the Rust docs
	$(HOME)/.cache/vekter/bench-venv/bin/python bench/run.py $(if $(QUICK),--quick,)

# Coverage-guided fuzzing (cargo-fuzz, nightly, AddressSanitizer) of the vector codec, the JSON
# output, the faiss table's argument parser and the snapshot loader: FUZZ_SECONDS per target.
# Not part of `make test`, which replays the corpus plus 50,000 mutations per target on stable
# (tests/fuzz_corpus.rs).
FUZZ_SECONDS ?= 300
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)
