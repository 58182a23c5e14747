#!/usr/bin/env bash
# Builds the Nucleo-F767ZI firmware with and without Herald (and with an edge-mdns
# responder instead, the anchor), and herald-core alone in a
# minimal binary with and without its client (release: LTO, opt-level
# "s", or the level given as $1), and prints .text/.data/.bss as Markdown tables.
# Needs the thumbv7em-none-eabihf target and `size` (binutils; llvm-size also works).
set -euo pipefail
cd "$(dirname "$0")/nucleo-f767zi"
opt=${1:-s}
size_tool=$(command -v llvm-size || command -v arm-none-eabi-size || command -v size)
target_dir=${CARGO_TARGET_DIR:-target}
elf="$target_dir/thumbv7em-none-eabihf/release/herald-nucleo-f767zi"
echo "| build (opt-level \"$opt\") | .text | .data | .bss |"
echo "| --- | ---: | ---: | ---: |"
for features in "herald,defmt,dhcp" "defmt,dhcp" "herald,dhcp" "dhcp" "mdns,dhcp"; do
    CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build --quiet --release \
        --no-default-features --features "$features"
    # Berkeley format: text (code + read-only data), data, bss.
    read -r text data bss _ < <("$size_tool" "$elf" | tail -n 1)
    echo "| $features | $text | $data | $bss |"
done

# herald-core alone in a minimal binary (no network stack), with and without the client.
cd ../core-only
elf="$target_dir/thumbv7em-none-eabihf/release/herald-core-only"
echo
echo "| herald-core alone (opt-level \"$opt\") | .text | .data | .bss |"
echo "| --- | ---: | ---: | ---: |"
for features in "herald" ""; do
    CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build --quiet --release \
        --no-default-features --features "$features"
    read -r text data bss _ < <("$size_tool" "$elf" | tail -n 1)
    echo "| ${features:-baseline} | $text | $data | $bss |"
done
