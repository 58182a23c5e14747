#!/usr/bin/env bash
# Builds the Nucleo-F767ZI firmware with and without Herald (release: LTO, opt-level
# "s", or the level given as $1) and prints its .text/.data/.bss as a Markdown table.
# Needs the thumbv7em-none-eabihf target and `size` (binutils; llvm-size also works).
set -euo pipefail
cd "$(dirname "$0")/nucleo-f767zi"
opt=${1:-s}
size_tool=$(command -v llvm-size || command -v arm-none-eabi-size || command -v size)
target_dir=${CARGO_TARGET_DIR:-target}
elf="$target_dir/thumbv7em-none-eabihf/release/herald-nucleo-f767zi"
echo "| build (opt-level \"$opt\") | .text | .data | .bss |"
echo "| --- | ---: | ---: | ---: |"
for features in "herald,defmt,dhcp" "defmt,dhcp" "herald,dhcp" "dhcp"; do
    CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build --quiet --release \
        --no-default-features --features "$features"
    # Berkeley format: text (code + read-only data), data, bss.
    read -r text data bss _ < <("$size_tool" "$elf" | tail -n 1)
    echo "| $features | $text | $data | $bss |"
done
