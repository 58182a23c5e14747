#!/usr/bin/env python3
"""Attributes Herald's share of a firmware's flash to the source it came from.

usage: attribute.py HERALD_ELF BASELINE_ELF [--files]

Every instruction of .text is charged to the innermost frame of its inline stack
(llvm-symbolizer --inlining, from the debug info: build with debug = 2, as the
firmware's release profile does) that lies in herald-core (core/src) or
herald-embedded (embedded-client/src); an instruction with no such frame is charged
to its innermost frame's crate. The baseline's bytes per source are subtracted, and
the sums are printed per part as a Markdown table (per file with --files).
Needs llvm-objdump and llvm-symbolizer.
"""
import collections
import re
import subprocess
import sys


def crate(path):
    m = re.search(r"/registry/src/[^/]+/([^/]+?)-\d[^/]*/", path)
    if m:
        return m.group(1)
    if "/rustc/" in path or "/lib/rustlib/" in path:
        m = re.search(r"library/([^/]+)/", path)
        return "std:" + (m.group(1) if m else "?")
    m = re.search(r"/(core/src/.*|embedded-client/src/.*)", path)
    if m:
        return m.group(1)
    return "other"


def per_file(elf):
    dis = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", "-j", ".text", elf],
                         capture_output=True, text=True, check=True).stdout
    addrs = sorted({int(m.group(1), 16) for m in re.finditer(r"(?m)^\s*([0-9a-f]+):\s", dis)})
    sizes = [b - a for a, b in zip(addrs, addrs[1:])] + [2]
    out = subprocess.run(["llvm-symbolizer", "--inlining", "--functions=none", "--obj", elf],
                         input="\n".join(hex(a) for a in addrs) + "\n",
                         capture_output=True, text=True, check=True).stdout
    frames = out.strip("\n").split("\n\n")
    assert len(frames) == len(addrs)
    acc = collections.Counter()
    for size, block in zip(sizes, frames):
        crates = [crate(line.rsplit(":", 2)[0]) for line in block.splitlines()]
        herald = [c for c in crates if c.startswith(("core/src/", "embedded-client/src/"))]
        acc[herald[0] if herald else crates[0]] += size
    return acc


PARTS = [
    ("client state machine (core/src/client.rs, client/)", lambda k: k.startswith("core/src/client")),
    ("wire codec (core/src/wire/: decode, encode, message layouts)", lambda k: k.startswith("core/src/wire")),
    ("authentication (core/src/auth, sha2)", lambda k: k.startswith("core/src/auth") or k == "sha2"),
    ("validation and types (name, location, metadata, service, interest, time, table)",
     lambda k: k.startswith("core/src/")),
    ("embassy shell (embedded-client/src/)", lambda k: k.startswith("embedded-client/src/")),
    ("serde, postcard, heapless (out of line)", lambda k: k in ("postcard", "serde_core", "heapless")),
    ("core library, compiler builtins (out of line)", lambda k: k.startswith("std:")),
    ("other (network stack, executor, firmware)", lambda k: True),
]


def main():
    herald, base = per_file(sys.argv[1]), per_file(sys.argv[2])
    diff = {k: herald[k] - base[k] for k in set(herald) | set(base) if herald[k] != base[k]}
    if "--files" in sys.argv:
        print("| source | bytes |\n| --- | ---: |")
        for k, v in sorted(diff.items(), key=lambda kv: -kv[1]):
            print(f"| {k} | {v} |")
        return
    sums = collections.Counter()
    for k, v in diff.items():
        sums[next(name for name, match in PARTS if match(k))] += v
    print("| part | bytes |\n| --- | ---: |")
    for name, _ in PARTS:
        print(f"| {name} | {sums[name]} |")
    print(f"| **.text share** | **{sum(sums.values())}** |")


if __name__ == "__main__":
    main()
