//! `otsd --dev`: a calendar on an embedded regtest chain (devchain).
//! [`crate::server::run`] calls [`start`] for the binary and for the `ots`
//! client's tests, which run the same dev mode in-process.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use devchain::{DevChain, DevChainConfig};

use crate::calendar::Calendar;
use crate::config::ServerArgs;
use crate::server::Bitcoin;

/// Seconds between rounds in dev mode.
pub const DEV_TX_INTERVAL_SECS: u64 = 5;
/// Confirmations in dev mode.
pub const DEV_CONFIRMATIONS: u64 = 2;
/// Chain polling in dev mode.
pub const DEV_POLL: Duration = Duration::from_secs(1);

/// Initialises the calendar if needed (uri `http://127.0.0.1:<port>`,
/// a fresh key), starts devchain (prefunded, mining on a timer, kept in
/// `<dir>/devchain`), prints and writes its RPC URL, and returns it with
/// the settings that point the stamper at it. The chain runs until the
/// returned [`DevChain`] is shut down or dropped.
pub async fn start(
    dir: &Path,
    listener: &tokio::net::TcpListener,
    server: &ServerArgs,
) -> anyhow::Result<(DevChain, Bitcoin)> {
    let args = &server.bitcoin;
    let port = listener.local_addr()?.port();
    if !dir.join("hmac-key").exists() {
        Calendar::init(dir, &format!("http://127.0.0.1:{port}"), "")
            .with_context(|| format!("initialising dev calendar {}", dir.display()))?;
    }
    let chain = DevChain::start(DevChainConfig {
        data_dir: Some(dir.join("devchain")),
        bind: SocketAddr::from(([127, 0, 0, 1], args.dev_rpc_port)),
        block_interval: Some(Duration::from_secs(args.dev_block_interval.max(1))),
        prefund: true,
        ..DevChainConfig::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("starting devchain: {e}"))?;
    let url = format!(
        "http://{}:{}@{}/",
        chain.user(),
        chain.password(),
        chain.addr()
    );
    println!("devchain RPC: {url}");
    std::fs::write(dir.join("dev-rpc-url"), format!("{url}\n")).context("writing dev-rpc-url")?;
    let mut rpc = ots_bitcoin::RpcConfig::new(url, ots_bitcoin::Auth::None);
    rpc.wallet = Some(DevChainConfig::default().wallet);
    let mut bitcoin = server
        .bitcoin_settings()
        .ok_or_else(|| anyhow::anyhow!("--dev needs Bitcoin"))?;
    bitcoin.rpc = rpc;
    bitcoin.stamper.min_confirmations = DEV_CONFIRMATIONS;
    bitcoin.stamper.min_tx_interval_secs = DEV_TX_INTERVAL_SECS;
    bitcoin.poll = DEV_POLL;
    Ok((chain, bitcoin))
}
