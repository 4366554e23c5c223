//! Which Bitcoin network, and how to find its node without being told: the
//! default RPC port, and credentials from `bitcoin.conf` or the cookie file
//! in the network's data directory, as Bitcoin Core lays them out.

use std::path::{Path, PathBuf};

use crate::rpc::{Auth, RpcConfig};

/// A Bitcoin network, as Core names its data sub-directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Mainnet (the default).
    Main,
    /// Testnet3.
    Testnet,
    /// Testnet4.
    Testnet4,
    /// Signet.
    Signet,
    /// Regtest.
    Regtest,
}

impl Chain {
    /// Core's default RPC port for the network.
    pub fn default_rpc_port(self) -> u16 {
        match self {
            Chain::Main => 8332,
            Chain::Testnet => 18332,
            Chain::Testnet4 => 48332,
            Chain::Signet => 38332,
            Chain::Regtest => 18443,
        }
    }

    /// The sub-directory of the data directory (empty for mainnet).
    pub fn subdir(self) -> &'static str {
        match self {
            Chain::Main => "",
            Chain::Testnet => "testnet3",
            Chain::Testnet4 => "testnet4",
            Chain::Signet => "signet",
            Chain::Regtest => "regtest",
        }
    }

    /// The `[section]` of `bitcoin.conf` for the network.
    pub fn conf_section(self) -> &'static str {
        match self {
            Chain::Main => "main",
            Chain::Testnet => "test",
            Chain::Testnet4 => "testnet4",
            Chain::Signet => "signet",
            Chain::Regtest => "regtest",
        }
    }

    /// rust-bitcoin's name for it (addresses, genesis).
    pub fn network(self) -> bitcoin::Network {
        match self {
            Chain::Main => bitcoin::Network::Bitcoin,
            Chain::Testnet => bitcoin::Network::Testnet,
            Chain::Testnet4 => bitcoin::Network::Testnet4,
            Chain::Signet => bitcoin::Network::Signet,
            Chain::Regtest => bitcoin::Network::Regtest,
        }
    }

    /// The chain named by `getblockchaininfo`'s `chain` field.
    pub fn from_core_name(name: &str) -> Option<Chain> {
        Some(match name {
            "main" => Chain::Main,
            "test" => Chain::Testnet,
            "testnet4" => Chain::Testnet4,
            "signet" => Chain::Signet,
            "regtest" => Chain::Regtest,
            _ => return None,
        })
    }
}

/// Core's default data directory: `~/.bitcoin`.
pub fn default_datadir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".bitcoin")
}

/// How to reach the local node of `chain` whose data directory is
/// `datadir`: `rpcuser`/`rpcpassword` and `rpcport` from `bitcoin.conf`
/// (global settings, overridden by the network's section), else the cookie
/// file; the default port otherwise.
pub fn local_node(chain: Chain, datadir: &Path) -> RpcConfig {
    let conf = std::fs::read_to_string(datadir.join("bitcoin.conf")).unwrap_or_default();
    let settings = parse_conf(&conf, chain.conf_section());
    let get = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let port = get("rpcport")
        .and_then(|p| p.parse().ok())
        .unwrap_or(chain.default_rpc_port());
    let auth = match (get("rpcuser"), get("rpcpassword")) {
        (Some(user), Some(password)) => Auth::UserPass { user, password },
        _ => Auth::CookieFile(datadir.join(chain.subdir()).join(".cookie")),
    };
    RpcConfig::new(format!("http://127.0.0.1:{port}/"), auth)
}

/// The `key=value` settings that apply to `section`: global lines, then the
/// section's (later entries win). `regtest=1`-style network switches and
/// comments are ignored.
fn parse_conf(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current: Option<String> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        // `regtest.rpcport=…` is the one-line form of a section setting.
        let (scope, key) = match key.split_once('.') {
            Some((scope, key)) => (Some(scope.to_string()), key.to_string()),
            None => (current.clone(), key),
        };
        match scope.as_deref() {
            None => out.push((key, value)),
            Some(s) if s == section => out.push((key, value)),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_sections_and_cookie_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bitcoin.conf"),
            "rpcuser=global\nrpcpassword=pw # comment\n[regtest]\nrpcport=19000\n[test]\nrpcuser=t\n",
        )
        .unwrap();
        let regtest = local_node(Chain::Regtest, dir.path());
        assert_eq!(regtest.url, "http://127.0.0.1:19000/");
        assert_eq!(
            regtest.auth,
            Auth::UserPass {
                user: "global".into(),
                password: "pw".into()
            }
        );
        let test = local_node(Chain::Testnet, dir.path());
        assert_eq!(
            test.auth,
            Auth::UserPass {
                user: "t".into(),
                password: "pw".into()
            }
        );
        assert_eq!(test.url, "http://127.0.0.1:18332/");

        let empty = tempfile::tempdir().unwrap();
        let main = local_node(Chain::Main, empty.path());
        assert_eq!(
            main.auth,
            Auth::CookieFile(empty.path().join("").join(".cookie"))
        );
        assert_eq!(main.url, "http://127.0.0.1:8332/");
    }

    #[test]
    fn chain_names() {
        for chain in [
            Chain::Main,
            Chain::Testnet,
            Chain::Testnet4,
            Chain::Signet,
            Chain::Regtest,
        ] {
            assert_eq!(Chain::from_core_name(chain.conf_section()), Some(chain));
        }
    }
}
