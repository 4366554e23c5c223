//! The client against a real TLS calendar on 127.0.0.1: a small plain
//! axum calendar behind `test_support::tls::TlsProxy` (a throwaway CA,
//! its PEM given to the client as the extra CA file). Good replies over
//! https, the certificate refused without the CA file, and the protocol's
//! limits held against a misbehaving calendar: oversized, endless,
//! garbage, silent, and 404 reasons.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use ots_calendar::{
    CalendarError, Client, ClientConfig, ACCEPT, DEFAULT_USER_AGENT, MAX_REPLY_LEN,
};
use ots_proof::{Attestation, Op, Timestamp};
use test_support::tls::TlsProxy;

/// The pending attestation our calendar hands out.
const PENDING_URI: &str = "https://calendar.example";
/// The request timeout of the silent-calendar test.
const SHORT_TIMEOUT: Duration = Duration::from_millis(500);

/// What the calendar saw.
#[derive(Default)]
struct Seen {
    /// (Accept, User-Agent) of each POST /digest.
    headers: Mutex<Vec<(String, String)>>,
    /// The commitments handed out.
    commitments: Mutex<Vec<Vec<u8>>>,
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn digest(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    seen.headers
        .lock()
        .unwrap()
        .push((header(&headers, "accept"), header(&headers, "user-agent")));
    let mut t = Timestamp::new(body.to_vec()).unwrap();
    let end = t
        .add_path([Op::append(vec![7; 8]).unwrap(), Op::Sha256])
        .unwrap();
    seen.commitments.lock().unwrap().push(end.msg().to_vec());
    end.add_attestation(Attestation::pending(PENDING_URI).unwrap());
    t.serialize().unwrap()
}

async fn timestamp(
    State(seen): State<Arc<Seen>>,
    Path(hex_c): Path<String>,
) -> (StatusCode, Vec<u8>) {
    let c = hex::decode(hex_c).unwrap_or_default();
    if !seen.commitments.lock().unwrap().contains(&c) {
        return (
            StatusCode::NOT_FOUND,
            b"Pending confirmation in Bitcoin blockchain\n".to_vec(),
        );
    }
    let mut t = Timestamp::new(c).unwrap();
    t.add_op(Op::Sha256)
        .unwrap()
        .add_attestation(Attestation::Bitcoin { height: 1 });
    (StatusCode::OK, t.serialize().unwrap())
}

/// A body that never ends, a kilobyte at a time.
fn endless() -> Body {
    Body::from_stream(futures::stream::repeat_with(|| {
        Ok::<_, Infallible>(Bytes::from_static(&[0u8; 1024]))
    }))
}

/// The calendar, plain, on a free port; returns its address.
async fn plain_calendar(seen: Arc<Seen>) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/digest", post(digest))
        .route("/timestamp/{c}", get(timestamp))
        .route(
            "/big/digest",
            post(|| async { vec![0u8; MAX_REPLY_LEN + 1] }),
        )
        .route("/endless/digest", post(|| async { endless() }))
        .route(
            "/garbage/digest",
            post(|| async { b"\xff\xffnot a timestamp".to_vec() }),
        )
        .route("/silent/digest", post(std::future::pending::<Vec<u8>>))
        .route(
            "/reason/timestamp/{c}",
            get(|| async {
                let mut body = b"Gone\nFAKE: ok\x1b[1m".to_vec();
                body.extend(std::iter::repeat_n(b'x', 50_000));
                (StatusCode::NOT_FOUND, body)
            }),
        )
        .route("/teapot/digest", post(|| async { StatusCode::IM_A_TEAPOT }))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The calendar behind the TLS proxy.
async fn tls_calendar() -> (TlsProxy, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let addr = plain_calendar(seen.clone()).await;
    (TlsProxy::start(addr).unwrap(), seen)
}

fn trusting(proxy: &TlsProxy) -> ClientConfig {
    ClientConfig {
        ca_file: Some(proxy.ca_file().to_path_buf()),
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn submit_and_get_succeed_over_https_with_the_ca_file() {
    let (proxy, seen) = tls_calendar().await;
    let client = Client::new(&trusting(&proxy)).unwrap();
    let calendar = client.calendar(&proxy.url()).unwrap();
    let digest = [0x42u8; 32];

    let pending = calendar.submit(&digest).await.unwrap();
    assert_eq!(pending.msg(), digest);
    let attestations = pending.all_attestations();
    assert_eq!(attestations.len(), 1);
    let (commitment, attestation) = attestations[0];
    assert_eq!(
        *attestation,
        Attestation::pending(PENDING_URI).unwrap(),
        "the calendar's own reply"
    );
    assert_eq!(
        seen.headers.lock().unwrap().as_slice(),
        [(ACCEPT.to_string(), DEFAULT_USER_AGENT.to_string())]
    );

    let commitment = commitment.to_vec();
    let complete = calendar.get_timestamp(&commitment).await.unwrap();
    assert_eq!(complete.msg(), commitment);
    assert!(complete
        .all_attestations()
        .iter()
        .any(|(_, a)| matches!(a, Attestation::Bitcoin { height: 1 })));
}

#[tokio::test]
async fn without_the_ca_file_the_certificate_is_refused() {
    let (proxy, seen) = tls_calendar().await;
    let client = Client::new(&ClientConfig::default()).unwrap();
    let calendar = client.calendar(&proxy.url()).unwrap();
    match calendar.submit(&[1u8; 32]).await {
        Err(e @ CalendarError::Tls { .. }) => {
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("calendar {}/: TLS: ", proxy.url())),
                "{text}"
            );
            assert!(text.contains("certificate"), "{text}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(
        seen.headers.lock().unwrap().is_empty(),
        "nothing got through"
    );
}

#[tokio::test]
async fn oversized_and_endless_replies_are_too_large() {
    let (proxy, _) = tls_calendar().await;
    let client = Client::new(&trusting(&proxy)).unwrap();
    for path in ["big", "endless"] {
        let calendar = client
            .calendar(&format!("{}/{path}/", proxy.url()))
            .unwrap();
        // An endless body that were buffered whole would hit the timeout
        // instead.
        match calendar.submit(&[2u8; 32]).await {
            Err(CalendarError::TooLarge { url }) => assert_eq!(url, calendar.url()),
            other => panic!("{path}: expected TooLarge, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn garbage_is_malformed() {
    let (proxy, _) = tls_calendar().await;
    let client = Client::new(&trusting(&proxy)).unwrap();
    let calendar = client
        .calendar(&format!("{}/garbage/", proxy.url()))
        .unwrap();
    match calendar.submit(&[3u8; 32]).await {
        Err(e @ CalendarError::Malformed { .. }) => {
            assert!(e.to_string().contains(": malformed reply: "), "{e}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_calendar_times_out() {
    let (proxy, _) = tls_calendar().await;
    let config = ClientConfig {
        timeout: SHORT_TIMEOUT,
        ..trusting(&proxy)
    };
    let client = Client::new(&config).unwrap();
    let calendar = client
        .calendar(&format!("{}/silent/", proxy.url()))
        .unwrap();
    match calendar.submit(&[4u8; 32]).await {
        Err(CalendarError::Timeout { url }) => assert_eq!(url, calendar.url()),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // The per-calendar override bounds it as well.
    let client = Client::new(&trusting(&proxy)).unwrap();
    let calendar = client
        .calendar(&format!("{}/silent/", proxy.url()))
        .unwrap()
        .with_timeout(SHORT_TIMEOUT);
    let outcome = tokio::time::timeout(Duration::from_secs(30), calendar.submit(&[4u8; 32])).await;
    assert!(
        matches!(outcome, Ok(Err(CalendarError::Timeout { .. }))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn not_found_passes_the_reason_on_sanitised_and_capped() {
    let (proxy, _) = tls_calendar().await;
    let client = Client::new(&trusting(&proxy)).unwrap();
    let calendar = client.calendar(&proxy.url()).unwrap();
    match calendar.get_timestamp(&[5u8; 32]).await {
        Err(CalendarError::NotFound { reason, .. }) => {
            assert_eq!(reason, "Pending confirmation in Bitcoin blockchain_")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let calendar = client
        .calendar(&format!("{}/reason/", proxy.url()))
        .unwrap();
    match calendar.get_timestamp(&[5u8; 32]).await {
        Err(CalendarError::NotFound { reason, .. }) => {
            assert!(reason.starts_with("Gone_FAKE_ ok__1mxxx"), "{reason}");
            assert_eq!(reason.len(), ots_calendar::MAX_REASON_LEN);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let calendar = client
        .calendar(&format!("{}/teapot/", proxy.url()))
        .unwrap();
    assert!(matches!(
        calendar.submit(&[6u8; 32]).await,
        Err(CalendarError::Status { status: 418, .. })
    ));
}
