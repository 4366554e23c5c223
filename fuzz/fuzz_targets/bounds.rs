//! Fuzz target: `ots`'s pre-decoding estimate of a proof's memory
//! (`ots::bounds::estimate`), a parser of its own. It must never panic, and
//! for every proof that decodes it must count at least each node's message
//! and `NODE_COST` (it may count more: repeated operations are merged by
//! the decoder, counted twice by the estimate).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ots::bounds::{estimate, Estimate, NODE_COST};
use ots_proof::{DetachedTimestampFile, Timestamp};

fn floor(t: &Timestamp) -> usize {
    NODE_COST + t.msg().len() + t.ops().map(|(_, child)| floor(child)).sum::<usize>()
}

fuzz_target!(|data: &[u8]| {
    let found = estimate(data, usize::MAX);
    if let Ok(file) = DetachedTimestampFile::deserialize(data) {
        match found {
            Estimate::Within(cost) => assert!(cost >= floor(file.timestamp())),
            Estimate::OverBudget => panic!("no budget to exceed"),
        }
    }
    // A small budget stops the walk; it must not panic either.
    let _ = estimate(data, 4096);
});
