//! Fuzz target: the request heads the aggregator's fast path reads
//! (otsd's `listener::fast::parse`). It must never panic; a head it takes
//! is one httparse parses whole, of the length it says, with a body in
//! the digest's bounds; anything it refuses is left to hyper. Whatever
//! follows a head it takes (the body, a pipelined request) changes
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otsd::aggregator::MAX_DIGEST_LEN;
use otsd::listener::fast;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(plain)) = fast::parse(data) else {
        return;
    };
    assert!(plain.head_len <= data.len());
    assert!(plain.body_len <= MAX_DIGEST_LEN);
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    assert_eq!(
        req.parse(&data[..plain.head_len]),
        Ok(httparse::Status::Complete(plain.head_len))
    );
    assert_eq!(fast::parse(&data[..plain.head_len]), Ok(Some(plain)));
});
