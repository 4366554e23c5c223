//! A SOCKS5 proxy for tests (RFC 1928, no authentication, `CONNECT` only)
//! on a free port of 127.0.0.1. It records every destination it was asked
//! to reach ([`Socks5Proxy::destinations`]), as the client named it (a
//! host name stays a name: that is how a test sees a `socks5h` client
//! left name resolution to the proxy), then copies bytes both ways.
//!
//! Like [`crate::tls::TlsProxy`] it runs on a thread of its own with a
//! single-threaded Tokio runtime, for plain and async tests alike;
//! dropping it stops it and waits for the thread.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// SOCKS protocol version 5.
const VERSION: u8 = 5;
/// Method "no authentication required".
const NO_AUTH: u8 = 0;
/// Method reply "no acceptable methods".
const NO_METHOD: u8 = 0xff;
/// The `CONNECT` command.
const CONNECT: u8 = 1;
/// Address types.
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;
/// Replies: succeeded, general failure, command not supported.
const REP_OK: u8 = 0;
const REP_FAILURE: u8 = 1;
const REP_BAD_COMMAND: u8 = 7;

/// A running SOCKS5 proxy; stopped on drop.
pub struct Socks5Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Socks5Proxy {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> io::Result<Socks5Proxy> {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let thread = std::thread::Builder::new()
            .name(format!("socks5-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return eprintln!("socks5 proxy {addr}: {e}"),
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => return,
                            accepted = listener.accept() => {
                                let Ok((conn, _)) = accepted else { continue };
                                let recorded = recorded.clone();
                                tokio::spawn(async move {
                                    // A broken client only ends its own connection.
                                    let _ = serve(conn, recorded).await;
                                });
                            }
                        }
                    }
                });
            })?;
        Ok(Socks5Proxy {
            addr,
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `HOST:PORT` for a client's `--socks5-proxy`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Every `CONNECT` destination so far, in order: `host:port` as the
    /// client sent it (`[v6]:port` for IPv6).
    pub fn destinations(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Socks5Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One client: greeting, `CONNECT`, then a byte pipe.
async fn serve(mut conn: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> io::Result<()> {
    let mut head = [0u8; 2];
    conn.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    conn.read_exact(&mut methods).await?;
    if head[0] != VERSION || !methods.contains(&NO_AUTH) {
        conn.write_all(&[VERSION, NO_METHOD]).await?;
        return Ok(());
    }
    conn.write_all(&[VERSION, NO_AUTH]).await?;
    let mut req = [0u8; 4];
    conn.read_exact(&mut req).await?;
    let host = match req[3] {
        ATYP_V4 => {
            let mut a = [0u8; 4];
            conn.read_exact(&mut a).await?;
            Ipv4Addr::from(a).to_string()
        }
        ATYP_V6 => {
            let mut a = [0u8; 16];
            conn.read_exact(&mut a).await?;
            format!("[{}]", Ipv6Addr::from(a))
        }
        ATYP_NAME => {
            let mut len = [0u8; 1];
            conn.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            conn.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return Ok(()),
    };
    let mut port = [0u8; 2];
    conn.read_exact(&mut port).await?;
    let dest = format!("{host}:{}", u16::from_be_bytes(port));
    // The reply's bound address is not used by clients: all zeros.
    let reply = |rep: u8| [VERSION, rep, 0, ATYP_V4, 0, 0, 0, 0, 0, 0];
    if req[1] != CONNECT {
        conn.write_all(&reply(REP_BAD_COMMAND)).await?;
        return Ok(());
    }
    if let Ok(mut s) = seen.lock() {
        s.push(dest.clone());
    }
    let mut upstream = match TcpStream::connect(dest.as_str()).await {
        Ok(u) => u,
        Err(e) => {
            conn.write_all(&reply(REP_FAILURE)).await?;
            return Err(e);
        }
    };
    conn.write_all(&reply(REP_OK)).await?;
    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_and_records() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut c, _) = target.accept().await.unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.unwrap();
            c.write_all(&b).await.unwrap();
        });
        let proxy = Socks5Proxy::start().unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(&[5, 1, 0]).await.unwrap();
        let mut r = [0u8; 2];
        c.read_exact(&mut r).await.unwrap();
        assert_eq!(r, [5, 0]);
        let name = b"localhost";
        let mut req = vec![5, 1, 0, 3, name.len() as u8];
        req.extend_from_slice(name);
        req.extend_from_slice(&target_addr.port().to_be_bytes());
        c.write_all(&req).await.unwrap();
        let mut r = [0u8; 10];
        c.read_exact(&mut r).await.unwrap();
        assert_eq!(r[1], 0);
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        echo.await.unwrap();
        assert_eq!(
            proxy.destinations(),
            vec![format!("localhost:{}", target_addr.port())]
        );
    }
}
