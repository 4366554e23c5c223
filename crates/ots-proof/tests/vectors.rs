//! The shared test vectors: real proofs published with the reference client,
//! what its `ots info` prints for them, and the header of block 358391.

use std::fs;
use std::path::{Path, PathBuf};

use ots_proof::display::info;
use ots_proof::verify::verify_bitcoin_header_bytes;
use ots_proof::{Attestation, DecodeErrorKind, DetachedTimestampFile, OpError};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn valid_examples() -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(data().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ots"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 10, "expected the ten valid examples");
    files
}

#[test]
fn valid_examples_round_trip_byte_for_byte() {
    for path in valid_examples() {
        let bytes = fs::read(&path).unwrap();
        let file = DetachedTimestampFile::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(file.serialize().unwrap(), bytes, "{}", path.display());
    }
}

#[test]
fn file_digests_match_the_stamped_files() {
    for path in valid_examples() {
        let file = DetachedTimestampFile::deserialize(&fs::read(&path).unwrap()).unwrap();
        let stamped = fs::read(path.with_extension("")).unwrap();
        assert_eq!(
            file.hash_op().digest(&stamped),
            file.file_digest(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn display_equals_reference_ots_info() {
    for path in valid_examples() {
        let file = DetachedTimestampFile::deserialize(&fs::read(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let expected =
            fs::read_to_string(data().join("expected-info").join(format!("{name}.txt"))).unwrap();
        assert_eq!(info(&file, false), expected, "{name}");
    }
}

#[test]
fn invalid_examples_are_rejected_with_a_named_reason() {
    let cases = [
        ("bad-major-version.ots", "unsupported major version 255"),
        (
            "exceeds-max-msg-length.ots",
            "result of append too long: 4112 > 4096 bytes",
        ),
        (
            "invalid-file-digest-type.ots",
            "file digest op tag 0xf3 is not a hash operation",
        ),
    ];
    for (name, reason) in cases {
        let bytes = fs::read(data().join("examples/invalid").join(name)).unwrap();
        let err = DetachedTimestampFile::deserialize(&bytes).unwrap_err();
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }
    let err = DetachedTimestampFile::deserialize(
        &fs::read(data().join("examples/invalid/exceeds-max-msg-length.ots")).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err.kind,
        DecodeErrorKind::Op(OpError::ResultTooLong {
            op: "append",
            len: 4112,
            max: 4096
        })
    );
}

#[test]
fn hello_world_verifies_against_block_358391() {
    let file = DetachedTimestampFile::deserialize(
        &fs::read(data().join("examples/hello-world.txt.ots")).unwrap(),
    )
    .unwrap();
    let header = hex::decode(
        fs::read_to_string(data().join("block-358391.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let bitcoin: Vec<_> = file
        .timestamp()
        .all_attestations()
        .into_iter()
        .filter(|(_, a)| matches!(a, Attestation::Bitcoin { .. }))
        .collect();
    assert_eq!(bitcoin.len(), 1);
    let (msg, attestation) = bitcoin[0];
    assert_eq!(attestation, &Attestation::Bitcoin { height: 358391 });
    assert_eq!(verify_bitcoin_header_bytes(msg, &header), Ok(1_432_827_678));
    // And the other messages of the proof do not verify against it.
    assert!(verify_bitcoin_header_bytes(file.file_digest(), &header).is_err());
}

#[test]
fn every_truncation_of_every_example_is_an_error() {
    for path in valid_examples() {
        let bytes = fs::read(&path).unwrap();
        for len in 0..bytes.len() {
            assert!(
                DetachedTimestampFile::deserialize(&bytes[..len]).is_err(),
                "{} truncated to {len}",
                path.display()
            );
        }
    }
}

#[test]
fn unknown_attestations_are_kept() {
    let bytes = fs::read(data().join("examples/known-and-unknown-notary.txt.ots")).unwrap();
    let file = DetachedTimestampFile::deserialize(&bytes).unwrap();
    let unknown: Vec<_> = file
        .timestamp()
        .all_attestations()
        .into_iter()
        .filter_map(|(_, a)| match a {
            Attestation::Unknown { tag, payload } => Some((*tag, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(unknown, vec![([1, 2, 3, 4, 5, 6, 7, 8], vec![b'x'; 46])]);
}
