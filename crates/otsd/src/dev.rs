//! `otsd --dev`: a calendar on an embedded regtest chain (devchain).
//! [`crate::server::run`] calls [`start`] for the binary and for the `ots`
//! client's tests, which run the same dev mode in-process. The stamping
//! settings that go with it are [`crate::config`]'s (`DevNode`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use devchain::wallet::AddressType;
use devchain::{DevChain, DevChainConfig};

use crate::calendar::{write_atomic, Calendar, DONATION_ADDR_FILE, HMAC_KEY_FILE};
use crate::config::{BitcoinArgs, DevNode};

/// The file with devchain's RPC URL, password included (mode 0600).
pub const DEV_RPC_URL_FILE: &str = "dev-rpc-url";

/// devchain's data directory inside the dev calendar's.
pub fn chain_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("devchain")
}

/// Label of the devchain wallet address a dev calendar shows for donations.
pub const DEV_DONATION_LABEL: &str = "donations";

/// Starts devchain (prefunded, mining on a timer, kept in
/// `<dir>/devchain`), initialises the calendar if needed (uri
/// `http://127.0.0.1:<port>`, a fresh key, and as donation address a new
/// regtest address of devchain's wallet, also given to a dev calendar
/// that has none), prints and writes its RPC URL, and returns it with the
/// node the stamper is to use. The chain runs until the returned
/// [`DevChain`] is shut down or dropped.
pub async fn start(
    dir: &Path,
    listener: &tokio::net::TcpListener,
    args: &BitcoinArgs,
) -> anyhow::Result<(DevChain, DevNode)> {
    let port = listener.local_addr()?.port();
    let chain = DevChain::start(DevChainConfig {
        data_dir: Some(chain_dir(dir)),
        bind: SocketAddr::from(([127, 0, 0, 1], args.dev_rpc_port)),
        block_interval: Some(Duration::from_secs(args.dev_block_interval.max(1))),
        prefund: true,
        ..DevChainConfig::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("starting devchain: {e}"))?;
    let wallet = DevChainConfig::default().wallet;
    let donation_addr = || {
        chain
            .with_chain(|c| c.new_address(&wallet, AddressType::Bech32, false, DEV_DONATION_LABEL))
            .map(|a| a.to_string())
            .map_err(|e| anyhow::anyhow!("a donation address from devchain's wallet: {e}"))
    };
    if !dir.join(HMAC_KEY_FILE).exists() {
        Calendar::init(dir, &format!("http://127.0.0.1:{port}"), &donation_addr()?)
            .with_context(|| format!("initialising dev calendar {}", dir.display()))?;
    } else if Calendar::open(dir).is_ok_and(|c| c.donation_addr.is_empty()) {
        // A dev calendar made before dev calendars had one.
        write_atomic(
            &dir.join(DONATION_ADDR_FILE),
            format!("{}\n", donation_addr()?).as_bytes(),
        )
        .with_context(|| format!("writing {DONATION_ADDR_FILE}"))?;
    }
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
    rpc.wallet = Some(wallet);
    Ok((chain, DevNode { rpc }))
}
