#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time; exits non-zero on any
# crash, timeout or out-of-memory. Usage: fuzz/run.sh [SECONDS_PER_TARGET] (default 60).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

# The checked-in seeds are current, and they and every kept regression pass their targets.
cargo test --manifest-path "$here/Cargo.toml"
cargo +nightly fuzz build
status=0
for target in $(cargo +nightly fuzz list); do
    # The history target checks whole protocol histories (every fault class): each input
    # is a whole simulated run, so it runs only on request, for hunts and soaks beside
    # `HERALD_SIM_SEEDS` (core/tests/history.rs). Its checked-in seeds are replayed by
    # the fuzz crate's tests above.
    if [ "$target" = history ] && [ -z "${HERALD_FUZZ_HISTORY:-}" ]; then
        echo "== history: skipped (set HERALD_FUZZ_HISTORY=1 to run it)"
        continue
    fi
    # Work on a scratch copy of the seeds: new inputs never land in the checked-in corpus.
    work="$(mktemp -d)"
    cp "$here/corpus/$target"/seed-* "$work/" 2>/dev/null || true
    cp "$here/regressions/$target"/* "$work/" 2>/dev/null || true
    echo "== $target: ${seconds}s"
    set +e
    cargo +nightly fuzz run "$target" "$work" -- \
        -dict="$here/dict/herald.dict" \
        -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$work.log" 2>&1
    rc=$?
    set -e
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$work.log" || true
    if [ "$rc" -ne 0 ]; then
        echo "!! $target failed (exit $rc); the crashing input is in fuzz/artifacts/$target/" >&2
        tail -n 60 "$work.log" >&2
        status=1
    fi
    rm -rf "$work" "$work.log"
done
exit "$status"
