//! Wallet views over the chain: owned coins, balances, transaction details
//! (`gettransaction`/`listtransactions` semantics), wallet lifecycle, and
//! funding plus signing of payments.

use bitcoin::{
    absolute, transaction, Amount, BlockHash, OutPoint, ScriptBuf, Sequence, SignedAmount,
    Transaction, TxIn, TxOut, Txid, Witness, Wtxid,
};

use crate::block::COINBASE_MATURITY;
use crate::chain::Chain;
use crate::error::{Error, Result, TxReject};
use crate::mempool::{fee_for, AcceptOptions, MAX_BIP125_RBF_SEQUENCE};
use crate::wallet::{AddressType, Wallet};

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

/// One `details` entry of `gettransaction` / one `listtransactions` row.
#[derive(Debug, Clone)]
pub struct Detail {
    /// Address paid, if the script has one.
    pub address: Option<String>,
    /// `send`, `receive`, `generate`, `immature` or `orphan`.
    pub category: &'static str,
    /// Signed amount in satoshis.
    pub amount: SignedAmount,
    /// Label of an owned address.
    pub label: Option<String>,
    /// Output index.
    pub vout: u32,
    /// Fee (negative) on `send` entries.
    pub fee: Option<SignedAmount>,
    /// Parent descriptors of the output script, on received entries
    /// (Core's `PushParentDescriptors`).
    pub parent_descs: Option<Vec<String>>,
}

/// Everything `gettransaction` reports about a wallet transaction.
#[derive(Debug, Clone)]
pub struct WalletTxView {
    /// The transaction.
    pub tx: Transaction,
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Depth; 0 if unconfirmed.
    pub confirmations: i64,
    /// Block hash, height, position and time if confirmed.
    pub block: Option<(BlockHash, u32, usize, u32)>,
    /// In the mempool.
    pub in_mempool: bool,
    /// Net effect on the wallet excluding fee.
    pub amount: SignedAmount,
    /// Fee (negative) if the wallet paid it.
    pub fee: Option<SignedAmount>,
    /// Coinbase.
    pub generated: bool,
    /// Unconfirmed and trusted (own change or fully own inputs).
    pub trusted: bool,
    /// Time first seen.
    pub time_received: u64,
    /// Core's `bip125-replaceable`: yes / no / unknown.
    pub replaceable: &'static str,
    /// Other wallet transactions spending the same inputs.
    pub conflicts: Vec<Txid>,
    /// Per-output entries.
    pub details: Vec<Detail>,
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

    fn owned_prevout(&self, w: &Wallet, op: &OutPoint) -> Option<TxOut> {
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

    /// `gettransaction` data for a wallet transaction.
    pub fn wallet_tx(&self, wallet: &str, txid: &Txid) -> Option<WalletTxView> {
        let w = self.wallets.get(wallet)?;
        let rec = w.tx(txid)?;
        let (tx, block) = match self.state.find_tx(txid) {
            Some((e, pos)) => (
                e.block.txdata[pos].clone(),
                Some((e.hash, e.height, pos, e.block.header.time)),
            ),
            None => (
                self.lookup_tx(txid).or_else(|| self.find_any_tx(txid))?,
                None,
            ),
        };
        let in_mempool = self.mempool.get(txid).is_some();
        let confirmations = block.map_or(0, |(h, ..)| self.state.confirmations(&h));
        let debit: Amount = tx
            .input
            .iter()
            .filter_map(|i| self.owned_prevout(w, &i.previous_output))
            .map(|o| o.value)
            .sum();
        let credit: Amount = tx
            .output
            .iter()
            .filter(|o| w.is_mine(&o.script_pubkey))
            .map(|o| o.value)
            .sum();
        let from_me = debit > Amount::ZERO;
        let out_total: Amount = tx.output.iter().map(|o| o.value).sum();
        let fee = from_me.then(|| {
            -(debit.to_signed().unwrap_or_default() - out_total.to_signed().unwrap_or_default())
        });
        let net = credit.to_signed().unwrap_or_default() - debit.to_signed().unwrap_or_default();
        let amount = net - fee.unwrap_or(SignedAmount::ZERO);
        let generated = tx.is_coinbase();
        // Core's `CachedTxGetAmounts` + `ListTransactions`: every sent
        // output (change excluded) first, then every received one.
        let mut details = Vec::new();
        let mut received = Vec::new();
        for (vout, o) in tx.output.iter().enumerate() {
            let key = w.key(&o.script_pubkey);
            let address = crate::descriptor::address_of(&o.script_pubkey).map(|a| a.to_string());
            let label = key.map(|k| k.label.clone());
            if from_me {
                if key.is_some_and(|k| k.change) {
                    continue;
                }
                details.push(Detail {
                    address: address.clone(),
                    category: "send",
                    amount: -o.value.to_signed().unwrap_or_default(),
                    label: label.clone(),
                    vout: vout as u32,
                    fee,
                    parent_descs: None,
                });
            }
            if let Some(k) = key {
                let category = if !generated {
                    "receive"
                } else if confirmations <= 0 {
                    "orphan"
                } else if confirmations <= i64::from(COINBASE_MATURITY) {
                    "immature"
                } else {
                    "generate"
                };
                received.push(Detail {
                    address,
                    category,
                    amount: o.value.to_signed().unwrap_or_default(),
                    label,
                    vout: vout as u32,
                    fee: None,
                    parent_descs: Some(vec![w.parent_descriptor(k.kind, k.change)]),
                });
            }
        }
        details.extend(received);
        let mut conflicts: Vec<Txid> = w
            .txids()
            .into_iter()
            .filter(|t| t != txid)
            .filter_map(|t| {
                self.lookup_tx(&t)
                    .or_else(|| self.find_any_tx(&t))
                    .map(|x| (t, x))
            })
            .filter(|(_, other)| {
                other.input.iter().any(|i| {
                    tx.input
                        .iter()
                        .any(|j| j.previous_output == i.previous_output)
                        && !generated
                })
            })
            .map(|(t, _)| t)
            .collect();
        conflicts.sort();
        let replaceable = if block.is_some() {
            "no"
        } else if in_mempool {
            if self.mempool.signals_rbf(txid) {
                "yes"
            } else {
                "no"
            }
        } else {
            "unknown"
        };
        Some(WalletTxView {
            txid: *txid,
            wtxid: tx.compute_wtxid(),
            tx,
            confirmations,
            block,
            in_mempool,
            amount,
            fee,
            generated,
            trusted: block.is_some() || (in_mempool && from_me),
            time_received: rec.time_received,
            replaceable,
            conflicts,
            details,
        })
    }

    /// Finds a transaction anywhere in the block tree (stale branches too).
    pub fn find_any_tx(&self, txid: &Txid) -> Option<Transaction> {
        self.state
            .entries()
            .flat_map(|e| e.block.txdata.iter())
            .find(|t| t.compute_txid() == *txid)
            .cloned()
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
