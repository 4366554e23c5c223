//! The aggregator's `POST /digest` without hyper: the one request an
//! aggregator serves by the thousand every round, read with `httparse`
//! (hyper's own parser) and answered with one write, on the connection's
//! `Watched` socket so the sweep's timeouts and closes hold as on any
//! other. Anything else on the connection, from its first request that is
//! not a plain `POST /digest` (another route, a body over
//! [`MAX_DIGEST_LEN`], chunked, `Expect`, HTTP/1.0, a head httparse cannot
//! take), is handed with the bytes read so far to hyper and the routes,
//! and the connection stays there.
//!
//! Why not hyper for this too: on this machine's 2 cores, a bare hyper
//! service answering the aggregator's replies costs 18 µs of CPU per
//! request against 11.7 µs for this loop (`bench/RESULTS.md`), and the
//! issue's target for the whole aggregator is 15. The answers carry the
//! headers the router's would (content type, CORS, date, length), and the
//! error texts are [`ApiError`]'s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conns::{Tracker, Watched};
use crate::aggregator::MAX_DIGEST_LEN;
use crate::http::ApiError;

/// A submitted digest's answer: its proof, or the text of a 503.
pub type Submitted = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// Where the fast path sends digests (the aggregator's rounds).
pub trait DigestRoute: Send + Sync + 'static {
    /// Submits `digest` (at most [`MAX_DIGEST_LEN`] bytes).
    fn submit(&self, digest: Vec<u8>) -> Submitted;
}

/// Headers a request head may have on the fast path (httparse's array;
/// a head with more goes to hyper, which takes up to 100).
const MAX_HEADERS: usize = 32;
/// What the read buffer starts with: a request head of a usual client
/// and its body.
const READ_CHUNK: usize = 1024;

/// What the fast path needs, shared by its connections.
pub struct Fast {
    /// Where digests go.
    pub route: Arc<dyn DigestRoute>,
    /// The time a client has to send its body once its head is in.
    pub body_timeout: Duration,
    /// The head size past which hyper takes over (and answers 431).
    pub max_head: usize,
}

/// How a connection left the fast path.
pub enum Outcome {
    /// It is over (closed by either side, or answered with `close`).
    Done,
    /// For hyper, the bytes read so far first (`Watched::prefix`).
    Handoff(Watched),
}

/// A request the fast path answers, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plain {
    /// The head's length in bytes, its blank line included.
    pub head_len: usize,
    /// The body's (the digest's), at most [`MAX_DIGEST_LEN`].
    pub body_len: usize,
    /// Whether the client asked to close after the answer.
    pub close: bool,
}

/// A request head the fast path leaves to hyper and the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a plain POST /digest head")]
pub struct NotPlain;

/// `Ok(Some)` if the head at the start of `buf` is complete and a plain
/// `POST /digest`, `Ok(None)` if incomplete so far, `Err` if hyper must
/// take it.
pub fn parse(buf: &[u8]) -> Result<Option<Plain>, NotPlain> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(NotPlain),
    };
    if req.method != Some("POST") || req.path != Some("/digest") || req.version != Some(1) {
        return Err(NotPlain);
    }
    let mut body_len = None;
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            // One numeric Content-Length in the digest's bounds; anything
            // else gets the router's answer (400) or hyper's.
            let v = h.value.trim_ascii();
            if body_len.is_some()
                || v.is_empty()
                || v.len() > 3
                || !v.iter().all(u8::is_ascii_digit)
            {
                return Err(NotPlain);
            }
            let n: usize = v.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0'));
            if n > MAX_DIGEST_LEN {
                return Err(NotPlain);
            }
            body_len = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Err(NotPlain);
        } else if name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let body_len = body_len.ok_or(NotPlain)?;
    Ok(Some(Plain {
        head_len,
        body_len,
        close,
    }))
}

/// Serves `io` until it ends or a request needs hyper.
pub async fn serve(fast: &Fast, tracker: &Tracker, mut io: Watched) -> Outcome {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        // A whole head.
        let plain = loop {
            if !buf.is_empty() {
                match parse(&buf) {
                    Ok(Some(p)) => break p,
                    Ok(None) if buf.len() < fast.max_head => {}
                    _ => return handoff(tracker, buf, io).await,
                }
            }
            // Nothing of a head yet: shutdown may close it at once.
            let waiting = buf.is_empty();
            if waiting {
                io.conn.set_fast_waiting(true);
                if tracker.draining() {
                    return Outcome::Done;
                }
            }
            let read = read_more(&mut io, &mut buf).await;
            if waiting {
                io.conn.set_fast_waiting(false);
            }
            if !read {
                return Outcome::Done;
            }
        };
        if !io.conn.begin_request() {
            return Outcome::Done;
        }
        // Busy until the answer is written: neither the sweep nor the
        // reclaim takes a connection that is waiting for us.
        let busy = super::conns::Busy(io.conn.clone());
        // Its body, usually in the same segment.
        let end = plain.head_len + plain.body_len;
        if buf.len() < end {
            let body = async {
                while buf.len() < end {
                    if !read_more(&mut io, &mut buf).await {
                        return false;
                    }
                }
                true
            };
            let refused = match tokio::time::timeout(fast.body_timeout, body).await {
                Ok(true) => None,
                // The client may still read (a half-close): the router's
                // 400.
                Ok(false) => Some(ApiError::BodyIncomplete),
                Err(_) => Some(ApiError::BodyTimeout),
            };
            if let Some(e) = refused {
                let _ = io.write_all(&error(e, true)).await;
                let _ = io.shutdown().await;
                return Outcome::Done;
            }
        }
        let digest = buf[plain.head_len..end].to_vec();
        buf.drain(..end);
        let reply = fast.route.submit(digest).await;
        // Decided once the round has answered: the connection may have
        // aged, or shutdown begun, meanwhile.
        let close = plain.close || io.conn.past_max_age() || tracker.draining();
        let answer = match reply {
            Ok(proof) => response(
                StatusCode::OK,
                "application/octet-stream",
                None,
                &proof,
                close,
            ),
            Err(text) => response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                None,
                text.as_bytes(),
                close,
            ),
        };
        let written = io.write_all(&answer).await;
        drop(busy);
        if written.is_err() {
            return Outcome::Done;
        }
        if close {
            let _ = io.shutdown().await;
            return Outcome::Done;
        }
    }
}

/// Hands the connection to hyper; once shutdown has begun, hyper's
/// graceful shutdown would close it without reading what the fast path
/// read, so the client gets a 503 that says so instead.
async fn handoff(tracker: &Tracker, buf: Vec<u8>, mut io: Watched) -> Outcome {
    if tracker.draining() {
        let answer = super::canned("503 Service Unavailable", "shutting down");
        let _ = io.write_all(&answer).await;
        let _ = io.shutdown().await;
        return Outcome::Done;
    }
    io.prefix = buf;
    Outcome::Handoff(io)
}

/// Reads what the socket has into `buf`; `false` at EOF or on an error.
async fn read_more(io: &mut Watched, buf: &mut Vec<u8>) -> bool {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    matches!(io.read_buf(buf).await, Ok(n) if n > 0)
}

/// The answer to an [`ApiError`], as the router gives it.
fn error(e: ApiError, close: bool) -> Vec<u8> {
    let (status, text, cache) = e.parts();
    response(status, "text/plain", cache, text.as_bytes(), close)
}

/// A whole HTTP/1.1 answer with the router's headers.
fn response(
    status: StatusCode,
    content_type: &str,
    cache: Option<&str>,
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(256 + body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {content_type}\r\n\
         vary: origin, access-control-request-method, access-control-request-headers\r\n\
         access-control-allow-origin: *\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
    );
    if let Some(cache) = cache {
        let _ = write!(out, "cache-control: {cache}\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let _ = write!(out, "content-length: {}\r\ndate: ", body.len());
    date(&mut out);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Appends the `Date` header's value, formatted once a second per thread
/// (as hyper does).
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(c.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<(usize, usize, bool)>, NotPlain> {
        parse(s.as_bytes()).map(|p| p.map(|p| (p.head_len, p.body_len, p.close)))
    }

    #[test]
    fn only_a_plain_post_digest_stays_on_the_fast_path() {
        let ok = "POST /digest HTTP/1.1\r\nHost: a\r\nContent-Length: 32\r\n\r\n";
        assert_eq!(head(ok), Ok(Some((ok.len(), 32, false))));
        let close =
            "POST /digest HTTP/1.1\r\nConnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(head(close), Ok(Some((close.len(), 0, true))));
        assert_eq!(head("POST /digest HTTP/1.1\r\nContent-Len"), Ok(None));
        for hyper in [
            "GET / HTTP/1.1\r\n\r\n",
            "POST /digest?x HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
            "POST /digest HTTP/1.0\r\nContent-Length: 1\r\n\r\n",
            "POST /digest HTTP/1.1\r\n\r\n",
            "POST /digest HTTP/1.1\r\nContent-Length: 65\r\n\r\n",
            "POST /digest HTTP/1.1\r\nContent-Length: 1000\r\n\r\n",
            "POST /digest HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST /digest HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST /digest HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /digest HTTP/1.1\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
            "POST /digest HTTP/1.1\r\nContent-Length: 1\r\nUpgrade: h2c\r\n\r\n",
            "POST /digest HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(head(hyper), Err(NotPlain), "{hyper:?}");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x-{i}: y\r\n"))
            .collect();
        let many = format!("POST /digest HTTP/1.1\r\nContent-Length: 1\r\n{many}\r\n");
        assert_eq!(head(&many), Err(NotPlain));
    }

    /// A head read a byte at a time is incomplete until its blank line,
    /// then taken whole, whatever follows it (the reference client's
    /// request, as captured on the wire).
    #[test]
    fn a_head_arriving_in_pieces_is_taken_once_whole() {
        let head = "POST /digest HTTP/1.1\r\nAccept-Encoding: identity\r\n\
                    Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 32\r\n\
                    Host: 127.0.0.1:46717\r\nAccept: application/vnd.opentimestamps.v1\r\n\
                    User-Agent: OpenTimestamps-Client/0.7.2\r\nConnection: close\r\n\r\n";
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend([7u8; 32]);
        bytes.extend(b"POST /digest HTTP/1.1\r\n");
        for cut in 0..bytes.len() {
            let want = if cut < head.len() {
                None
            } else {
                Some(Plain {
                    head_len: head.len(),
                    body_len: 32,
                    close: true,
                })
            };
            assert_eq!(parse(&bytes[..cut]), Ok(want), "cut at {cut}");
        }
    }

    #[test]
    fn answers_carry_the_routers_headers() {
        let a = String::from_utf8(response(
            StatusCode::OK,
            "application/octet-stream",
            None,
            b"xy",
            true,
        ))
        .unwrap();
        let (h, body) = a.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "xy");
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines[0], "HTTP/1.1 200 OK");
        for want in [
            "content-type: application/octet-stream",
            "access-control-allow-origin: *",
            "connection: close",
            "content-length: 2",
        ] {
            assert!(lines.contains(&want), "{want} in {lines:?}");
        }
        let date = lines.iter().find_map(|l| l.strip_prefix("date: ")).unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        let e = String::from_utf8(error(ApiError::BodyTimeout, false)).unwrap();
        assert!(e.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{e}");
        assert!(e.ends_with("\r\n\r\nbody read timeout"), "{e}");
        assert!(!e.contains("connection: close"));
    }
}
