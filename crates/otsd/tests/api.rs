//! The HTTP API of PROTOCOL §2 against a real server on 127.0.0.1:0.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use otsd::calendar::{Calendar, KeyDeriver};
use otsd::config::Settings;
use otsd::journal::JournalReader;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn fast() -> Settings {
    Settings {
        aggregation_interval: Duration::from_millis(50),
        ..Settings::default()
    }
}

fn journal(server: &TestServer) -> Vec<[u8; 44]> {
    let r = JournalReader::open(&server.calendar_dir()).unwrap();
    r.read_range(0, usize::MAX).unwrap()
}

#[tokio::test]
async fn post_digest_returns_a_pending_proof_whose_commitment_is_journaled() {
    let server = TestServer::start(fast()).await;
    let digest = random_digest();
    let resp = post_digest(server.addr, &digest).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    let commitment = check_proof(&digest, &resp.body);

    // In the journal, with a MAC made with the calendar's key.
    let records = journal(&server);
    let record = records
        .iter()
        .find(|r| r.as_slice() == commitment)
        .expect("commitment journaled");
    let cal = Calendar::open(&server.calendar_dir()).unwrap();
    assert!(KeyDeriver::new(cal.key).verify(record));

    // Asked for right away: pending, not "Not found".
    let r = get(
        server.addr,
        &format!("/timestamp/{}", hex::encode(&commitment)),
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "Pending confirmation in Bitcoin blockchain");
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));

    // The 64-byte maximum and the empty digest are both accepted.
    for digest in [vec![7u8; 64], Vec::new()] {
        let resp = post_digest(server.addr, &digest).await;
        assert_eq!(resp.status, 200);
        check_proof(&digest, &resp.body);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_thousand_concurrent_posts_share_one_commitment() {
    a_thousand_concurrent_posts(Settings::default().http_threads).await;
}

/// Replies handed to three HTTP threads, each getting its share.
#[tokio::test]
async fn a_thousand_concurrent_posts_on_three_http_threads() {
    a_thousand_concurrent_posts(3).await;
}

/// Without HTTP threads: connections served on the caller's runtime.
#[tokio::test]
async fn a_thousand_concurrent_posts_on_the_callers_runtime() {
    a_thousand_concurrent_posts(0).await;
}

async fn a_thousand_concurrent_posts(http_threads: usize) {
    const N: usize = 1000;
    let server = TestServer::start(Settings {
        aggregation_interval: Duration::from_secs(5),
        http_threads,
        ..Settings::default()
    })
    .await;
    // Connect everyone first, so the requests themselves go out at once.
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // A warm-up round: its reply comes right after a tick, which leaves a
    // whole interval for the 1000 requests to arrive.
    let warm = post_digest(server.addr, &random_digest()).await;
    assert_eq!(warm.status, 200);
    let before = journal(&server).len();

    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let digest = random_digest();
                s.write_all(&post_request(&digest)).await.unwrap();
                let r = read_response(&mut s).await.expect("a response");
                (digest, r)
            })
        })
        .collect();
    let mut commitments = HashSet::new();
    for t in tasks {
        let (digest, r) = t.await.unwrap();
        assert_eq!(r.status, 200);
        commitments.insert(check_proof(&digest, &r.body));
    }
    assert_eq!(commitments.len(), 1, "one commitment for the round");
    let records = journal(&server);
    assert_eq!(
        records.len(),
        before + 1,
        "one journal record for the round"
    );
    assert_eq!(
        records.last().unwrap().to_vec(),
        *commitments.iter().next().unwrap()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn post_digest_errors() {
    let server = TestServer::start(fast()).await;
    let a = server.addr;
    let base = "POST /digest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";

    // No Content-Length at all.
    let r = raw(a, format!("{base}\r\n").as_bytes()).await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "invalid Content-Length")
    );
    // Chunked, no Content-Length.
    let r = raw(
        a,
        format!("{base}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "invalid Content-Length")
    );
    // Not a number: refused by the HTTP parser itself (400, no body).
    let r = raw(a, format!("{base}Content-Length: abc\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    // 65 bytes announced: refused before the body is read (none is sent).
    let r = raw(a, format!("{base}Content-Length: 65\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (400, "digest too long"));
    let r = raw(
        a,
        format!("{base}Content-Length: 1000000000\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (400, "digest too long"));
    // Body shorter than announced, then the client half-closes.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(format!("{base}Content-Length: 32\r\n\r\nshort").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (400, "incomplete body"));

    // Still serving.
    assert_eq!(post_digest(a, &random_digest()).await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn get_routes_statuses_bodies_and_cache_control() {
    let server = TestServer::start(fast()).await;
    let a = server.addr;

    for bad in ["zz", "abc", "0g"] {
        let r = get(a, &format!("/timestamp/{bad}"), "").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "commitment must be hex-encoded bytes")
        );
        assert_eq!(r.header("cache-control"), Some("public, max-age=31536000"));
    }
    let unknown = hex::encode([0x5a; 44]);
    let r = get(a, &format!("/timestamp/{unknown}"), "").await;
    assert_eq!((r.status, r.text().as_str()), (404, "Not found"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    // A submitted digest instead of a commitment: said so.
    let r = get(a, &format!("/timestamp/{}", hex::encode([1; 32])), "").await;
    assert_eq!(r.status, 404);
    assert!(
        r.text()
            .starts_with("Not found (a 32-byte value looks like a submitted digest"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains('\n'));

    // No stamper, no tip.
    assert_eq!(get(a, "/tip", "").await.status, 404);
    // Backup chunks: nothing complete.
    for p in ["/experimental/backup/0", "/experimental/backup/x"] {
        let r = get(a, p, "").await;
        assert_eq!((r.status, r.text().as_str()), (404, "Not found"));
    }
    // Anything else.
    for (m, p) in [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("GET", "/digest"),
        ("PUT", "/digest"),
        ("GET", "/timestamp/"),
    ] {
        let req = format!(
            "{m} {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = raw(a, req.as_bytes()).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "Not found"), "{m} {p}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn info_page_html_and_json() {
    let server = TestServer::start(fast()).await;
    assert_eq!(post_digest(server.addr, &random_digest()).await.status, 200);
    let r = get(server.addr, "/", "").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert!(r.text().contains("Pending commitments: 1"), "{}", r.text());
    assert!(r.text().contains("bcrt1qdonation"));

    let r = get(server.addr, "/", "Accept: application/json\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("vary"), Some("Accept"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["pending_commitments"], 1);
    assert!(v["pending_commitments"].is_u64());
    assert_eq!(v["donation_address"], "bcrt1qdonation");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn cors_allows_any_origin() {
    let server = TestServer::start(fast()).await;
    let pre = "OPTIONS /digest HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\
               Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
               Connection: close\r\n\r\n";
    let r = raw(server.addr, pre.as_bytes()).await.unwrap();
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let r = get(server.addr, "/tip", "Origin: https://app.example\r\n").await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    server.stop().await.unwrap();
}
