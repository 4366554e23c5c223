//! Bench tool for taking over a reference calendar (issue 13): writes a
//! synthetic calendar directory in the reference's layout (see
//! `tests/refcal_support`, which the tests share): N commitments (default
//! 1,000,000) in `journal` and their completed proofs in a LevelDB `db/`,
//! PER_TX commitments (default 1,000) per transaction, plus `headers.txt`
//! and `paths.txt`.
//!
//! `cargo run --release -p otsd --example refcal_gen -- DIR [N] [PER_TX]`

use std::path::PathBuf;
use std::time::Instant;

#[path = "../tests/refcal_support/mod.rs"]
mod refcal_support;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: refcal_gen DIR [N] [PER_TX]"));
    let n: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("N"));
    let per_tx: u64 = args.next().map_or(1_000, |a| a.parse().expect("PER_TX"));
    let started = Instant::now();
    refcal_support::generate(&dir, n, per_tx);
    let db_bytes: u64 = std::fs::read_dir(dir.join("db"))
        .expect("db/")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    println!(
        "refcal_gen: {n} commitments, {per_tx} per transaction, in {} ({:.1} s); db/ {db_bytes} bytes ({:.1} per commitment)",
        dir.display(),
        started.elapsed().as_secs_f64(),
        db_bytes as f64 / n.max(1) as f64
    );
}
