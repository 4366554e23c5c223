//! Talking to a remote calendar: submit a digest, fetch the timestamp of a
//! commitment. Replies are capped at [`MAX_REPLY_LEN`] bytes, as every
//! reference client caps them, so a hostile calendar cannot make us hold
//! more than a few MB once decoded.

use std::time::Duration;

use ots_proof::{DecodeError, Timestamp};
use thiserror::Error;

/// Longest calendar reply we read.
pub const MAX_REPLY_LEN: usize = 10_000;
/// What we ask for; calendars answer with a bare serialized timestamp.
pub const ACCEPT: &str = "application/vnd.opentimestamps.v1";
/// How much of a 404 reason we show.
pub const MAX_REASON_LEN: usize = 160;

/// Why a calendar did not give us a timestamp.
#[derive(Debug, Error)]
pub enum CalendarError {
    /// No connection, or it broke.
    #[error("calendar {url}: unreachable: {message}")]
    Unreachable {
        /// The calendar.
        url: String,
        /// What failed.
        message: String,
    },
    /// No answer within the timeout.
    #[error("calendar {url}: timed out")]
    Timeout {
        /// The calendar.
        url: String,
    },
    /// The reply was longer than [`MAX_REPLY_LEN`].
    #[error("calendar {url}: reply exceeds {MAX_REPLY_LEN} bytes")]
    TooLarge {
        /// The calendar.
        url: String,
    },
    /// The reply is not a valid timestamp of what we asked about.
    #[error("calendar {url}: malformed reply: {source}")]
    Malformed {
        /// The calendar.
        url: String,
        /// The decoding error.
        source: DecodeError,
    },
    /// 404: the calendar does not have it (yet); its reason, sanitised.
    #[error("calendar {url}: {reason}")]
    NotFound {
        /// The calendar.
        url: String,
        /// The calendar's one-line reason, sanitised.
        reason: String,
    },
    /// Any other HTTP status.
    #[error("calendar {url}: unexpected HTTP status {status}")]
    Status {
        /// The calendar.
        url: String,
        /// The status.
        status: u16,
    },
    /// The URL cannot be used.
    #[error("invalid calendar URL {url}: {message}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
}

/// A remote calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    url: reqwest::Url,
    http: reqwest::Client,
}

impl Calendar {
    /// A calendar at `url`, each request bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, CalendarError> {
        let bad = |message: String| CalendarError::BadUrl {
            url: url.to_string(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http and https are supported".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!(
                "OpenTimestamps-Client-rs/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Calendar { url: parsed, http })
    }

    /// The calendar's URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Submits `digest`; the reply is a timestamp of it ending in the
    /// calendar's pending attestation.
    pub async fn submit(&self, digest: &[u8]) -> Result<Timestamp, CalendarError> {
        let url = self.join("digest")?;
        let request = self
            .http
            .post(url)
            .header("Accept", ACCEPT)
            .body(digest.to_vec());
        let body = self.fetch(request).await?;
        self.decode(&body, digest)
    }

    /// Fetches the timestamp of `commitment`.
    pub async fn get_timestamp(&self, commitment: &[u8]) -> Result<Timestamp, CalendarError> {
        let url = self.join(&format!("timestamp/{}", hex::encode(commitment)))?;
        let body = self
            .fetch(self.http.get(url).header("Accept", ACCEPT))
            .await?;
        self.decode(&body, commitment)
    }

    /// Resolves `path` against the calendar URL the way the reference does
    /// (RFC 3986 reference resolution).
    fn join(&self, path: &str) -> Result<reqwest::Url, CalendarError> {
        self.url.join(path).map_err(|e| CalendarError::BadUrl {
            url: self.url.to_string(),
            message: e.to_string(),
        })
    }

    fn decode(&self, body: &[u8], msg: &[u8]) -> Result<Timestamp, CalendarError> {
        Timestamp::deserialize(body, msg).map_err(|source| CalendarError::Malformed {
            url: self.url.to_string(),
            source,
        })
    }

    async fn fetch(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, CalendarError> {
        let url = self.url.to_string();
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                CalendarError::Timeout { url: url.clone() }
            } else {
                CalendarError::Unreachable {
                    url: url.clone(),
                    message: error_chain(&e),
                }
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_REPLY_LEN {
                if status == 404 {
                    break;
                }
                return Err(CalendarError::TooLarge { url });
            }
        }
        match status {
            200 => Ok(body),
            404 => Err(CalendarError::NotFound {
                url,
                reason: sanitise_reason(&body),
            }),
            other => Err(CalendarError::Status { url, status: other }),
        }
    }
}

/// A calendar's 404 reason as we show it: at most [`MAX_REASON_LEN`]
/// bytes, anything but letters, digits and `#-.,; ` replaced by `_` (no
/// newlines: a second line could pose as our own output).
pub fn sanitise_reason(body: &[u8]) -> String {
    body.iter()
        .take(MAX_REASON_LEN)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"#-.,; ".contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

/// The error and its causes on one line ("connection refused" is usually a
/// cause, not the top-level message).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_sanitised() {
        assert_eq!(
            sanitise_reason(b"Pending confirmation in Bitcoin blockchain"),
            "Pending confirmation in Bitcoin blockchain"
        );
        assert_eq!(sanitise_reason(b"a\nFAKE: ok\x1b[1m"), "a_FAKE_ ok__1m");
        assert_eq!(sanitise_reason(&[b'x'; 500]).len(), MAX_REASON_LEN);
    }

    #[test]
    fn urls_resolve_like_the_reference() {
        let c = Calendar::new("https://a.pool.opentimestamps.org", Duration::from_secs(1)).unwrap();
        assert_eq!(
            c.join("digest").unwrap().as_str(),
            "https://a.pool.opentimestamps.org/digest"
        );
        let c = Calendar::new("http://127.0.0.1:14788/cal/", Duration::from_secs(1)).unwrap();
        assert_eq!(
            c.join("timestamp/00").unwrap().as_str(),
            "http://127.0.0.1:14788/cal/timestamp/00"
        );
        assert!(Calendar::new("ftp://x", Duration::from_secs(1)).is_err());
        assert!(Calendar::new("not a url", Duration::from_secs(1)).is_err());
    }
}
