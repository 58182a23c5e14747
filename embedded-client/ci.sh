#!/usr/bin/env bash
# Everything CI runs for herald-embedded, from the repository root or anywhere:
#   bash embedded-client/ci.sh [--no-host-tests]
# (--no-host-tests: .ci/run already ran them as part of `cargo test --workspace`.)
# Needs: rustup (adds thumbv7em-none-eabihf), Debian packages iproute2 (the TAP test's
# `ip`), binutils (`size`, for the footprint), qemu-system-arm and nftables (the
# emulated board's test and its lossy run). The TAP and QEMU tests run only as root with
# /dev/net/tun; otherwise they say why they skip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

rustup target add thumbv7em-none-eabihf

# herald-core's feature combinations besides the default (`auth,listen,subscribe`,
# which the workspace's tests cover): the full client with subscription mode and without
# authentication (`subscribe`), without subscription mode (`listen`), the register-only
# client (none), and it with authentication (`auth`). Each is tested (the suites it can
# run: those with listeners need `listen`, subscribers `subscribe`, keys `auth`),
# linted and built for the microcontroller.
for features in subscribe listen "" auth; do
    cargo test -q -p herald-core --no-default-features --features "$features" --lib --tests
    cargo clippy -p herald-core --all-targets --no-default-features --features "$features" \
        -- -D warnings
    cargo build -p herald-core --target thumbv7em-none-eabihf --no-default-features \
        --features "$features"
done

# The library for the microcontroller target, in its feature combinations.
cargo build -p herald-embedded --target thumbv7em-none-eabihf
cargo build -p herald-embedded --target thumbv7em-none-eabihf --no-default-features
cargo build -p herald-embedded --target thumbv7em-none-eabihf --no-default-features \
    --features embassy,listen
cargo clippy -p herald-embedded --target thumbv7em-none-eabihf --no-default-features \
    --features embassy -- -D warnings
cargo build -p herald-embedded --target thumbv7em-none-eabihf --features defmt,ipv6
cargo build -p herald-embedded --target thumbv7em-none-eabihf --features log
cargo clippy -p herald-embedded --target thumbv7em-none-eabihf --features defmt,ipv6 -- -D warnings

# The example firmware (its own workspace), then its footprint with and without Herald.
(cd embedded-client/firmware/nucleo-f767zi && cargo build --release && cargo clippy --release -- -D warnings \
    && cargo clippy --release --no-default-features --features herald,dhcp -- -D warnings \
    && cargo clippy --release --no-default-features --features mdns,dhcp -- -D warnings)
bash embedded-client/firmware/size.sh

# The firmware for QEMU's mps2-an386 (tests/qemu.rs runs it against the real daemon).
# Both shells by default; the bare one alone without the embassy feature.
(cd embedded-client/firmware/qemu-mps2 && cargo build --release \
    && cargo clippy --release -- -D warnings \
    && cargo clippy --release --no-default-features -- -D warnings)

# Host tests: unit tests, the smoltcp loopback test, and the TAP/namespace test against
# the real server (it needs the herald binary and the tap_node example built first).
if [ "${1:-}" = "--no-host-tests" ]; then
    exit 0
fi
cargo build -p herald-server --bin herald
cargo build -p herald-embedded --example tap_node
cargo test -p herald-embedded -- --nocapture
