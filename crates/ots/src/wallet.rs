//! `ots stamp -b`: timestamping with the local node's wallet, no calendar.
//! One transaction commits to the tip of all the files given, in an
//! `OP_RETURN` output; once a block holds it, the proof goes from the tip
//! through the transaction and the block's merkle tree to a Bitcoin
//! attestation (built as the reference builds it, from the block,
//! [`ots_bitcoin::timestamp_from_block`]), complete at once.
//!
//! The reference asks the node to fund the transaction
//! (`fundrawtransaction`); here the client picks one confirmed wallet
//! output itself (the smallest that pays the fee and leaves change above
//! the dust limit), so it works with any node that has `listunspent`,
//! `getrawchangeaddress` and `signrawtransactionwithwallet`.

use std::time::Duration;

use bitcoin::absolute::LockTime;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use ots_bitcoin::node::Unspent;
use ots_bitcoin::{RpcClient, RpcError};
use ots_proof::Timestamp;
use thiserror::Error;

use crate::log::Log;

/// Blocks the fee estimate targets.
pub const FEE_TARGET_BLOCKS: u32 = 2;
/// Fee rate when the node has no estimate (regtest, a fresh node), sat/vB.
pub const FALLBACK_FEE_RATE: f64 = 2.0;
/// Virtual size the fee is paid for: one P2WPKH input, a 32-byte
/// `OP_RETURN` and a P2WPKH change output weigh about 153 vB; the margin
/// covers other input types (P2PKH ~148 vB of input).
pub const ASSUMED_VSIZE: u64 = 250;
/// Change below this is not made (Core's dust limit for P2PKH, the
/// largest common one).
pub const DUST_LIMIT: Amount = Amount::from_sat(546);
/// How often the node is asked whether the transaction is in a block.
pub const CONFIRMATION_POLL: Duration = Duration::from_secs(1);

/// Why the wallet could not timestamp.
#[derive(Debug, Error)]
pub enum WalletError {
    /// The node said no, or could not be reached.
    #[error("{0}")]
    Rpc(#[from] RpcError),
    /// No confirmed, spendable output pays the fee.
    #[error("the wallet has no confirmed output of at least {needed} to pay for the timestamp transaction")]
    NoFunds {
        /// Fee plus dust-free change.
        needed: Amount,
    },
    /// The change address the wallet gave is not for this network.
    #[error("the wallet's change address {address:?}: {message}")]
    Address {
        /// What it gave.
        address: String,
        /// Why it is unusable.
        message: String,
    },
    /// The transaction was replaced or double-spent before it confirmed.
    #[error("timestamp transaction {0} conflicts with another; it will not confirm")]
    Conflicted(Txid),
    /// The node's block does not give a valid proof (never expected).
    #[error("proof from block: {0}")]
    Proof(#[from] ots_bitcoin::ProofError),
    /// The block the wallet named is not on the node (reorganised away).
    #[error("block {0} not found on the node")]
    BlockMissing(bitcoin::BlockHash),
    /// The node reported a confirmation without a height.
    #[error("the wallet reported transaction {0} confirmed without a block height")]
    NoHeight(Txid),
}

/// The unsigned transaction: `input` spent, an `OP_RETURN` of `tip` and
/// `change` back to the wallet.
pub fn timestamp_transaction(tip: &[u8; 32], input: &Unspent, change: TxOut) -> Transaction {
    let push = PushBytesBuf::from(*tip);
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(input.txid, input.vout),
            script_sig: ScriptBuf::new(),
            // Replaceable, so a stuck one can be bumped with the wallet.
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::ZERO,
                script_pubkey: Builder::new()
                    .push_opcode(bitcoin::opcodes::all::OP_RETURN)
                    .push_slice(push)
                    .into_script(),
            },
            change,
        ],
    }
}

/// The fee for [`ASSUMED_VSIZE`] at the node's estimate (or
/// [`FALLBACK_FEE_RATE`]).
async fn fee(rpc: &RpcClient, log: &Log) -> Amount {
    let rate = match rpc.estimate_smart_fee(FEE_TARGET_BLOCKS).await {
        Ok(e) => e.sat_per_vbyte(),
        Err(e) => {
            log.debug(format!("No fee estimate: {e}"));
            None
        }
    }
    .filter(|r| r.is_finite() && *r > 0.0)
    .unwrap_or(FALLBACK_FEE_RATE);
    Amount::from_sat((rate * ASSUMED_VSIZE as f64).ceil() as u64)
}

/// Sends the timestamp transaction of `tip`, waits for a block to hold
/// it, and returns the timestamp of `tip` down to that block's Bitcoin
/// attestation.
pub async fn stamp_with_wallet(
    rpc: &RpcClient,
    network: Network,
    tip: &[u8; 32],
    log: &Log,
) -> Result<Timestamp, WalletError> {
    let fee = fee(rpc, log).await;
    let needed = fee + DUST_LIMIT;
    let mut coins: Vec<Unspent> = rpc
        .list_unspent(1)
        .await?
        .into_iter()
        .filter(|u| u.spendable && u.safe && u.amount >= needed)
        .collect();
    coins.sort_by_key(|u| u.amount);
    let coin = coins
        .into_iter()
        .next()
        .ok_or(WalletError::NoFunds { needed })?;
    let address = rpc.raw_change_address().await?;
    let bad = |message: String| WalletError::Address {
        address: address.clone(),
        message,
    };
    let change_script = address
        .parse::<Address<bitcoin::address::NetworkUnchecked>>()
        .map_err(|e| bad(e.to_string()))?
        .require_network(network)
        .map_err(|e| bad(e.to_string()))?
        .script_pubkey();
    let change = TxOut {
        value: coin.amount - fee,
        script_pubkey: change_script,
    };
    let unsigned = timestamp_transaction(tip, &coin, change);
    let signed = rpc.sign_raw_transaction_with_wallet(&unsigned).await?;
    let txid = rpc.send_raw_transaction(&signed).await?;
    log.info(format!(
        "Sent timestamp tx {txid} (fee {} sat)",
        fee.to_sat()
    ));
    let (block_hash, height) = loop {
        log.info(format!("Waiting for timestamp tx {txid} to confirm..."));
        tokio::time::sleep(CONFIRMATION_POLL).await;
        let Some(wtx) = rpc.wallet_transaction(&txid).await? else {
            continue;
        };
        if wtx.confirmations < 0 {
            return Err(WalletError::Conflicted(txid));
        }
        if let Some(hash) = wtx.blockhash {
            break (hash, wtx.blockheight.ok_or(WalletError::NoHeight(txid))?);
        }
    };
    log.info(format!("Confirmed by block {block_hash}"));
    let block = rpc
        .block(&block_hash)
        .await?
        .ok_or(WalletError::BlockMissing(block_hash))?;
    Ok(ots_bitcoin::timestamp_from_block(
        tip, txid, &block, height,
    )?)
}
