//! Signing with the wallet's keys: every input whose previous output the
//! wallet owns, P2WPKH with ECDSA (BIP143 sighash) and P2TR key path with
//! Schnorr (BIP341 sighash), with Core's error text for each input left
//! unsigned.

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::Message;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{Transaction, TxOut, Witness};

use crate::script::verify::secp;
use crate::wallet::hd::{AddressType, Wallet};

impl Wallet {
    /// Signs every input whose previous output the wallet owns. Returns the
    /// signed transaction and, per unsigned input, Core's error text.
    pub fn sign(
        &self,
        tx: &Transaction,
        prevouts: &[Option<TxOut>],
        sighash: Option<EcdsaSighashType>,
    ) -> (Transaction, Vec<(usize, String)>) {
        let mut errors = Vec::new();
        let all_known: Option<Vec<TxOut>> = prevouts.iter().cloned().collect();
        let mut witnesses: Vec<Option<Witness>> = vec![None; tx.input.len()];
        let mut cache = SighashCache::new(tx);
        for (i, prev) in prevouts.iter().enumerate() {
            let Some(prev) = prev else {
                errors.push((i, "Input not found or already spent".to_string()));
                continue;
            };
            let Some(key) = self.keys.get(&prev.script_pubkey) else {
                if tx.input[i].witness.is_empty() {
                    errors.push((
                        i,
                        "Unable to sign input, invalid stack size (possibly missing key)"
                            .to_string(),
                    ));
                }
                continue;
            };
            match key.kind {
                AddressType::Bech32 => {
                    let ty = sighash.unwrap_or(EcdsaSighashType::All);
                    let Ok(h) = cache.p2wpkh_signature_hash(i, &prev.script_pubkey, prev.value, ty)
                    else {
                        errors.push((i, "Signing failed".to_string()));
                        continue;
                    };
                    let msg = Message::from_digest(h.to_byte_array());
                    let sig = secp().sign_ecdsa_low_r(&msg, &key.secret);
                    let sig = bitcoin::ecdsa::Signature {
                        signature: sig,
                        sighash_type: ty,
                    };
                    witnesses[i] = Some(Witness::p2wpkh(&sig, &key.pubkey));
                }
                AddressType::Bech32m => {
                    let Some(all) = &all_known else {
                        errors.push((
                            i,
                            "Unable to sign input, missing prevouts for taproot".to_string(),
                        ));
                        continue;
                    };
                    let ty = match sighash {
                        None => TapSighashType::Default,
                        Some(t) => TapSighashType::from_consensus_u8(t.to_u32() as u8)
                            .unwrap_or(TapSighashType::Default),
                    };
                    let Ok(h) = cache.taproot_key_spend_signature_hash(i, &Prevouts::All(all), ty)
                    else {
                        errors.push((i, "Signing failed".to_string()));
                        continue;
                    };
                    let msg = Message::from_digest(h.to_byte_array());
                    let tweaked =
                        Keypair::from_secret_key(secp(), &key.secret).tap_tweak(secp(), None);
                    let sig = secp().sign_schnorr(&msg, &tweaked.to_keypair());
                    witnesses[i] = Some(Witness::p2tr_key_spend(&bitcoin::taproot::Signature {
                        signature: sig,
                        sighash_type: ty,
                    }));
                }
            }
        }
        let mut signed = tx.clone();
        for (input, w) in signed.input.iter_mut().zip(witnesses) {
            if let Some(w) = w {
                input.witness = w;
            }
        }
        (signed, errors)
    }
}
