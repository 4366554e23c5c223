//! Fuzz target: a backup chunk as a mirror receives it (otsd's
//! `mirror::chunk`). Parsing and checking must never panic, whatever the
//! bytes (truncated varbytes, records that do not parse, cycles, wide
//! fan-outs, duplicate keys); a chunk that is taken must name at least one
//! commitment, each of whose nodes the chunk holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsd::mirror::chunk;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = chunk::parse(data) {
        assert!(!c.roots.is_empty(), "a taken chunk names its commitments");
        for root in &c.roots {
            assert!(c.nodes.contains_key(root), "a commitment's node is held");
        }
    }
});
