//! Every way a proof can be refused: typed, specific (which limit, which tag,
//! which offset), and never a panic.

use thiserror::Error;

/// Why an operation cannot be applied to a message (or built at all).
///
/// The limits come from the reference implementation: they bound the memory a
/// verifier needs for any one path of a proof.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpError {
    /// The message is longer than the operation accepts
    /// ([`MAX_MSG_LENGTH`](crate::op::MAX_MSG_LENGTH), or
    /// [`MAX_HEXLIFY_MSG_LENGTH`](crate::op::MAX_HEXLIFY_MSG_LENGTH) for hexlify).
    #[error("message too long for {op}: {len} > {max} bytes")]
    MessageTooLong {
        /// The operation's name.
        op: &'static str,
        /// The message length.
        len: usize,
        /// The operation's limit.
        max: usize,
    },
    /// The result would be longer than
    /// [`MAX_RESULT_LENGTH`](crate::op::MAX_RESULT_LENGTH).
    #[error("result of {op} too long: {len} > {max} bytes")]
    ResultTooLong {
        /// The operation's name.
        op: &'static str,
        /// The length the result would have.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Reverse and hexlify refuse an empty message: an empty result would let
    /// the commitment graph contain a cycle.
    #[error("{op} cannot be applied to an empty message")]
    EmptyMessage {
        /// The operation's name.
        op: &'static str,
    },
    /// Append and prepend need an argument of at least one byte.
    #[error("{op} argument is empty")]
    EmptyArgument {
        /// The operation's name.
        op: &'static str,
    },
    /// Append and prepend arguments are at most
    /// [`MAX_RESULT_LENGTH`](crate::op::MAX_RESULT_LENGTH) bytes.
    #[error("{op} argument too long: {len} > {max} bytes")]
    ArgumentTooLong {
        /// The operation's name.
        op: &'static str,
        /// The argument length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a pending attestation's calendar URI is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    /// Longer than [`MAX_URI_LENGTH`](crate::attestation::MAX_URI_LENGTH).
    #[error("calendar URI too long: {len} > {max} bytes")]
    TooLong {
        /// The URI length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A byte outside `A-Za-z0-9-._/:`.
    #[error("calendar URI contains the forbidden byte 0x{byte:02x} at position {position}")]
    ForbiddenByte {
        /// The byte.
        byte: u8,
        /// Its index in the URI.
        position: usize,
    },
}

/// A decoding failure: what went wrong and at which byte of the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset in the input where the offending item starts.
    pub offset: usize,
    /// What is wrong there.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// An error of `kind` at `offset`.
    pub fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError { offset, kind }
    }
}

/// What is wrong with a proof's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeErrorKind {
    /// The input ended in the middle of an item.
    #[error("truncated: needed {wanted} more bytes, {available} left")]
    Truncated {
        /// Bytes the item needed.
        wanted: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A varuint does not fit in 64 bits.
    #[error("varuint larger than 64 bits")]
    VarUintOverflow,
    /// A length-prefixed field is longer than its limit.
    #[error("{what} too long: {len} > {max} bytes")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its declared length.
        len: u64,
        /// Its limit.
        max: usize,
    },
    /// A length-prefixed field is shorter than its minimum.
    #[error("{what} too short: {len} < {min} bytes")]
    TooShort {
        /// The field.
        what: &'static str,
        /// Its declared length.
        len: u64,
        /// Its minimum.
        min: usize,
    },
    /// A byte where an operation tag was expected is not one.
    #[error("unknown operation tag 0x{0:02x}")]
    UnknownOpTag(u8),
    /// A detached file's digest op is not a hash (sha1, ripemd160, sha256,
    /// keccak256).
    #[error("file digest op tag 0x{0:02x} is not a hash operation")]
    NotAHashOp(u8),
    /// An operation cannot be applied to the message it meets.
    #[error("operation invalid for its message: {0}")]
    Op(#[from] OpError),
    /// The tree nests deeper than
    /// [`MAX_DEPTH`](crate::timestamp::MAX_DEPTH) levels.
    #[error("timestamp nests deeper than {0} levels")]
    TooDeep(usize),
    /// The messages of the tree's nodes would hold more than the bound
    /// given to [`Timestamp::deserialize_bounded`](crate::Timestamp::deserialize_bounded)
    /// once decoded (an encoding does not carry its messages: a byte of
    /// `reverse` on a 4,000-byte message is 4,000 bytes in memory).
    #[error("its messages hold over {max} bytes once decoded")]
    TooManyMessageBytes {
        /// The bound.
        max: usize,
    },
    /// A pending attestation's URI is malformed.
    #[error("invalid pending attestation: {0}")]
    Uri(#[from] UriError),
    /// A known attestation's payload has bytes left after its fields.
    #[error("attestation {tag} has {count} unexpected trailing payload bytes")]
    AttestationTrailingBytes {
        /// The attestation tag, hex.
        tag: String,
        /// How many bytes were left over.
        count: usize,
    },
    /// A detached file does not start with the OpenTimestamps magic.
    #[error("not an OpenTimestamps proof file (bad magic bytes)")]
    BadMagic,
    /// A detached file of a major version this library does not know.
    #[error("unsupported major version {0} (only version 1 is known)")]
    UnsupportedMajorVersion(u8),
    /// Bytes after a complete item (a detached file, a bare timestamp).
    #[error("{count} trailing bytes after the end of the proof")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// The message a timestamp starts from is over the length limit.
    #[error("message too long: {len} > {max} bytes")]
    MessageTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a timestamp cannot be serialized.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A node with neither attestations nor operations has no encoding: the
    /// format needs at least one item per node.
    #[error("timestamp node for message {msg} is empty (no attestation, no operation)")]
    EmptyNode {
        /// The node's message, hex.
        msg: String,
    },
}

/// Why two timestamps cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MergeError {
    /// Only timestamps of the same message can be merged.
    #[error("cannot merge timestamps of different messages ({ours} and {theirs})")]
    DifferentMessages {
        /// Our message, hex.
        ours: String,
        /// Theirs, hex.
        theirs: String,
    },
}

/// Why a Bitcoin attestation does not verify against a block header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The header is not 80 bytes of valid encoding.
    #[error("invalid block header: {0}")]
    BadHeader(String),
    /// The attested message is not a 32-byte digest.
    #[error("expected a 32-byte digest, got {0} bytes")]
    BadDigestLength(usize),
    /// The attested message is not the header's merkle root.
    #[error("digest {digest} does not match the block's merkle root {merkle_root}")]
    MerkleRootMismatch {
        /// The attested message, hex (internal byte order).
        digest: String,
        /// The header's merkle root, hex (internal byte order).
        merkle_root: String,
    },
}
