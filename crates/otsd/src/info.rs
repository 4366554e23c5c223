//! The info page (`GET /`): the calendar's figures as HTML for people (with
//! QR codes for donations) and as JSON (numbers as numbers, `null` where
//! unknown) for programs. The page is built at most once per
//! [`INFO_TTL`] ([`InfoCache`]), so page views never add work for the
//! stamper or the node: the chain figures come from the stamper's view,
//! which the stamper refreshes on its own schedule.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::Serialize;

use crate::html::escape;
use crate::qr;
use crate::status::{ChainInfo, MinedTx};
use crate::upstream::UpstreamStatus;

/// Default block explorer for the info page's links, on mainnet only: on
/// testnet and regtest (and `--dev`) the page links to an explorer only
/// when one is given ([`crate::config`] resolves it).
pub const DEFAULT_EXPLORER_URL: &str = "https://blockstream.info";
/// Most mined transactions listed (the reference's 288: two days of
/// blocks).
pub const MAX_LISTED_TXS: usize = 288;
/// How long a built page is served before it is built again; the same as
/// the page's `Cache-Control: max-age`.
pub const INFO_TTL: Duration = Duration::from_secs(5);
/// Longest Lightning invoice file read (BOLT 11 invoices are far shorter).
pub const MAX_INVOICE_BYTES: u64 = 8192;

/// The static part of the info page, from the configuration.
#[derive(Debug, Clone)]
pub struct InfoConfig {
    /// Donation address (from `donation_addr`); empty for none.
    pub donation_addr: String,
    /// Block explorer base URL; `None`: blocks, transactions and the
    /// address are shown without links.
    pub explorer_url: Option<String>,
    /// File holding a Lightning invoice, read each time the page is built.
    pub lightning_invoice_file: Option<PathBuf>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct InfoPage {
    /// Server version.
    pub version: &'static str,
    /// Commitments journaled and not yet completed.
    pub pending_commitments: u64,
    /// Tip of the most recent unconfirmed transaction (hex).
    pub tip: Option<String>,
    /// Chain figures from the stamper.
    #[serde(flatten)]
    pub chain: ChainInfo,
    /// Donation address.
    pub donation_address: String,
    /// Lightning invoice, if configured and present.
    pub lightning_invoice: Option<String>,
    /// Block explorer base URL (`null`: none, no links).
    pub explorer_url: Option<String>,
    /// QR code (inline SVG) of the donation address's `bitcoin:` URI.
    #[serde(skip)]
    pub donation_qr: Option<String>,
    /// QR code (inline SVG) of the invoice's `lightning:` URI.
    #[serde(skip)]
    pub lightning_qr: Option<String>,
    /// Upstream calendars (`--upstream`; left out of the JSON when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamStatus>,
    /// Calendars mirrored with `--mirror` (issue 14); set by the caller.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<crate::mirror::sync::CalendarStatus>,
}

/// The invoice in `path`, trimmed; `None` if the file is missing, empty,
/// not text, or longer than [`MAX_INVOICE_BYTES`].
fn read_invoice(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_INVOICE_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    if text.len() as u64 > MAX_INVOICE_BYTES {
        tracing::warn!(file = %path.display(), "Lightning invoice file over {MAX_INVOICE_BYTES} bytes; not shown");
        return None;
    }
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

impl InfoPage {
    /// Gathers the figures.
    pub fn new(
        config: &InfoConfig,
        pending: u64,
        tip: Option<Vec<u8>>,
        mut chain: ChainInfo,
    ) -> Self {
        chain.transactions.truncate(MAX_LISTED_TXS);
        let lightning_invoice = config
            .lightning_invoice_file
            .as_deref()
            .and_then(read_invoice);
        // No address, no code: a bare `bitcoin:` would be no use to scan.
        let donation_qr = (!config.donation_addr.is_empty())
            .then(|| {
                qr::svg(
                    &qr::bitcoin_uri(&config.donation_addr),
                    qr::ADDRESS_PX,
                    "QR code of the donation address",
                )
            })
            .flatten();
        let lightning_qr = lightning_invoice.as_deref().and_then(|invoice| {
            qr::svg(
                &qr::lightning_uri(invoice),
                qr::INVOICE_PX,
                "QR code of the Lightning invoice",
            )
        });
        InfoPage {
            version: env!("CARGO_PKG_VERSION"),
            pending_commitments: pending,
            tip: tip.map(hex::encode),
            chain,
            donation_address: config.donation_addr.clone(),
            lightning_invoice,
            explorer_url: config
                .explorer_url
                .as_deref()
                .map(|url| url.trim_end_matches('/').to_owned())
                .filter(|url| !url.is_empty()),
            donation_qr,
            lightning_qr,
            upstreams: Vec::new(),
            mirrors: Vec::new(),
        }
    }

    /// The JSON rendering.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serializes")
    }

    /// The HTML rendering; every value is escaped.
    pub fn html(&self) -> String {
        let e = |s: &str| escape(s);
        let opt = |v: &Option<String>| v.as_deref().map_or("None".to_owned(), escape);
        let num = |v: Option<u64>| v.map_or("N/A".to_owned(), |n| n.to_string());
        let sats = |v: Option<u64>| v.map_or("N/A".to_owned(), |n| format!("{n} sats"));
        // `v` linked to the explorer's `path` page, or plain without one.
        let link = |path: &str, v: &str| {
            let v = e(v);
            match &self.explorer_url {
                Some(x) => format!("<a href=\"{}/{path}/{v}\">{v}</a>", e(x)),
                None => v,
            }
        };
        let c = &self.chain;
        let mut rows = String::new();
        for MinedTx {
            txid,
            fee_sats,
            fee_rate,
            confirmations,
            ..
        } in &c.transactions
        {
            let t = link("tx", txid);
            rows.push_str(&format!(
                "<tr><td>{t}</td><td style=\"text-align:right\">{fee_sats}</td>\
                 <td style=\"text-align:right\">{fee_rate:.1}</td><td style=\"text-align:right\">{confirmations}</td></tr>\n"
            ));
        }
        let qr_of = |code: &Option<String>| {
            code.as_deref()
                .map_or(String::new(), |svg| format!("{svg}<br>\n"))
        };
        let lightning = self.lightning_invoice.as_deref().map_or(String::new(), |inv| {
            let i = e(inv);
            let code = qr_of(&self.lightning_qr);
            format!("<p>You can also donate with Lightning:<br>\n{code}<a href=\"lightning:{i}\">{i}</a></p>\n<hr>\n")
        });
        let warnings = if c.warnings.is_empty() {
            String::new()
        } else {
            let lines: Vec<String> = c.warnings.iter().map(|w| e(w)).collect();
            format!(
                "<p style=\"color:#a00\"><b>Warning:</b> {}</p>\n",
                lines.join("<br>\n")
            )
        };
        let donation = if self.donation_address.is_empty() {
            String::new()
        } else {
            format!(
                "<p>You can donate to the wallet by sending funds to:<br>\n{}{}</p>\n<hr>\n",
                qr_of(&self.donation_qr),
                link("address", &self.donation_address)
            )
        };
        let upstreams = upstream_rows(&self.upstreams);
        let linked = |v: &Option<String>, path: &str| {
            v.as_deref().map_or("None".to_owned(), |v| link(path, v))
        };
        format!(
            "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>OpenTimestamps Calendar Server</title></head>\n\
             <body style=\"word-break: break-word;\">\n\
             <p>This is an <a href=\"https://opentimestamps.org\">OpenTimestamps</a> Calendar Server (v{version})</p>\n\
             {warnings}\
             <p>Pending commitments: {pending}<br>\n\
             Transactions waiting for confirmation: {waiting}<br>\n\
             Most recent unconfirmed timestamp tx: {tx} ({prior} prior versions)<br>\n\
             {fee}\
             Most recent merkle tree tip: {tip}<br>\n\
             Best-block: {best}, height {height}<br>\n<br>\n\
             Wallet balance: {balance} (confirmed)</p>\n<hr>\n\
             {donation}\
             {lightning}\
             <p>Average time between transactions in the last week: {between}<br>\n\
             Fees used in the last week: {fees}</p>\n\
             <p>Latest mined transactions:</p>\n<table>\n<tr><th>txid</th><th>fee (sats)</th><th>sat/vB</th><th>confs</th></tr>\n{rows}</table>\n\
             {upstreams}\
             {mirrors}\
             </body>\n</html>\n",
            mirrors = match self.mirrors.is_empty() {
                true => String::new(),
                false => mirrors_html(&self.mirrors),
            },
            version = e(self.version),
            pending = self.pending_commitments,
            waiting = num(c.txs_waiting_for_confirmation),
            tx = linked(&c.most_recent_tx, "tx"),
            prior = num(c.prior_versions),
            fee = c.fee_rate.map_or(String::new(), |rate| {
                let why = c.fee_reason.as_deref().map_or(String::new(), |r| format!(": {}", e(r)));
                format!("Its fee rate: {rate:.1} sat/vB{why}<br>\n")
            }),
            tip = opt(&self.tip),
            best = linked(&c.best_block, "block"),
            height = num(c.block_height),
            balance = sats(c.balance_sats),
            between = c
                .hours_between_transactions
                .map_or("N/A".to_owned(), |h| format!("{h:.2} hours")),
            fees = sats(c.fees_in_last_week_sats),
        )
    }
}

/// The upstream calendars' table, or nothing without upstreams.
fn upstream_rows(upstreams: &[UpstreamStatus]) -> String {
    if upstreams.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for u in upstreams {
        let when = |t: Option<u64>| t.map_or("never".to_owned(), |t| format!("{t} (unix time)"));
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:right\">{}</td><td style=\"text-align:right\">{}</td></tr>\n",
            escape(&u.url),
            when(u.last_success),
            when(u.last_error_at),
            u.last_error.as_deref().map_or(String::new(), escape),
            u.backlog,
            u.open,
        ));
    }
    format!(
        "<p>Upstream calendars:</p>\n<table>\n<tr><th>URL</th><th>last success</th><th>last error</th><th>error</th><th>backlog</th><th>awaiting completion</th></tr>\n{rows}</table>\n"
    )
}

/// The info page in both renderings.
#[derive(Debug)]
pub struct Rendered {
    /// The HTML page.
    pub html: Bytes,
    /// The JSON figures.
    pub json: Bytes,
}

/// The info page, built at most once per time-to-live however many
/// requests come: building it walks the pending index, reads the
/// stamper's view and the invoice file, and draws the QR codes.
#[derive(Debug)]
pub struct InfoCache {
    ttl: Duration,
    slot: tokio::sync::Mutex<Option<(Instant, Arc<Rendered>)>>,
}

impl InfoCache {
    /// An empty cache keeping pages for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        InfoCache {
            ttl,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The page, built by `build` unless one built less than the
    /// time-to-live before `now` is at hand. Concurrent callers wait for
    /// the one building rather than build it again.
    pub async fn get(&self, now: Instant, build: impl FnOnce() -> InfoPage) -> Arc<Rendered> {
        let mut slot = self.slot.lock().await;
        if let Some((built, page)) = slot.as_ref() {
            if now.saturating_duration_since(*built) < self.ttl {
                return page.clone();
            }
        }
        let page = build();
        let rendered = Arc::new(Rendered {
            html: Bytes::from(page.html()),
            json: Bytes::from(page.json()),
        });
        *slot = Some((now, rendered.clone()));
        rendered
    }
}

/// The table of mirrored calendars (issue 14): chunks held, last chunk,
/// last error; the calendar's page and the mirror's own show it.
pub fn mirrors_html(statuses: &[crate::mirror::sync::CalendarStatus]) -> String {
    let mut html = String::from("<h2>Mirrored calendars</h2>\n<table>\n<tr><th>Calendar</th><th>Chunks held</th><th>Last chunk</th><th>Last error</th></tr>\n");
    for s in statuses {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&s.url),
            s.chunks_held,
            s.last_chunk.map_or("none".to_owned(), |n| n.to_string()),
            escape(s.last_error.as_deref().unwrap_or("none")),
        ));
    }
    html.push_str("</table>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_shown_only_when_configured() {
        let cfg = InfoConfig {
            donation_addr: String::new(),
            explorer_url: None,
            lightning_invoice_file: None,
        };
        let mut page = InfoPage::new(&cfg, 0, None, ChainInfo::default());
        let v: serde_json::Value = serde_json::from_str(&page.json()).unwrap();
        assert!(v.get("upstreams").is_none());
        assert!(!page.html().contains("Upstream calendars"));
        page.upstreams = vec![UpstreamStatus {
            url: "http://a/<x>".into(),
            last_success: Some(17),
            last_error: Some("calendar http://a/: timed out <b>".into()),
            last_error_at: Some(18),
            backlog: 3,
            open: 2,
            completed: 1,
        }];
        let v: serde_json::Value = serde_json::from_str(&page.json()).unwrap();
        assert_eq!(v["upstreams"][0]["url"], "http://a/<x>");
        assert_eq!(v["upstreams"][0]["last_success"], 17);
        assert_eq!(v["upstreams"][0]["backlog"], 3);
        assert_eq!(v["upstreams"][0]["last_error_at"], 18);
        let html = page.html();
        assert!(html.contains("Upstream calendars"));
        assert!(html.contains("http://a/&lt;x&gt;") && !html.contains("<x>"));
        assert!(html.contains("timed out &lt;b&gt;"));
    }

    #[test]
    fn json_has_numbers_and_html_is_escaped() {
        let cfg = InfoConfig {
            donation_addr: "<addr>".into(),
            explorer_url: Some(DEFAULT_EXPLORER_URL.into()),
            lightning_invoice_file: None,
        };
        let chain = ChainInfo {
            block_height: Some(800_000),
            warnings: vec!["the wallet is <empty>".into()],
            ..ChainInfo::default()
        };
        let page = InfoPage::new(&cfg, 1234, Some(vec![0xab]), chain);
        let v: serde_json::Value = serde_json::from_str(&page.json()).unwrap();
        assert_eq!(v["pending_commitments"], 1234);
        assert_eq!(v["block_height"], 800_000);
        assert_eq!(v["tip"], "ab");
        assert!(v["balance_sats"].is_null());
        let html = page.html();
        assert!(html.contains("Pending commitments: 1234"));
        // Unknown figures read "N/A", not "N/A sats".
        assert!(html.contains("Wallet balance: N/A (confirmed)"));
        assert!(html.contains("Fees used in the last week: N/A</p>"));
        assert!(html.contains("&lt;addr&gt;") && !html.contains("<addr>"));
        assert_eq!(v["warnings"], serde_json::json!(["the wallet is <empty>"]));
        assert!(html.contains("<b>Warning:</b> the wallet is &lt;empty&gt;</p>"));
        let calm = InfoPage::new(&cfg, 0, None, ChainInfo::default());
        assert!(!calm.html().contains("Warning"));
        // The QR codes are for people only.
        assert!(v.get("donation_qr").is_none() && v.get("lightning_qr").is_none());
    }

    /// The `href`s of `html`'s links, in order.
    fn hrefs(html: &str) -> Vec<&str> {
        html.match_indices("<a href=\"")
            .map(|(at, m)| {
                let rest = &html[at + m.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect()
    }

    /// A stamper's figures with a best block and two transactions.
    fn busy_chain() -> ChainInfo {
        let mined = |txid: &str| MinedTx {
            txid: txid.into(),
            fee_sats: 500,
            fee_rate: 2.5,
            confirmations: 3,
            block_time: 1_700_000_000,
        };
        ChainInfo {
            best_block: Some("00".repeat(32)),
            most_recent_tx: Some("11".repeat(32)),
            block_height: Some(150),
            transactions: vec![mined(&"22".repeat(32)), mined(&"33".repeat(32))],
            ..ChainInfo::default()
        }
    }

    #[test]
    fn as_a_person_sees_it_links_only_to_a_given_explorer() {
        let regtest_addr = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
        // No explorer (testnet, regtest, --dev without --explorer-url):
        // every figure shown, none linked.
        let cfg = InfoConfig {
            donation_addr: regtest_addr.into(),
            explorer_url: None,
            lightning_invoice_file: None,
        };
        let page = InfoPage::new(&cfg, 0, None, busy_chain());
        let html = page.html();
        assert_eq!(
            hrefs(&html),
            ["https://opentimestamps.org"],
            "no explorer links: {html}"
        );
        for shown in [
            "00".repeat(32),
            "11".repeat(32),
            "22".repeat(32),
            "33".repeat(32),
        ] {
            assert!(html.contains(&shown), "{shown} shown");
        }
        assert!(html.contains("sending funds to:<br>\n<svg "));
        assert!(html.contains(&format!("</svg><br>\n{regtest_addr}</p>")));
        let codes = svgs(&html);
        assert_eq!(codes.len(), 1);
        assert_eq!(
            crate::qr::tests::decode(codes[0]),
            format!("BITCOIN:{}", regtest_addr.to_ascii_uppercase())
        );
        let v: serde_json::Value = serde_json::from_str(&page.json()).unwrap();
        assert!(v["explorer_url"].is_null(), "{v}");
        // Phones get the page at their width.
        assert!(html
            .contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));

        // An explorer given (a trailing slash dropped): block, both
        // transactions, the latest transaction and the address linked.
        let cfg = InfoConfig {
            explorer_url: Some("https://mempool.space/testnet/".into()),
            ..cfg
        };
        let html = InfoPage::new(&cfg, 0, None, busy_chain()).html();
        let x = "https://mempool.space/testnet";
        assert_eq!(
            hrefs(&html),
            [
                "https://opentimestamps.org".to_owned(),
                format!("{x}/tx/{}", "11".repeat(32)),
                format!("{x}/block/{}", "00".repeat(32)),
                format!("{x}/address/{regtest_addr}"),
                format!("{x}/tx/{}", "22".repeat(32)),
                format!("{x}/tx/{}", "33".repeat(32)),
            ]
        );
    }

    #[test]
    fn without_a_donation_address_no_code_and_no_empty_link() {
        let cfg = InfoConfig {
            donation_addr: String::new(),
            explorer_url: Some(DEFAULT_EXPLORER_URL.into()),
            lightning_invoice_file: None,
        };
        let page = InfoPage::new(&cfg, 0, None, ChainInfo::default());
        assert!(page.donation_qr.is_none());
        let html = page.html();
        assert!(svgs(&html).is_empty(), "{html}");
        assert!(!html.contains("donate"), "{html}");
        assert!(!html.contains("/address/"), "{html}");
        assert!(!html.contains("\"></a>"), "an empty link: {html}");
        assert_eq!(hrefs(&html), ["https://opentimestamps.org"]);
    }

    #[test]
    fn the_unconfirmed_transactions_fee_rate_is_shown_with_its_reason() {
        let chain = ChainInfo {
            most_recent_tx: Some("11".repeat(32)),
            fee_rate: Some(20.04),
            fee_rule: Some("estimate".into()),
            fee_reason: Some("the estimate <20 sat/vB>".into()),
            ..ChainInfo::default()
        };
        let page = InfoPage::new(&config(None), 0, None, chain);
        let html = page.html();
        assert!(
            html.contains("Its fee rate: 20.0 sat/vB: the estimate &lt;20 sat/vB&gt;<br>"),
            "{html}"
        );
        let v: serde_json::Value = serde_json::from_str(&page.json()).unwrap();
        assert_eq!(v["fee_rule"], "estimate");
        assert_eq!(v["fee_rate"], 20.04);
        // Nothing unconfirmed: no fee line.
        let calm = InfoPage::new(&config(None), 0, None, ChainInfo::default()).html();
        assert!(!calm.contains("fee rate"), "{calm}");
    }

    #[test]
    fn the_version_is_the_crate_version() {
        let page = InfoPage::new(&config(None), 0, None, ChainInfo::default());
        let v: serde_json::Value = serde_json::from_str(&page.json()).unwrap();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(page
            .html()
            .contains(&format!("Calendar Server (v{})", env!("CARGO_PKG_VERSION"))));
    }

    fn config(invoice: Option<PathBuf>) -> InfoConfig {
        InfoConfig {
            donation_addr: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq".into(),
            explorer_url: Some(DEFAULT_EXPLORER_URL.into()),
            lightning_invoice_file: invoice,
        }
    }

    /// The inline SVGs of `html`, in order.
    fn svgs(html: &str) -> Vec<&str> {
        html.match_indices("<svg ")
            .map(|(at, _)| &html[at..at + html[at..].find("</svg>").unwrap() + 6])
            .collect()
    }

    #[test]
    fn qr_codes_decode_to_the_address_and_the_invoice() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("invoice");
        let page = |pending| {
            InfoPage::new(
                &config(Some(file.clone())),
                pending,
                None,
                ChainInfo::default(),
            )
        };

        // The file is missing: the address's code only.
        let html = page(0).html();
        let codes = svgs(&html);
        assert_eq!(codes.len(), 1, "{html}");
        assert_eq!(
            crate::qr::tests::decode(codes[0]),
            "BITCOIN:BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ"
        );
        assert!(!html.contains("Lightning"));

        // An empty file shows no invoice either.
        std::fs::write(&file, " \n").unwrap();
        assert_eq!(svgs(&page(0).html()).len(), 1);

        let invoice = format!("lnbc10u1{}", "p".repeat(250));
        std::fs::write(&file, format!("{invoice}\n")).unwrap();
        let html = page(0).html();
        let codes = svgs(&html);
        assert_eq!(codes.len(), 2, "{html}");
        assert_eq!(
            crate::qr::tests::decode(codes[1]),
            format!("LIGHTNING:{}", invoice.to_ascii_uppercase())
        );
        assert!(html.contains(&format!("<a href=\"lightning:{invoice}\">")));

        // An oversized file is not shown (and nothing fails).
        std::fs::write(&file, "l".repeat(MAX_INVOICE_BYTES as usize + 1)).unwrap();
        let p = page(0);
        assert_eq!(
            (p.lightning_invoice.as_deref(), p.lightning_qr.as_deref()),
            (None, None)
        );
        assert_eq!(svgs(&p.html()).len(), 1);
    }

    #[tokio::test]
    async fn the_page_is_built_once_per_ttl() {
        let cache = InfoCache::new(INFO_TTL);
        let builds = std::cell::Cell::new(0u64);
        let build = |pending| {
            let builds = &builds;
            move || {
                builds.set(builds.get() + 1);
                InfoPage::new(&config(None), pending, None, ChainInfo::default())
            }
        };
        let t0 = Instant::now();
        let first = cache.get(t0, build(1)).await;
        assert_eq!(builds.get(), 1);
        // Within the time-to-live: the same page, whatever changed since.
        for later in [Duration::ZERO, Duration::from_millis(4_999)] {
            let page = cache.get(t0 + later, build(2)).await;
            assert!(Arc::ptr_eq(&page, &first));
        }
        assert_eq!(builds.get(), 1);
        let v: serde_json::Value = serde_json::from_slice(&first.json).unwrap();
        assert_eq!(v["pending_commitments"], 1);
        // Then built again, with the new figures.
        let page = cache.get(t0 + INFO_TTL, build(2)).await;
        assert_eq!(builds.get(), 2);
        let v: serde_json::Value = serde_json::from_slice(&page.json).unwrap();
        assert_eq!(v["pending_commitments"], 2);
        assert!(std::str::from_utf8(&page.html)
            .unwrap()
            .contains("Pending commitments: 2"));
    }
}
