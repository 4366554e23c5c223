//! A Bitcoin node for the end-to-end tests, behind one face: devchain
//! in-process (always), or a real `bitcoind` child process when
//! `BITCOIND_EXE` is set, so the same scenarios run against both. The node
//! can be stopped and restarted on the same port and data directory (an
//! outage), and mines on request only: whole blocks from the mempool, or
//! empty blocks (`generateblock`) that leave the timestamp transaction
//! unconfirmed.

use std::path::PathBuf;
use std::time::Duration;

use devchain::{DevChain, DevChainConfig};
use ots_bitcoin::{Auth, RpcClient, RpcConfig};
use serde_json::{json, Value};
use test_support::bitcoind::{self, Bitcoind, Credentials, Options};

const USER: &str = "otstest";
const PASSWORD: &str = "otstest-password";
/// The wallet the calendar spends from.
pub const WALLET: &str = "ots";

/// Which node.
#[derive(Debug, Clone)]
pub enum Backend {
    /// devchain, in this process.
    Dev,
    /// A `bitcoind` binary.
    Core(PathBuf),
}

impl Backend {
    /// devchain, and Bitcoin Core when `BITCOIND_EXE` is set (with a
    /// printed notice when it is not).
    pub fn all() -> Vec<Backend> {
        let mut all = vec![Backend::Dev];
        match bitcoind::exe() {
            Some(exe) => all.push(Backend::Core(exe)),
            None => eprintln!(
                "Bitcoin Core tier skipped: set BITCOIND_EXE to a bitcoind binary to run it too"
            ),
        }
        all
    }
}

enum Running {
    Dev(DevChain),
    /// Bitcoin Core, kept while stopped for its data directory and port.
    Core(Bitcoind),
    Stopped,
}

/// A running (or stopped) test node.
pub struct TestNode {
    pub backend: Backend,
    dir: tempfile::TempDir,
    port: u16,
    running: Running,
    mine_to: String,
    funded: bool,
}

impl TestNode {
    /// Starts a node with a funded wallet [`WALLET`].
    pub async fn start(backend: Backend) -> TestNode {
        Self::start_with(backend, true).await
    }

    /// Starts a node whose wallet [`WALLET`] holds nothing (the chain is
    /// at genesis).
    pub async fn start_unfunded(backend: Backend) -> TestNode {
        Self::start_with(backend, false).await
    }

    async fn start_with(backend: Backend, funded: bool) -> TestNode {
        let mut node = TestNode {
            funded,
            port: 0,
            backend,
            dir: tempfile::tempdir().unwrap(),
            running: Running::Stopped,
            mine_to: String::new(),
        };
        node.launch().await;
        if matches!(node.backend, Backend::Core(_)) {
            let _: Value = node
                .call(
                    "createwallet",
                    json!({"wallet_name": WALLET, "load_on_startup": true}),
                )
                .await;
        }
        node.mine_to = node.wallet().new_address().await.unwrap();
        if funded && matches!(node.backend, Backend::Core(_)) {
            node.mine(101).await;
        }
        node
    }

    async fn launch(&mut self) {
        match &self.backend {
            Backend::Dev => {
                let chain = DevChain::start(DevChainConfig {
                    data_dir: Some(self.dir.path().join("devchain")),
                    bind: ([127, 0, 0, 1], self.port).into(),
                    rpc_user: USER.into(),
                    rpc_password: Some(PASSWORD.into()),
                    block_interval: None,
                    prefund: self.funded,
                    wallet: WALLET.into(),
                    // A restarted node warms up first (-28), as Core does.
                    warmup: (self.port != 0).then_some(Duration::from_secs(2)),
                })
                .await
                .expect("devchain starts");
                self.port = chain.addr().port();
                self.running = Running::Dev(chain);
            }
            Backend::Core(exe) => {
                let core = match std::mem::replace(&mut self.running, Running::Stopped) {
                    Running::Core(mut core) => {
                        core.restart().await;
                        core
                    }
                    _ => {
                        let options = Options {
                            credentials: Credentials::user_password(USER, PASSWORD),
                            ..Options::default()
                        };
                        Bitcoind::start(exe, options).await
                    }
                };
                self.port = core.rpc_port();
                self.running = Running::Core(core);
                if self.mine_to.is_empty() {
                    return;
                }
                // After a restart the wallet loads with the node: wait for
                // it too.
                for _ in 0..300 {
                    if self.wallet().balances().await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("bitcoind did not answer");
            }
        }
    }

    /// The node's RPC URL, credentials included.
    pub fn url(&self) -> String {
        format!("http://{USER}:{PASSWORD}@127.0.0.1:{}/", self.port)
    }

    /// A client of the node.
    pub fn node(&self) -> RpcClient {
        RpcClient::new(RpcConfig::new(self.url(), Auth::None)).unwrap()
    }

    /// A client of the wallet.
    pub fn wallet(&self) -> RpcClient {
        let mut config = RpcConfig::new(self.url(), Auth::None);
        config.wallet = Some(WALLET.into());
        RpcClient::new(config).unwrap()
    }

    /// Calls `method`; panics on an error.
    pub async fn call<T: serde::de::DeserializeOwned>(&self, method: &str, params: Value) -> T {
        self.node()
            .call(method, params.clone())
            .await
            .unwrap_or_else(|e| panic!("{method} {params}: {e}"))
    }

    /// Mines `n` blocks from the mempool; returns their hashes.
    pub async fn mine(&self, n: u64) -> Vec<String> {
        self.call("generatetoaddress", json!([n, self.mine_to]))
            .await
    }

    /// Mines one block holding no transaction but its coinbase, which pays
    /// a fresh address outside the wallet (so that a block replacing an
    /// invalidated one never repeats it exactly, and the wallet gains
    /// nothing).
    pub async fn mine_empty(&self) -> String {
        let mut script = vec![0x04];
        script.extend(rand::random::<[u8; 4]>());
        script.extend([0x75, 0x51]); // OP_DROP OP_TRUE
        let script = bitcoin::ScriptBuf::from_bytes(script);
        let to = bitcoin::Address::p2wsh(&script, bitcoin::Network::Regtest).to_string();
        let reply: Value = self.call("generateblock", json!([to, []])).await;
        reply["hash"].as_str().unwrap().to_string()
    }

    /// The mempool's txids.
    pub async fn mempool(&self) -> Vec<String> {
        self.call("getrawmempool", json!([])).await
    }

    /// The best chain's height.
    pub async fn height(&self) -> u64 {
        self.node().block_count().await.unwrap()
    }

    /// A mempool transaction's base fee, in satoshis.
    pub async fn mempool_fee(&self, txid: &str) -> u64 {
        let entry: Value = self.call("getmempoolentry", json!([txid])).await;
        let btc = entry["fees"]["base"].as_f64().unwrap();
        (btc * 1e8).round() as u64
    }

    /// A mempool transaction's fee rate, sat/vB (its base fee over the
    /// node's vsize).
    pub async fn mempool_rate(&self, txid: &str) -> f64 {
        let entry: Value = self.call("getmempoolentry", json!([txid])).await;
        let vsize = entry["vsize"].as_f64().unwrap();
        self.mempool_fee(txid).await as f64 / vsize
    }

    /// devchain only (Bitcoin Core's estimate cannot be set): from now on
    /// `estimatesmartfee` answers `sat_per_kvb` for every target.
    pub fn set_fee_estimate(&self, sat_per_kvb: u64) {
        use devchain::chain::node::FeeEstimateSetting;
        match &self.running {
            Running::Dev(chain) => {
                chain.with_chain(|c| c.set_fee_estimate(FeeEstimateSetting::Fixed(sat_per_kvb)))
            }
            _ => panic!("only devchain's fee estimate can be set"),
        }
    }

    /// The outpoints a transaction spends.
    pub async fn inputs(&self, txid: &str) -> Vec<(String, u64)> {
        let tx: Value = self.call("getrawtransaction", json!([txid, true])).await;
        tx["vin"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["txid"].as_str().unwrap().to_string(),
                    i["vout"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Stops the node (an outage). Bitcoin Core is killed outright, so its
    /// mempool is lost, as on a crash.
    pub async fn stop(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Dev(chain) => chain.shutdown().await,
            Running::Core(mut core) => {
                if core.is_running() {
                    // Core writes its block index lazily: flush it (as time
                    // would), so the kill loses the mempool only, as a
                    // crash of a long-running node does.
                    let _: Value = self.call("gettxoutsetinfo", json!([])).await;
                    core.kill();
                }
                // Kept, stopped, for its data directory and port.
                self.running = Running::Core(core);
            }
            Running::Stopped => {}
        }
    }

    /// Starts the stopped node again, same port and data.
    pub async fn restart(&mut self) {
        assert!(!self.is_running());
        self.launch().await;
    }

    fn is_running(&mut self) -> bool {
        match &mut self.running {
            Running::Dev(_) => true,
            Running::Core(core) => core.is_running(),
            Running::Stopped => false,
        }
    }
}
