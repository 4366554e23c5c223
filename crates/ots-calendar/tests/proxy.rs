//! The client through a SOCKS5 proxy (`ClientConfig::proxy`): requests to
//! an axum calendar on 127.0.0.1 go through `test_support::socks5`'s
//! proxy, named by host name with `socks5h://` (the proxy resolves it),
//! and https through the proxy to the TLS test proxy; a proxy URL that
//! is not one is a setup error.

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use ots_calendar::{CalendarError, Client, ClientConfig};
use ots_proof::{Attestation, Op, Timestamp};
use test_support::socks5::Socks5Proxy;
use test_support::tls::TlsProxy;

async fn digest(body: Bytes) -> Vec<u8> {
    let mut t = Timestamp::new(body.to_vec()).unwrap();
    t.add_path([Op::append(vec![1; 8]).unwrap(), Op::Sha256])
        .unwrap()
        .add_attestation(Attestation::pending("https://calendar.example").unwrap());
    t.serialize().unwrap()
}

#[tokio::test]
async fn requests_go_through_the_socks5_proxy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/digest", post(digest))).await
    });
    let proxy = Socks5Proxy::start().unwrap();
    let config = ClientConfig {
        proxy: Some(format!("socks5h://{}", proxy.host_port())),
        ..ClientConfig::default()
    };
    let client = Client::new(&config).unwrap();
    let url = format!("http://localhost:{}", addr.port());
    let reply = client
        .calendar(&url)
        .unwrap()
        .submit(&[3; 32])
        .await
        .unwrap();
    assert_eq!(reply.msg(), &[3; 32]);
    assert_eq!(
        proxy.destinations(),
        vec![format!("localhost:{}", addr.port())]
    );

    // https through the proxy: the TLS handshake is end to end.
    let tls = TlsProxy::start(addr).unwrap();
    let config = ClientConfig {
        proxy: Some(format!("socks5h://{}", proxy.host_port())),
        ca_file: Some(tls.ca_file().to_path_buf()),
        ..ClientConfig::default()
    };
    let client = Client::new(&config).unwrap();
    let reply = client
        .calendar(&tls.url())
        .unwrap()
        .submit(&[4; 32])
        .await
        .unwrap();
    assert_eq!(reply.msg(), &[4; 32]);
    assert_eq!(proxy.destinations()[1], tls.addr().to_string());

    // Without a proxy (and none in the environment of this test), direct.
    let direct = ClientConfig {
        proxy: None,
        ..ClientConfig::default()
    };
    let env_proxy = ["ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !env_proxy {
        let client = Client::new(&direct).unwrap();
        client
            .calendar(&url)
            .unwrap()
            .submit(&[5; 32])
            .await
            .unwrap();
        assert_eq!(proxy.destinations().len(), 2);
    }
}

#[test]
fn a_bad_proxy_url_is_a_setup_error() {
    let config = ClientConfig {
        proxy: Some("not a url".into()),
        ..ClientConfig::default()
    };
    match Client::new(&config) {
        Err(CalendarError::Setup { message }) => {
            assert!(message.starts_with("proxy not a url: "), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
