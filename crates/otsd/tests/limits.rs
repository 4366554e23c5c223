//! Hostile clients: slow headers, slow bodies, huge headers, too many
//! connections. Each gets a clear 4xx/503 and the server keeps serving.

mod common;

use std::time::Duration;

use common::*;
use otsd::config::Settings;
use otsd::limits::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn settings(limits: Limits) -> Settings {
    Settings {
        aggregation_interval: Duration::from_millis(50),
        limits,
        ..Settings::default()
    }
}

#[tokio::test]
async fn slow_headers_get_408() {
    let server = TestServer::start(settings(Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    }))
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /digest HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // ... and nothing more.
    let r = read_response(&mut s)
        .await
        .expect("an answer, not a silent close");
    assert_eq!((r.status, r.text().as_str()), (408, "header read timeout"));
    assert_eq!(post_digest(server.addr, &random_digest()).await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn slow_bodies_get_408() {
    let server = TestServer::start(settings(Limits {
        body_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    }))
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n0123456789")
        .await
        .unwrap();
    let r = read_response(&mut s).await.expect("an answer");
    assert_eq!((r.status, r.text().as_str()), (408, "body read timeout"));
    assert_eq!(post_digest(server.addr, &random_digest()).await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn huge_headers_get_431() {
    let server = TestServer::start(settings(Limits::default())).await;
    let big = "a".repeat(64 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let r = raw(server.addr, req.as_bytes()).await.expect("an answer");
    assert_eq!(r.status, 431);
    // Many small headers adding up count too.
    let many: String = (0..2000)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(20)))
        .collect();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let r = raw(server.addr, req.as_bytes()).await.expect("an answer");
    assert!(r.status == 431 || r.status == 400, "{}", r.status);
    assert_eq!(post_digest(server.addr, &random_digest()).await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_get_503() {
    const CAP: usize = 4;
    let server = TestServer::start(settings(Limits {
        max_connections: CAP,
        // The held connections idle while the newcomer knocks; here none
        // has idled long enough to give up its slot (tests/conns.rs has
        // the slots that are taken back).
        reclaim_after: Duration::from_secs(600),
        ..Limits::default()
    }))
    .await;
    // CAP keep-alive connections, each proven accepted by a request.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /tip HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.unwrap().status, 404);
        held.push(s);
    }
    let r = get(server.addr, "/", "").await;
    assert_eq!((r.status, r.text().as_str()), (503, "too many connections"));
    drop(held);
    // Slots come back once those connections are gone.
    let mut status = 0;
    for _ in 0..100 {
        status = get(server.addr, "/tip", "").await.status;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 404);
    server.stop().await.unwrap();
}
