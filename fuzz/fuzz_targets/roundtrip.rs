//! An arbitrary well-formed frame encodes within the size limit and decodes back equal;
//! see `herald_fuzz::codec::roundtrip`.
#![no_main]

use herald_fuzz::codec::{roundtrip, RoundtripInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: RoundtripInput| roundtrip(&input));
