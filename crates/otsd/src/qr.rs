//! QR codes for the info page: the donation address as a BIP 21
//! `bitcoin:` URI and the Lightning invoice as a `lightning:` URI, encoded
//! by the `qrcode` crate and drawn as inline SVG (black modules on white,
//! with the standard 4-module quiet zone).
//!
//! Bech32 strings (segwit addresses, BOLT 11 invoices) are case-insensitive
//! when all of one case, and URI schemes are too, so those are upper-cased:
//! the QR code's alphanumeric mode then packs them denser, as the reference
//! server does for invoices. Base58 addresses are case-sensitive and stay as
//! they are.

use qrcode::render::svg;
use qrcode::QrCode;

/// Shortest side, in pixels, of the donation address's code.
pub const ADDRESS_PX: u32 = 250;
/// Shortest side, in pixels, of the invoice's code.
pub const INVOICE_PX: u32 = 400;

/// Human-readable parts of Bitcoin's segwit addresses (mainnet, testnet
/// and signet, regtest).
const SEGWIT_HRPS: [&str; 3] = ["bc1", "tb1", "bcrt1"];

/// Whether `s` is all lower case or all upper case (bech32 allows either,
/// never a mix).
fn single_case(s: &str) -> bool {
    !s.chars().any(|c| c.is_ascii_lowercase()) || !s.chars().any(|c| c.is_ascii_uppercase())
}

/// The `bitcoin:` URI of `address`.
pub fn bitcoin_uri(address: &str) -> String {
    let lower = address.to_ascii_lowercase();
    if single_case(address) && SEGWIT_HRPS.iter().any(|h| lower.starts_with(h)) {
        format!("BITCOIN:{}", address.to_ascii_uppercase())
    } else {
        format!("bitcoin:{address}")
    }
}

/// The `lightning:` URI of `invoice`.
pub fn lightning_uri(invoice: &str) -> String {
    if single_case(invoice) {
        format!("LIGHTNING:{}", invoice.to_ascii_uppercase())
    } else {
        format!("lightning:{invoice}")
    }
}

/// `data` as a QR code drawn in SVG, at least `min_px` pixels wide, ready
/// to be put inline in HTML; `None` when `data` does not fit in a QR code.
pub fn svg(data: &str, min_px: u32, label: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    let drawn = code
        .render::<svg::Color>()
        .min_dimensions(min_px, min_px)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .quiet_zone(true)
        .build();
    // Inline SVG takes no XML declaration.
    let start = drawn.find("<svg")?;
    let label = crate::html::escape(label);
    Some(drawn[start..].replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{label}\" "),
        1,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reads back the text of the QR code drawn in `svg` (as the crate
    /// draws it: one `M{x} {y}h{w}v{h}H{x}V{y}` rectangle per dark
    /// module), by rasterising it and running the `rqrr` decoder on it.
    pub(crate) fn decode(svg: &str) -> String {
        let attr = |name: &str| -> usize {
            let at = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            let end = at + svg[at..].find('"').unwrap();
            svg[at..end].parse().unwrap()
        };
        let (w, h) = (attr("width"), attr("height"));
        let d_at = svg.find(" d=\"").unwrap() + 4;
        let d = &svg[d_at..d_at + svg[d_at..].find('"').unwrap()];
        let mut dark = vec![false; w * h];
        for rect in d.split('M').filter(|r| !r.is_empty()) {
            let nums: Vec<usize> = rect
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().unwrap())
                .collect();
            let [x, y, rw, rh, ..] = nums[..] else {
                panic!("unexpected path segment {rect:?}")
            };
            for py in y..y + rh {
                for px in x..x + rw {
                    dark[py * w + px] = true;
                }
            }
        }
        let mut img = rqrr::PreparedImage::prepare_from_bitmap(w, h, |x, y| dark[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the drawing");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn uris_upper_case_bech32_only() {
        assert_eq!(
            bitcoin_uri("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            "BITCOIN:BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ"
        );
        assert_eq!(bitcoin_uri("bcrt1qdonation"), "BITCOIN:BCRT1QDONATION");
        assert_eq!(
            bitcoin_uri("1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
            "bitcoin:1BoatSLRHtKNngkdXEeobR76b53LETtpyT"
        );
        assert_eq!(lightning_uri("lnbc1pvjluez"), "LIGHTNING:LNBC1PVJLUEZ");
        assert_eq!(lightning_uri("lnBC1x"), "lightning:lnBC1x");
    }

    #[test]
    fn the_drawing_decodes_to_the_uri() {
        for (uri, px) in [
            (
                bitcoin_uri("1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
                ADDRESS_PX,
            ),
            (
                bitcoin_uri("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
                ADDRESS_PX,
            ),
            (
                lightning_uri(&format!("lnbc2500u1{}", "q".repeat(300))),
                INVOICE_PX,
            ),
        ] {
            let drawn = svg(&uri, px, "QR code").unwrap();
            assert!(drawn.starts_with("<svg role=\"img\" aria-label=\"QR code\" "));
            assert!(!drawn.contains("<?xml"));
            assert_eq!(decode(&drawn), uri);
        }
    }

    #[test]
    fn data_too_long_for_a_qr_code_gives_none() {
        assert_eq!(svg(&"x".repeat(8_000), ADDRESS_PX, "QR code"), None);
    }
}
