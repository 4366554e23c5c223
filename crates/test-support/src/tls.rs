//! A TLS-terminating proxy for tests: https on a free port of 127.0.0.1,
//! forwarding each connection's plaintext to a plain TCP (HTTP) address.
//!
//! The certificate is made at start: a throwaway CA ([`TlsProxy::ca_file`],
//! PEM, in a temp dir removed on drop) and a server certificate it signs
//! for `127.0.0.1` (IP SAN) and `localhost`, so a client trusting the CA
//! file reaches `https://127.0.0.1:PORT` ([`TlsProxy::url`]) with full
//! certificate checks, and one that does not fails the handshake.
//!
//! The proxy runs on a thread of its own with a single-threaded Tokio
//! runtime, so it serves plain `#[test]`s (a child process as the client)
//! and `#[tokio::test]`s alike. Dropping the [`TlsProxy`] stops it and
//! waits for the thread; open connections are cut.
//!
//! The upstream is only dialled when a client connects, so it may start
//! after the proxy (to name the proxy's URL in its own configuration).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The names the server certificate is valid for.
pub const CERT_NAMES: &[&str] = &["127.0.0.1", "localhost"];
/// The CA certificate's file name in the proxy's temp dir.
const CA_FILE_NAME: &str = "ca.pem";

/// A running TLS proxy; stopped on drop.
pub struct TlsProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    ca_file: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TlsProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection,
    /// once its TLS handshake is done, to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<TlsProxy> {
        let (config, ca_pem) = server_config().map_err(io::Error::other)?;
        let dir = tempfile::tempdir()?;
        let ca_file = dir.path().join(CA_FILE_NAME);
        std::fs::write(&ca_file, ca_pem)?;
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let thread = std::thread::Builder::new()
            .name(format!("tls-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, acceptor, upstream, stop_rx).await,
                        Err(e) => eprintln!("tls proxy {addr}: {e}"),
                    }
                });
            })?;
        Ok(TlsProxy {
            addr,
            upstream,
            ca_file,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The PEM file of the CA that signed the proxy's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A rustls server config with a fresh certificate for [`CERT_NAMES`]
/// signed by a fresh CA, and that CA's PEM.
fn server_config() -> Result<(ServerConfig, String), Box<dyn std::error::Error + Send + Sync>> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test-support throwaway CA");
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let names: Vec<String> = CERT_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca, &ca_key)?;

    // ring only: the same provider as reqwest's rustls, whatever else the
    // build enables.
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), CertificateDer::from(ca.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, ca.pem()))
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                tokio::spawn(forward(client, acceptor.clone(), upstream));
            }
        }
    }
}

/// One connection: the handshake (a client that does not trust us fails
/// here), then bytes both ways until either side closes.
async fn forward(client: TcpStream, acceptor: TlsAcceptor, upstream: SocketAddr) {
    let Ok(mut tls) = acceptor.accept(client).await else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client trusting the CA file reaches the upstream through the
    /// proxy, by IP, with full certificate checks.
    #[tokio::test]
    async fn forwards_to_the_upstream_over_verified_tls() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let proxy = TlsProxy::start(upstream).unwrap();

        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let pem = std::fs::read(proxy.ca_file()).unwrap();
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(
            std::net::IpAddr::from(Ipv4Addr::LOCALHOST).into(),
        );
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        tls.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        assert!(proxy.url().starts_with("https://127.0.0.1:"));
    }
}
