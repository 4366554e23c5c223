//! Regtest consensus parameters, block assembly (coinbase, BIP34 height,
//! witness commitment, merkle root, proof-of-work grinding) and the
//! context-free block checks Bitcoin Core runs in `CheckBlock`.

use bitcoin::block::{Header, Version};
use bitcoin::blockdata::opcodes::all::OP_RETURN;
use bitcoin::blockdata::script::{Builder, PushBytesBuf};
use bitcoin::hashes::Hash;
use bitcoin::{
    absolute, transaction, Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence,
    Target, Transaction, TxIn, TxMerkleNode, TxOut, Witness,
};

/// Regtest's difficulty bits (`powLimit`), never retargeted (`fPowNoRetargeting`).
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// The block subsidy at height 0, in satoshis.
pub const INITIAL_SUBSIDY_SAT: u64 = 50 * 100_000_000;
/// Regtest's `nSubsidyHalvingInterval`.
pub const SUBSIDY_HALVING_INTERVAL: u32 = 150;
/// Blocks before a coinbase output may be spent (`COINBASE_MATURITY`).
pub const COINBASE_MATURITY: u32 = 100;
/// Consensus maximum block weight.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// Weight the block assembler keeps free for the coinbase (`DEFAULT_BLOCK_RESERVED_WEIGHT`).
pub const COINBASE_RESERVED_WEIGHT: u64 = 8_000;
/// Number of previous blocks whose median time a new block must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;
/// The block version Core's miner uses with no deployments signalling (BIP9 top bits).
pub const BLOCK_VERSION: i32 = 0x2000_0000;
/// Version of coinbase transactions (`CTransaction::CURRENT_VERSION`).
pub const COINBASE_TX_VERSION: i32 = 2;
/// The BIP141 witness commitment header following `OP_RETURN 0x24`.
pub const WITNESS_COMMITMENT_HEADER: [u8; 4] = [0xaa, 0x21, 0xa9, 0xed];

/// The block subsidy at `height` under regtest's halving schedule.
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / SUBSIDY_HALVING_INTERVAL;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat(INITIAL_SUBSIDY_SAT >> halvings)
}

/// Regtest's proof-of-work limit as a [`Target`].
pub fn regtest_target() -> Target {
    Target::from_compact(CompactTarget::from_consensus(REGTEST_BITS))
}

/// The coinbase Core's `CreateNewBlock` builds: scriptSig `<height> OP_0`
/// (BIP34), one output paying `value` to `script_pubkey`, and the 32-byte
/// zero witness reserved value.
pub fn coinbase_tx(height: u32, script_pubkey: ScriptBuf, value: Amount) -> Transaction {
    let script_sig = Builder::new()
        .push_int(i64::from(height))
        .push_opcode(bitcoin::opcodes::OP_0)
        .into_script();
    Transaction {
        version: transaction::Version(COINBASE_TX_VERSION),
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![TxOut {
            value,
            script_pubkey,
        }],
    }
}

/// Assembles a block on `prev` with `txs` after the coinbase (whose BIP34
/// height must already be set),
/// adds the witness commitment, fixes the merkle root and grinds the nonce
/// until the header meets regtest's target.
pub fn assemble(prev: BlockHash, time: u32, coinbase: Transaction, txs: Vec<Transaction>) -> Block {
    let mut txdata = Vec::with_capacity(txs.len() + 1);
    txdata.push(coinbase);
    txdata.extend(txs);
    let header = Header {
        version: Version::from_consensus(BLOCK_VERSION),
        prev_blockhash: prev,
        merkle_root: TxMerkleNode::all_zeros(),
        time,
        bits: CompactTarget::from_consensus(REGTEST_BITS),
        nonce: 0,
    };
    let mut block = Block { header, txdata };
    add_witness_commitment(&mut block);
    block.header.merkle_root = block
        .compute_merkle_root()
        .unwrap_or_else(TxMerkleNode::all_zeros);
    grind(&mut block.header);
    block
}

/// Appends the BIP141 commitment output to the coinbase, as Core's
/// `GenerateCoinbaseCommitment` does for every block once segwit is active.
fn add_witness_commitment(block: &mut Block) {
    let Some(witness_root) = block.witness_root() else {
        return;
    };
    let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
    let mut data = WITNESS_COMMITMENT_HEADER.to_vec();
    data.extend_from_slice(commitment.as_byte_array());
    let push = PushBytesBuf::try_from(data).unwrap_or_default();
    let script = Builder::new()
        .push_opcode(OP_RETURN)
        .push_slice(push)
        .into_script();
    if let Some(cb) = block.txdata.first_mut() {
        cb.output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: script,
        });
    }
}

/// Increments the nonce until the header hash meets its own target; on
/// regtest about every second hash qualifies. If the nonce space runs out
/// the time is bumped, as a real miner would roll it.
pub fn grind(header: &mut Header) {
    let target = header.target();
    loop {
        if target.is_met_by(header.block_hash()) {
            return;
        }
        if header.nonce == u32::MAX {
            header.nonce = 0;
            header.time = header.time.wrapping_add(1);
        } else {
            header.nonce += 1;
        }
    }
}

/// Core's context-free `CheckBlock`: proof of work against regtest bits,
/// merkle root, coinbase placement, size and witness commitment. Returns
/// Core's reject reason on failure.
pub fn check_block(block: &Block) -> Result<(), String> {
    if block.header.bits.to_consensus() != REGTEST_BITS {
        return Err("bad-diffbits".into());
    }
    if block.header.validate_pow(regtest_target()).is_err() {
        return Err("high-hash".into());
    }
    if !block.check_merkle_root() {
        return Err("bad-txnmrklroot".into());
    }
    if block.txdata.is_empty() {
        return Err("bad-blk-length".into());
    }
    if !block.txdata[0].is_coinbase() {
        return Err("bad-cb-missing".into());
    }
    if block.txdata.iter().skip(1).any(Transaction::is_coinbase) {
        return Err("bad-cb-multiple".into());
    }
    let cb_len = block.txdata[0].input[0].script_sig.len();
    if !(2..=100).contains(&cb_len) {
        return Err("bad-cb-length".into());
    }
    if block.weight().to_wu() > MAX_BLOCK_WEIGHT {
        return Err("bad-blk-weight".into());
    }
    let has_witness = block
        .txdata
        .iter()
        .any(|tx| tx.input.iter().any(|i| !i.witness.is_empty()));
    let has_commitment = block.txdata[0]
        .output
        .iter()
        .any(|o| is_witness_commitment(&o.script_pubkey));
    if has_commitment && !block.check_witness_commitment() {
        return Err("bad-witness-merkle-match".into());
    }
    if has_witness && !has_commitment {
        return Err("unexpected-witness".into());
    }
    let mut seen = std::collections::HashSet::new();
    for tx in &block.txdata {
        if !seen.insert(tx.compute_txid()) {
            return Err("bad-txns-duplicate".into());
        }
        check_transaction(tx).map_err(|r| r.to_string())?;
    }
    Ok(())
}

fn is_witness_commitment(script: &bitcoin::Script) -> bool {
    let b = script.as_bytes();
    b.len() >= 38 && b[0] == 0x6a && b[1] == 0x24 && b[2..6] == WITNESS_COMMITMENT_HEADER
}

/// Core's `CheckTransaction`: the context-free transaction checks, returning
/// the reject reason.
pub fn check_transaction(tx: &Transaction) -> Result<(), &'static str> {
    if tx.input.is_empty() {
        return Err("bad-txns-vin-empty");
    }
    if tx.output.is_empty() {
        return Err("bad-txns-vout-empty");
    }
    let mut total = 0u64;
    for out in &tx.output {
        if out.value > Amount::MAX_MONEY {
            return Err("bad-txns-vout-toolarge");
        }
        total = total.saturating_add(out.value.to_sat());
        if total > Amount::MAX_MONEY.to_sat() {
            return Err("bad-txns-txouttotal-toolarge");
        }
    }
    let mut prevouts = std::collections::HashSet::new();
    for input in &tx.input {
        if !prevouts.insert(input.previous_output) {
            return Err("bad-txns-inputs-duplicate");
        }
    }
    if !tx.is_coinbase() && tx.input.iter().any(|i| i.previous_output.is_null()) {
        return Err("bad-txns-prevout-null");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Network;

    #[test]
    fn subsidy_halves_every_150_blocks() {
        assert_eq!(subsidy(0), Amount::from_btc(50.0).unwrap());
        assert_eq!(subsidy(149), Amount::from_btc(50.0).unwrap());
        assert_eq!(subsidy(150), Amount::from_btc(25.0).unwrap());
        assert_eq!(subsidy(300), Amount::from_btc(12.5).unwrap());
    }

    #[test]
    fn assembled_block_passes_rust_bitcoin_checks() {
        let genesis = bitcoin::constants::genesis_block(Network::Regtest);
        let cb = coinbase_tx(1, ScriptBuf::new_op_return([1u8; 4]), subsidy(1));
        let block = assemble(genesis.block_hash(), genesis.header.time + 1, cb, vec![]);
        assert!(block.check_merkle_root());
        assert!(block.check_witness_commitment());
        assert!(block.header.validate_pow(regtest_target()).is_ok());
        let cb_high = coinbase_tx(200, ScriptBuf::new(), subsidy(200));
        let high = assemble(
            genesis.block_hash(),
            genesis.header.time + 1,
            cb_high,
            vec![],
        );
        assert_eq!(high.bip34_block_height().unwrap(), 200);
        assert_eq!(check_block(&block), Ok(()));
        let mut bad = block.clone();
        bad.header.merkle_root = TxMerkleNode::all_zeros();
        grind(&mut bad.header);
        assert_eq!(check_block(&bad), Err("bad-txnmrklroot".to_string()));
    }
}
