//! The info page (`GET /`): the calendar's figures as HTML for people and
//! as JSON (numbers as numbers, `null` where unknown) for programs.

use std::path::PathBuf;

use serde::Serialize;

use crate::status::{ChainInfo, MinedTx};

/// Default block explorer for the info page's links.
pub const DEFAULT_EXPLORER_URL: &str = "https://blockstream.info";
/// Most mined transactions listed (the reference's 288: two days of
/// blocks).
pub const MAX_LISTED_TXS: usize = 288;

/// The static part of the info page, from the configuration.
#[derive(Debug, Clone)]
pub struct InfoConfig {
    /// Donation address (from `donation_addr`).
    pub donation_addr: String,
    /// Block explorer base URL.
    pub explorer_url: String,
    /// File holding a Lightning invoice, read on each request.
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
    /// Block explorer base URL.
    pub explorer_url: String,
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
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        InfoPage {
            version: env!("CARGO_PKG_VERSION"),
            pending_commitments: pending,
            tip: tip.map(hex::encode),
            chain,
            donation_address: config.donation_addr.clone(),
            lightning_invoice,
            explorer_url: config.explorer_url.trim_end_matches('/').to_owned(),
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
        let x = e(&self.explorer_url);
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
            let t = e(txid);
            rows.push_str(&format!(
                "<tr><td><a href=\"{x}/tx/{t}\">{t}</a></td><td style=\"text-align:right\">{fee_sats}</td>\
                 <td style=\"text-align:right\">{fee_rate:.1}</td><td style=\"text-align:right\">{confirmations}</td></tr>\n"
            ));
        }
        let lightning = self.lightning_invoice.as_deref().map_or(String::new(), |inv| {
            let i = e(inv);
            format!("<p>You can also donate with Lightning:<br>\n<a href=\"lightning:{i}\">{i}</a></p>\n<hr>\n")
        });
        let addr = e(&self.donation_address);
        format!(
            "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>OpenTimestamps Calendar Server</title></head>\n\
             <body style=\"word-break: break-word;\">\n\
             <p>This is an <a href=\"https://opentimestamps.org\">OpenTimestamps</a> Calendar Server (v{version})</p>\n\
             <p>Pending commitments: {pending}<br>\n\
             Transactions waiting for confirmation: {waiting}<br>\n\
             Most recent unconfirmed timestamp tx: {tx} ({prior} prior versions)<br>\n\
             Most recent merkle tree tip: {tip}<br>\n\
             Best-block: {best}, height {height}<br>\n<br>\n\
             Wallet balance: {balance} sats (confirmed)</p>\n<hr>\n\
             <p>You can donate to the wallet by sending funds to:<br>\n<a href=\"{x}/address/{addr}\">{addr}</a></p>\n<hr>\n\
             {lightning}\
             <p>Average time between transactions in the last week: {between}<br>\n\
             Fees used in the last week: {fees} sats</p>\n\
             <p>Latest mined transactions:</p>\n<table>\n<tr><th>txid</th><th>fee (sats)</th><th>sat/vB</th><th>confs</th></tr>\n{rows}</table>\n\
             </body>\n</html>\n",
            version = e(self.version),
            pending = self.pending_commitments,
            waiting = num(c.txs_waiting_for_confirmation),
            tx = opt(&c.most_recent_tx),
            prior = num(c.prior_versions),
            tip = opt(&self.tip),
            best = opt(&c.best_block),
            height = num(c.block_height),
            balance = num(c.balance_sats),
            between = c
                .hours_between_transactions
                .map_or("N/A".to_owned(), |h| format!("{h:.2} hours")),
            fees = num(c.fees_in_last_week_sats),
        )
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_numbers_and_html_is_escaped() {
        let cfg = InfoConfig {
            donation_addr: "<addr>".into(),
            explorer_url: DEFAULT_EXPLORER_URL.into(),
            lightning_invoice_file: None,
        };
        let chain = ChainInfo {
            block_height: Some(800_000),
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
        assert!(html.contains("&lt;addr&gt;") && !html.contains("<addr>"));
    }
}
