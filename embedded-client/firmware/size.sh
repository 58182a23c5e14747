#!/usr/bin/env bash
# Builds the Nucleo-F767ZI firmware with and without Herald (and with an edge-mdns
# responder instead, the anchor), and herald-core alone in a
# minimal binary with and without its client (release: LTO, opt-level
# "s", or the level given as $1), and prints .text/.data/.bss as Markdown tables. At
# opt-level "s" it fails when Herald's share of the flash grew more than 5 % past
# footprint-limit.
# Needs the thumbv7em-none-eabihf target and `size` (binutils; llvm-size also works).
set -euo pipefail
cd "$(dirname "$0")/nucleo-f767zi"
opt=${1:-s}
size_tool=$(command -v llvm-size || command -v arm-none-eabi-size || command -v size)
target_dir=${CARGO_TARGET_DIR:-target}
elf="$target_dir/thumbv7em-none-eabihf/release/herald-nucleo-f767zi"
echo "| build (opt-level \"$opt\") | .text | .data | .bss |"
echo "| --- | ---: | ---: | ---: |"
declare -A flash
for features in "herald,defmt,dhcp" "defmt,dhcp" "herald,dhcp" "dhcp" "mdns,dhcp"; do
    CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build --quiet --release \
        --no-default-features --features "$features"
    # Berkeley format: text (code + read-only data), data, bss.
    read -r text data bss _ < <("$size_tool" "$elf" | tail -n 1)
    echo "| $features | $text | $data | $bss |"
    flash[$features]=$text
done

# Herald's share of the flash (no logging) may not grow past its recorded figure
# (footprint-limit: bytes at opt-level "s") by more than 5 %. Record a new figure there
# when a growth is meant, and say why in the commit.
share=$(( flash[herald,dhcp] - flash[dhcp] ))
recorded=$(tr -cd 0-9 < ../footprint-limit)
echo
echo "Herald's share of the flash: $share bytes (recorded: $recorded)"
if [ "$opt" = s ] && [ "$share" -gt $(( recorded * 105 / 100 )) ]; then
    echo "Herald's share grew more than 5 % past the recorded $recorded bytes" >&2
    exit 1
fi

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
