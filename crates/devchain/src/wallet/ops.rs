//! Wallet operations over the chain: wallet lifecycle, owned coins,
//! balances, and funding plus signing of payments. Transaction details
//! (`gettransaction`/`listtransactions` semantics) are in
//! [`crate::wallet::tx`].

use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};

use crate::chain::block::COINBASE_MATURITY;
use crate::chain::node::Chain;
use crate::error::{Error, Result, TxReject};
use crate::mempool::pool::{fee_for, AcceptOptions, MAX_BIP125_RBF_SEQUENCE};
use crate::wallet::hd::{AddressType, Wallet};

/// Core's regtest test-framework `-fallbackfee` (0.0002 BTC/kvB), used when
/// the estimator has no data, in sat/kvB.
pub const WALLET_FALLBACK_FEE_SAT_PER_KVB: u64 = 20_000;
/// Confirmation target the wallet estimates its fee rate for (Core's `-txconfirmtarget`).
pub const WALLET_CONF_TARGET: u32 = 6;
/// Fixed transaction overhead in vbytes (version, locktime, counts, segwit marker).
const TX_OVERHEAD_VBYTES: u64 = 11;
/// Upper bound of a signed P2WPKH or P2TR key-path input, vbytes.
const INPUT_VBYTES: u64 = 68;

/// A coin the wallet owns.
#[derive(Debug, Clone)]
pub struct WalletCoin {
    /// Where it is.
    pub outpoint: OutPoint,
    /// The output.
    pub output: TxOut,
    /// Depth in the active chain; 0 while unconfirmed.
    pub confirmations: u32,
    /// Coinbase output.
    pub is_coinbase: bool,
    /// Confirmed, or unconfirmed but created by the wallet itself (Core's "safe"/trusted).
    pub safe: bool,
}

impl WalletCoin {
    /// Coinbase outputs stay immature until 101 confirmations in Core's wallet.
    pub fn is_immature(&self) -> bool {
        self.is_coinbase && self.confirmations <= COINBASE_MATURITY
    }
}

/// Balances as `getbalances` reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Balances {
    /// Confirmed mature coins plus unconfirmed change.
    pub trusted: Amount,
    /// Unconfirmed coins from others.
    pub untrusted_pending: Amount,
    /// Immature coinbase coins.
    pub immature: Amount,
}

impl Chain {
    /// `createwallet`: a new loaded wallet (random seed unless given).
    pub fn create_wallet(&mut self, name: &str, seed: Option<[u8; 32]>) -> Result<()> {
        if self.wallets.contains_key(name) || self.unloaded.contains_key(name) {
            return Err(Error::WalletExists(name.to_string()));
        }
        let seed = seed.unwrap_or_else(rand::random);
        let w = Wallet::new(name, seed, self.now())?;
        self.wallets.insert(name.to_string(), w);
        self.rescan_wallets();
        self.mark_dirty();
        Ok(())
    }

    /// `loadwallet`.
    pub fn load_wallet(&mut self, name: &str) -> Result<()> {
        if self.wallets.contains_key(name) {
            return Err(Error::WalletExists(name.to_string()));
        }
        let snap = self
            .unloaded
            .remove(name)
            .ok_or_else(|| Error::WalletNotFound(name.to_string()))?;
        let w = Wallet::from_snapshot(&snap)?;
        self.wallets.insert(name.to_string(), w);
        self.rescan_wallets();
        self.mark_dirty();
        Ok(())
    }

    /// `unloadwallet`.
    pub fn unload_wallet(&mut self, name: &str) -> Result<()> {
        let w = self
            .wallets
            .remove(name)
            .ok_or_else(|| Error::WalletNotFound(name.to_string()))?;
        self.unloaded.insert(name.to_string(), w.snapshot());
        self.mark_dirty();
        Ok(())
    }

    /// Names of loaded wallets.
    pub fn wallet_names(&self) -> Vec<String> {
        self.wallets.keys().cloned().collect()
    }

    /// Names of wallets that exist but are not loaded.
    pub fn unloaded_wallet_names(&self) -> Vec<String> {
        self.unloaded.keys().cloned().collect()
    }

    /// A loaded wallet.
    pub fn wallet(&self, name: &str) -> Option<&Wallet> {
        self.wallets.get(name)
    }

    /// A loaded wallet, mutably (address derivation, labels).
    pub fn wallet_mut(&mut self, name: &str) -> Option<&mut Wallet> {
        self.mark_dirty();
        self.wallets.get_mut(name)
    }

    /// Derives a new address in a loaded wallet.
    pub fn new_address(
        &mut self,
        wallet: &str,
        kind: AddressType,
        change: bool,
        label: &str,
    ) -> Result<bitcoin::Address> {
        let w = self
            .wallet_mut(wallet)
            .ok_or_else(|| Error::WalletNotFound(wallet.to_string()))?;
        w.new_address(kind, change, label)
    }

    /// Coins the wallet owns that are unspent in chain and mempool.
    pub fn wallet_coins(&self, wallet: &str) -> Vec<WalletCoin> {
        let Some(w) = self.wallets.get(wallet) else {
            return vec![];
        };
        let tip = self.state.height();
        let mut coins: Vec<WalletCoin> = self
            .state
            .utxos()
            .filter(|(op, c)| {
                w.is_mine(&c.output.script_pubkey) && self.mempool.spender(op).is_none()
            })
            .map(|(op, c)| WalletCoin {
                outpoint: *op,
                output: c.output.clone(),
                confirmations: tip - c.height + 1,
                is_coinbase: c.is_coinbase,
                safe: true,
            })
            .collect();
        for e in self.mempool.entries() {
            let from_me =
                e.tx.input
                    .iter()
                    .all(|i| self.owned_prevout(w, &i.previous_output).is_some());
            for (vout, o) in e.tx.output.iter().enumerate() {
                let op = OutPoint {
                    txid: e.txid,
                    vout: vout as u32,
                };
                if w.is_mine(&o.script_pubkey) && self.mempool.spender(&op).is_none() {
                    coins.push(WalletCoin {
                        outpoint: op,
                        output: o.clone(),
                        confirmations: 0,
                        is_coinbase: false,
                        safe: from_me,
                    });
                }
            }
        }
        coins.sort_by(|a, b| {
            b.confirmations
                .cmp(&a.confirmations)
                .then(a.outpoint.cmp(&b.outpoint))
        });
        coins
    }

    pub(crate) fn owned_prevout(&self, w: &Wallet, op: &OutPoint) -> Option<TxOut> {
        let prev = self.lookup_tx(&op.txid)?;
        let out = prev.output.get(op.vout as usize)?;
        w.is_mine(&out.script_pubkey).then(|| out.clone())
    }

    /// `getbalances` figures.
    pub fn balances(&self, wallet: &str) -> Balances {
        let mut b = Balances::default();
        for c in self.wallet_coins(wallet) {
            if c.is_immature() {
                b.immature += c.output.value;
            } else if c.safe {
                b.trusted += c.output.value;
            } else {
                b.untrusted_pending += c.output.value;
            }
        }
        b
    }

    /// Builds and signs a payment from the wallet to `outputs`, paying
    /// `fee_rate` sat/kvB (the estimate or fallback if `None`), with change
    /// to a new bech32 change address. Signals RBF and sets an
    /// anti-fee-sniping lock time, as Core's wallet does.
    pub fn create_payment(
        &mut self,
        wallet: &str,
        outputs: Vec<TxOut>,
        fee_rate: Option<u64>,
    ) -> Result<Transaction> {
        let rate = fee_rate
            .or_else(|| self.estimate_fee(WALLET_CONF_TARGET))
            .unwrap_or(WALLET_FALLBACK_FEE_SAT_PER_KVB);
        let target: Amount = outputs.iter().map(|o| o.value).sum();
        let mut coins: Vec<WalletCoin> = self
            .wallet_coins(wallet)
            .into_iter()
            .filter(|c| c.safe && !c.is_immature())
            .collect();
        coins.sort_by_key(|c| std::cmp::Reverse(c.output.value));
        let change_script = self
            .new_address(wallet, AddressType::Bech32, true, "")?
            .script_pubkey();
        let out_vbytes: u64 = outputs
            .iter()
            .chain([&TxOut {
                value: Amount::ZERO,
                script_pubkey: change_script.clone(),
            }])
            .map(|o| 9 + o.script_pubkey.len() as u64)
            .sum();
        let mut selected = Vec::new();
        let mut total = Amount::ZERO;
        let mut fee = Amount::ZERO;
        for c in coins {
            total += c.output.value;
            selected.push(c);
            fee = Amount::from_sat(fee_for(
                rate,
                TX_OVERHEAD_VBYTES + out_vbytes + INPUT_VBYTES * selected.len() as u64,
            ));
            if total >= target + fee {
                break;
            }
        }
        if selected.is_empty() || total < target + fee {
            return Err(Error::InsufficientFunds);
        }
        let mut tx_outputs = outputs;
        let change = total - target - fee;
        if change >= change_script.minimal_non_dust() {
            tx_outputs.push(TxOut {
                value: change,
                script_pubkey: change_script,
            });
        }
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::from_height(self.state.height())
                .unwrap_or(absolute::LockTime::ZERO),
            input: selected
                .iter()
                .map(|c| TxIn {
                    previous_output: c.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence(MAX_BIP125_RBF_SEQUENCE),
                    witness: Witness::new(),
                })
                .collect(),
            output: tx_outputs,
        };
        let prevouts: Vec<Option<TxOut>> =
            selected.iter().map(|c| Some(c.output.clone())).collect();
        let w = self
            .wallets
            .get(wallet)
            .ok_or_else(|| Error::WalletNotFound(wallet.to_string()))?;
        let (signed, errors) = w.sign(&tx, &prevouts, None);
        if let Some((_, e)) = errors.first() {
            return Err(Error::Key(e.clone()));
        }
        Ok(signed)
    }

    /// `sendtoaddress`: pays `amount` to `script` and submits the transaction.
    pub fn send_to(
        &mut self,
        wallet: &str,
        script: ScriptBuf,
        amount: Amount,
        fee_rate: Option<u64>,
    ) -> Result<Txid> {
        let tx = self.create_payment(
            wallet,
            vec![TxOut {
                value: amount,
                script_pubkey: script,
            }],
            fee_rate,
        )?;
        let accepted = self
            .accept_tx(tx, &AcceptOptions::default())
            .map_err(|r: TxReject| Error::TxRejected(r))?;
        Ok(accepted.txid)
    }
}
