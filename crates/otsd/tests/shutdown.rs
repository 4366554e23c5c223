//! Graceful shutdown: requests waiting for their round get their proof
//! (the round is flushed to disk first) or an error, never a proof of a
//! commitment that is not on disk; afterwards the port is closed.

mod common;

use std::time::Duration;

use common::*;
use otsd::config::Settings;
use otsd::journal::JournalReader;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn shutdown_flushes_the_waiting_round() {
    // A round that would not come for a minute: only shutdown flushes it.
    let server = TestServer::start(Settings {
        aggregation_interval: Duration::from_secs(60),
        ..Settings::default()
    })
    .await;
    let addr = server.addr;
    let cal = server.calendar_dir();
    let mut conns = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let d = random_digest();
        s.write_all(&post_request(&d)).await.unwrap();
        conns.push((d, s));
    }
    // Let the requests reach the aggregator (not a correctness condition:
    // a request that has not is answered 503 or closed, checked below).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting: Vec<_> = conns
        .into_iter()
        .map(|(d, mut s)| tokio::spawn(async move { (d, read_response(&mut s).await) }))
        .collect();
    let _dir = server.stop().await.unwrap();

    let journal = JournalReader::open(&cal)
        .unwrap()
        .read_range(0, usize::MAX)
        .unwrap();
    let mut proofs = 0;
    for w in waiting {
        let (d, r) = w.await.unwrap();
        match r {
            Some(r) if r.status == 200 => {
                let c = check_proof(&d, &r.body);
                assert!(
                    journal.iter().any(|j| j.as_slice() == c),
                    "acknowledged but not on disk"
                );
                proofs += 1;
            }
            Some(r) => assert_eq!(r.status, 503, "{}", r.text()),
            None => {}
        }
    }
    assert!(proofs > 0, "the waiting round was flushed and answered");
    assert_eq!(journal.len(), 1, "one round, one record");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
