//! Running devchain in-process: [`DevChain::start`] opens (or creates) the
//! chain, optionally pre-funds a wallet, writes the RPC cookie, serves
//! JSON-RPC on a chosen address and mines on a timer.
//!
//! Optionally it models Bitcoin Core's start-up ("warm-up"), for clients
//! that must wait for a node: from the moment its RPC server listens until
//! it has loaded everything, Core answers every request (any method, known or not, on
//! any path) with error `-28` (`RPC_IN_WARMUP`) and the current start-up
//! step as the message; malformed requests still get their own errors.
//!
//! The messages are Core's `InitMessage` texts (`init.cpp`,
//! `wallet/load.cpp`), with the Unicode ellipsis Core uses, in the order a
//! Core 30 node shows them while starting with a wallet. A warm-up of
//! duration `d` spends `d / 4` on each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::ScriptBuf;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::chain::block::COINBASE_MATURITY;
use crate::chain::node::Chain;
use crate::chain::store::{write_atomic, Store, COOKIE_FILE};
use crate::error::{Error, Result};
use crate::rpc::server::{serve, Auth, Node, COOKIE_USER};
pub use crate::rpc::warmup::{Warmup, WARMUP_STAGES};
use crate::wallet::hd::AddressType;

/// Core's default regtest RPC port.
pub const DEFAULT_RPC_PORT: u16 = 18_443;
/// Default RPC user name.
pub const DEFAULT_RPC_USER: &str = "devchain";
/// Name of the wallet devchain creates and mines to.
pub const DEFAULT_WALLET: &str = "devchain";
/// Blocks mined at first start when pre-funding: enough for one mature coinbase.
pub const PREFUND_BLOCKS: u32 = COINBASE_MATURITY + 1;

/// How to start devchain.
#[derive(Debug, Clone)]
pub struct DevChainConfig {
    /// Data directory; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    pub bind: SocketAddr,
    /// RPC user.
    pub rpc_user: String,
    /// RPC password; random when `None`.
    pub rpc_password: Option<String>,
    /// Mine a block every interval; `None` mines only on request.
    pub block_interval: Option<Duration>,
    /// Mine [`PREFUND_BLOCKS`] to the wallet if the chain is at genesis.
    pub prefund: bool,
    /// Wallet created (or loaded) at start; blocks from the timer pay it.
    pub wallet: String,
    /// Model Core's start-up: for this long after the RPC port opens, every
    /// request is answered with error `-28` and Core's start-up message
    /// (see [`Warmup`]), and the timer mines nothing. `None` (the
    /// default) serves at once.
    pub warmup: Option<Duration>,
}

impl Default for DevChainConfig {
    fn default() -> Self {
        DevChainConfig {
            data_dir: None,
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_RPC_PORT)),
            rpc_user: DEFAULT_RPC_USER.to_string(),
            rpc_password: None,
            block_interval: None,
            prefund: false,
            wallet: DEFAULT_WALLET.to_string(),
            warmup: None,
        }
    }
}

/// A running devchain.
#[derive(Debug)]
pub struct DevChain {
    addr: SocketAddr,
    user: String,
    password: String,
    cookie_path: Option<PathBuf>,
    node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    miner: Option<JoinHandle<()>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl DevChain {
    /// Opens the chain, binds the RPC port and starts serving (and mining,
    /// if configured). Must run inside a Tokio runtime.
    pub async fn start(config: DevChainConfig) -> Result<DevChain> {
        let (mut chain, store) = match &config.data_dir {
            Some(dir) => {
                let (store, chain) = Store::open(dir)?;
                (chain, Some(store))
            }
            None => (Chain::new(), None),
        };
        if chain.wallet(&config.wallet).is_none() {
            if chain.unloaded_wallet_names().contains(&config.wallet) {
                chain.load_wallet(&config.wallet)?;
            } else {
                chain.create_wallet(&config.wallet, None)?;
            }
        }
        let mine_to = chain
            .new_address(&config.wallet, AddressType::Bech32, false, "mining")?
            .script_pubkey();
        if config.prefund && chain.state().height() == 0 {
            chain.generate(PREFUND_BLOCKS, &mine_to)?;
        }
        let node = Node::starting(chain, store, config.warmup.map(Warmup::new));
        node.with_chain(|_| ());
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| Error::io(PathBuf::from(config.bind.to_string()), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(PathBuf::from(config.bind.to_string()), e))?;
        let password = config.rpc_password.clone().unwrap_or_else(random_hex);
        let cookie = random_hex();
        let cookie_path = match &config.data_dir {
            Some(dir) => {
                let p = dir.join(COOKIE_FILE);
                write_atomic(&p, format!("{COOKIE_USER}:{cookie}").as_bytes())?;
                Some(p)
            }
            None => None,
        };
        let auth = Auth {
            user: config.rpc_user.clone(),
            password: password.clone(),
            cookie: Some(cookie),
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (miner_stop_tx, miner_stop_rx) = tokio::sync::watch::channel(false);
        let server_node = node.clone();
        let server = tokio::spawn(async move {
            let res = serve(listener, server_node, auth, async {
                let _ = stop_rx.await;
            })
            .await;
            let _ = miner_stop_tx.send(true);
            res
        });
        let warmup_left = node.warmup_remaining();
        let miner = config.block_interval.map(|interval| {
            tokio::spawn(mine_on_timer(
                node.clone(),
                warmup_left + interval,
                interval,
                mine_to,
                miner_stop_rx,
            ))
        });
        tracing::info!(%addr, "devchain listening");
        Ok(DevChain {
            addr,
            user: config.rpc_user,
            password,
            cookie_path,
            node,
            stop: Some(stop_tx),
            server: Some(server),
            miner,
        })
    }

    /// The RPC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The RPC URL, `http://127.0.0.1:PORT/` (credentials not included).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// RPC user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// RPC password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cookie file (`__cookie__:<password>`), when there is a data directory.
    pub fn cookie_path(&self) -> Option<&Path> {
        self.cookie_path.as_deref()
    }

    /// The start-up step RPC reports now (Core's `-28` message), or `None`
    /// once devchain serves requests.
    pub fn warmup_status(&self) -> Option<&'static str> {
        self.node.warmup_status()
    }

    /// Direct access to the chain, e.g. to mine without RPC.
    pub fn with_chain<T>(&self, f: impl FnOnce(&mut Chain) -> T) -> T {
        self.node.with_chain(f)
    }

    /// Stops serving and mining, waits for both, writes anything a failed
    /// write left pending (an error is logged), and removes the cookie.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
        if let Some(h) = self.miner.take() {
            let _ = h.await;
        }
        self.node.with_chain(|_| ());
        if let Some(p) = &self.cookie_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Mines a block paying `script` every `interval`, the first after `first`.
async fn mine_on_timer(
    node: Arc<Node>,
    first: Duration,
    interval: Duration,
    script: ScriptBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let node = node.clone();
        let script = script.clone();
        let mined =
            tokio::task::spawn_blocking(move || node.with_chain(|c| c.mine_block(&script, None)))
                .await;
        match mined {
            Ok(Ok(hash)) => tracing::debug!(%hash, "mined block on timer"),
            Ok(Err(e)) => tracing::warn!(error = %e, "timer mining failed"),
            Err(e) => tracing::warn!(error = %e, "timer mining task failed"),
        }
    }
}
