//! The reference calendar's node record (PROTOCOL §3, the value stored
//! under each message in its LevelDB `db/`): varuint attestation count, the
//! attestations, varuint operation count, the operations without their
//! children. A record is parsed whole or refused with a typed error; the
//! counts are checked against the bytes left before anything is allocated,
//! so a hostile record cannot make us reserve memory it does not hold.

use ots_proof::codec::{write_varuint, Reader};
use ots_proof::{Attestation, DecodeError, Op};

/// The smallest encoded attestation: 8-byte tag and a 1-byte payload
/// length.
const MIN_ATTESTATION_LEN: usize = 9;
/// The smallest encoded operation: its tag.
const MIN_OP_LEN: usize = 1;

/// One node of a proof as the reference stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's attestations, as stored.
    pub attestations: Vec<Attestation>,
    /// The node's operations; each one's result is the key of the next
    /// node.
    pub ops: Vec<Op>,
}

impl NodeRecord {
    /// The record's bytes, as the reference writes them (in this order).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_varuint(&mut out, self.attestations.len() as u64);
        for a in &self.attestations {
            a.encode(&mut out);
        }
        write_varuint(&mut out, self.ops.len() as u64);
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}

/// Why a node record does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// An item does not decode (truncated, over a limit, unknown op).
    #[error("node record: {0}")]
    Decode(#[from] DecodeError),
    /// A count larger than the bytes that follow could hold.
    #[error("node record: {count} {what} declared, but only {left} bytes follow")]
    CountTooLarge {
        /// Attestations or operations.
        what: &'static str,
        /// The declared count.
        count: u64,
        /// The bytes left.
        left: usize,
    },
    /// The same attestation twice (the reference refuses this too).
    #[error("node record: attestation {0} twice")]
    DuplicateAttestation(String),
    /// The same operation twice (the reference refuses this too).
    #[error("node record: operation {0} twice")]
    DuplicateOp(String),
    /// Bytes after the last operation.
    #[error("node record: {0} bytes after the last operation")]
    TrailingBytes(usize),
}

/// Parses one node record.
pub fn parse(bytes: &[u8]) -> Result<NodeRecord, NodeError> {
    let mut r = Reader::new(bytes);
    let n = count(&mut r, "attestations", MIN_ATTESTATION_LEN)?;
    let mut attestations = Vec::with_capacity(n);
    for _ in 0..n {
        let a = Attestation::decode(&mut r)?;
        if attestations.contains(&a) {
            return Err(NodeError::DuplicateAttestation(a.to_string()));
        }
        attestations.push(a);
    }
    let n = count(&mut r, "operations", MIN_OP_LEN)?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let op = Op::decode(&mut r)?;
        if ops.contains(&op) {
            return Err(NodeError::DuplicateOp(op.to_string()));
        }
        ops.push(op);
    }
    if !r.is_at_end() {
        return Err(NodeError::TrailingBytes(r.remaining()));
    }
    Ok(NodeRecord { attestations, ops })
}

/// A count, refused when the bytes left cannot hold that many items.
fn count(r: &mut Reader<'_>, what: &'static str, min_len: usize) -> Result<usize, NodeError> {
    let count = r.read_varuint()?;
    let left = r.remaining();
    match usize::try_from(count) {
        Ok(n) if n <= left / min_len => Ok(n),
        _ => Err(NodeError::CountTooLarge { what, count, left }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ops_and_attestations() {
        // 1 attestation (Bitcoin at height 5), 2 ops (sha256, append 0xaa).
        let mut rec = vec![1];
        rec.extend_from_slice(&ots_proof::attestation::TAG_BITCOIN);
        rec.extend_from_slice(&[1, 5]);
        rec.extend_from_slice(&[2, 0x08, 0xf0, 1, 0xaa]);
        let node = parse(&rec).unwrap();
        assert_eq!(node.attestations, vec![Attestation::Bitcoin { height: 5 }]);
        assert_eq!(node.ops, vec![Op::Sha256, Op::append(vec![0xaa]).unwrap()]);
        assert_eq!(node.encode(), rec);
    }

    #[test]
    fn refuses_bad_records() {
        assert!(matches!(parse(&[]), Err(NodeError::Decode(_))));
        assert!(matches!(
            parse(&[0xff, 0xff, 0xff, 0x0f]),
            Err(NodeError::CountTooLarge { .. })
        ));
        assert!(matches!(
            parse(&[0, 1, 0x08, 0]),
            Err(NodeError::TrailingBytes(1))
        ));
        assert!(matches!(
            parse(&[0, 2, 0x08, 0x08]),
            Err(NodeError::DuplicateOp(_))
        ));
        assert!(matches!(parse(&[0, 1, 0x77]), Err(NodeError::Decode(_))));
    }

    #[test]
    fn unknown_tags_are_kept_and_overlong_items_refused() {
        // An attestation of an unknown tag is kept byte for byte.
        let mut rec = vec![1];
        rec.extend_from_slice(&[0x42; 8]);
        rec.extend_from_slice(&[3, 1, 2, 3, 0]);
        let node = parse(&rec).unwrap();
        assert_eq!(node.attestations.len(), 1);
        assert_eq!(node.encode(), rec);
        // A payload over 8192 bytes, its length alone given.
        let mut rec = vec![1];
        rec.extend_from_slice(&[0x42; 8]);
        rec.extend_from_slice(&[0x81, 0x40]);
        rec.extend_from_slice(&[0; 9000]);
        assert!(matches!(parse(&rec), Err(NodeError::Decode(_))));
        // An append argument over 4096 bytes.
        let mut rec = vec![0, 1, 0xf0, 0x81, 0x20];
        rec.extend_from_slice(&[0; 4097]);
        assert!(matches!(parse(&rec), Err(NodeError::Decode(_))));
        // A varuint of eleven bytes, and one over 64 bits.
        let mut rec = vec![0x80; 10];
        rec.push(0);
        assert!(matches!(parse(&rec), Err(NodeError::Decode(_))));
        let mut rec = vec![0xff; 9];
        rec.push(0x02);
        assert!(matches!(parse(&rec), Err(NodeError::Decode(_))));
        // A Bitcoin attestation whose payload has bytes left over.
        let mut rec = vec![1];
        rec.extend_from_slice(&ots_proof::attestation::TAG_BITCOIN);
        rec.extend_from_slice(&[2, 5, 0, 0]);
        assert!(matches!(parse(&rec), Err(NodeError::Decode(_))));
    }
}
