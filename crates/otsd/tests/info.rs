//! The info page over HTTP: QR codes in the HTML, and page views served
//! from the built page rather than asking the stamper (and through it the
//! node) each time.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use otsd::config::{Backend, Settings};
use otsd::status::{ChainInfo, StamperView, Waiting};

/// A stamper view that counts how often the page asks it for figures.
#[derive(Default)]
struct Counting {
    asked: AtomicU64,
}

impl StamperView for Counting {
    fn waiting(&self, _: u64) -> Option<Waiting> {
        None
    }
    fn tip(&self) -> Option<Vec<u8>> {
        None
    }
    fn chain_info(&self) -> ChainInfo {
        let n = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        ChainInfo {
            block_height: Some(1_000 + n),
            ..ChainInfo::default()
        }
    }
}

#[tokio::test]
async fn page_views_within_the_ttl_share_one_build_with_its_qr_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cal = init_calendar(dir.path());
    let invoice = dir.path().join("invoice");
    std::fs::write(&invoice, "lnbcrt10u1pexampleinvoice\n").unwrap();
    let counting = Arc::new(Counting::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stamper = counting.clone();
    let task = tokio::spawn(async move {
        otsd::server::serve(
            listener,
            &cal,
            Settings {
                lightning_invoice_file: Some(invoice),
                backend: Backend::External(stamper),
                ..Settings::default()
            },
            async {
                let _ = rx.await;
            },
        )
        .await
    });

    let start = std::time::Instant::now();
    let html = get(addr, "/", "").await;
    assert_eq!(html.status, 200);
    let text = html.text();
    assert_eq!(text.matches("<svg ").count(), 2, "{text}");
    assert!(text.contains("aria-label=\"QR code of the donation address\""));
    assert!(text.contains("aria-label=\"QR code of the Lightning invoice\""));
    assert!(text.contains("height 1001"));
    let mut bodies = Vec::new();
    for _ in 0..20 {
        bodies.push(get(addr, "/", "").await.body);
        let r = get(addr, "/", "Accept: application/json\r\n").await;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["lightning_invoice"], "lnbcrt10u1pexampleinvoice");
    }
    // At most one build per time-to-live: one, unless this machine took
    // longer than that for these 41 requests.
    let ttl = otsd::info::INFO_TTL;
    let asked = counting.asked.load(Ordering::SeqCst);
    let allowed = 1 + (start.elapsed().as_millis() / ttl.as_millis()) as u64;
    assert!(
        (1..=allowed).contains(&asked),
        "{asked} builds, {allowed} allowed"
    );
    if asked == 1 {
        assert!(bodies.iter().all(|b| *b == html.body));
    }

    // Once the page is older than its time-to-live, it is built again.
    tokio::time::sleep(ttl).await;
    let r = get(addr, "/", "Accept: application/json\r\n").await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(counting.asked.load(Ordering::SeqCst), asked + 1);
    assert_eq!(v["block_height"], 1000 + asked + 1);

    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// The `href`s of `html`'s links.
fn hrefs(html: &str) -> Vec<String> {
    html.match_indices("<a href=\"")
        .map(|(at, m)| {
            let rest = &html[at + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// `otsd --dev`'s info page (both renderings), once its figures are in.
async fn dev_page(cal: &std::path::Path) -> (tokio::process::Child, String, serde_json::Value) {
    let mut args = vec![std::ffi::OsString::from("--dev"), "-c".into(), cal.into()];
    args.extend(
        ["--rpc-address", "127.0.0.1", "--rpc-port", "0"]
            .into_iter()
            .chain(["--dev-rpc-port", "0"])
            .map(Into::into),
    );
    let (child, addr) = spawn_otsd(args).await;
    // The stamper's first figures come a poll after start: wait (bounded)
    // for the best block, so the page shows something to link.
    for _ in 0..240 {
        let r = get(addr, "/", "Accept: application/json\r\n").await;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["best_block"].is_string() {
            let html = get(addr, "/", "").await.text();
            return (child, html, v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("no best block on the info page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_page_has_a_regtest_donation_address_and_no_mainnet_links() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("dev");
    let (mut child, html, v) = dev_page(&cal).await;
    let addr = v["donation_address"].as_str().unwrap().to_owned();
    // A regtest address (of devchain's wallet), kept in the calendar.
    addr.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
        .unwrap()
        .require_network(bitcoin::Network::Regtest)
        .unwrap();
    let file = std::fs::read_to_string(cal.join("donation_addr")).unwrap();
    assert_eq!(file.trim(), addr);
    assert!(v["explorer_url"].is_null(), "{v}");
    // Its code and the address as text; no link to any explorer (the
    // best block is on the page, unlinked).
    assert_eq!(html.matches("<svg ").count(), 1, "{html}");
    assert!(html.contains("aria-label=\"QR code of the donation address\""));
    assert!(html.contains(&format!("</svg><br>\n{addr}</p>")), "{html}");
    assert!(html.contains(v["best_block"].as_str().unwrap()));
    assert_eq!(hrefs(&html), ["https://opentimestamps.org"], "{html}");
    assert!(!html.contains("blockstream"), "{html}");
    child.kill().await.unwrap();

    // A dev calendar made without one gets an address at its next start.
    std::fs::write(cal.join("donation_addr"), "\n").unwrap();
    let (mut child, _, v) = dev_page(&cal).await;
    let again = v["donation_address"].as_str().unwrap();
    assert!(again.starts_with("bcrt1"), "{v}");
    assert_ne!(again, addr, "a new address of the wallet");
    child.kill().await.unwrap();
}
