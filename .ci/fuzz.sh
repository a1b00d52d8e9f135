#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (fuzz/fuzz_targets/*) for a bounded time each, from the
# committed seed corpora (fuzz/corpus/<target>, read-only: new inputs go to a scratch directory).
# Installs a nightly toolchain and cargo-fuzz (pinned) when missing. Prints per target the
# executions, the coverage (libFuzzer's `cov`: edges reached; `ft`: features) and the corpus size;
# any crash fails the step and leaves the input under fuzz/artifacts/<target>/ (turn it into a
# regression test in tests/fuzz_regressions.rs).
#
# Environment: FUZZ_SECONDS (per target, default 10), FUZZ_TARGETS (space-separated subset),
# RSTAR_FUZZ_TOOLCHAIN (default nightly). Measured on a shared 2-core VM: installing cargo-fuzz
# ~2.5 min, the ASan release build of all targets 10m47s of CPU time (about 5.5 min of wall time
# on 2 free cores), then 13 targets x 10 s: about 10 minutes in all. The toolchain and cargo-fuzz
# are skipped when present, and fuzz/target is reused when kept between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$SECONDS
toolchain=${RSTAR_FUZZ_TOOLCHAIN:-nightly}
seconds=${FUZZ_SECONDS:-10}
cargo_fuzz_version=0.13.1

rustup run "$toolchain" rustc --version >/dev/null 2>&1 ||
    rustup toolchain install "$toolchain" --profile minimal
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$cargo_fuzz_version" ]; then
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
echo "fuzz: $(rustup run "$toolchain" rustc --version), $(cargo fuzz --version)"

targets=${FUZZ_TARGETS:-$(cargo +"$toolchain" fuzz list --fuzz-dir fuzz)}
t_build=$SECONDS
cargo +"$toolchain" fuzz build --fuzz-dir fuzz
echo "fuzz: install $((t_build - t_start)) s, build $((SECONDS - t_build)) s"

scratch=$(mktemp -d /tmp/rstar-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
failed=()
printf '%-18s %10s %8s %8s %6s\n' target execs cov ft corpus
for t in $targets; do
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    log="$scratch/$t.log"
    # -timeout: one input taking >10 s is a hang; -rss_limit_mb: a parser allocating >2 GB fails.
    if ! cargo +"$toolchain" fuzz run --fuzz-dir fuzz "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
        failed+=("$t")
        tail -n 40 "$log"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-18s %10s %8s %8s %6s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
done
echo "fuzz: whole step $((SECONDS - t_start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes or hangs in: ${failed[*]} (inputs under fuzz/artifacts/)"
    exit 1
fi
