//! Fuzz target: bare timestamps, as calendars send them. The first byte
//! chooses the length of the message the timestamp starts from (taken from
//! the next bytes), the rest is the serialized tree. Decoding must never
//! panic; whatever decodes must re-encode to bytes that decode to the same
//! tree and re-encode identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ots_proof::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else { return };
    let len = usize::from(len % 65).min(rest.len());
    let (msg, body) = rest.split_at(len);
    if let Ok(timestamp) = Timestamp::deserialize(body, msg) {
        let encoded = timestamp.serialize().expect("a decoded tree has no empty node");
        let again = Timestamp::deserialize(&encoded, msg).expect("re-encoding decodes");
        assert_eq!(again, timestamp);
        assert_eq!(again.serialize().expect("re-encodes"), encoded);
        for (msg, attestation) in timestamp.all_attestations() {
            let _ = (msg.len(), attestation.to_string());
        }
        let _ = ots_proof::display::tree(&timestamp, false);
    }
});
