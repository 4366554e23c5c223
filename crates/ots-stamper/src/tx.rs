//! The timestamp transaction: one wallet input, an `OP_RETURN <tip>` output
//! and (unless it would be dust) a change output back to the wallet. Fee
//! arithmetic is in integer satoshis and virtual bytes: no float can
//! overflow or round a fee below what was intended.

use bitcoin::absolute::LockTime;
use bitcoin::opcodes::all::OP_RETURN;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use serde::{Deserialize, Serialize};

/// Outputs below this are dust to Bitcoin Core's relay policy (for the
/// largest standard output type); a change output this small is dropped and
/// its value left to the fee.
pub const DUST_LIMIT: Amount = Amount::from_sat(546);
/// nSequence of the input: signals BIP125 replaceability explicitly, so
/// nodes without full-RBF accept our replacements too. (The reference uses
/// 0xfffffffe and relies on full-RBF.)
pub const SEQUENCE: Sequence = Sequence(0xffff_fffd);

/// Virtual size of the fixed parts: version, marker/flag, counts, locktime.
const OVERHEAD_VBYTES: u64 = 11;
/// `OP_RETURN <32 bytes>` output: value 8 + length 1 + script 34.
const OP_RETURN_OUTPUT_VBYTES: u64 = 43;

/// What a wallet output costs to spend, by its script type (signed size,
/// rounded up; a 72-byte ECDSA signature is assumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputKind {
    /// P2WPKH: 41 bytes + 108 witness units.
    P2wpkh,
    /// P2TR key path: 41 bytes + 66 witness units.
    P2tr,
    /// Anything else (P2PKH and unknown): budget a legacy spend.
    Other,
}

impl InputKind {
    /// The kind of output `script` is.
    pub fn of(script: &ScriptBuf) -> InputKind {
        if script.is_p2wpkh() {
            InputKind::P2wpkh
        } else if script.is_p2tr() {
            InputKind::P2tr
        } else {
            InputKind::Other
        }
    }

    /// Virtual bytes of the signed input.
    pub fn vbytes(self) -> u64 {
        match self {
            InputKind::P2wpkh => 68,
            InputKind::P2tr => 58,
            InputKind::Other => 148,
        }
    }
}

/// The virtual size of a timestamp transaction.
pub fn vsize(input: InputKind, change_script: Option<&ScriptBuf>) -> u64 {
    let change = change_script.map_or(0, |s| 9 + s.len() as u64);
    OVERHEAD_VBYTES + input.vbytes() + OP_RETURN_OUTPUT_VBYTES + change
}

/// `OP_RETURN <tip>`.
pub fn op_return(tip: &[u8; 32]) -> ScriptBuf {
    Builder::new()
        .push_opcode(OP_RETURN)
        .push_slice(tip)
        .into_script()
}

/// An unsigned timestamp transaction, and the fee it pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The transaction, inputs unsigned.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Amount,
    /// Its estimated virtual size once signed.
    pub vsize: u64,
}

/// Why no transaction can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    /// The fee would exceed the configured maximum.
    #[error("fee {fee} would exceed the maximum {max}")]
    OverMaxFee {
        /// The fee needed.
        fee: Amount,
        /// The cap.
        max: Amount,
    },
    /// The input cannot pay the fee.
    #[error("input of {value} cannot pay a fee of {fee}")]
    InputTooSmall {
        /// The input's value.
        value: Amount,
        /// The fee needed.
        fee: Amount,
    },
}

/// Builds the transaction spending `input` (worth `value`) that pays `fee`
/// (at least), commits to `tip`, and returns change to `change_script`
/// unless the change would be dust. `fee` is raised to cover the minimum
/// of `min_rate_sat_per_kvb` for the final size.
pub fn draft(
    input: (OutPoint, Amount, InputKind),
    change_script: &ScriptBuf,
    tip: &[u8; 32],
    fee: Amount,
    lock_height: u32,
    max_fee: Amount,
) -> Result<Draft, DraftError> {
    let (outpoint, value, kind) = input;
    if fee > max_fee {
        return Err(DraftError::OverMaxFee { fee, max: max_fee });
    }
    if fee > value {
        return Err(DraftError::InputTooSmall { value, fee });
    }
    let mut outputs = vec![TxOut {
        value: Amount::ZERO,
        script_pubkey: op_return(tip),
    }];
    let change = value - fee;
    let (fee, size) = if change >= DUST_LIMIT {
        outputs.push(TxOut {
            value: change,
            script_pubkey: change_script.clone(),
        });
        (fee, vsize(kind, Some(change_script)))
    } else {
        // Dust change is dropped: everything left goes to the fee, which
        // must still respect the cap.
        if value > max_fee {
            return Err(DraftError::OverMaxFee {
                fee: value,
                max: max_fee,
            });
        }
        (value, vsize(kind, None))
    };
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_height(lock_height).unwrap_or(LockTime::ZERO),
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: SEQUENCE,
            witness: Witness::new(),
        }],
        output: outputs,
    };
    Ok(Draft {
        tx,
        fee,
        vsize: size,
    })
}

/// `rate` (sat/kvB) × `vbytes`, rounded up.
pub fn fee_for(rate_sat_per_kvb: u64, vbytes: u64) -> Amount {
    Amount::from_sat((rate_sat_per_kvb.saturating_mul(vbytes)).div_ceil(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn change() -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([1; 20]))
    }

    fn input(value: u64) -> (OutPoint, Amount, InputKind) {
        (
            OutPoint::new(bitcoin::Txid::from_byte_array([9; 32]), 1),
            Amount::from_sat(value),
            InputKind::P2wpkh,
        )
    }

    #[test]
    fn vsize_matches_a_signed_p2wpkh_spend() {
        // 125 base bytes × 4 + 110 witness units = 610 WU = 152.5 vB.
        assert_eq!(vsize(InputKind::P2wpkh, Some(&change())), 153);
        assert_eq!(vsize(InputKind::P2wpkh, None), 122);
    }

    #[test]
    fn draft_has_op_return_change_sequence_and_locktime() {
        let d = draft(
            input(100_000),
            &change(),
            &[7; 32],
            Amount::from_sat(500),
            123,
            Amount::from_sat(100_000),
        )
        .unwrap();
        assert_eq!(d.fee, Amount::from_sat(500));
        assert_eq!(d.tx.output[0].script_pubkey, op_return(&[7; 32]));
        assert_eq!(d.tx.output[1].value, Amount::from_sat(99_500));
        assert_eq!(d.tx.input[0].sequence, SEQUENCE);
        assert!(d.tx.input[0].sequence.is_rbf());
        assert_eq!(d.tx.lock_time, LockTime::from_height(123).unwrap());
        // The tip can be found in the serialization the txid commits to.
        let bytes = bitcoin::consensus::encode::serialize(&d.tx);
        assert!(bytes.windows(32).any(|w| w == [7; 32]));
    }

    #[test]
    fn dust_change_is_dropped_and_caps_hold() {
        let d = draft(
            input(1_000),
            &change(),
            &[7; 32],
            Amount::from_sat(600),
            1,
            Amount::from_sat(100_000),
        )
        .unwrap();
        assert_eq!(d.tx.output.len(), 1);
        assert_eq!(d.fee, Amount::from_sat(1_000));
        assert_eq!(
            draft(
                input(1_000),
                &change(),
                &[7; 32],
                Amount::from_sat(600),
                1,
                Amount::from_sat(900)
            ),
            Err(DraftError::OverMaxFee {
                fee: Amount::from_sat(1_000),
                max: Amount::from_sat(900)
            })
        );
        assert!(matches!(
            draft(
                input(100),
                &change(),
                &[7; 32],
                Amount::from_sat(600),
                1,
                Amount::from_sat(100_000)
            ),
            Err(DraftError::InputTooSmall { .. })
        ));
        assert!(matches!(
            draft(
                input(10_000_000),
                &change(),
                &[7; 32],
                Amount::from_sat(200_000),
                1,
                Amount::from_sat(100_000)
            ),
            Err(DraftError::OverMaxFee { .. })
        ));
    }

    #[test]
    fn fee_rounding_never_overflows() {
        assert_eq!(fee_for(1000, 153), Amount::from_sat(153));
        assert_eq!(fee_for(1001, 153), Amount::from_sat(154));
        assert_eq!(
            fee_for(u64::MAX, u64::MAX),
            Amount::from_sat(u64::MAX.div_ceil(1000))
        );
    }
}
