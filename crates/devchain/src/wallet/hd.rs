//! A descriptor-style HD wallet: BIP84 P2WPKH (`bech32`) and BIP86 P2TR
//! (`bech32m`) keys derived from a 32-byte seed, labels, the set of wallet
//! transactions with their receive times, and signing of P2WPKH/P2TR inputs.
//! Key paths and descriptors are in [`crate::wallet::desc`], signing in
//! [`crate::wallet::sign`].

use std::collections::HashMap;

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpriv};
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network, NetworkKind, ScriptBuf, Txid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::script::verify::secp;

/// BIP44 coin type for test networks, used in every derivation path.
pub const COIN_TYPE_TEST: u32 = 1;
/// BIP84 purpose (P2WPKH).
pub const PURPOSE_BIP84: u32 = 84;
/// BIP86 purpose (P2TR key path).
pub const PURPOSE_BIP86: u32 = 86;

/// Address types the wallet derives (Core's `-addresstype` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AddressType {
    /// Native segwit v0 P2WPKH.
    Bech32,
    /// Segwit v1 P2TR, key path only.
    Bech32m,
}

impl AddressType {
    /// Parses Core's `address_type` argument; `None` for types this wallet
    /// has no descriptor for (`legacy`, `p2sh-segwit`) or unknown names.
    pub fn parse(s: &str) -> Option<Result<Self, ()>> {
        match s {
            "bech32" => Some(Ok(AddressType::Bech32)),
            "bech32m" => Some(Ok(AddressType::Bech32m)),
            "legacy" | "p2sh-segwit" => Some(Err(())),
            _ => None,
        }
    }

    pub(crate) fn purpose(self) -> u32 {
        match self {
            AddressType::Bech32 => PURPOSE_BIP84,
            AddressType::Bech32m => PURPOSE_BIP86,
        }
    }

    fn slot(self, change: bool) -> usize {
        (self as usize) * 2 + usize::from(change)
    }
}

/// One derived key and what the wallet knows about it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// Address type.
    pub kind: AddressType,
    /// Internal (change) chain or external (receive) chain.
    pub change: bool,
    /// Index on that chain.
    pub index: u32,
    /// The private key.
    pub secret: SecretKey,
    /// The public key (internal key for P2TR).
    pub pubkey: PublicKey,
    /// The address.
    pub address: Address,
    /// Its label ("" if none).
    pub label: String,
}

/// What the wallet remembers about one of its transactions.
#[derive(Debug, Clone, Copy)]
pub struct WalletTx {
    /// Unix time the wallet first saw it.
    pub time_received: u64,
    /// Order in which the wallet saw it.
    pub order: u64,
}

/// The persisted part of a wallet; everything else is re-derived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletSnapshot {
    /// Wallet name.
    pub name: String,
    /// Seed, hex.
    pub seed: String,
    /// Next index per (type, chain): bech32 receive, bech32 change, bech32m receive, bech32m change.
    pub next: [u32; 4],
    /// Labels by address.
    pub labels: Vec<(String, String)>,
    /// First-seen time by txid.
    pub tx_times: Vec<(String, u64)>,
    /// Creation time.
    pub birthtime: u64,
}

/// An HD wallet.
#[derive(Debug, Clone)]
pub struct Wallet {
    name: String,
    seed: [u8; 32],
    pub(crate) fingerprint: Fingerprint,
    pub(crate) accounts: [Xpriv; 2],
    next: [u32; 4],
    pub(crate) keys: HashMap<ScriptBuf, KeyInfo>,
    txs: HashMap<Txid, WalletTx>,
    next_order: u64,
    birthtime: u64,
}

fn account_path(kind: AddressType) -> DerivationPath {
    DerivationPath::from(vec![
        ChildNumber::Hardened {
            index: kind.purpose(),
        },
        ChildNumber::Hardened {
            index: COIN_TYPE_TEST,
        },
        ChildNumber::Hardened { index: 0 },
    ])
}

impl Wallet {
    /// A fresh wallet from a seed.
    pub fn new(name: &str, seed: [u8; 32], birthtime: u64) -> Result<Self> {
        let master =
            Xpriv::new_master(NetworkKind::Test, &seed).map_err(|e| Error::Key(e.to_string()))?;
        let derive = |kind| {
            master
                .derive_priv(secp(), &account_path(kind))
                .map_err(|e| Error::Key(e.to_string()))
        };
        Ok(Wallet {
            name: name.to_string(),
            seed,
            fingerprint: master.fingerprint(secp()),
            accounts: [derive(AddressType::Bech32)?, derive(AddressType::Bech32m)?],
            next: [0; 4],
            keys: HashMap::new(),
            txs: HashMap::new(),
            next_order: 0,
            birthtime,
        })
    }

    /// Rebuilds a wallet from its snapshot.
    pub fn from_snapshot(s: &WalletSnapshot) -> Result<Self> {
        let bad = |d: &str| Error::Key(format!("wallet {}: {d}", s.name));
        let seed: [u8; 32] = hex::decode(&s.seed)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("seed is not 32 bytes of hex"))?;
        let mut w = Wallet::new(&s.name, seed, s.birthtime)?;
        for kind in [AddressType::Bech32, AddressType::Bech32m] {
            for change in [false, true] {
                for _ in 0..s.next[kind.slot(change)] {
                    w.derive_next(kind, change, "")?;
                }
            }
        }
        let labels: HashMap<&str, &str> = s
            .labels
            .iter()
            .map(|(a, l)| (a.as_str(), l.as_str()))
            .collect();
        for k in w.keys.values_mut() {
            if let Some(l) = labels.get(k.address.to_string().as_str()) {
                k.label = l.to_string();
            }
        }
        let mut times: Vec<(Txid, u64)> = Vec::new();
        for (t, time) in &s.tx_times {
            times.push((t.parse().map_err(|_| bad("bad txid"))?, *time));
        }
        for (t, time) in times {
            w.note_tx(t, time);
        }
        Ok(w)
    }

    /// The persisted form.
    pub fn snapshot(&self) -> WalletSnapshot {
        let mut txs: Vec<(&Txid, &WalletTx)> = self.txs.iter().collect();
        txs.sort_by_key(|(_, w)| w.order);
        WalletSnapshot {
            name: self.name.clone(),
            seed: hex::encode(self.seed),
            next: self.next,
            labels: self
                .keys
                .values()
                .filter(|k| !k.label.is_empty())
                .map(|k| (k.address.to_string(), k.label.clone()))
                .collect(),
            tx_times: txs
                .into_iter()
                .map(|(t, w)| (t.to_string(), w.time_received))
                .collect(),
            birthtime: self.birthtime,
        }
    }

    /// Wallet name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creation time.
    pub fn birthtime(&self) -> u64 {
        self.birthtime
    }

    /// Master key fingerprint (`hdmasterfingerprint`).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Number of derived keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn derive_next(&mut self, kind: AddressType, change: bool, label: &str) -> Result<Address> {
        let slot = kind.slot(change);
        let index = self.next[slot];
        let path = [
            ChildNumber::Normal {
                index: u32::from(change),
            },
            ChildNumber::Normal { index },
        ];
        let xpriv = self.accounts[kind as usize]
            .derive_priv(secp(), &path)
            .map_err(|e| Error::Key(e.to_string()))?;
        let secret = xpriv.private_key;
        let pubkey = PublicKey::from_secret_key(secp(), &secret);
        let address = match kind {
            AddressType::Bech32 => Address::p2wpkh(&CompressedPublicKey(pubkey), Network::Regtest),
            AddressType::Bech32m => {
                Address::p2tr(secp(), pubkey.x_only_public_key().0, None, Network::Regtest)
            }
        };
        self.next[slot] += 1;
        let info = KeyInfo {
            kind,
            change,
            index,
            secret,
            pubkey,
            address: address.clone(),
            label: label.to_string(),
        };
        self.keys.insert(address.script_pubkey(), info);
        Ok(address)
    }

    /// `getnewaddress` / `getrawchangeaddress`: derives the next key on a chain.
    pub fn new_address(&mut self, kind: AddressType, change: bool, label: &str) -> Result<Address> {
        self.derive_next(kind, change, label)
    }

    /// The key behind a script, if the wallet owns it.
    pub fn key(&self, script: &ScriptBuf) -> Option<&KeyInfo> {
        self.keys.get(script)
    }

    /// Whether the wallet owns a script.
    pub fn is_mine(&self, script: &ScriptBuf) -> bool {
        self.keys.contains_key(script)
    }

    /// Sets the label of an owned address.
    pub fn set_label(&mut self, script: &ScriptBuf, label: &str) -> bool {
        match self.keys.get_mut(script) {
            Some(k) => {
                k.label = label.to_string();
                true
            }
            None => false,
        }
    }

    /// Records a wallet transaction; keeps the first time it was seen.
    pub fn note_tx(&mut self, txid: Txid, now: u64) -> bool {
        if self.txs.contains_key(&txid) {
            return false;
        }
        self.txs.insert(
            txid,
            WalletTx {
                time_received: now,
                order: self.next_order,
            },
        );
        self.next_order += 1;
        true
    }

    /// A wallet transaction's record.
    pub fn tx(&self, txid: &Txid) -> Option<WalletTx> {
        self.txs.get(txid).copied()
    }

    /// All wallet transactions, oldest first.
    pub fn txids(&self) -> Vec<Txid> {
        let mut v: Vec<(&Txid, &WalletTx)> = self.txs.iter().collect();
        v.sort_by_key(|(_, w)| w.order);
        v.into_iter().map(|(t, _)| *t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_survives_snapshot() {
        let mut w = Wallet::new("w", [7u8; 32], 1).unwrap();
        let a = w.new_address(AddressType::Bech32, false, "x").unwrap();
        let t = w.new_address(AddressType::Bech32m, true, "").unwrap();
        assert!(a.to_string().starts_with("bcrt1q"));
        assert!(t.to_string().starts_with("bcrt1p"));
        let k = w.key(&a.script_pubkey()).unwrap();
        assert_eq!(k.label, "x");
        let w2 = Wallet::from_snapshot(&w.snapshot()).unwrap();
        assert_eq!(w2.key(&a.script_pubkey()).unwrap().label, "x");
        assert!(w2.is_mine(&t.script_pubkey()));
    }
}
