#!/usr/bin/env bash
# The long fuzz runs of BENCHMARKS.md: each target until 10 million executions or one hour of
# its own CPU time, whichever comes first, two targets at a time (one per core). CPU time, not
# wall time, so a run that shares its core or is stopped (SIGSTOP) for a benchmark still gets its
# hour. Builds once, then runs the built binaries, so edits made meanwhile do not trigger
# rebuilds mid-run.
# Usage: crates/fuzz/long-run.sh [TARGET...]    (from the workspace root; default: all)
# Prints one line per target: target, runs, wall seconds, CPU seconds, cov, ft, corpus, exit status.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${FUZZ_RUNS:-10000000}
seconds=${FUZZ_SECONDS:-3600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(csr names jws finalize acme_payloads est_body est_path scep_message scep_envelope ocsp_request audit_jsonl)
# FUZZ_NO_BUILD=1 reuses binaries already built (their commit is then the one to record);
# FUZZ_OUT puts logs and the summary elsewhere than target/fuzz-long (a second run beside one).
[ -n "${FUZZ_NO_BUILD:-}" ] || cargo +nightly fuzz build --fuzz-dir crates/fuzz >/dev/null
bin=crates/fuzz/target/x86_64-unknown-linux-gnu/release
out=${FUZZ_OUT:-target/fuzz-long}
mkdir -p "$out"

# Utime + stime of a process, in whole seconds.
cpu_seconds() {
    awk -v tck="$(getconf CLK_TCK)" '{print int(($14 + $15) / tck)}' "/proc/$1/stat" 2>/dev/null || echo 0
}

one() {
    local target=$1 corpus="target/fuzz-corpus/$1" started status pid cpu=0 interrupted=
    crates/fuzz/seed.sh "$target" "$corpus"
    started=$SECONDS
    status=0
    "$bin/$target" "$corpus" -runs="$runs" -print_final_stats=1 \
        -artifact_prefix="$out/$target-" >"$out/$target.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        cpu=$(cpu_seconds "$pid")
        if [ "$cpu" -ge "$seconds" ] && [ -z "$interrupted" ]; then
            kill -INT "$pid" # libFuzzer prints its final stats and exits
            interrupted=1
        fi
        sleep 2
    done
    wait "$pid" || status=$?
    # libFuzzer's exit code after SIGINT (-interrupted_exit_code, 72) is the hour being up.
    [ -n "$interrupted" ] && [ "$status" = 72 ] && status=0
    local last cov ft done
    last=$(grep -E '^#[0-9]+' "$out/$target.log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    done=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$out/$target.log")
    echo "$target runs=${done:-?} seconds=$((SECONDS - started)) cpu_seconds=$cpu cov=${cov:-?} ft=${ft:-?} corpus=$(ls "$corpus" | wc -l) exit=$status" |
        tee -a "$out/summary.txt"
}

# Two at a time: a queue drained by two workers.
printf '%s\n' "${targets[@]}" >"$out/queue"
worker() {
    while true; do
        local target
        target=$(flock "$out/queue" sh -c 'head -n 1 "$0"; sed -i 1d "$0"' "$out/queue")
        [ -n "$target" ] || return 0
        one "$target"
    done
}
worker &
worker
wait
