//! Verification that needs no network: replaying operations, and checking a
//! Bitcoin attestation against the 80-byte header of the attested block.
//!
//! Fetching the header (by height, from a node the user trusts) is the
//! caller's business; this module only decides whether the header matches.

use bitcoin::block::Header;
use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash;

use crate::error::{OpError, VerifyError};
use crate::op::Op;

/// Length of a serialized Bitcoin block header.
pub const BLOCK_HEADER_LEN: usize = 80;

/// Applies `ops` in order to `msg` and returns the final message.
pub fn replay<'a, I>(msg: &[u8], ops: I) -> Result<Vec<u8>, OpError>
where
    I: IntoIterator<Item = &'a Op>,
{
    let mut current = msg.to_vec();
    for op in ops {
        current = op.apply(&current)?;
    }
    Ok(current)
}

/// Decodes an 80-byte block header.
pub fn parse_block_header(bytes: &[u8]) -> Result<Header, VerifyError> {
    if bytes.len() != BLOCK_HEADER_LEN {
        return Err(VerifyError::BadHeader(format!(
            "expected {BLOCK_HEADER_LEN} bytes, got {}",
            bytes.len()
        )));
    }
    deserialize(bytes).map_err(|e| VerifyError::BadHeader(e.to_string()))
}

/// Checks a Bitcoin block header attestation: the attested message must be
/// the header's merkle root (internal byte order). Returns the attested time,
/// the header's nTime (seconds since 1970, UTC).
///
/// The attestation only names a height; that the header is the one at that
/// height of the chain with the most work is for the caller to establish.
pub fn verify_bitcoin_header(msg: &[u8], header: &Header) -> Result<u32, VerifyError> {
    if msg.len() != 32 {
        return Err(VerifyError::BadDigestLength(msg.len()));
    }
    let root = header.merkle_root.as_byte_array();
    if msg != root.as_slice() {
        return Err(VerifyError::MerkleRootMismatch {
            digest: hex::encode(msg),
            merkle_root: hex::encode(root),
        });
    }
    Ok(header.time)
}

/// [`verify_bitcoin_header`] given the header's 80 bytes.
pub fn verify_bitcoin_header_bytes(msg: &[u8], header: &[u8]) -> Result<u32, VerifyError> {
    verify_bitcoin_header(msg, &parse_block_header(header)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_length_is_checked() {
        assert!(matches!(
            parse_block_header(&[0; 79]),
            Err(VerifyError::BadHeader(_))
        ));
        assert!(parse_block_header(&[0; 80]).is_ok());
    }

    #[test]
    fn digest_must_match_merkle_root() {
        let mut bytes = [0u8; 80];
        bytes[36..68].copy_from_slice(&[0xab; 32]);
        bytes[68..72].copy_from_slice(&1_432_827_678u32.to_le_bytes());
        assert_eq!(
            verify_bitcoin_header_bytes(&[0xab; 32], &bytes),
            Ok(1_432_827_678)
        );
        assert!(matches!(
            verify_bitcoin_header_bytes(&[0xac; 32], &bytes),
            Err(VerifyError::MerkleRootMismatch { .. })
        ));
        assert_eq!(
            verify_bitcoin_header_bytes(&[0xab; 20], &bytes),
            Err(VerifyError::BadDigestLength(20))
        );
    }

    #[test]
    fn replay_applies_in_order() {
        let ops = [Op::append(b"b".to_vec()).unwrap(), Op::Reverse];
        assert_eq!(replay(b"a", &ops).unwrap(), b"ba");
        assert!(replay(b"", &[Op::Reverse]).is_err());
    }
}
