//! The timestamp tree: a message, the attestations made on it, and the
//! operations leading from it to further messages, each with its own tree.
//!
//! # Encoding of a node
//!
//! A node is a sequence of items: each attestation (sorted), then each
//! operation with the child node it leads to (sorted by tag, then argument).
//! Every item but the last is prefixed with `0xff`. An attestation item is
//! `0x00` followed by the attestation; an operation item is the operation
//! (tag and argument) followed by the child's encoding. A node without any
//! item has no encoding.
//!
//! The encoding does not carry messages: the decoder is given the root's
//! message and recomputes every child's message by applying the operation,
//! so every limit of [`Op::apply`] is checked while decoding, and a decoded
//! tree is consistent by construction.
//!
//! Nesting is limited to [`MAX_DEPTH`] nodes from the root (the reference's
//! recursion limit), which bounds the decoder's stack.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use crate::attestation::Attestation;
use crate::codec::Reader;
use crate::error::{DecodeError, DecodeErrorKind, EncodeError, MergeError, OpError};
use crate::op::{Op, MAX_MSG_LENGTH};

/// How many nodes deep a decoded tree may be, root included.
pub const MAX_DEPTH: usize = 256;

/// Prefix of every item of a node but its last.
const MORE_ITEMS: u8 = 0xff;
/// Marks an attestation item.
const ATTESTATION_ITEM: u8 = 0x00;

/// A timestamp: a proof that one or more attestations commit to `msg`.
///
/// The invariant (each child's message is its operation applied to the
/// parent's message) is kept by construction: children are only created by
/// [`Timestamp::add_op`], which applies the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    msg: Vec<u8>,
    attestations: BTreeSet<Attestation>,
    ops: BTreeMap<Op, Timestamp>,
}

impl Timestamp {
    /// An empty timestamp of `msg`. Messages longer than
    /// [`MAX_MSG_LENGTH`] are refused: no operation could be applied to them.
    pub fn new(msg: impl Into<Vec<u8>>) -> Result<Timestamp, OpError> {
        let msg = msg.into();
        if msg.len() > MAX_MSG_LENGTH {
            return Err(OpError::MessageTooLong {
                op: "timestamp",
                len: msg.len(),
                max: MAX_MSG_LENGTH,
            });
        }
        Ok(Timestamp::with_valid_msg(msg))
    }

    /// A timestamp of a message already known to be within the limit.
    pub(crate) fn with_valid_msg(msg: Vec<u8>) -> Timestamp {
        Timestamp {
            msg,
            attestations: BTreeSet::new(),
            ops: BTreeMap::new(),
        }
    }

    /// The message this node commits to.
    pub fn msg(&self) -> &[u8] {
        &self.msg
    }

    /// The attestations made directly on this node's message, in order.
    pub fn attestations(&self) -> &BTreeSet<Attestation> {
        &self.attestations
    }

    /// Adds an attestation on this node's message; false if it was there.
    pub fn add_attestation(&mut self, attestation: Attestation) -> bool {
        self.attestations.insert(attestation)
    }

    /// Removes an attestation; false if it was not there.
    pub fn remove_attestation(&mut self, attestation: &Attestation) -> bool {
        self.attestations.remove(attestation)
    }

    /// The operations leaving this node, each with its child, in order.
    pub fn ops(&self) -> impl ExactSizeIterator<Item = (&Op, &Timestamp)> {
        self.ops.iter()
    }

    /// The child reached by `op`, if present.
    pub fn child(&self, op: &Op) -> Option<&Timestamp> {
        self.ops.get(op)
    }

    /// The child reached by `op`, mutable, if present.
    pub fn child_mut(&mut self, op: &Op) -> Option<&mut Timestamp> {
        self.ops.get_mut(op)
    }

    /// Removes the branch starting with `op` and returns it.
    pub fn remove_op(&mut self, op: &Op) -> Option<Timestamp> {
        self.ops.remove(op)
    }

    /// Whether the node has neither attestations nor operations.
    pub fn is_empty(&self) -> bool {
        self.attestations.is_empty() && self.ops.is_empty()
    }

    /// Adds the operation `op` (applying it to this node's message) and
    /// returns the child it leads to; an existing child is returned as is.
    pub fn add_op(&mut self, op: Op) -> Result<&mut Timestamp, OpError> {
        match self.ops.entry(op) {
            Entry::Occupied(existing) => Ok(existing.into_mut()),
            Entry::Vacant(slot) => {
                let result = slot.key().apply(&self.msg)?;
                Ok(slot.insert(Timestamp::with_valid_msg(result)))
            }
        }
    }

    /// Adds a chain of operations and returns the node at its end.
    pub fn add_path<I>(&mut self, ops: I) -> Result<&mut Timestamp, OpError>
    where
        I: IntoIterator<Item = Op>,
    {
        let mut node = self;
        for op in ops {
            node = node.add_op(op)?;
        }
        Ok(node)
    }

    /// Follows a chain of existing operations; `None` if one is missing.
    pub fn follow<'a, I>(&self, ops: I) -> Option<&Timestamp>
    where
        I: IntoIterator<Item = &'a Op>,
    {
        let mut node = self;
        for op in ops {
            node = node.ops.get(op)?;
        }
        Some(node)
    }

    /// Adds every attestation and operation of `other` (a timestamp of the
    /// same message) to this one. Idempotent and order-independent.
    pub fn merge(&mut self, other: Timestamp) -> Result<(), MergeError> {
        if self.msg != other.msg {
            return Err(MergeError::DifferentMessages {
                ours: hex::encode(&self.msg),
                theirs: hex::encode(&other.msg),
            });
        }
        self.merge_unchecked(other);
        Ok(())
    }

    /// Merge of two nodes known to share a message: children reached by the
    /// same operation from the same message share theirs too.
    fn merge_unchecked(&mut self, other: Timestamp) {
        self.attestations.extend(other.attestations);
        for (op, theirs) in other.ops {
            match self.ops.get_mut(&op) {
                Some(ours) => ours.merge_unchecked(theirs),
                None => {
                    self.ops.insert(op, theirs);
                }
            }
        }
    }

    /// Every (message, attestation) pair in the tree, depth first, in
    /// serialization order.
    pub fn all_attestations(&self) -> Vec<(&[u8], &Attestation)> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            out.extend(node.attestations.iter().map(|a| (node.msg.as_slice(), a)));
            stack.extend(node.ops.values().rev());
        }
        out
    }

    /// Every attestation with the path of operations that reaches it from
    /// this node.
    pub fn attestation_paths(&self) -> Vec<(Vec<&Op>, &Attestation)> {
        let mut out = Vec::new();
        let mut stack: Vec<(Vec<&Op>, &Timestamp)> = vec![(Vec::new(), self)];
        while let Some((path, node)) = stack.pop() {
            out.extend(node.attestations.iter().map(|a| (path.clone(), a)));
            for (op, child) in node.ops.iter().rev() {
                let mut child_path = path.clone();
                child_path.push(op);
                stack.push((child_path, child));
            }
        }
        out
    }

    /// The serialized tree.
    pub fn serialize(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.serialize_into(&mut out)?;
        Ok(out)
    }

    /// Appends the serialized tree to `out`. On error `out` may hold a
    /// partial encoding.
    pub fn serialize_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.is_empty() {
            return Err(EncodeError::EmptyNode {
                msg: hex::encode(&self.msg),
            });
        }
        let items = self.attestations.len() + self.ops.len();
        let mut index = 0;
        let mut separator = |out: &mut Vec<u8>| {
            index += 1;
            if index < items {
                out.push(MORE_ITEMS);
            }
        };
        for attestation in &self.attestations {
            separator(out);
            out.push(ATTESTATION_ITEM);
            attestation.encode(out);
        }
        for (op, child) in &self.ops {
            separator(out);
            op.encode(out);
            child.serialize_into(out)?;
        }
        Ok(())
    }

    /// Decodes a bare timestamp of `msg` (a calendar reply, for instance)
    /// that must fill `bytes` exactly.
    pub fn deserialize(bytes: &[u8], msg: &[u8]) -> Result<Timestamp, DecodeError> {
        Timestamp::deserialize_bounded(bytes, msg, usize::MAX)
    }

    /// [`Timestamp::deserialize`], refusing as soon as the messages of the
    /// nodes decoded so far hold more than `max_message_bytes` together
    /// (the root's included), so that a short hostile input cannot make the
    /// decoder hold much more than that: the bound, plus the one result
    /// being checked and each node's fixed overhead. A repeated operation's
    /// branch counts before it is merged, so the count may exceed what the
    /// merged tree holds.
    pub fn deserialize_bounded(
        bytes: &[u8],
        msg: &[u8],
        max_message_bytes: usize,
    ) -> Result<Timestamp, DecodeError> {
        let mut reader = Reader::new(bytes);
        let timestamp = Timestamp::decode_bounded(&mut reader, msg, max_message_bytes)?;
        reader.expect_end()?;
        Ok(timestamp)
    }

    /// Decodes a timestamp of `msg` from `reader`, leaving it just after.
    pub fn decode(reader: &mut Reader<'_>, msg: &[u8]) -> Result<Timestamp, DecodeError> {
        Timestamp::decode_bounded(reader, msg, usize::MAX)
    }

    /// [`Timestamp::decode`] within a bound on the bytes of all messages
    /// (see [`Timestamp::deserialize_bounded`]).
    pub fn decode_bounded(
        reader: &mut Reader<'_>,
        msg: &[u8],
        max_message_bytes: usize,
    ) -> Result<Timestamp, DecodeError> {
        if msg.len() > MAX_MSG_LENGTH {
            return Err(reader.error(DecodeErrorKind::MessageTooLong {
                len: msg.len(),
                max: MAX_MSG_LENGTH,
            }));
        }
        let mut budget = Budget {
            left: max_message_bytes,
            max: max_message_bytes,
        };
        budget.take(reader, msg.len())?;
        Timestamp::decode_node(reader, msg.to_vec(), 1, &mut budget)
    }

    fn decode_node(
        reader: &mut Reader<'_>,
        msg: Vec<u8>,
        depth: usize,
        budget: &mut Budget,
    ) -> Result<Timestamp, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(reader.error(DecodeErrorKind::TooDeep(MAX_DEPTH)));
        }
        let mut node = Timestamp::with_valid_msg(msg);
        loop {
            let mut tag = reader.read_u8()?;
            let more = tag == MORE_ITEMS;
            if more {
                tag = reader.read_u8()?;
            }
            let item_offset = reader.offset() - 1;
            if tag == ATTESTATION_ITEM {
                node.attestations.insert(Attestation::decode(reader)?);
            } else {
                let op = Op::decode_after_tag(reader, tag, item_offset)?;
                let result = op
                    .apply(&node.msg)
                    .map_err(|e| reader.error_at(item_offset, e.into()))?;
                budget.take(reader, result.len())?;
                let child = Timestamp::decode_node(reader, result, depth + 1, budget)?;
                // The reference replaces a repeated operation's branch; we
                // merge it, so that no attestation in the input is dropped.
                match node.ops.get_mut(&op) {
                    Some(existing) => existing.merge_unchecked(child),
                    None => {
                        node.ops.insert(op, child);
                    }
                }
            }
            if !more {
                return Ok(node);
            }
        }
    }
}

/// What is left of a decode's bound on message bytes.
struct Budget {
    left: usize,
    max: usize,
}

impl Budget {
    fn take(&mut self, reader: &Reader<'_>, n: usize) -> Result<(), DecodeError> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(reader.error(DecodeErrorKind::TooManyMessageBytes { max: self.max })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(uri: &str) -> Attestation {
        Attestation::pending(uri).unwrap()
    }

    /// The bytes of every node's message, the root's included.
    fn message_bytes(t: &Timestamp) -> usize {
        t.ops()
            .fold(t.msg().len(), |sum, (_, child)| sum + message_bytes(child))
    }

    #[test]
    fn a_bound_on_message_bytes_holds_exactly() {
        // Two branches, one through a 4,000-byte message kept whole by
        // reverses: 33 bytes of root, then 4,033 per node on that path.
        let mut t = Timestamp::new(vec![7; 33]).unwrap();
        t.add_path(
            std::iter::once(Op::Append(vec![0xbb; 4000]))
                .chain(std::iter::repeat_n(Op::Reverse, 20)),
        )
        .unwrap()
        .add_attestation(pending("https://a.test"));
        t.add_op(Op::Sha256)
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 9 });
        let bytes = t.serialize().unwrap();
        let held = message_bytes(&t);
        assert_eq!(held, 33 + 21 * 4033 + 32);
        assert_eq!(
            Timestamp::deserialize_bounded(&bytes, &[7; 33], held).unwrap(),
            t
        );
        let e = Timestamp::deserialize_bounded(&bytes, &[7; 33], held - 1).unwrap_err();
        assert_eq!(
            e.kind,
            DecodeErrorKind::TooManyMessageBytes { max: held - 1 }
        );
        assert_eq!(Timestamp::deserialize(&bytes, &[7; 33]).unwrap(), t);
    }

    #[test]
    fn single_attestation_encoding() {
        let mut t = Timestamp::new(b"hello".to_vec()).unwrap();
        t.add_attestation(Attestation::Bitcoin { height: 1 });
        assert_eq!(
            hex::encode(t.serialize().unwrap()),
            "000588960d73d719010101"
        );
        assert_eq!(
            Timestamp::deserialize(&t.serialize().unwrap(), b"hello").unwrap(),
            t
        );
    }

    #[test]
    fn items_are_sorted_and_separated() {
        let mut t = Timestamp::new(b"m".to_vec()).unwrap();
        t.add_op(Op::Sha256).unwrap().add_attestation(pending("b"));
        t.add_op(Op::append(vec![1]).unwrap())
            .unwrap()
            .add_attestation(pending("a"));
        t.add_attestation(Attestation::Bitcoin { height: 7 });
        let bytes = t.serialize().unwrap();
        // ff 00 <bitcoin>, ff 08 <child>, f0 01 01 <child>
        assert_eq!(&bytes[..2], &[0xff, 0x00]);
        let sha_item = 2 + 8 + 2;
        assert_eq!(&bytes[sha_item..sha_item + 2], &[0xff, 0x08]);
        let back = Timestamp::deserialize(&bytes, b"m").unwrap();
        assert_eq!(back, t);
        assert_eq!(back.serialize().unwrap(), bytes);
    }

    #[test]
    fn empty_node_cannot_be_serialized() {
        let mut t = Timestamp::new(b"m".to_vec()).unwrap();
        assert!(matches!(t.serialize(), Err(EncodeError::EmptyNode { .. })));
        t.add_op(Op::Sha256).unwrap();
        assert!(matches!(t.serialize(), Err(EncodeError::EmptyNode { .. })));
    }

    #[test]
    fn merge_combines_branches() {
        let mut a = Timestamp::new(b"m".to_vec()).unwrap();
        a.add_path([Op::Sha256, Op::Reverse])
            .unwrap()
            .add_attestation(pending("a"));
        let mut b = Timestamp::new(b"m".to_vec()).unwrap();
        b.add_path([Op::Sha256, Op::Hexlify])
            .unwrap()
            .add_attestation(pending("b"));
        a.merge(b).unwrap();
        assert_eq!(a.all_attestations().len(), 2);
        assert_eq!(a.child(&Op::Sha256).unwrap().ops().len(), 2);
        let other = Timestamp::new(b"x".to_vec()).unwrap();
        assert!(matches!(
            a.merge(other),
            Err(MergeError::DifferentMessages { .. })
        ));
    }

    #[test]
    fn all_attestations_reports_messages() {
        let mut t = Timestamp::new(b"m".to_vec()).unwrap();
        t.add_path([Op::Sha256])
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 3 });
        let all = t.all_attestations();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, crate::op::sha256(b"m"));
        let paths = t.attestation_paths();
        assert_eq!(paths[0].0, vec![&Op::Sha256]);
    }

    #[test]
    fn depth_limit() {
        // A chain of n nodes: n-1 reverse ops, then an attestation.
        let chain = |n: usize| {
            let mut bytes = vec![0xf2; n - 1];
            bytes.push(0x00);
            Attestation::Bitcoin { height: 0 }.encode(&mut bytes);
            bytes
        };
        assert!(Timestamp::deserialize(&chain(MAX_DEPTH), b"ab").is_ok());
        let err = Timestamp::deserialize(&chain(MAX_DEPTH + 1), b"ab").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TooDeep(MAX_DEPTH));
        assert_eq!(err.offset, MAX_DEPTH);
    }

    #[test]
    fn op_invalid_for_message_names_the_op() {
        // hexlify of an empty message
        let err = Timestamp::deserialize(&[0xf3, 0x00], b"").unwrap_err();
        assert_eq!(err.offset, 0);
        assert_eq!(
            err.kind,
            DecodeErrorKind::Op(OpError::EmptyMessage { op: "hexlify" })
        );
    }

    #[test]
    fn truncation_and_trailing_bytes() {
        let mut t = Timestamp::new(b"m".to_vec()).unwrap();
        t.add_attestation(pending("https://a.example"));
        let bytes = t.serialize().unwrap();
        for len in 0..bytes.len() {
            let err = Timestamp::deserialize(&bytes[..len], b"m").unwrap_err();
            assert!(
                matches!(err.kind, DecodeErrorKind::Truncated { .. }),
                "length {len}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = Timestamp::deserialize(&longer, b"m").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes { count: 1 });
    }

    #[test]
    fn repeated_op_in_input_is_merged_not_dropped() {
        let mut bytes = vec![0xff, 0x08, 0x00];
        pending("a").encode(&mut bytes);
        bytes.extend([0x08, 0x00]);
        pending("b").encode(&mut bytes);
        let t = Timestamp::deserialize(&bytes, b"m").unwrap();
        assert_eq!(t.child(&Op::Sha256).unwrap().attestations().len(), 2);
    }

    #[test]
    fn long_message_is_refused() {
        assert!(Timestamp::new(vec![0; MAX_MSG_LENGTH + 1]).is_err());
        let err = Timestamp::deserialize(&[0], &[0; MAX_MSG_LENGTH + 1]).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::MessageTooLong { .. }));
    }
}
