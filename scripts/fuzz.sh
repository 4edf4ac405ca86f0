#!/usr/bin/env bash
# Coverage-guided fuzzing of vekter's parsers (issue 5): runs every cargo-fuzz target in fuzz/
# for SECONDS seconds each (default 60) and prints the executions per target. `make fuzz` runs
# `scripts/fuzz.sh $(FUZZ_SECONDS)`; `make test` runs the same entry points on stable through
# tests/fuzz_corpus.rs (checked-in corpus plus mutations, a few seconds).
#
#   scripts/fuzz.sh [SECONDS]
#
# Environment:
#   FUZZ_TARGETS      targets to run (default: all four, space-separated)
#   FUZZ_TARGET_DIR   cargo target dir (default ~/.cache/vekter/target-fuzz: the bundled FAISS
#                     takes minutes to build, so keep it between runs)
#   FUZZ_CORPUS_DIR   working corpus, grown by the runs (default ~/.cache/vekter/fuzz-corpus);
#                     the seeds in fuzz/corpus/<target>/ are read, never written
#   FUZZ_SANITIZER    cargo fuzz --sanitizer (default address)
#   FUZZ_JOBS         parallel fuzzing processes per target (default 1)
#
# Exits non-zero if any target crashes, hangs (> 10 s on one input) or fails to build; the
# failing input is kept under fuzz/artifacts/<target>/ (replay: cargo +nightly fuzz run <target>
# <file>).
set -euo pipefail

secs="${1:-60}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

targets=(${FUZZ_TARGETS:-vector_codec json_output vtab_options snapshot})
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/vekter/target-fuzz}"
corpus_root="${FUZZ_CORPUS_DIR:-$HOME/.cache/vekter/fuzz-corpus}"
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"

# cargo-fuzz needs a nightly toolchain (sanitizer coverage flags).
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

echo "fuzz: building ${targets[*]} (sanitizer: $sanitizer, target dir: $CARGO_TARGET_DIR)"
for t in "${targets[@]}"; do
    cargo +nightly fuzz build --sanitizer "$sanitizer" "$t"
done

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
    work="$corpus_root/$t"
    mkdir -p "$work" "fuzz/artifacts/$t"
    args=(-max_total_time="$secs" -timeout=10 -print_final_stats=1)
    if [ -f "fuzz/dict/$t.dict" ]; then
        args+=(-dict="fuzz/dict/$t.dict")
    fi
    if [ "$jobs" -gt 1 ]; then
        args+=(-fork="$jobs")
    fi
    echo "fuzz: $t for ${secs}s (corpus: $work + fuzz/corpus/$t)"
    log="$logs/$t.log"
    status=0
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "$work" "fuzz/corpus/$t" \
        -- "${args[@]}" >"$log" 2>&1 || status=$?
    # libFuzzer's last stats line: "#12345  DONE   cov: 678 ft: 910 corp: 11/1Kb lim: … exec/s: 411 rss: 60Mb"
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
    execs="$(grep -E '^stat::number_of_executed_units:' "$log" | tail -n 1 | awk '{print $2}' || true)"
    if [ -z "$execs" ] && [ -n "$done_line" ]; then
        execs="$(echo "$done_line" | sed -E 's/^#([0-9]+).*/\1/')"
    fi
    rate="$(echo "$done_line" | sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p')"
    cov="$(echo "$done_line" | sed -nE 's/.*cov: ([0-9]+).*/\1/p')"
    corp="$(echo "$done_line" | sed -nE 's/.*corp: ([0-9]+)\/.*/\1/p')"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$(printf '%-14s FAILED (exit %s) after %s executions' "$t" "$status" "${execs:-?}")")
        echo "fuzz: $t FAILED; end of its log:" >&2
        tail -n 60 "$log" >&2
        grep -E 'Test unit written to|artifact_prefix' "$log" >&2 || true
    else
        summary+=("$(printf '%-14s %12s executions in %ss (%s exec/s, cov %s, corpus %s)' \
            "$t" "${execs:-?}" "$secs" "${rate:-?}" "${cov:-?}" "${corp:-?}")")
        echo "fuzz: $done_line"
    fi
done

echo
echo "fuzz summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
