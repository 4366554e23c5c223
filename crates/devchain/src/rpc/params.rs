//! JSON-RPC error objects with Bitcoin Core's codes (`protocol.h`) and the
//! parameter parsing Core's `RPCHelpMan` does: positional or named
//! arguments, type errors, hashes, amounts, hex, addresses and the
//! request's wallet.

use std::str::FromStr;

use bitcoin::{Amount, BlockHash, Txid};
use serde_json::Value;

use crate::chain::node::Chain;
use crate::error::{Error, RejectClass, TxReject};
use crate::wallet::hd::Wallet;

/// Core's RPC error codes used by devchain.
pub mod code {
    /// `RPC_MISC_ERROR`
    pub const MISC_ERROR: i32 = -1;
    /// `RPC_TYPE_ERROR`
    pub const TYPE_ERROR: i32 = -3;
    /// `RPC_WALLET_ERROR`
    pub const WALLET_ERROR: i32 = -4;
    /// `RPC_INVALID_ADDRESS_OR_KEY`
    pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
    /// `RPC_WALLET_INSUFFICIENT_FUNDS`
    pub const WALLET_INSUFFICIENT_FUNDS: i32 = -6;
    /// `RPC_INVALID_PARAMETER`
    pub const INVALID_PARAMETER: i32 = -8;
    /// `RPC_WALLET_KEYPOOL_RAN_OUT`
    pub const WALLET_KEYPOOL_RAN_OUT: i32 = -12;
    /// `RPC_WALLET_NOT_FOUND`
    pub const WALLET_NOT_FOUND: i32 = -18;
    /// `RPC_WALLET_NOT_SPECIFIED`
    pub const WALLET_NOT_SPECIFIED: i32 = -19;
    /// `RPC_DATABASE_ERROR`
    pub const DATABASE_ERROR: i32 = -20;
    /// `RPC_DESERIALIZATION_ERROR`
    pub const DESERIALIZATION_ERROR: i32 = -22;
    /// `RPC_VERIFY_ERROR` / `RPC_TRANSACTION_ERROR`
    pub const VERIFY_ERROR: i32 = -25;
    /// `RPC_VERIFY_REJECTED` / `RPC_TRANSACTION_REJECTED`
    pub const VERIFY_REJECTED: i32 = -26;
    /// `RPC_VERIFY_ALREADY_IN_UTXO_SET`
    pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
    /// `RPC_IN_WARMUP`
    pub const IN_WARMUP: i32 = -28;
    /// `RPC_WALLET_ALREADY_LOADED`
    pub const WALLET_ALREADY_LOADED: i32 = -35;
    /// `RPC_INVALID_REQUEST`
    pub const INVALID_REQUEST: i32 = -32600;
    /// `RPC_METHOD_NOT_FOUND`
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// `RPC_PARSE_ERROR`
    pub const PARSE_ERROR: i32 = -32700;
}

/// A JSON-RPC error object `{"code": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Core's error code.
    pub code: i32,
    /// Core's message.
    pub message: String,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// Result of an RPC handler.
pub type RpcResult<T> = Result<T, RpcError>;

/// Maps a mempool rejection as Core's `sendrawtransaction` does
/// (`JSONRPCTransactionError`).
pub fn tx_reject_error(r: &TxReject) -> RpcError {
    match r.class {
        RejectClass::MissingInputs => RpcError::new(code::VERIFY_ERROR, r.message()),
        RejectClass::AlreadyInChain => RpcError::new(
            code::VERIFY_ALREADY_IN_CHAIN,
            "Transaction outputs already in utxo set",
        ),
        RejectClass::MaxFeeExceeded => RpcError::new(
            code::VERIFY_ERROR,
            "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)",
        ),
        RejectClass::MaxBurnExceeded => RpcError::new(
            code::VERIFY_ERROR,
            "Unspendable output exceeds maximum configured by user (maxburnamount)",
        ),
        RejectClass::AlreadyInMempool | RejectClass::Rejected => {
            RpcError::new(code::VERIFY_REJECTED, r.message())
        }
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        match e {
            Error::BlockNotFound(_) => {
                RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found")
            }
            Error::TxRejected(r) => tx_reject_error(&r),
            Error::InsufficientFunds => {
                RpcError::new(code::WALLET_INSUFFICIENT_FUNDS, "Insufficient funds")
            }
            Error::WalletNotFound(_) => wallet_not_found(),
            Error::WalletExists(name) => RpcError::new(
                code::WALLET_ALREADY_LOADED,
                format!("Wallet \"{name}\" is already loaded."),
            ),
            Error::BlockInvalid(r) => RpcError::new(code::VERIFY_ERROR, r),
            Error::DuplicateBlock(_) => RpcError::new(code::VERIFY_ERROR, "duplicate"),
            other => RpcError::new(code::MISC_ERROR, other.to_string()),
        }
    }
}

/// UniValue's type names, used in Core's type error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// UniValue's `getInt<T>()`: a whole JSON number that fits `T`; anything
/// else is the `std::runtime_error` Core reports as -1 "JSON integer out
/// of range".
pub(crate) fn int_value<T: TryFrom<i64>>(v: &Value) -> RpcResult<T> {
    v.as_i64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| RpcError::new(code::MISC_ERROR, "JSON integer out of range"))
}

fn type_error(v: &Value, expected: &str) -> RpcError {
    RpcError::new(
        code::TYPE_ERROR,
        format!(
            "JSON value of type {} is not of expected type {expected}",
            type_name(v)
        ),
    )
}

/// A method's arguments, normalised to positional order.
#[derive(Debug)]
pub struct Params {
    values: Vec<Value>,
}

impl Params {
    /// Normalises `params` (array, object of named arguments, or null) for a
    /// method with argument `names`, of which the first `required` are
    /// mandatory.
    pub fn new(method: &str, names: &[&str], required: usize, params: &Value) -> RpcResult<Params> {
        let usage = || {
            RpcError::new(
                code::MISC_ERROR,
                format!(
                    "{method} {}\n\nSee `bitcoin-cli help {method}`.",
                    names.join(" ")
                ),
            )
        };
        let values: Vec<Value> = match params {
            Value::Null => vec![],
            Value::Array(a) => a.clone(),
            Value::Object(o) => {
                let mut v = vec![Value::Null; names.len()];
                for (k, val) in o {
                    let Some(i) = names.iter().position(|n| n == k) else {
                        return Err(RpcError::new(
                            code::INVALID_PARAMETER,
                            format!("Unknown named parameter {k}"),
                        ));
                    };
                    v[i] = val.clone();
                }
                while v.last() == Some(&Value::Null) {
                    v.pop();
                }
                v
            }
            _ => {
                return Err(RpcError::new(
                    code::INVALID_REQUEST,
                    "Params must be an array or object",
                ))
            }
        };
        if values.len() > names.len() {
            return Err(usage());
        }
        if (0..required).any(|i| values.get(i).is_none_or(Value::is_null)) {
            return Err(usage());
        }
        Ok(Params { values })
    }

    /// Argument `i` unless absent or null.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).filter(|v| !v.is_null())
    }

    /// A string argument.
    pub fn str(&self, i: usize) -> RpcResult<Option<&str>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(type_error(v, "string")),
        }
    }

    /// A required string argument.
    pub fn req_str(&self, i: usize) -> RpcResult<&str> {
        self.str(i)?
            .ok_or_else(|| RpcError::new(code::MISC_ERROR, "missing argument"))
    }

    /// An integer argument.
    pub fn int(&self, i: usize) -> RpcResult<Option<i64>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| RpcError::new(code::TYPE_ERROR, "JSON integer out of range")),
            Some(v) => Err(type_error(v, "number")),
        }
    }

    /// A boolean argument.
    pub fn bool(&self, i: usize) -> RpcResult<Option<bool>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(type_error(v, "bool")),
        }
    }

    /// A verbosity argument that Core accepts as bool or number.
    pub fn verbosity(&self, i: usize, default: i64) -> RpcResult<i64> {
        match self.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(i64::from(*b)),
            Some(Value::Number(_)) => Ok(self.int(i)?.unwrap_or(default)),
            Some(v) => Err(type_error(v, "number")),
        }
    }

    /// An array argument.
    pub fn array(&self, i: usize) -> RpcResult<Option<&Vec<Value>>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(type_error(v, "array")),
        }
    }

    /// A BTC amount argument (number or numeric string).
    pub fn amount(&self, i: usize) -> RpcResult<Option<Amount>> {
        self.get(i).map(amount_from_value).transpose()
    }

    /// A block hash argument (Core's `ParseHashV`).
    pub fn block_hash(&self, i: usize, name: &str) -> RpcResult<BlockHash> {
        parse_hash(self.get(i).unwrap_or(&Value::Null), name)
    }

    /// A txid argument (Core's `ParseHashV`).
    pub fn txid(&self, i: usize, name: &str) -> RpcResult<Txid> {
        parse_hash(self.get(i).unwrap_or(&Value::Null), name)
    }
}

/// Core's `AmountFromValue`: a number or numeric string of BTC, at most
/// eight decimals, within the money range.
pub fn amount_from_value(v: &Value) -> RpcResult<Amount> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => return Err(type_error(other, "number")),
    };
    let btc: f64 = text
        .parse()
        .map_err(|_| RpcError::new(code::TYPE_ERROR, "Invalid amount"))?;
    if !(0.0..=21_000_000.0).contains(&btc) {
        return Err(RpcError::new(code::TYPE_ERROR, "Amount out of range"));
    }
    let sat = (btc * 1e8).round();
    if (sat - btc * 1e8).abs() > 1e-3 {
        return Err(RpcError::new(code::TYPE_ERROR, "Invalid amount"));
    }
    Ok(Amount::from_sat(sat as u64))
}

/// Core's `ParseHashV`.
pub fn parse_hash<T: std::str::FromStr>(v: &Value, name: &str) -> RpcResult<T> {
    let Value::String(s) = v else {
        return Err(type_error(v, "string"));
    };
    if s.len() != 64 {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    s.parse().map_err(|_| {
        RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        )
    })
}

/// Decodes a hex transaction (Core's `DecodeHexTx`), error -22 as Core.
pub fn decode_tx(hex_str: &str) -> RpcResult<bitcoin::Transaction> {
    let bytes = hex::decode(hex_str).map_err(|_| {
        RpcError::new(
            code::DESERIALIZATION_ERROR,
            "TX decode failed. Make sure the tx has at least one input.",
        )
    })?;
    bitcoin::consensus::encode::deserialize(&bytes).map_err(|_| {
        RpcError::new(
            code::DESERIALIZATION_ERROR,
            "TX decode failed. Make sure the tx has at least one input.",
        )
    })
}

/// Parses a regtest address as Core's `DecodeDestination` would accept it.
pub fn parse_address(s: &str) -> Option<bitcoin::Address> {
    bitcoin::Address::from_str(s)
        .ok()?
        .require_network(bitcoin::Network::Regtest)
        .ok()
}

/// Core's error for a wallet name that names no loaded wallet.
pub(crate) fn wallet_not_found() -> RpcError {
    RpcError::new(
        code::WALLET_NOT_FOUND,
        "Requested wallet does not exist or is not loaded",
    )
}

/// The loaded wallet `name`, or Core's `wallet_not_found` error.
pub(crate) fn wallet_of<'a>(chain: &'a Chain, name: &str) -> RpcResult<&'a Wallet> {
    chain.wallet(name).ok_or_else(wallet_not_found)
}
