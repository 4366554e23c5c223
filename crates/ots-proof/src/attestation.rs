//! Attestations: the leaves of a timestamp tree, each a claim that the
//! message reaching it existed at some time.
//!
//! Encoding: an 8-byte tag, then the payload as varbytes (at most
//! [`MAX_PAYLOAD_LENGTH`] bytes). Known payloads:
//!
//! | attestation | tag                | payload                        |
//! |-------------|--------------------|--------------------------------|
//! | pending     | `83dfe30d2ef90c8e` | varbytes calendar URI          |
//! | Bitcoin     | `0588960d73d71901` | varuint block height           |
//! | Litecoin    | `06869a0d73d71b45` | varuint block height           |
//! | Ethereum    | `30fe8087b5c7ead7` | varuint block height (dubious) |
//!
//! A known attestation whose payload has bytes left after its fields is
//! invalid (the reference's rule: a future extension must be explicit). Any
//! other tag is kept as [`Attestation::Unknown`], byte for byte, so that a
//! proof made by a newer client survives a round trip through an older one.

use std::cmp::Ordering;
use std::fmt;

use crate::codec::{write_varbytes, write_varuint, Reader};
use crate::error::{DecodeError, DecodeErrorKind, UriError};

/// Attestation tags are 8 bytes.
pub const TAG_LEN: usize = 8;
/// Longest attestation payload.
pub const MAX_PAYLOAD_LENGTH: usize = 8192;
/// Longest calendar URI in a pending attestation.
pub const MAX_URI_LENGTH: usize = 1000;
/// Tag of [`Attestation::Pending`].
pub const TAG_PENDING: [u8; 8] = [0x83, 0xdf, 0xe3, 0x0d, 0x2e, 0xf9, 0x0c, 0x8e];
/// Tag of [`Attestation::Bitcoin`].
pub const TAG_BITCOIN: [u8; 8] = [0x05, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01];
/// Tag of [`Attestation::Litecoin`].
pub const TAG_LITECOIN: [u8; 8] = [0x06, 0x86, 0x9a, 0x0d, 0x73, 0xd7, 0x1b, 0x45];
/// Tag of [`Attestation::Ethereum`].
pub const TAG_ETHEREUM: [u8; 8] = [0x30, 0xfe, 0x80, 0x87, 0xb5, 0xc7, 0xea, 0xd7];

/// An attestation.
///
/// Ordering (which fixes the serialization order within a node) follows the
/// reference: by tag bytes first, then within one kind by URI, by height, or
/// for unknown attestations by payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attestation {
    /// The commitment was handed to a calendar, which promises to complete
    /// the proof later; ask it at this URI.
    Pending {
        /// Calendar URI: at most [`MAX_URI_LENGTH`] bytes of `A-Za-z0-9-._/:`.
        uri: String,
    },
    /// The message is the merkle root of the Bitcoin block at this height
    /// (internal byte order); the attested time is the header's nTime.
    Bitcoin {
        /// Block height.
        height: u64,
    },
    /// As [`Attestation::Bitcoin`], for Litecoin.
    Litecoin {
        /// Block height.
        height: u64,
    },
    /// Ethereum block at this height. The reference marks it dubious:
    /// displayed, never treated as proof.
    Ethereum {
        /// Block height.
        height: u64,
    },
    /// An attestation this library does not know, kept verbatim.
    Unknown {
        /// Its tag.
        tag: [u8; TAG_LEN],
        /// Its payload, exactly as read.
        payload: Vec<u8>,
    },
}

/// Checks a calendar URI against the pending attestation's rules: at most
/// [`MAX_URI_LENGTH`] bytes, only `A-Za-z0-9` and `-._/:`. No query strings,
/// percent-encoding, IPv6 brackets or `user@` parts, so a URI read from a
/// proof can be shown and fetched without surprises.
pub fn check_uri(uri: &[u8]) -> Result<(), UriError> {
    if uri.len() > MAX_URI_LENGTH {
        return Err(UriError::TooLong {
            len: uri.len(),
            max: MAX_URI_LENGTH,
        });
    }
    match uri
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-._/:".contains(b)))
    {
        Some(position) => Err(UriError::ForbiddenByte {
            byte: uri[position],
            position,
        }),
        None => Ok(()),
    }
}

impl Attestation {
    /// A pending attestation, checking the URI.
    pub fn pending(uri: impl Into<String>) -> Result<Attestation, UriError> {
        let uri = uri.into();
        check_uri(uri.as_bytes())?;
        Ok(Attestation::Pending { uri })
    }

    /// The 8-byte tag.
    pub fn tag(&self) -> [u8; TAG_LEN] {
        match self {
            Attestation::Pending { .. } => TAG_PENDING,
            Attestation::Bitcoin { .. } => TAG_BITCOIN,
            Attestation::Litecoin { .. } => TAG_LITECOIN,
            Attestation::Ethereum { .. } => TAG_ETHEREUM,
            Attestation::Unknown { tag, .. } => *tag,
        }
    }

    /// The payload bytes (what goes inside the varbytes).
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Attestation::Pending { uri } => write_varbytes(&mut out, uri.as_bytes()),
            Attestation::Bitcoin { height }
            | Attestation::Litecoin { height }
            | Attestation::Ethereum { height } => write_varuint(&mut out, *height),
            Attestation::Unknown { payload, .. } => out.extend_from_slice(payload),
        }
        out
    }

    /// Appends the encoding: tag, then varbytes payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag());
        write_varbytes(out, &self.payload());
    }

    /// Decodes one attestation (tag and payload).
    pub fn decode(reader: &mut Reader<'_>) -> Result<Attestation, DecodeError> {
        let tag: [u8; TAG_LEN] = reader.read_array()?;
        let payload_offset = reader.offset();
        let payload = reader.read_varbytes("attestation payload", 0, MAX_PAYLOAD_LENGTH)?;
        // Offsets of errors inside the payload are reported relative to the
        // whole input: the payload starts after its length prefix.
        let base = reader.offset() - payload.len();
        let at = |e: DecodeError| DecodeError::new(base + e.offset, e.kind);
        let mut inner = Reader::new(payload);
        let attestation = match tag {
            TAG_PENDING => {
                let uri = inner
                    .read_varbytes("calendar URI", 0, MAX_URI_LENGTH)
                    .map_err(at)?;
                check_uri(uri).map_err(|e| DecodeError::new(payload_offset, e.into()))?;
                // check_uri admits ASCII only, so this conversion is lossless.
                Attestation::Pending {
                    uri: String::from_utf8_lossy(uri).into_owned(),
                }
            }
            TAG_BITCOIN => Attestation::Bitcoin {
                height: inner.read_varuint().map_err(at)?,
            },
            TAG_LITECOIN => Attestation::Litecoin {
                height: inner.read_varuint().map_err(at)?,
            },
            TAG_ETHEREUM => Attestation::Ethereum {
                height: inner.read_varuint().map_err(at)?,
            },
            _ => {
                return Ok(Attestation::Unknown {
                    tag,
                    payload: payload.to_vec(),
                })
            }
        };
        if !inner.is_at_end() {
            return Err(DecodeError::new(
                base + inner.offset(),
                DecodeErrorKind::AttestationTrailingBytes {
                    tag: hex::encode(tag),
                    count: inner.remaining(),
                },
            ));
        }
        Ok(attestation)
    }

    /// Rank of the variant, used only to order an unknown attestation that
    /// (against the rules) carries a known tag.
    fn rank(&self) -> u8 {
        match self {
            Attestation::Pending { .. } => 0,
            Attestation::Bitcoin { .. } => 1,
            Attestation::Litecoin { .. } => 2,
            Attestation::Ethereum { .. } => 3,
            Attestation::Unknown { .. } => 4,
        }
    }
}

impl Ord for Attestation {
    fn cmp(&self, other: &Self) -> Ordering {
        use Attestation::*;
        self.tag()
            .cmp(&other.tag())
            .then_with(|| match (self, other) {
                (Pending { uri: a }, Pending { uri: b }) => a.as_bytes().cmp(b.as_bytes()),
                (Bitcoin { height: a }, Bitcoin { height: b })
                | (Litecoin { height: a }, Litecoin { height: b })
                | (Ethereum { height: a }, Ethereum { height: b }) => a.cmp(b),
                (Unknown { payload: a, .. }, Unknown { payload: b, .. }) => a.cmp(b),
                _ => self.rank().cmp(&other.rank()),
            })
    }
}

impl PartialOrd for Attestation {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// As the reference prints it in `ots info` (Python's `repr`).
impl fmt::Display for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attestation::Pending { uri } => write!(f, "PendingAttestation('{uri}')"),
            Attestation::Bitcoin { height } => write!(f, "BitcoinBlockHeaderAttestation({height})"),
            Attestation::Litecoin { height } => {
                write!(f, "LitecoinBlockHeaderAttestation({height})")
            }
            Attestation::Ethereum { height } => {
                write!(f, "EthereumBlockHeaderAttestation({height})")
            }
            Attestation::Unknown { tag, payload } => write!(
                f,
                "UnknownAttestation({}, {})",
                python_bytes_repr(tag),
                python_bytes_repr(payload)
            ),
        }
    }
}

/// Python's `repr()` of a `bytes` value: `b'…'` with printable ASCII as is,
/// `\t \n \r \\` escaped, other bytes as `\xNN`; double quotes are used when
/// the bytes contain a single quote and no double quote.
pub fn python_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if b as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(a: &Attestation) -> Attestation {
        let mut bytes = Vec::new();
        a.encode(&mut bytes);
        let mut r = Reader::new(&bytes);
        let back = Attestation::decode(&mut r).unwrap();
        assert!(r.is_at_end());
        back
    }

    #[test]
    fn known_attestations_round_trip() {
        for a in [
            Attestation::pending("https://alice.btc.calendar.opentimestamps.org").unwrap(),
            Attestation::Bitcoin { height: 358391 },
            Attestation::Litecoin { height: 0 },
            Attestation::Ethereum { height: u64::MAX },
            Attestation::Unknown {
                tag: *b"\x01\x02\x03\x04\x05\x06\x07\x08",
                payload: b"xxxx".to_vec(),
            },
        ] {
            assert_eq!(round_trip(&a), a);
        }
    }

    #[test]
    fn bitcoin_encoding_matches_reference_bytes() {
        let mut bytes = Vec::new();
        Attestation::Bitcoin { height: 358391 }.encode(&mut bytes);
        assert_eq!(hex::encode(bytes), "0588960d73d7190103f7ef15");
    }

    #[test]
    fn uri_rules() {
        assert!(Attestation::pending("http://127.0.0.1:14788").is_ok());
        assert_eq!(
            Attestation::pending("https://x.org/?a=b"),
            Err(UriError::ForbiddenByte {
                byte: b'?',
                position: 14
            })
        );
        assert!(matches!(
            Attestation::pending("a".repeat(MAX_URI_LENGTH + 1)),
            Err(UriError::TooLong { .. })
        ));
        assert!(Attestation::pending("a".repeat(MAX_URI_LENGTH)).is_ok());
    }

    #[test]
    fn invalid_uri_in_input_is_rejected() {
        let mut bytes = TAG_PENDING.to_vec();
        write_varbytes(&mut bytes, b"\x0ahttp://a b");
        let err = Attestation::decode(&mut Reader::new(&bytes)).unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::Uri(UriError::ForbiddenByte { byte: b' ', .. })
        ));
    }

    #[test]
    fn trailing_payload_bytes_are_rejected_for_known_tags_only() {
        let mut bytes = TAG_BITCOIN.to_vec();
        write_varbytes(&mut bytes, &[0x01, 0x00]);
        let err = Attestation::decode(&mut Reader::new(&bytes)).unwrap_err();
        assert_eq!(err.offset, 10);
        assert!(matches!(
            err.kind,
            DecodeErrorKind::AttestationTrailingBytes { count: 1, .. }
        ));

        let mut bytes = b"\x01\x02\x03\x04\x05\x06\x07\x08".to_vec();
        write_varbytes(&mut bytes, &[0x01, 0x00]);
        assert!(Attestation::decode(&mut Reader::new(&bytes)).is_ok());
    }

    #[test]
    fn oversized_payload_is_rejected() {
        let mut bytes = b"\x01\x02\x03\x04\x05\x06\x07\x08".to_vec();
        write_varuint(&mut bytes, MAX_PAYLOAD_LENGTH as u64 + 1);
        let err = Attestation::decode(&mut Reader::new(&bytes)).unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::TooLong {
                max: MAX_PAYLOAD_LENGTH,
                ..
            }
        ));
    }

    #[test]
    fn ordering_is_by_tag_then_value() {
        let unknown_low = Attestation::Unknown {
            tag: [0; 8],
            payload: vec![9],
        };
        let mut v = vec![
            Attestation::pending("b").unwrap(),
            Attestation::pending("a").unwrap(),
            Attestation::Ethereum { height: 1 },
            Attestation::Bitcoin { height: 10 },
            Attestation::Bitcoin { height: 9 },
            Attestation::Litecoin { height: 1 },
            unknown_low.clone(),
        ];
        v.sort();
        assert_eq!(
            v,
            [
                unknown_low,
                Attestation::Bitcoin { height: 9 },
                Attestation::Bitcoin { height: 10 },
                Attestation::Litecoin { height: 1 },
                Attestation::Ethereum { height: 1 },
                Attestation::pending("a").unwrap(),
                Attestation::pending("b").unwrap(),
            ]
        );
    }

    #[test]
    fn python_repr() {
        assert_eq!(python_bytes_repr(b"\x01\x02xy"), r"b'\x01\x02xy'");
        assert_eq!(python_bytes_repr(b"it's"), r#"b"it's""#);
        assert_eq!(python_bytes_repr(b"'\""), r#"b'\'"'"#);
        assert_eq!(python_bytes_repr(b"\\\n\x7f"), r"b'\\\n\x7f'");
    }
}
