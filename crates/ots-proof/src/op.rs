//! Operations: the edges of a timestamp tree. Each takes a message (and for
//! append/prepend an argument) and produces the next message.
//!
//! | op        | tag    | result                               |
//! |-----------|--------|--------------------------------------|
//! | sha1      | `0x02` | SHA-1 digest (20 bytes)              |
//! | ripemd160 | `0x03` | RIPEMD-160 digest (20 bytes)         |
//! | sha256    | `0x08` | SHA-256 digest (32 bytes)            |
//! | keccak256 | `0x67` | Keccak-256 digest (32 bytes)         |
//! | append    | `0xf0` | message ‖ argument                   |
//! | prepend   | `0xf1` | argument ‖ message                   |
//! | reverse   | `0xf2` | the message's bytes in reverse order |
//! | hexlify   | `0xf3` | lower-case hex of the message        |
//!
//! The hash tags are those of RFC 4880. Append and prepend are written as
//! the tag followed by the argument as varbytes; the others are the tag alone.
//!
//! SHA-1 is kept because old proofs use it, but it must not be trusted for
//! new proofs: a chosen-prefix collision lets someone make two messages with
//! one SHA-1 digest, so a SHA-1 step proves nothing about which of the two
//! existed. Nothing in this workspace creates SHA-1 steps.

use std::fmt;
use std::io::{self, Read};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::codec::{write_varbytes, Reader};
use crate::error::{DecodeError, DecodeErrorKind, OpError};

/// No operation may produce a result longer than this: it bounds the memory
/// a verifier needs for any one path of a proof.
pub const MAX_RESULT_LENGTH: usize = 4096;
/// No operation accepts a message longer than this.
pub const MAX_MSG_LENGTH: usize = 4096;
/// Hexlify doubles its input, so it accepts at most half the result limit.
pub const MAX_HEXLIFY_MSG_LENGTH: usize = MAX_RESULT_LENGTH / 2;
/// Append and prepend arguments are at most this long.
pub const MAX_ARG_LENGTH: usize = MAX_RESULT_LENGTH;

/// Tag of sha1.
pub const TAG_SHA1: u8 = 0x02;
/// Tag of ripemd160.
pub const TAG_RIPEMD160: u8 = 0x03;
/// Tag of sha256.
pub const TAG_SHA256: u8 = 0x08;
/// Tag of keccak256.
pub const TAG_KECCAK256: u8 = 0x67;
/// Tag of append.
pub const TAG_APPEND: u8 = 0xf0;
/// Tag of prepend.
pub const TAG_PREPEND: u8 = 0xf1;
/// Tag of reverse.
pub const TAG_REVERSE: u8 = 0xf2;
/// Tag of hexlify.
pub const TAG_HEXLIFY: u8 = 0xf3;

/// An operation.
///
/// The derived ordering is the format's canonical ordering: by tag first
/// (the variants are declared in tag order), then by argument bytes. A test
/// below holds the two together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// SHA-1 (`0x02`). Accepted in old proofs; never trust it for new ones.
    Sha1,
    /// RIPEMD-160 (`0x03`).
    Ripemd160,
    /// SHA-256 (`0x08`).
    Sha256,
    /// Keccak-256 (`0x67`), the original Keccak padding as used by Ethereum,
    /// not NIST SHA3-256.
    Keccak256,
    /// Append the argument (`0xf0`): 1 to [`MAX_ARG_LENGTH`] bytes.
    Append(Vec<u8>),
    /// Prepend the argument (`0xf1`): 1 to [`MAX_ARG_LENGTH`] bytes.
    Prepend(Vec<u8>),
    /// Reverse the message's bytes (`0xf2`). Deprecated by the reference but
    /// still valid.
    Reverse,
    /// Lower-case hex of the message (`0xf3`).
    Hexlify,
}

impl Op {
    /// The tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            Op::Sha1 => TAG_SHA1,
            Op::Ripemd160 => TAG_RIPEMD160,
            Op::Sha256 => TAG_SHA256,
            Op::Keccak256 => TAG_KECCAK256,
            Op::Append(_) => TAG_APPEND,
            Op::Prepend(_) => TAG_PREPEND,
            Op::Reverse => TAG_REVERSE,
            Op::Hexlify => TAG_HEXLIFY,
        }
    }

    /// The name the reference prints (`ots info`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Sha1 => "sha1",
            Op::Ripemd160 => "ripemd160",
            Op::Sha256 => "sha256",
            Op::Keccak256 => "keccak256",
            Op::Append(_) => "append",
            Op::Prepend(_) => "prepend",
            Op::Reverse => "reverse",
            Op::Hexlify => "hexlify",
        }
    }

    /// The argument of append and prepend.
    pub fn argument(&self) -> Option<&[u8]> {
        match self {
            Op::Append(arg) | Op::Prepend(arg) => Some(arg),
            _ => None,
        }
    }

    /// Append `arg`, checking its length.
    pub fn append(arg: impl Into<Vec<u8>>) -> Result<Op, OpError> {
        let op = Op::Append(arg.into());
        op.check_argument()?;
        Ok(op)
    }

    /// Prepend `arg`, checking its length.
    pub fn prepend(arg: impl Into<Vec<u8>>) -> Result<Op, OpError> {
        let op = Op::Prepend(arg.into());
        op.check_argument()?;
        Ok(op)
    }

    /// Checks the argument of append and prepend: 1 to [`MAX_ARG_LENGTH`]
    /// bytes. Other operations have none and always pass.
    pub fn check_argument(&self) -> Result<(), OpError> {
        if let Some(arg) = self.argument() {
            if arg.is_empty() {
                return Err(OpError::EmptyArgument { op: self.name() });
            }
            if arg.len() > MAX_ARG_LENGTH {
                return Err(OpError::ArgumentTooLong {
                    op: self.name(),
                    len: arg.len(),
                    max: MAX_ARG_LENGTH,
                });
            }
        }
        Ok(())
    }

    /// The hash this operation computes, if it is one.
    pub fn hash_op(&self) -> Option<HashOp> {
        match self {
            Op::Sha1 => Some(HashOp::Sha1),
            Op::Ripemd160 => Some(HashOp::Ripemd160),
            Op::Sha256 => Some(HashOp::Sha256),
            Op::Keccak256 => Some(HashOp::Keccak256),
            _ => None,
        }
    }

    /// Applies the operation to `msg`, enforcing every limit of the format:
    /// the argument's length, the message's length (4096, or 2048 for
    /// hexlify), a non-empty message for reverse and hexlify, and the
    /// result's length (4096).
    pub fn apply(&self, msg: &[u8]) -> Result<Vec<u8>, OpError> {
        self.check_argument()?;
        let max_msg = match self {
            Op::Hexlify => MAX_HEXLIFY_MSG_LENGTH,
            _ => MAX_MSG_LENGTH,
        };
        if msg.len() > max_msg {
            return Err(OpError::MessageTooLong {
                op: self.name(),
                len: msg.len(),
                max: max_msg,
            });
        }
        let result = match self {
            Op::Append(arg) | Op::Prepend(arg) => {
                let len = msg.len() + arg.len();
                if len > MAX_RESULT_LENGTH {
                    return Err(OpError::ResultTooLong {
                        op: self.name(),
                        len,
                        max: MAX_RESULT_LENGTH,
                    });
                }
                let (first, second) = match self {
                    Op::Append(_) => (msg, arg.as_slice()),
                    _ => (arg.as_slice(), msg),
                };
                let mut out = Vec::with_capacity(len);
                out.extend_from_slice(first);
                out.extend_from_slice(second);
                out
            }
            Op::Reverse | Op::Hexlify if msg.is_empty() => {
                return Err(OpError::EmptyMessage { op: self.name() })
            }
            Op::Reverse => msg.iter().rev().copied().collect(),
            Op::Hexlify => hex::encode(msg).into_bytes(),
            // Digests are at most 32 bytes: always within the result limit.
            Op::Sha1 => HashOp::Sha1.digest(msg),
            Op::Ripemd160 => HashOp::Ripemd160.digest(msg),
            Op::Sha256 => HashOp::Sha256.digest(msg),
            Op::Keccak256 => HashOp::Keccak256.digest(msg),
        };
        Ok(result)
    }

    /// Appends the operation's encoding: the tag, then the argument as
    /// varbytes for append and prepend.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        if let Some(arg) = self.argument() {
            write_varbytes(out, arg);
        }
    }

    /// Decodes the rest of an operation whose tag byte `tag` has just been
    /// read (at offset `tag_offset`).
    pub fn decode_after_tag(
        reader: &mut Reader<'_>,
        tag: u8,
        tag_offset: usize,
    ) -> Result<Op, DecodeError> {
        Ok(match tag {
            TAG_SHA1 => Op::Sha1,
            TAG_RIPEMD160 => Op::Ripemd160,
            TAG_SHA256 => Op::Sha256,
            TAG_KECCAK256 => Op::Keccak256,
            TAG_APPEND => Op::Append(
                reader
                    .read_varbytes("append argument", 1, MAX_ARG_LENGTH)?
                    .to_vec(),
            ),
            TAG_PREPEND => Op::Prepend(
                reader
                    .read_varbytes("prepend argument", 1, MAX_ARG_LENGTH)?
                    .to_vec(),
            ),
            TAG_REVERSE => Op::Reverse,
            TAG_HEXLIFY => Op::Hexlify,
            other => return Err(reader.error_at(tag_offset, DecodeErrorKind::UnknownOpTag(other))),
        })
    }

    /// Decodes one operation (tag and argument).
    pub fn decode(reader: &mut Reader<'_>) -> Result<Op, DecodeError> {
        let at = reader.offset();
        let tag = reader.read_u8()?;
        Op::decode_after_tag(reader, tag, at)
    }
}

impl From<HashOp> for Op {
    fn from(hash: HashOp) -> Op {
        match hash {
            HashOp::Sha1 => Op::Sha1,
            HashOp::Ripemd160 => Op::Ripemd160,
            HashOp::Sha256 => Op::Sha256,
            HashOp::Keccak256 => Op::Keccak256,
        }
    }
}

/// As `ots info` prints it: the name, then the argument in hex.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.argument() {
            Some(arg) => write!(f, "{} {}", self.name(), hex::encode(arg)),
            None => f.write_str(self.name()),
        }
    }
}

/// The hash operations: the only ones whose result has a fixed length, and
/// the only ones that may digest a whole file (the first op of a detached
/// proof).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashOp {
    /// SHA-1, 20 bytes. Never trust it for new proofs.
    Sha1,
    /// RIPEMD-160, 20 bytes.
    Ripemd160,
    /// SHA-256, 32 bytes.
    Sha256,
    /// Keccak-256, 32 bytes.
    Keccak256,
}

impl HashOp {
    /// The op's tag byte.
    pub fn tag(self) -> u8 {
        Op::from(self).tag()
    }

    /// The hash for a tag byte, if that tag is a hash.
    pub fn from_tag(tag: u8) -> Option<HashOp> {
        match tag {
            TAG_SHA1 => Some(HashOp::Sha1),
            TAG_RIPEMD160 => Some(HashOp::Ripemd160),
            TAG_SHA256 => Some(HashOp::Sha256),
            TAG_KECCAK256 => Some(HashOp::Keccak256),
            _ => None,
        }
    }

    /// Its name, as `ots info` prints it in `File <name> hash: …`.
    pub fn name(self) -> &'static str {
        Op::from(self).name()
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashOp::Sha1 | HashOp::Ripemd160 => 20,
            HashOp::Sha256 | HashOp::Keccak256 => 32,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finalize()
    }

    /// A streaming hasher.
    pub fn hasher(self) -> Hasher {
        Hasher(match self {
            HashOp::Sha1 => HasherState::Sha1(Sha1::new()),
            HashOp::Ripemd160 => HasherState::Ripemd160(ripemd::Ripemd160::new()),
            HashOp::Sha256 => HasherState::Sha256(Sha256::new()),
            HashOp::Keccak256 => HasherState::Keccak256(Box::default()),
        })
    }

    /// The digest of everything `reader` yields, read in 1 MiB chunks.
    pub fn digest_reader(self, mut reader: impl Read) -> io::Result<Vec<u8>> {
        const CHUNK: usize = 1 << 20;
        let mut hasher = self.hasher();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(hasher.finalize()),
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A streaming hasher for one of the [`HashOp`]s.
#[derive(Clone)]
pub struct Hasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Sha1(Sha1),
    Ripemd160(ripemd::Ripemd160),
    Sha256(Sha256),
    // Boxed: the Keccak sponge is several times larger than the others.
    Keccak256(Box<sha3::Keccak256>),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            HasherState::Sha1(h) => h.update(data),
            HasherState::Ripemd160(h) => h.update(data),
            HasherState::Sha256(h) => h.update(data),
            HasherState::Keccak256(h) => h.update(data),
        }
    }

    /// The digest.
    pub fn finalize(self) -> Vec<u8> {
        match self.0 {
            HasherState::Sha1(h) => h.finalize().to_vec(),
            HasherState::Ripemd160(h) => h.finalize().to_vec(),
            HasherState::Sha256(h) => h.finalize().to_vec(),
            HasherState::Keccak256(h) => h.finalize().to_vec(),
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

/// SHA-256 of `data` as an array: the hash every part of a calendar uses.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_order_is_tag_order_then_argument() {
        let ops = [
            Op::Sha1,
            Op::Ripemd160,
            Op::Sha256,
            Op::Keccak256,
            Op::Append(vec![0x00]),
            Op::Append(vec![0x00, 0x00]),
            Op::Append(vec![0x01]),
            Op::Prepend(vec![0x00]),
            Op::Reverse,
            Op::Hexlify,
        ];
        for pair in ops.windows(2) {
            assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
            assert!(pair[0].tag() <= pair[1].tag());
        }
    }

    #[test]
    fn hashes_match_known_digests() {
        assert_eq!(
            hex::encode(Op::Sha256.apply(b"").unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(Op::Ripemd160.apply(b"").unwrap()),
            "9c1185a5c5e9fc54612808977ee8f548b2258d31"
        );
        assert_eq!(
            hex::encode(Op::Sha1.apply(b"").unwrap()),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        // Keccak-256 (original padding), not SHA3-256 (which is a7ffc6f8…).
        assert_eq!(
            hex::encode(Op::Keccak256.apply(b"").unwrap()),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn append_prepend_reverse_hexlify() {
        assert_eq!(
            Op::append(b"bar".to_vec()).unwrap().apply(b"foo").unwrap(),
            b"foobar"
        );
        assert_eq!(
            Op::prepend(b"bar".to_vec()).unwrap().apply(b"foo").unwrap(),
            b"barfoo"
        );
        assert_eq!(Op::Reverse.apply(b"abc").unwrap(), b"cba");
        assert_eq!(Op::Hexlify.apply(&[0xde, 0xad]).unwrap(), b"dead");
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(
            Op::append(Vec::new()),
            Err(OpError::EmptyArgument { op: "append" })
        );
        assert!(matches!(
            Op::prepend(vec![0; MAX_ARG_LENGTH + 1]),
            Err(OpError::ArgumentTooLong {
                max: MAX_ARG_LENGTH,
                ..
            })
        ));
        assert!(Op::append(vec![0; MAX_ARG_LENGTH]).is_ok());
        let op = Op::append(vec![1]).unwrap();
        assert!(op.apply(&[0; MAX_MSG_LENGTH - 1]).is_ok());
        assert!(matches!(
            op.apply(&[0; MAX_MSG_LENGTH]),
            Err(OpError::ResultTooLong { len: 4097, .. })
        ));
        assert!(matches!(
            Op::Sha256.apply(&[0; MAX_MSG_LENGTH + 1]),
            Err(OpError::MessageTooLong {
                max: MAX_MSG_LENGTH,
                ..
            })
        ));
        assert!(Op::Hexlify.apply(&[0; MAX_HEXLIFY_MSG_LENGTH]).is_ok());
        assert!(matches!(
            Op::Hexlify.apply(&[0; MAX_HEXLIFY_MSG_LENGTH + 1]),
            Err(OpError::MessageTooLong {
                max: MAX_HEXLIFY_MSG_LENGTH,
                ..
            })
        ));
        assert_eq!(
            Op::Hexlify.apply(b""),
            Err(OpError::EmptyMessage { op: "hexlify" })
        );
        assert_eq!(
            Op::Reverse.apply(b""),
            Err(OpError::EmptyMessage { op: "reverse" })
        );
        // An invalid argument smuggled in through the public variant is
        // still refused when applied.
        assert!(Op::Append(Vec::new()).apply(b"x").is_err());
    }

    #[test]
    fn encode_decode_round_trip() {
        for op in [
            Op::Sha1,
            Op::Ripemd160,
            Op::Sha256,
            Op::Keccak256,
            Op::Append(vec![1, 2, 3]),
            Op::Prepend(vec![0xff; 300]),
            Op::Reverse,
            Op::Hexlify,
        ] {
            let mut bytes = Vec::new();
            op.encode(&mut bytes);
            let mut r = Reader::new(&bytes);
            assert_eq!(Op::decode(&mut r).unwrap(), op);
            assert!(r.is_at_end());
        }
    }

    #[test]
    fn unknown_tag_is_named() {
        let err = Op::decode(&mut Reader::new(&[0x42])).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownOpTag(0x42));
        assert_eq!(err.to_string(), "at byte 0: unknown operation tag 0x42");
    }

    #[test]
    fn streaming_hash_equals_one_shot() {
        let data = vec![7u8; 3 << 20];
        for hash in [
            HashOp::Sha1,
            HashOp::Ripemd160,
            HashOp::Sha256,
            HashOp::Keccak256,
        ] {
            assert_eq!(hash.digest_reader(&data[..]).unwrap(), hash.digest(&data));
            assert_eq!(hash.digest(b"x").len(), hash.digest_len());
            assert_eq!(HashOp::from_tag(hash.tag()), Some(hash));
        }
        assert_eq!(HashOp::from_tag(TAG_HEXLIFY), None);
    }
}
