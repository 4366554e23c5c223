//! Why a calendar did not give us a timestamp ([`CalendarError`]), and
//! the classification of transport failures (timeout, TLS, unreachable).

use std::path::PathBuf;

use ots_proof::DecodeError;
use thiserror::Error;

use crate::protocol::MAX_REPLY_LEN;

/// Why a calendar did not give us a timestamp, or a client could not be
/// set up.
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
    /// The TLS handshake failed: most often a certificate we do not trust
    /// (not signed by a system root nor by the extra CA file), or one for
    /// another name.
    #[error("calendar {url}: TLS: {message}")]
    Tls {
        /// The calendar.
        url: String,
        /// rustls' reason (e.g. `invalid peer certificate: UnknownIssuer`).
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
        /// The calendar's one-line reason, sanitised
        /// ([`crate::sanitise_reason`]).
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
    /// The extra CA file cannot be read or holds no usable certificate.
    #[error("CA file {}: {message}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The HTTP client could not be built (e.g. an unusable system root
    /// store).
    #[error("cannot set up the calendar client: {message}")]
    Setup {
        /// Why.
        message: String,
    },
}

/// A transport error (no HTTP status) as a [`CalendarError`] of `url`.
pub(crate) fn transport(url: &str, e: &reqwest::Error) -> CalendarError {
    let url = url.to_string();
    if e.is_timeout() {
        CalendarError::Timeout { url }
    } else if let Some(tls) = find_tls_error(e) {
        CalendarError::Tls {
            url,
            message: tls.to_string(),
        }
    } else {
        CalendarError::Unreachable {
            url,
            message: error_chain(e),
        }
    }
}

/// The rustls error behind `e`, if any. rustls' errors reach us wrapped in
/// an `io::Error`, whose `source()` skips the error it wraps, so each
/// `io::Error` of the chain is opened with `get_ref`.
fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = find_tls_error(inner) {
                return Some(tls);
            }
        }
        next = err.source();
    }
    None
}

/// The error and its causes on one line ("connection refused" is usually a
/// cause, not the top-level message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
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
    fn tls_errors_are_found_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let found = find_tls_error(&io).expect("found");
        assert!(found.to_string().contains("UnknownIssuer"), "{found}");
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(find_tls_error(&plain).is_none());
    }
}
