//! Connections that hold a slot without making progress (issue 16, case 5):
//! slow readers at the connection cap, a peer that stops taking our bytes,
//! idle keep-alive connections, and the lifetime bound.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use otsd::config::Settings;
use otsd::limits::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The receive buffer a slow reader asks for.
const SLOW_RCVBUF: u32 = 4096;
/// Its send buffer.
const SLOW_SNDBUF: u32 = 4096;
/// Padding in each pipelined request (a cookie's worth): the server's
/// read buffer then holds only a few requests, so it reads a slow reader's
/// requests as long as it answers them, and stops when it cannot.
const PAD: usize = 3000;
/// How long no slow reader may have got a request byte out for the attack
/// to count as in place: the server no longer reads their requests, as it
/// cannot write their answers.
const ATTACK_SETTLED: Duration = Duration::from_secs(2);

/// What a slow reader pipelines, over and over: `GET /` (a 7 KB answer).
fn pipelined() -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: calendar.test\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(PAD)
    )
    .into_bytes()
}

fn settings(limits: Limits) -> Settings {
    Settings {
        aggregation_interval: Duration::from_millis(50),
        limits,
        ..Settings::default()
    }
}

/// A connection with a small receive buffer that pipelines GETs and never
/// reads.
struct SlowReader {
    /// Kept, never read, until dropped.
    read: tokio::net::tcp::OwnedReadHalf,
    /// Request bytes the kernel has taken so far.
    sent: Arc<AtomicU64>,
    /// Writes requests until the connection fails (blocking once the
    /// server stops reading).
    writer: tokio::task::JoinHandle<()>,
}

async fn slow_reader(addr: SocketAddr) -> SlowReader {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SLOW_RCVBUF).unwrap();
    // Small on the way out too, so that the writer gets room (and counts
    // progress) as soon as the server reads a request, not megabytes later.
    socket.set_send_buffer_size(SLOW_SNDBUF).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let chunk = pipelined().repeat(10);
        while let Ok(n @ 1..) = write.write(&chunk).await {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        // Keep the write half (and so the connection) open.
        std::future::pending::<()>().await;
    });
    SlowReader { read, sent, writer }
}

/// Waits until no slow reader has got a request byte out for
/// [`ATTACK_SETTLED`] (within the I/O limit).
async fn settled(attack: &[SlowReader]) {
    const POLL: Duration = Duration::from_millis(100);
    let total = || -> u64 { attack.iter().map(|a| a.sent.load(Ordering::Relaxed)).sum() };
    tokio::time::timeout(IO_LIMIT, async {
        let (mut last, mut still) = (total(), Duration::ZERO);
        while still < ATTACK_SETTLED {
            tokio::time::sleep(POLL).await;
            let now = total();
            if now == last {
                still += POLL;
            } else {
                (last, still) = (now, Duration::ZERO);
            }
        }
    })
    .await
    .expect("the slow readers' requests stop going out");
}

#[tokio::test]
async fn slow_readers_at_the_cap_do_not_lock_out_new_clients() {
    const CAP: usize = 50;
    let server = TestServer::start(settings(Limits {
        max_connections: CAP,
        // Only taking slots back can help the newcomer, not the write
        // timeout ending the attack.
        write_timeout: Duration::from_secs(600),
        ..Limits::default()
    }))
    .await;
    let mut attack = Vec::new();
    for _ in 0..CAP {
        attack.push(slow_reader(server.addr).await);
    }
    // Every slow reader's answers have filled the buffers: the server no
    // longer reads their requests.
    settled(&attack).await;
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        post_digest(server.addr, &random_digest()),
    )
    .await
    .expect("an answer within 2 s");
    assert_eq!(r.status, 200, "{}", r.text());
    for a in attack {
        a.writer.abort();
        drop(a.read);
    }
    server.stop().await.unwrap();
}

/// Reads until EOF or an error; returns the bytes and whether it ended in
/// a clean EOF.
async fn read_to_end(read: &mut (impl AsyncReadExt + Unpin)) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 65536];
    tokio::time::timeout(IO_LIMIT, async {
        loop {
            match read.read(&mut chunk).await {
                Ok(0) => return (all, true),
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(_) => return (all, false),
            }
        }
    })
    .await
    .expect("the server closes the connection within the I/O limit")
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_closed_after_the_write_timeout() {
    let server = TestServer::start(settings(Limits {
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    }))
    .await;
    let mut slow = slow_reader(server.addr).await;
    settled(std::slice::from_ref(&slow)).await;
    // Past the write timeout without reading a byte: the server has given
    // up, so reading now gets what was buffered and the end (a server
    // still writing would keep answering the endless requests).
    let _ = read_to_end(&mut slow.read).await;
    slow.writer.abort();
    // The server still serves.
    assert_eq!(post_digest(server.addr, &random_digest()).await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_without_a_word() {
    let server = TestServer::start(settings(Limits {
        idle_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    }))
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /tip HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s).await.expect("an answer");
    assert_eq!(r.status, 404);
    // Now idle: the server closes the connection and sends nothing (no
    // unsolicited 408).
    let (bytes, eof) = read_to_end(&mut s).await;
    assert_eq!(String::from_utf8_lossy(&bytes), "", "no bytes after idling");
    assert!(eof, "a clean close");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_first_request_head_that_never_completes_still_gets_408() {
    let server = TestServer::start(settings(Limits {
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    }))
    .await;
    // Nothing sent at all: a new connection's first request.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let r = read_response(&mut s).await.expect("an answer");
    assert_eq!((r.status, r.text().as_str()), (408, "header read timeout"));
    // A later request's head started and stalled gets one too.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /tip HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.unwrap().status, 404);
    s.write_all(b"GET /tip HTTP/1.1\r\nHo").await.unwrap();
    let r = read_response(&mut s).await.expect("an answer");
    assert_eq!((r.status, r.text().as_str()), (408, "header read timeout"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connections_end_gracefully_past_their_maximum_age() {
    let server = TestServer::start(settings(Limits {
        max_connection_age: Duration::from_secs(1),
        ..Limits::default()
    }))
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut served = 0;
    let mut closed = false;
    // A busy keep-alive client (never idle long): 40 requests over 8 s.
    for _ in 0..40 {
        if s.write_all(b"GET /tip HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        match read_response(&mut s).await {
            Some(r) => {
                assert_eq!(r.status, 404);
                served += 1;
                if r.header("connection") == Some("close") {
                    // Announced: the server closes after this answer.
                    let (rest, _) = read_to_end(&mut s).await;
                    assert!(rest.is_empty());
                    closed = true;
                    break;
                }
            }
            None => {
                closed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed, "the connection ended");
    assert!(served >= 2, "it served until its age was up ({served})");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_connections_at_the_cap_give_way_to_new_clients() {
    const CAP: usize = 3;
    let server = TestServer::start(settings(Limits {
        max_connections: CAP,
        reclaim_after: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(3),
        ..Limits::default()
    }))
    .await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /tip HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.unwrap().status, 404);
        held.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The newcomer takes the slot of an idle connection instead of a 503.
    assert_eq!(post_digest(server.addr, &random_digest()).await.status, 200);
    // Evicted or idled out, they are closed without a word.
    for mut s in held {
        let (bytes, _) = read_to_end(&mut s).await;
        assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    }
    server.stop().await.unwrap();
}
