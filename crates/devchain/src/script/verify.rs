//! Input script verification for the spend types devchain's wallet
//! produces: P2WPKH (BIP143 ECDSA) and P2TR key path (BIP341 Schnorr).
//! This is the "equivalent check" to libbitcoinconsensus for those types;
//! errors carry Core's `ScriptErrorString` texts.

use std::sync::OnceLock;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, Message, Secp256k1, XOnlyPublicKey};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{PublicKey, Transaction, TxOut, WPubkeyHash};

/// The process-wide secp256k1 context; building one costs more than
/// thousands of verifications, so it is built once.
pub fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}

/// A script failure: whether it breaks consensus (`mandatory`) or only
/// policy, and Core's script error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    /// True when consensus rules fail too (Core reports `mandatory-script-verify-flag-failed`).
    pub mandatory: bool,
    /// Core's script error string.
    pub message: String,
}

impl ScriptFailure {
    fn consensus(msg: &str) -> Self {
        ScriptFailure {
            mandatory: true,
            message: msg.to_string(),
        }
    }
    fn policy(msg: &str) -> Self {
        ScriptFailure {
            mandatory: false,
            message: msg.to_string(),
        }
    }

    /// Core's reject reason for a mempool rejection of this failure.
    pub fn reject_reason(&self) -> String {
        if self.mandatory {
            format!("mandatory-script-verify-flag-failed ({})", self.message)
        } else {
            format!("non-mandatory-script-verify-flag ({})", self.message)
        }
    }
}

const EVAL_FALSE: &str =
    "Script evaluated without error but finished with a false/empty top stack element";

/// Verifies every input of `tx` against `prevouts` (same order as inputs).
pub fn verify_tx(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), (usize, ScriptFailure)> {
    let mut cache = SighashCache::new(tx);
    for (i, prev) in prevouts.iter().enumerate() {
        verify_input(&mut cache, tx, i, prev, prevouts).map_err(|e| (i, e))?;
    }
    Ok(())
}

fn verify_input(
    cache: &mut SighashCache<&Transaction>,
    tx: &Transaction,
    index: usize,
    prev: &TxOut,
    prevouts: &[TxOut],
) -> Result<(), ScriptFailure> {
    let spk = &prev.script_pubkey;
    let witness = &tx.input[index].witness;
    if spk.is_p2wpkh() || spk.is_p2tr() {
        if !tx.input[index].script_sig.is_empty() {
            return Err(ScriptFailure::consensus("Witness requires empty scriptSig"));
        }
        if witness.is_empty() {
            return Err(ScriptFailure::consensus(
                "Witness program was passed an empty witness",
            ));
        }
    }
    if spk.is_p2wpkh() {
        if witness.len() != 2 {
            return Err(ScriptFailure::consensus("Witness program hash mismatch"));
        }
        let (sig_bytes, pk_bytes) = (&witness[0], &witness[1]);
        let pk = PublicKey::from_slice(pk_bytes)
            .map_err(|_| ScriptFailure::consensus("Script failed an OP_EQUALVERIFY operation"))?;
        if spk.as_bytes()[2..22] != *WPubkeyHash::hash(pk_bytes).as_byte_array() {
            return Err(ScriptFailure::consensus(
                "Script failed an OP_EQUALVERIFY operation",
            ));
        }
        if !pk.compressed {
            return Err(ScriptFailure::policy("Using non-compressed keys in segwit"));
        }
        if sig_bytes.is_empty() {
            return Err(ScriptFailure::consensus(EVAL_FALSE));
        }
        let sig = bitcoin::ecdsa::Signature::from_slice(sig_bytes)
            .map_err(|_| ScriptFailure::consensus("Non-canonical DER signature"))?;
        let sighash = cache
            .p2wpkh_signature_hash(index, spk, prev.value, sig.sighash_type)
            .map_err(|_| ScriptFailure::consensus(EVAL_FALSE))?;
        let msg = Message::from_digest(sighash.to_byte_array());
        let mut normalized = sig.signature;
        normalized.normalize_s();
        if secp().verify_ecdsa(&msg, &normalized, &pk.inner).is_err() {
            // Core first fails the standard flags on NULLFAIL, then the
            // consensus flags on the false stack element.
            return Err(ScriptFailure::consensus(EVAL_FALSE));
        }
        if normalized != sig.signature {
            return Err(ScriptFailure::policy(
                "Non-canonical signature: S value is unnecessarily high",
            ));
        }
        return Ok(());
    }
    if spk.is_p2tr() {
        if witness.len() != 1 {
            return Err(ScriptFailure::policy(
                "devchain verifies only taproot key-path spends without annex",
            ));
        }
        let sig = bitcoin::taproot::Signature::from_slice(&witness[0])
            .map_err(|_| ScriptFailure::consensus("Invalid Schnorr signature size"))?;
        let key = XOnlyPublicKey::from_slice(&spk.as_bytes()[2..34])
            .map_err(|_| ScriptFailure::consensus("Invalid Schnorr signature"))?;
        let sighash = cache
            .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), sig.sighash_type)
            .map_err(|_| ScriptFailure::consensus("Invalid Schnorr signature hashtype"))?;
        let msg = Message::from_digest(sighash.to_byte_array());
        return secp()
            .verify_schnorr(&sig.signature, &msg, &key)
            .map_err(|_| ScriptFailure::consensus("Invalid Schnorr signature"));
    }
    Err(ScriptFailure::policy(
        "devchain verifies only P2WPKH and P2TR key-path inputs",
    ))
}
