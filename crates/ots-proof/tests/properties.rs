//! Property tests: random trees round-trip through their encoding, merge is
//! idempotent and order-independent, and every Merkle path reaches the root.

use ots_proof::op::sha256;
use ots_proof::{Attestation, MerkleTree, Op, Timestamp};
use proptest::prelude::*;

/// A tree shape to be built on some message; operations that are invalid
/// for the message they meet are skipped while building.
#[derive(Debug, Clone)]
struct Shape {
    attestations: Vec<Attestation>,
    children: Vec<(Op, Shape)>,
}

fn attestation() -> impl Strategy<Value = Attestation> {
    prop_oneof![
        "[a-z0-9.:/-]{0,40}".prop_map(|uri| Attestation::pending(uri).unwrap()),
        any::<u64>().prop_map(|height| Attestation::Bitcoin { height }),
        any::<u64>().prop_map(|height| Attestation::Litecoin { height }),
        any::<u64>().prop_map(|height| Attestation::Ethereum { height }),
        (any::<[u8; 8]>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_filter("unknown tags only", |(tag, _)| {
                ![
                    ots_proof::attestation::TAG_PENDING,
                    ots_proof::attestation::TAG_BITCOIN,
                    ots_proof::attestation::TAG_LITECOIN,
                    ots_proof::attestation::TAG_ETHEREUM,
                ]
                .contains(tag)
            })
            .prop_map(|(tag, payload)| Attestation::Unknown { tag, payload }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Sha1),
        Just(Op::Ripemd160),
        Just(Op::Sha256),
        Just(Op::Keccak256),
        prop::collection::vec(any::<u8>(), 1..48).prop_map(Op::Append),
        prop::collection::vec(any::<u8>(), 1..48).prop_map(Op::Prepend),
        Just(Op::Reverse),
        Just(Op::Hexlify),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    let leaf = prop::collection::vec(attestation(), 1..3).prop_map(|attestations| Shape {
        attestations,
        children: Vec::new(),
    });
    leaf.prop_recursive(6, 64, 4, |inner| {
        (
            prop::collection::vec(attestation(), 0..3),
            prop::collection::vec((op(), inner), 0..4),
        )
            .prop_map(|(attestations, children)| Shape {
                attestations,
                children,
            })
    })
}

fn build(node: &mut Timestamp, shape: &Shape) {
    for a in &shape.attestations {
        node.add_attestation(a.clone());
    }
    for (op, child_shape) in &shape.children {
        if let Ok(child) = node.add_op(op.clone()) {
            build(child, child_shape);
        }
    }
    // Building may leave a node empty (all its ops invalid here, or a
    // branch whose every leaf was skipped); the format cannot encode that.
    fill_empty(node);
}

fn fill_empty(node: &mut Timestamp) {
    if node.ops().len() == 0 && node.attestations().is_empty() {
        node.add_attestation(Attestation::Bitcoin { height: 0 });
    }
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (prop::collection::vec(any::<u8>(), 0..64), shape()).prop_map(|(msg, shape)| {
        let mut t = Timestamp::new(msg).unwrap();
        build(&mut t, &shape);
        t
    })
}

/// Two trees over the same message.
fn timestamp_pair() -> impl Strategy<Value = (Timestamp, Timestamp, Timestamp)> {
    (
        prop::collection::vec(any::<u8>(), 1..40),
        shape(),
        shape(),
        shape(),
    )
        .prop_map(|(msg, a, b, c)| {
            let make = |s: &Shape| {
                let mut t = Timestamp::new(msg.clone()).unwrap();
                build(&mut t, s);
                t
            };
            (make(&a), make(&b), make(&c))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_trees_round_trip(t in timestamp()) {
        let bytes = t.serialize().unwrap();
        let back = Timestamp::deserialize(&bytes, t.msg()).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.serialize().unwrap(), bytes);
    }

    #[test]
    fn merge_is_idempotent_and_order_independent((a, b, c) in timestamp_pair()) {
        let mut aa = a.clone();
        aa.merge(a.clone()).unwrap();
        prop_assert_eq!(&aa, &a);

        let mut ab = a.clone();
        ab.merge(b.clone()).unwrap();
        let mut ba = b.clone();
        ba.merge(a.clone()).unwrap();
        prop_assert_eq!(&ab, &ba);

        // (a + b) + c == a + (b + c)
        let mut ab_c = ab.clone();
        ab_c.merge(c.clone()).unwrap();
        let mut bc = b.clone();
        bc.merge(c).unwrap();
        let mut a_bc = a.clone();
        a_bc.merge(bc).unwrap();
        prop_assert_eq!(&ab_c, &a_bc);

        // Merging again changes nothing, and the merge keeps every
        // attestation of both sides.
        let mut again = ab.clone();
        again.merge(b.clone()).unwrap();
        prop_assert_eq!(&again, &ab);
        let count = |t: &Timestamp| t.all_attestations().len();
        prop_assert!(count(&ab) >= count(&a).max(count(&b)));
    }

    #[test]
    fn merkle_paths_reach_the_root(n in 1usize..300, seed in any::<u64>()) {
        let leaves: Vec<[u8; 32]> =
            (0..n as u64).map(|i| sha256(&(seed ^ i).to_le_bytes())).collect();
        let tree = MerkleTree::new(leaves.clone()).unwrap();
        for (i, leaf) in leaves.iter().enumerate() {
            let mut t = Timestamp::new(leaf.to_vec()).unwrap();
            let end = t.add_path(tree.path(i).unwrap()).unwrap();
            let root = tree.root();
            prop_assert_eq!(end.msg(), root.as_slice());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), msg in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(t) = Timestamp::deserialize(&bytes, &msg) {
            // Whatever decodes re-encodes, and decodes to the same tree.
            let again = t.serialize().unwrap();
            prop_assert_eq!(Timestamp::deserialize(&again, &msg).unwrap(), t);
        }
        let _ = ots_proof::DetachedTimestampFile::deserialize(&bytes);
    }
}
