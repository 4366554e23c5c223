//! Block headers from an Esplora-style block explorer
//! (`GET /block-height/<h>` → the block hash as text,
//! `GET /block/<hash>/header` → the 80-byte header as hex,
//! `GET /blocks/tip/height` → the best height), for verifying without a
//! local node. The explorer is trusted to name the header at a height of
//! the chain with the most work; a node checks that itself.

use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::BlockHash;
use ots_calendar::error_chain;

/// How long one request to the explorer may take, connecting included.
pub const EXPLORER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes read of any explorer reply: a hash is 64 hex digits, a
/// header 160, a height a few digits; anything longer is not an answer.
pub const MAX_EXPLORER_REPLY: usize = 1024;

/// What went wrong asking the explorer.
#[derive(Debug, thiserror::Error)]
pub enum EsploraError {
    /// The base URL cannot be used.
    #[error("explorer URL {url:?}: {message}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        message: String,
    },
    /// The request failed in transit (connection, TLS, timeout).
    #[error("explorer {url}: {message}")]
    Transport {
        /// The request's URL.
        url: String,
        /// The error chain.
        message: String,
    },
    /// A status other than 200 or 404.
    #[error("explorer {url}: HTTP status {status}")]
    Status {
        /// The request's URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A reply over [`MAX_EXPLORER_REPLY`] bytes.
    #[error("explorer {url}: reply exceeds {MAX_EXPLORER_REPLY} bytes")]
    TooLong {
        /// The request's URL.
        url: String,
    },
    /// A reply that is not what the API returns.
    #[error("explorer {url}: malformed reply: {message}")]
    Malformed {
        /// The request's URL.
        url: String,
        /// Why.
        message: String,
    },
}

/// An Esplora-style explorer at a base URL (such as
/// `https://blockstream.info/api`).
#[derive(Debug, Clone)]
pub struct Esplora {
    base: String,
    http: reqwest::Client,
}

impl Esplora {
    /// The explorer at `base` (http or https), each request bounded by
    /// `timeout`. https goes through rustls.
    pub fn new(base: &str, timeout: Duration) -> Result<Esplora, EsploraError> {
        Esplora::with_proxy(base, timeout, None)
    }

    /// The same, every request through `proxy` (a proxy URL such as
    /// `socks5h://127.0.0.1:9050`; `None`: the environment's proxy
    /// variables, as reqwest reads them).
    pub fn with_proxy(
        base: &str,
        timeout: Duration,
        proxy: Option<&str>,
    ) -> Result<Esplora, EsploraError> {
        let bad = |message: String| EsploraError::BadUrl {
            url: base.to_string(),
            message,
        };
        let parsed = reqwest::Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http and https are supported".into()));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("ots/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = proxy {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|e| bad(format!("proxy {proxy}: {}", error_chain(&e))))?;
            builder = builder.proxy(proxy);
        }
        let http = builder.build().map_err(|e| bad(error_chain(&e)))?;
        Ok(Esplora {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// GET `path`: `None` on 404, else the body (at most
    /// [`MAX_EXPLORER_REPLY`] bytes) as trimmed text.
    async fn get(&self, path: &str) -> Result<Option<(String, String)>, EsploraError> {
        let url = format!("{}{path}", self.base);
        let transport = |e: reqwest::Error| EsploraError::Transport {
            url: url.clone(),
            message: error_chain(&e),
        };
        let mut response = self.http.get(&url).send().await.map_err(transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status != reqwest::StatusCode::OK {
            return Err(EsploraError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_EXPLORER_REPLY {
                return Err(EsploraError::TooLong { url });
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| EsploraError::Malformed {
            url: url.clone(),
            message: "not text".into(),
        })?;
        Ok(Some((text.trim().to_string(), url)))
    }

    /// The best height.
    pub async fn tip_height(&self) -> Result<u64, EsploraError> {
        let path = "/blocks/tip/height";
        let Some((text, url)) = self.get(path).await? else {
            return Err(EsploraError::Status {
                url: format!("{}{path}", self.base),
                status: 404,
            });
        };
        text.parse().map_err(|_| EsploraError::Malformed {
            url,
            message: format!("{text:?} is not a height"),
        })
    }

    /// The hash of the block at `height`, `None` if the explorer has none.
    pub async fn block_hash(&self, height: u64) -> Result<Option<BlockHash>, EsploraError> {
        let Some((text, url)) = self.get(&format!("/block-height/{height}")).await? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| EsploraError::Malformed {
            url,
            message: format!("{text:?} is not a block hash"),
        })
    }

    /// The header of block `hash`, `None` if the explorer has none. The
    /// header must hash to `hash`: an explorer that names one block and
    /// serves another is caught here.
    pub async fn block_header(&self, hash: &BlockHash) -> Result<Option<Header>, EsploraError> {
        let Some((text, url)) = self.get(&format!("/block/{hash}/header")).await? else {
            return Ok(None);
        };
        let malformed = |message: String| EsploraError::Malformed {
            url: url.clone(),
            message,
        };
        let bytes = hex::decode(&text).map_err(|_| malformed("not hex".into()))?;
        let header =
            ots_proof::verify::parse_block_header(&bytes).map_err(|e| malformed(e.to_string()))?;
        if header.block_hash() != *hash {
            return Err(malformed(format!(
                "the header hashes to {}, not {hash}",
                header.block_hash()
            )));
        }
        Ok(Some(header))
    }
}
