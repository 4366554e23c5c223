//! The OpenTimestamps proof format, and nothing else.
//!
//! An OpenTimestamps proof shows that a message existed before some time:
//! starting from the message, a chain of operations (hashes, appends,
//! prepends) leads to a value that a trusted system attested to, such as a
//! Bitcoin block's merkle root. Many such chains share prefixes, so a proof
//! is a tree: a [`Timestamp`] is a message with the [`Attestation`]s made on
//! it and the [`Op`]s leading to further timestamps.
//!
//! This crate is meant to be read as the specification of the format. Each
//! rule is documented, and enforced, in one place:
//!
//! * [`codec`]: varuint and varbytes, the two primitives of every encoding;
//! * [`op`]: the operations, their tags and their length limits;
//! * [`attestation`]: the attestations, their tags and payload rules;
//! * [`timestamp`]: the tree, its canonical serialization and decoding
//!   (ordering, separators, depth limit), merge and walk;
//! * [`detached`]: `.ots` files (magic, version, file digest);
//! * [`merkle`]: Merkle trees as calendars and clients build them, and the
//!   privacy nonce;
//! * [`verify`]: replaying operations, checking a Bitcoin attestation
//!   against a block header;
//! * [`display`]: the tree as `ots info` prints it.
//!
//! Nothing here does I/O beyond reading a file being hashed, and nothing
//! panics on input: every malformed proof gives a [`DecodeError`] naming the
//! problem and its offset. Every length is checked before anything is
//! allocated, each message is at most 4 KiB, and each node costs at least one
//! byte of input, so decoding needs at most about 4,100 bytes of memory per
//! input byte (adversarial worst case; real proofs need about ten): see
//! `docs/proof-format.md`.
#![warn(missing_docs)]

pub mod attestation;
pub mod codec;
pub mod detached;
pub mod display;
pub mod error;
pub mod merkle;
pub mod op;
pub mod timestamp;
pub mod verify;

pub use attestation::Attestation;
pub use detached::DetachedTimestampFile;
pub use error::{
    DecodeError, DecodeErrorKind, EncodeError, MergeError, OpError, UriError, VerifyError,
};
pub use merkle::MerkleTree;
pub use op::{HashOp, Op};
pub use timestamp::Timestamp;
