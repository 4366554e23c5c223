//! Fuzz target: the reference calendar's LevelDB node records (otsd's
//! `refstore::node`). Parsing must never panic; whatever parses must
//! re-encode to bytes that parse to the same record. Then the input is
//! taken as the record of every key, and a proof is built from it: the
//! builder's limits (depth, nodes, message length) must stop it, whatever
//! the record says (cycles, wide fan-outs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsd::refstore::{self, node, RefStoreError, Records};

/// Every key has the fuzzer's record.
struct Everywhere<'a>(&'a [u8]);

impl Records for Everywhere<'_> {
    fn record(&mut self, _: &[u8]) -> Result<Option<Vec<u8>>, RefStoreError> {
        Ok(Some(self.0.to_vec()))
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = node::parse(data) {
        let encoded = record.encode();
        assert_eq!(node::parse(&encoded).expect("re-encoding parses"), record);
    }
    let _ = refstore::proof(&mut Everywhere(data), b"commitment");
});
