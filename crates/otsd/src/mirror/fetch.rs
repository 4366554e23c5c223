//! Fetching one backup chunk over http(s) (`GET <calendar>/experimental/
//! backup/<n>`): every request bounded in time, the reply read a piece at a
//! time and cut at a size limit (a calendar that hangs, or sends without
//! end, costs a timeout and a bounded buffer).

use std::time::Duration;

/// Default largest chunk accepted: a chunk of our calendar is about 0.5 MB
/// (1000 commitments, their Merkle paths and a shared tail); a reference
/// calendar's, with its longer paths, stays well under this.
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 32 << 20;
/// Default time a whole chunk request may take.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Time to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What the mirror says it is.
pub const USER_AGENT: &str = concat!("otsd-mirror/", env!("CARGO_PKG_VERSION"));

/// Why a chunk was not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// 404: the calendar does not have it (yet).
    #[error("not ready (404)")]
    NotReady,
    /// Another status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Over the size limit.
    #[error("reply over the {limit}-byte limit")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// No whole reply within the timeout.
    #[error("no complete reply within {0:?}")]
    Timeout(Duration),
    /// Connection or protocol failure.
    #[error("transport: {0}")]
    Transport(String),
}

/// Fetches chunks, sharing one connection pool.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
}

/// `e` and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Fetcher {
    /// A fetcher with these limits.
    pub fn new(timeout: Duration, max_bytes: usize) -> Result<Fetcher, FetchError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .user_agent(USER_AGENT)
            // Only to the calendar's own scheme, host and port (at most
            // `ots_calendar::MAX_REDIRECTS`): a mirrored calendar may not
            // send the mirror to other hosts.
            .redirect(ots_calendar::redirect_policy(
                ots_calendar::Redirects::SameOrigin,
            ))
            .build()
            .map_err(|e| FetchError::Transport(chain(&e)))?;
        Ok(Fetcher {
            http,
            timeout,
            max_bytes,
        })
    }

    /// The URL of chunk `n` of the calendar at `base`.
    pub fn chunk_url(base: &str, n: u64) -> String {
        format!("{}/experimental/backup/{n}", base.trim_end_matches('/'))
    }

    /// Chunk `n` of the calendar at `base`.
    pub async fn chunk(&self, base: &str, n: u64) -> Result<Vec<u8>, FetchError> {
        let url = Self::chunk_url(base, n);
        match tokio::time::timeout(self.timeout, self.get(&url)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let transport = |e: reqwest::Error| match e.is_timeout() {
            true => FetchError::Timeout(self.timeout),
            false => FetchError::Transport(chain(&e)),
        };
        let mut resp = self.http.get(url).send().await.map_err(transport)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(FetchError::NotReady),
            s => return Err(FetchError::Status(s)),
        }
        let too_large = FetchError::TooLarge {
            limit: self.max_bytes,
        };
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(piece) = resp.chunk().await.map_err(transport)? {
            if body.len() + piece.len() > self.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on 127.0.0.1 that reads a request head and
    /// writes `reply` as is, then closes; returns its base URL.
    async fn raw_server(reply: Vec<u8>) -> String {
        raw_server_by_head(move |_| reply.clone()).await
    }

    /// [`raw_server`] writing what `reply` makes of each request head.
    async fn raw_server_by_head(
        reply: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = std::sync::Arc::new(reply);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(&reply(&head)).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn fetcher() -> Fetcher {
        Fetcher::new(Duration::from_secs(2), 1000).unwrap()
    }

    #[tokio::test]
    async fn lying_lengths_and_encodings_are_read_as_sent() {
        // Fewer bytes than the Content-Length, then the connection closes.
        let short =
            raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec()).await;
        assert!(matches!(
            fetcher().chunk(&short, 0).await,
            Err(FetchError::Transport(_))
        ));
        // More bytes than it says: only what it says is taken.
        let long =
            raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfour and more".to_vec()).await;
        assert_eq!(fetcher().chunk(&long, 0).await.unwrap(), b"four");
        // A Content-Length over the limit is refused before any body.
        let huge = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n".to_vec()).await;
        assert_eq!(
            fetcher().chunk(&huge, 0).await,
            Err(FetchError::TooLarge { limit: 1000 })
        );
        // A compressed body is not inflated: its bytes are the chunk (and
        // fail its checks), whatever they would grow to.
        let gzip = raw_server(
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 3\r\n\r\n\x1f\x8b\x08"
                .to_vec(),
        )
        .await;
        assert_eq!(fetcher().chunk(&gzip, 0).await.unwrap(), b"\x1f\x8b\x08");
        // A chunked body that goes over the limit.
        let mut endless = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20 {
            endless.extend_from_slice(b"64\r\n");
            endless.extend_from_slice(&[0u8; 100]);
            endless.extend_from_slice(b"\r\n");
        }
        let endless = raw_server(endless).await;
        assert_eq!(
            fetcher().chunk(&endless, 0).await,
            Err(FetchError::TooLarge { limit: 1000 })
        );
    }

    #[tokio::test]
    async fn redirects_are_followed_to_the_same_origin_only() {
        let target = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await;
        // `localhost` for `127.0.0.1`: another host, not followed.
        let elsewhere = target.replace("127.0.0.1", "localhost");
        let away = raw_server(
            format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}/x\r\ncontent-length: 0\r\n\r\n")
                .into_bytes(),
        )
        .await;
        assert_eq!(
            fetcher().chunk(&away, 0).await,
            Err(FetchError::Status(307))
        );
        // To its own host and port: followed.
        let home = raw_server_by_head(|head| {
            if head.starts_with(b"GET /moved") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nmoved".to_vec()
            } else {
                b"HTTP/1.1 301 Moved Permanently\r\nlocation: /moved\r\ncontent-length: 0\r\n\r\n"
                    .to_vec()
            }
        })
        .await;
        assert_eq!(fetcher().chunk(&home, 0).await.unwrap(), b"moved");
    }
}
