//! Detached proof files (`.ots`): a timestamp of a file's digest, with a
//! header saying which hash made the digest.
//!
//! Layout:
//!
//! ```text
//! magic          00 4f70656e54696d657374616d7073 0000 50726f6f66 00 bf89e2e884e89294
//!                ("\0OpenTimestamps\0\0Proof\0" + 8 random bytes)
//! major version  01
//! file hash op   one of 02 (sha1), 03 (ripemd160), 08 (sha256), 67 (keccak256)
//! file digest    20 or 32 bytes, as the hash op says
//! timestamp      the tree rooted at the digest
//! ```
//!
//! Nothing may follow the timestamp. The magic is meant to look like text in
//! a hex dump while `file(1)` still calls the file "data".

use crate::codec::Reader;
use crate::error::{DecodeError, DecodeErrorKind, EncodeError, OpError};
use crate::op::HashOp;
use crate::timestamp::Timestamp;

/// The magic bytes every detached proof starts with.
pub const MAGIC: &[u8; 31] = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
/// The only major version of the format.
pub const MAJOR_VERSION: u8 = 1;

/// Most bytes of messages a proof file may decode to, per byte of file.
/// An encoding does not carry its messages: a byte of `reverse` on a
/// 4,000-byte message is 4,000 bytes in memory, so a hostile file of a
/// megabyte could take gigabytes. Real proofs hold under 3 bytes per byte
/// (the test vectors: 2.9 at most); a chain of nothing but `sha256`, 32.
pub const MESSAGE_BYTES_PER_BYTE: usize = 64;

/// The bound for small files, where a single 4 KB transaction message
/// is already many bytes per byte.
pub const MIN_MESSAGE_BYTES_BOUND: usize = 64 << 10;

/// A detached proof: the hash that digested the file and the timestamp of
/// that digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachedTimestampFile {
    hash_op: HashOp,
    timestamp: Timestamp,
}

impl DetachedTimestampFile {
    /// A detached proof; the timestamp's message must be a digest of the
    /// hash's length.
    pub fn new(hash_op: HashOp, timestamp: Timestamp) -> Result<Self, OpError> {
        if timestamp.msg().len() != hash_op.digest_len() {
            return Err(OpError::MessageTooLong {
                op: hash_op.name(),
                len: timestamp.msg().len(),
                max: hash_op.digest_len(),
            });
        }
        Ok(DetachedTimestampFile { hash_op, timestamp })
    }

    /// An empty proof of `data`'s digest.
    pub fn from_data(hash_op: HashOp, data: &[u8]) -> Self {
        DetachedTimestampFile {
            hash_op,
            // Digests are at most 32 bytes, far below the message limit.
            timestamp: Timestamp::with_valid_msg(hash_op.digest(data)),
        }
    }

    /// The hash that digested the file.
    pub fn hash_op(&self) -> HashOp {
        self.hash_op
    }

    /// The file's digest (the timestamp's message).
    pub fn file_digest(&self) -> &[u8] {
        self.timestamp.msg()
    }

    /// The timestamp of the digest.
    pub fn timestamp(&self) -> &Timestamp {
        &self.timestamp
    }

    /// The timestamp of the digest, mutable.
    pub fn timestamp_mut(&mut self) -> &mut Timestamp {
        &mut self.timestamp
    }

    /// The timestamp, consuming the file.
    pub fn into_timestamp(self) -> Timestamp {
        self.timestamp
    }

    /// The file's bytes.
    pub fn serialize(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(MAGIC.len() + 2 + 32);
        out.extend_from_slice(MAGIC);
        out.push(MAJOR_VERSION);
        out.push(self.hash_op.tag());
        out.extend_from_slice(self.timestamp.msg());
        self.timestamp.serialize_into(&mut out)?;
        Ok(out)
    }

    /// Reads a whole detached proof; trailing bytes are an error, and so
    /// is a proof whose messages would hold more than
    /// [`MESSAGE_BYTES_PER_BYTE`] bytes per byte of file (at least
    /// [`MIN_MESSAGE_BYTES_BOUND`]): refused as it decodes, never held.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let magic = reader.read_bytes(MAGIC.len().min(bytes.len()))?;
        if magic != MAGIC {
            return Err(DecodeError::new(0, DecodeErrorKind::BadMagic));
        }
        let version_at = reader.offset();
        let major = reader.read_u8()?;
        if major != MAJOR_VERSION {
            return Err(
                reader.error_at(version_at, DecodeErrorKind::UnsupportedMajorVersion(major))
            );
        }
        let op_at = reader.offset();
        let tag = reader.read_u8()?;
        let hash_op = HashOp::from_tag(tag)
            .ok_or_else(|| reader.error_at(op_at, DecodeErrorKind::NotAHashOp(tag)))?;
        let digest = reader.read_bytes(hash_op.digest_len())?;
        let bound = bytes
            .len()
            .saturating_mul(MESSAGE_BYTES_PER_BYTE)
            .max(MIN_MESSAGE_BYTES_BOUND);
        let timestamp = Timestamp::decode_bounded(&mut reader, digest, bound)?;
        reader.expect_end()?;
        Ok(DetachedTimestampFile { hash_op, timestamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::Attestation;

    /// A file of a few kilobytes of `reverse`s on a 4,000-byte message
    /// (hundreds of megabytes once decoded) is refused while decoding; the
    /// same shape at a size a proof could have decodes.
    #[test]
    fn a_file_decoding_to_far_more_than_its_size_is_refused() {
        let file = |branches: u8, reverses: usize| {
            let mut t = Timestamp::new(vec![5; 32]).unwrap();
            let big = t.add_op(crate::Op::Append(vec![0xbb; 4000])).unwrap();
            for b in 0..branches {
                big.add_op(crate::Op::Append(vec![b]))
                    .unwrap()
                    .add_path(std::iter::repeat_n(crate::Op::Reverse, reverses))
                    .unwrap()
                    .add_attestation(Attestation::Bitcoin { height: 1 });
            }
            DetachedTimestampFile::new(HashOp::Sha256, t)
                .unwrap()
                .serialize()
                .unwrap()
        };
        let bomb = file(64, 250);
        assert!(bomb.len() < 30_000, "{}", bomb.len());
        let e = DetachedTimestampFile::deserialize(&bomb).unwrap_err();
        assert_eq!(
            e.kind,
            DecodeErrorKind::TooManyMessageBytes {
                max: bomb.len() * MESSAGE_BYTES_PER_BYTE
            }
        );
        // 10 reverses: 48 KB of messages in a 4 KB file, under the floor.
        assert!(DetachedTimestampFile::deserialize(&file(1, 10)).is_ok());
    }

    #[test]
    fn magic_is_as_specified() {
        assert_eq!(
            hex::encode(MAGIC),
            "004f70656e54696d657374616d7073000050726f6f6600bf89e2e884e89294"
        );
    }

    #[test]
    fn round_trip_and_errors() {
        let mut file = DetachedTimestampFile::from_data(HashOp::Sha256, b"hello");
        file.timestamp_mut()
            .add_attestation(Attestation::Bitcoin { height: 1 });
        let bytes = file.serialize().unwrap();
        assert_eq!(DetachedTimestampFile::deserialize(&bytes).unwrap(), file);

        let mut bad = bytes.clone();
        bad[0] = 1;
        assert_eq!(
            DetachedTimestampFile::deserialize(&bad).unwrap_err().kind,
            DecodeErrorKind::BadMagic
        );
        assert_eq!(
            DetachedTimestampFile::deserialize(b"short")
                .unwrap_err()
                .kind,
            DecodeErrorKind::BadMagic
        );

        let mut bad = bytes.clone();
        bad[MAGIC.len()] = 2;
        let err = DetachedTimestampFile::deserialize(&bad).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnsupportedMajorVersion(2));
        assert_eq!(err.offset, MAGIC.len());

        let mut bad = bytes.clone();
        bad[MAGIC.len() + 1] = 0xf0;
        assert_eq!(
            DetachedTimestampFile::deserialize(&bad).unwrap_err().kind,
            DecodeErrorKind::NotAHashOp(0xf0)
        );

        let mut bad = bytes.clone();
        bad.push(0);
        assert_eq!(
            DetachedTimestampFile::deserialize(&bad).unwrap_err().kind,
            DecodeErrorKind::TrailingBytes { count: 1 }
        );
    }

    #[test]
    fn new_checks_digest_length() {
        let t = Timestamp::new(vec![0; 20]).unwrap();
        assert!(DetachedTimestampFile::new(HashOp::Sha256, t.clone()).is_err());
        assert!(DetachedTimestampFile::new(HashOp::Ripemd160, t).is_ok());
    }
}
