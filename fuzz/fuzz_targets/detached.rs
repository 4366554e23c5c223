//! Fuzz target: detached `.ots` files. Decoding arbitrary bytes must never
//! panic; whatever decodes must re-encode, and the re-encoding must decode to
//! the same proof and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ots_proof::DetachedTimestampFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = DetachedTimestampFile::deserialize(data) {
        let encoded = file.serialize().expect("a decoded proof has no empty node");
        let again = DetachedTimestampFile::deserialize(&encoded).expect("re-encoding decodes");
        assert_eq!(again, file);
        assert_eq!(again.serialize().expect("re-encodes"), encoded);
        // Display walks the whole tree; it must not panic either.
        let _ = ots_proof::display::info(&file, true);
    }
});
