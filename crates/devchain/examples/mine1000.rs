//! Measures mining 1,000 blocks with one wallet transaction each
//! (`cargo run --release -p devchain --example mine1000`).

use std::time::Instant;

use bitcoin::Amount;
use devchain::wallet::AddressType;
use devchain::Chain;

/// Blocks to mine in the measurement.
const BLOCKS: u32 = 1_000;

fn main() -> Result<(), devchain::Error> {
    run("in memory", None)?;
    let dir = tempfile::tempdir().map_err(|e| devchain::Error::io("tempdir", e))?;
    run("persisted (fsync per block)", Some(dir.path()))
}

fn run(label: &str, dir: Option<&std::path::Path>) -> Result<(), devchain::Error> {
    let (mut store, mut chain) = match dir {
        Some(d) => {
            let (s, c) = devchain::chain::store::Store::open(d)?;
            (Some(s), c)
        }
        None => (None, Chain::new()),
    };
    chain.create_wallet("bench", Some([3u8; 32]))?;
    let miner = chain
        .new_address("bench", AddressType::Bech32, false, "")?
        .script_pubkey();
    chain.generate(101, &miner)?;
    let start = Instant::now();
    for _ in 0..BLOCKS {
        let dest = chain
            .new_address("bench", AddressType::Bech32, false, "")?
            .script_pubkey();
        chain.send_to("bench", dest, Amount::from_sat(100_000), None)?;
        chain.mine_block(&miner, None)?;
        if let Some(s) = store.as_mut() {
            s.persist(&mut chain)?;
        }
    }
    let elapsed = start.elapsed();
    let txs: usize = chain
        .state()
        .active_hashes()
        .iter()
        .filter_map(|h| chain.state().entry(h))
        .map(|e| e.block.txdata.len() - 1)
        .sum();
    println!(
        "{label}: mined {BLOCKS} blocks with {txs} wallet transactions in {:.2?} ({:.2} ms/block)",
        elapsed,
        elapsed.as_secs_f64() * 1000.0 / f64::from(BLOCKS)
    );
    Ok(())
}
