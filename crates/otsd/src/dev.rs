//! `otsd --dev`: a calendar on an embedded regtest chain (devchain).
//! [`crate::server::run`] calls [`start`] for the binary and for the `ots`
//! client's tests, which run the same dev mode in-process. The stamping
//! settings that go with it are [`crate::config`]'s (`DevNode`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use devchain::{DevChain, DevChainConfig};

use crate::calendar::Calendar;
use crate::config::{BitcoinArgs, DevNode};

/// The file with devchain's RPC URL, password included (mode 0600).
pub const DEV_RPC_URL_FILE: &str = "dev-rpc-url";

/// devchain's data directory inside the dev calendar's.
pub fn chain_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("devchain")
}

/// Initialises the calendar if needed (uri `http://127.0.0.1:<port>`,
/// a fresh key), starts devchain (prefunded, mining on a timer, kept in
/// `<dir>/devchain`), prints and writes its RPC URL, and returns it with
/// the node the stamper is to use. The chain runs until the returned
/// [`DevChain`] is shut down or dropped.
pub async fn start(
    dir: &Path,
    listener: &tokio::net::TcpListener,
    args: &BitcoinArgs,
) -> anyhow::Result<(DevChain, DevNode)> {
    let port = listener.local_addr()?.port();
    if !dir.join("hmac-key").exists() {
        Calendar::init(dir, &format!("http://127.0.0.1:{port}"), "")
            .with_context(|| format!("initialising dev calendar {}", dir.display()))?;
    }
    let chain = DevChain::start(DevChainConfig {
        data_dir: Some(chain_dir(dir)),
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
    // Atomically and owner-only (it holds the password), as devchain
    // writes its own secrets.
    devchain::chain::store::write_atomic(
        &dir.join(DEV_RPC_URL_FILE),
        format!("{url}\n").as_bytes(),
    )
    .map_err(|e| anyhow::anyhow!("writing {DEV_RPC_URL_FILE}: {e}"))?;
    let mut rpc = ots_bitcoin::RpcConfig::new(url, ots_bitcoin::Auth::None);
    rpc.wallet = Some(DevChainConfig::default().wallet);
    Ok((chain, DevNode { rpc }))
}
