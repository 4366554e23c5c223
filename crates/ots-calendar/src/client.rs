//! The HTTP side: a [`Client`] (one connection pool and root store, built
//! once from a [`ClientConfig`]) and the [`Calendar`]s it hands out, which
//! submit digests and fetch timestamps, reading at most
//! [`MAX_REPLY_LEN`] bytes of any reply.

use std::path::Path;
use std::time::Duration;

use ots_proof::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::{ClientConfig, Redirects, MAX_REDIRECTS};
use crate::error::{error_chain, transport, CalendarError};
use crate::protocol::{
    sanitise_reason, ACCEPT, MAX_REASON_LEN, MAX_REPLY_LEN, MAX_REPLY_MESSAGE_BYTES,
};

/// Talks to calendars: the HTTP connection pool, the trusted roots (the
/// system's, or webpki's when the system has none, plus the extra CA
/// file), the proxy (given, or the environment's) and the default timeout. Cheap to clone; build one per process
/// and take [`Calendar`]s from it.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    timeout: Duration,
}

impl Client {
    /// A client as `config` says. Fails on an unreadable or unusable CA
    /// file ([`CalendarError::CaFile`]) or if the TLS setup cannot be
    /// built ([`CalendarError::Setup`]).
    pub fn new(config: &ClientConfig) -> Result<Client, CalendarError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.as_str())
            // Mozilla's roots only where the system offers none (a bare
            // container): the system's choice wins where there is one.
            .tls_built_in_webpki_certs(!system_has_roots())
            .redirect(redirect_policy(config.redirects));
        if let Some(url) = &config.proxy {
            // An explicit proxy replaces the environment's.
            let proxy = reqwest::Proxy::all(url.as_str()).map_err(|e| CalendarError::Setup {
                message: format!("proxy {url}: {}", error_chain(&e)),
            })?;
            builder = builder.proxy(proxy);
        }
        if let Some(path) = &config.ca_file {
            for cert in load_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| CalendarError::Setup {
            message: error_chain(&e),
        })?;
        Ok(Client {
            http,
            timeout: config.timeout,
        })
    }

    /// The calendar at `url` (http or https), reached through this client.
    pub fn calendar(&self, url: &str) -> Result<Calendar, CalendarError> {
        let bad = |message: String| CalendarError::BadUrl {
            url: url.to_string(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http and https are supported".into()));
        }
        Ok(Calendar {
            url: parsed,
            http: self.http.clone(),
            timeout: self.timeout,
        })
    }
}

/// reqwest's policy for `redirects` (also the mirror's, which fetches
/// backup chunks with a client of its own). A redirect not followed is
/// returned as the reply, so it fails as its status.
pub fn redirect_policy(redirects: Redirects) -> reqwest::redirect::Policy {
    match redirects {
        Redirects::Any => reqwest::redirect::Policy::limited(MAX_REDIRECTS),
        Redirects::SameOrigin => reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().map(reqwest::Url::origin);
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if first.as_ref() == Some(&attempt.url().origin()) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }),
    }
}

/// Whether the system's root store has any certificate at all.
fn system_has_roots() -> bool {
    !rustls_native_certs::load_native_certs().certs.is_empty()
}

/// The certificates of the PEM file at `path`, each checked to be usable
/// as a root, so a bad file is reported as that file's fault.
fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, CalendarError> {
    let bad = |message: String| CalendarError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| bad(format!("certificate {}: {e}", i + 1)))?;
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| bad(format!("certificate {}: {e}", i + 1)))?;
        out.push(
            reqwest::Certificate::from_der(&der)
                .map_err(|e| bad(format!("certificate {}: {}", i + 1, error_chain(&e))))?,
        );
    }
    if out.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(out)
}

/// A remote calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    url: reqwest::Url,
    http: reqwest::Client,
    timeout: Duration,
}

impl Calendar {
    /// The calendar at `url` through a client of its own; to talk to
    /// several calendars, build one [`Client`] and use
    /// [`Client::calendar`].
    pub fn new(url: &str, config: &ClientConfig) -> Result<Self, CalendarError> {
        Client::new(config)?.calendar(url)
    }

    /// The same calendar, each request bounded by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The calendar's URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Submits `digest` (`POST /digest`); the reply is a timestamp of it
    /// ending in the calendar's pending attestation.
    pub async fn submit(&self, digest: &[u8]) -> Result<Timestamp, CalendarError> {
        let url = self.join("digest")?;
        let body = self
            .fetch(self.http.post(url).body(digest.to_vec()))
            .await?;
        self.decode(&body, digest)
    }

    /// Fetches the timestamp of `commitment`
    /// (`GET /timestamp/<hex commitment>`). A 404 is
    /// [`CalendarError::NotFound`] with the calendar's reason.
    pub async fn get_timestamp(&self, commitment: &[u8]) -> Result<Timestamp, CalendarError> {
        let url = self.join(&format!("timestamp/{}", hex::encode(commitment)))?;
        let body = self.fetch(self.http.get(url)).await?;
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

    /// The reply is decoded with `msg` as its root, so whatever decodes is
    /// a timestamp of what we asked about; anything else is malformed, and
    /// so is a reply whose messages would hold more than
    /// [`MAX_REPLY_MESSAGE_BYTES`] (refused while decoding, never held).
    fn decode(&self, body: &[u8], msg: &[u8]) -> Result<Timestamp, CalendarError> {
        Timestamp::deserialize_bounded(body, msg, MAX_REPLY_MESSAGE_BYTES).map_err(|source| {
            CalendarError::Malformed {
                url: self.url.to_string(),
                source,
            }
        })
    }

    /// Sends `request` and reads the body of a 200 (at most
    /// [`MAX_REPLY_LEN`] bytes) or the reason of a 404 (its first
    /// [`MAX_REASON_LEN`] bytes), a chunk at a time, never holding more.
    async fn fetch(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, CalendarError> {
        let url = self.url.as_str();
        let mut response = request
            .header(reqwest::header::ACCEPT, ACCEPT)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport(url, &e))?;
        let status = response.status().as_u16();
        let limit = match status {
            200 => MAX_REPLY_LEN,
            404 => MAX_REASON_LEN,
            other => {
                return Err(CalendarError::Status {
                    url: url.to_string(),
                    status: other,
                })
            }
        };
        let too_large = || CalendarError::TooLarge {
            url: url.to_string(),
        };
        if status == 200 && response.content_length().unwrap_or(0) > MAX_REPLY_LEN as u64 {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(url, &e))? {
            let room = limit - body.len();
            if chunk.len() > room {
                if status == 404 {
                    // The rest of a reason is never shown.
                    body.extend_from_slice(&chunk[..room]);
                    break;
                }
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if status == 404 {
            return Err(CalendarError::NotFound {
                url: url.to_string(),
                reason: sanitise_reason(&body),
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new(&ClientConfig::default()).unwrap()
    }

    /// A reply of under 10,000 bytes whose messages would hold megabytes
    /// (a 4,000-byte message, then 2,000 `reverse`s on it over 16
    /// branches) is malformed, refused by the decoder itself; a reply just
    /// under the bound decodes.
    #[test]
    fn a_reply_whose_messages_would_hold_megabytes_is_refused_while_decoding() {
        let c = client().calendar("https://a.test").unwrap();
        let msg = [1u8; 32];
        let reply = |branches: u8, reverses: usize| {
            let mut t = Timestamp::new(msg.to_vec()).unwrap();
            let big = t.add_op(ots_proof::Op::Append(vec![0xbb; 4000])).unwrap();
            for b in 0..branches {
                big.add_op(ots_proof::Op::Append(vec![b]))
                    .unwrap()
                    .add_path(std::iter::repeat_n(ots_proof::Op::Reverse, reverses))
                    .unwrap()
                    .add_attestation(ots_proof::Attestation::pending("https://b.test").unwrap());
            }
            t.serialize().unwrap()
        };
        let bomb = reply(16, 125);
        assert!(bomb.len() <= MAX_REPLY_LEN, "{}", bomb.len());
        match c.decode(&bomb, &msg) {
            Err(CalendarError::Malformed { source, .. }) => assert_eq!(
                source.kind,
                ots_proof::DecodeErrorKind::TooManyMessageBytes {
                    max: MAX_REPLY_MESSAGE_BYTES
                }
            ),
            other => panic!("{other:?}"),
        }
        // 2 branches of 30 reverses: about 250 KB, under the bound.
        assert!(c.decode(&reply(2, 30), &msg).is_ok());
    }

    #[test]
    fn urls_resolve_like_the_reference() {
        let c = client()
            .calendar("https://a.pool.opentimestamps.org")
            .unwrap();
        assert_eq!(
            c.join("digest").unwrap().as_str(),
            "https://a.pool.opentimestamps.org/digest"
        );
        let c = client().calendar("http://127.0.0.1:14788/cal/").unwrap();
        assert_eq!(
            c.join("timestamp/00").unwrap().as_str(),
            "http://127.0.0.1:14788/cal/timestamp/00"
        );
        assert!(matches!(
            client().calendar("ftp://x"),
            Err(CalendarError::BadUrl { .. })
        ));
        assert!(matches!(
            client().calendar("not a url"),
            Err(CalendarError::BadUrl { .. })
        ));
    }

    #[test]
    fn bad_ca_files_are_the_files_fault() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, b"not a certificate\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [missing, garbage, broken] {
            let config = ClientConfig {
                ca_file: Some(path.clone()),
                ..ClientConfig::default()
            };
            match Client::new(&config) {
                Err(CalendarError::CaFile { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }
}
