//! What each connection is doing, for the timeouts and the slot reclaim of
//! [`super`]: a registry of live connections, the IO and service wrappers
//! that keep each one's state current, and the sweep that closes those
//! over a limit.
//!
//! A connection is in one of three phases: waiting for a request head
//! (from its start, or from the first byte of a later request), busy with
//! a request (from the head's dispatch until the answer's body is handed
//! to hyper), or idle between requests. Apart from the phase it records
//! since when a write has been pending without progress.
//!
//! The hot path only stores to atomics: the clock is a coarse one the sweep
//! advances, no timer is armed per request or per write, and hyper's own
//! header read timer is off. The sweep runs every [`SWEEP_INTERVAL`] (less
//! with short limits) on a thread of its own. It closes a connection by
//! flagging it and waking its task: its next read (in [`Watched`]) writes
//! the canned answer due (`408`, `503`), if any, and sees EOF, and a write
//! pending fails, so hyper ends the connection and its slot is freed. The
//! answer is the only thing in flight, since the connection is not busy.
//! The sweep never touches the socket itself: a second handle (`dup(2)`)
//! would cost every connection a second descriptor (16,384 clients would
//! need 32,768 under the process's limit).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
    Ordering::SeqCst,
};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Response};
use prometheus_client::metrics::gauge::Gauge;
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{canned, Limits};

/// How often the sweep looks at every connection (at most; a quarter of
/// the shortest limit when that is less): the precision of the timeouts.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// The sweep's shortest interval, whatever the limits.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(10);

const AWAIT_HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;
const CLOSED: u8 = 3;

/// Milliseconds since the registry's start, plus one (0 means "none"),
/// advanced by the sweep.
struct Clock {
    epoch: Instant,
    now: AtomicU64,
}

impl Clock {
    fn now(&self) -> u64 {
        self.now.load(Relaxed)
    }

    fn tick(&self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        self.now.store(now, Relaxed);
        now
    }
}

/// One live connection.
pub struct Conn {
    id: u64,
    clock: Arc<Clock>,
    /// When it was accepted.
    born: u64,
    /// Past this age (ms) its answers carry `connection: close`.
    max_age: u64,
    phase: AtomicU8,
    /// When the phase began; for an idle connection, moved on by every
    /// write that makes progress (it is not waiting for the client until
    /// its answer is out).
    phase_since: AtomicU64,
    /// When the pending write began to wait; 0 when none is pending.
    write_since: AtomicU64,
    /// Set by the sweep: the connection's IO ends at its next poll.
    closing: AtomicBool,
    /// On the fast path ([`super::fast`]) and waiting for a head with
    /// nothing of it read: closed at once by [`Tracker::drain`].
    fast_waiting: AtomicBool,
    /// What to write before it ends (a canned `408`/`503`), taken once.
    answer: Mutex<Option<Vec<u8>>>,
    /// The connection's task, as of its last IO poll: woken to close.
    waker: AtomicWaker,
}

impl Conn {
    /// Some bytes came in: an idle connection is now reading a head.
    #[inline]
    fn on_read(&self) {
        if self.phase.load(Relaxed) == IDLE {
            let now = self.clock.now();
            if self
                .phase
                .compare_exchange(IDLE, AWAIT_HEAD, Relaxed, Relaxed)
                .is_ok()
            {
                self.phase_since.store(now, Relaxed);
            }
        }
    }

    #[inline]
    fn on_write<T>(&self, result: &Poll<std::io::Result<T>>, progressed: impl Fn(&T) -> bool) {
        match result {
            Poll::Pending => {
                if self.write_since.load(Relaxed) == 0 {
                    self.write_since.store(self.clock.now(), Relaxed);
                }
            }
            Poll::Ready(Ok(n)) if progressed(n) => {
                if self.write_since.load(Relaxed) != 0 {
                    self.write_since.store(0, Relaxed);
                    if self.phase.load(Relaxed) != BUSY {
                        self.phase_since.store(self.clock.now(), Relaxed);
                    }
                }
            }
            Poll::Ready(_) => {}
        }
    }

    /// A request head was dispatched; `false` if the sweep closed the
    /// connection meanwhile (it may have written a canned answer).
    pub(super) fn begin_request(&self) -> bool {
        let mut phase = self.phase.load(Relaxed);
        loop {
            if phase == CLOSED {
                return false;
            }
            match self
                .phase
                .compare_exchange_weak(phase, BUSY, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => phase = now,
            }
        }
    }

    /// The answer's body is done (or the request was dropped).
    pub(super) fn end_request(&self) {
        let now = self.clock.now();
        if self
            .phase
            .compare_exchange(BUSY, IDLE, Relaxed, Relaxed)
            .is_ok()
        {
            self.phase_since.store(now, Relaxed);
        }
    }

    /// The fast path is (or no longer is) waiting for a head with
    /// nothing of it read.
    pub(super) fn set_fast_waiting(&self, waiting: bool) {
        self.fast_waiting.store(waiting, SeqCst);
    }

    pub(super) fn past_max_age(&self) -> bool {
        self.clock.now().saturating_sub(self.born) >= self.max_age
    }

    /// Since when the connection has been holding its slot without
    /// progress, if it is: a pending write that the peer does not take,
    /// or waiting for the client (idle, or a head not yet complete). Busy
    /// connections are waiting for us.
    fn stalled_since(&self) -> Option<u64> {
        let write = self.write_since.load(Relaxed);
        if write != 0 {
            return Some(write);
        }
        match self.phase.load(Relaxed) {
            AWAIT_HEAD | IDLE => Some(self.phase_since.load(Relaxed)),
            _ => None,
        }
    }

    /// Closes the connection if it is still in `expected` (any phase but
    /// closed if `None`), writing `answer` first; `false` if it was not.
    fn close(&self, expected: Option<u8>, answer: Option<&[u8]>) -> bool {
        let was = match expected {
            Some(phase) => self
                .phase
                .compare_exchange(phase, CLOSED, Relaxed, Relaxed)
                .is_ok(),
            None => self.phase.swap(CLOSED, Relaxed) != CLOSED,
        };
        if was {
            if let Some(bytes) = answer {
                *self
                    .answer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bytes.to_vec());
            }
            self.closing.store(true, Release);
            self.waker.wake();
        }
        was
    }
}

/// Why the sweep closes a connection.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// The peer did not take our bytes within the write timeout, or the
    /// connection outlived its age and grace: closed as it is.
    Kill,
    /// Waited past the header read timeout for a head: `408`.
    HeadTimeout,
    /// Idle past the idle timeout or its age: closed quietly.
    Idle,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: FxHashMap<u64, Arc<Conn>>,
    /// The stalled connections the last sweep found, each with the time
    /// its stall began, the longest stalled last. Weak, so that a
    /// connection that has ended meanwhile does not keep its socket open.
    reclaimable: Vec<(u64, Weak<Conn>)>,
}

/// The live connections of one listener.
pub struct Tracker {
    clock: Arc<Clock>,
    registry: Mutex<Registry>,
    header_timeout: u64,
    idle_timeout: u64,
    write_timeout: u64,
    max_age: u64,
    age_grace: u64,
    reclaim_after: u64,
    sweep_interval: Duration,
    /// The open-connections gauge of the metrics, if counted.
    open: Option<Gauge>,
    /// Set at shutdown ([`Tracker::drain`]).
    draining: AtomicBool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

impl Tracker {
    /// A tracker enforcing `limits`; connections past their age get
    /// `age_grace` to finish their last answer.
    pub fn new(limits: &Limits, age_grace: Duration) -> Tracker {
        let clock = Arc::new(Clock {
            epoch: Instant::now(),
            now: AtomicU64::new(1),
        });
        let shortest = [
            limits.header_read_timeout,
            limits.idle_timeout,
            limits.write_timeout,
            limits.reclaim_after,
        ]
        .into_iter()
        .min()
        .unwrap_or(SWEEP_INTERVAL);
        Tracker {
            clock,
            registry: Mutex::default(),
            header_timeout: millis(limits.header_read_timeout),
            idle_timeout: millis(limits.idle_timeout),
            write_timeout: millis(limits.write_timeout),
            max_age: millis(limits.max_connection_age),
            age_grace: millis(age_grace),
            reclaim_after: millis(limits.reclaim_after),
            sweep_interval: (shortest / 4).clamp(MIN_SWEEP_INTERVAL, SWEEP_INTERVAL),
            open: None,
            draining: AtomicBool::new(false),
        }
    }

    /// At shutdown, for the fast path ([`super::fast`]): closes its
    /// connections waiting for a head with nothing of it read (idle, or
    /// new), and tells the others to close after their answer. A
    /// connection with part of a head is left to finish it, and hyper's
    /// connections to their graceful shutdown, which does the same.
    pub fn drain(&self) {
        // SeqCst with the fast path's store then load: either it sees
        // the flag, or this sees it waiting.
        self.draining.store(true, SeqCst);
        let conns: Vec<Arc<Conn>> = self.lock().conns.values().cloned().collect();
        for conn in conns {
            if conn.fast_waiting.load(SeqCst) {
                conn.close(None, None);
            }
        }
    }

    /// Whether [`Tracker::drain`] was called.
    pub fn draining(&self) -> bool {
        self.draining.load(SeqCst)
    }

    /// Keeps `gauge` at the number of registered connections.
    pub fn count_in(&mut self, gauge: Gauge) {
        self.open = Some(gauge);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The registry holds no invariant a panic could break half-way.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection (served through a [`Watched`]).
    pub fn register(&self) -> Arc<Conn> {
        let now = self.clock.now();
        let mut registry = self.lock();
        registry.next_id += 1;
        let conn = Arc::new(Conn {
            id: registry.next_id,
            clock: self.clock.clone(),
            born: now,
            max_age: self.max_age,
            phase: AtomicU8::new(AWAIT_HEAD),
            phase_since: AtomicU64::new(now),
            write_since: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            fast_waiting: AtomicBool::new(false),
            answer: Mutex::new(None),
            waker: AtomicWaker::new(),
        });
        registry.conns.insert(conn.id, conn.clone());
        if let Some(g) = &self.open {
            g.inc();
        }
        conn
    }

    /// Forgets a connection whose task has ended.
    pub fn unregister(&self, conn: &Conn) {
        let removed = self.lock().conns.remove(&conn.id).is_some();
        if let (true, Some(g)) = (removed, &self.open) {
            g.dec();
        }
    }

    /// Closes the connection that has been stalled the longest (at least
    /// the reclaim threshold, as of the last sweep) so that a new client
    /// can have its slot; `false` if there is none.
    pub fn reclaim(&self) -> bool {
        loop {
            let Some((since, conn)) = self.lock().reclaimable.pop() else {
                return false;
            };
            let Some(conn) = conn.upgrade() else {
                continue;
            };
            // Still stalled since then (no progress since the sweep)?
            if conn.stalled_since() != Some(since) {
                continue;
            }
            let closed = if conn.write_since.load(Relaxed) != 0 {
                conn.close(None, None)
            } else {
                match conn.phase.load(Relaxed) {
                    IDLE => conn.close(Some(IDLE), None),
                    AWAIT_HEAD => conn.close(
                        Some(AWAIT_HEAD),
                        Some(&canned("503 Service Unavailable", "too many connections")),
                    ),
                    _ => false,
                }
            };
            if closed {
                tracing::debug!(
                    stalled_ms = self.clock.now().saturating_sub(since),
                    "closed a stalled connection for a new client"
                );
                return true;
            }
        }
    }

    /// Starts the sweep on a thread of its own, until the returned
    /// [`Sweeper`] is dropped. Not on the accept loop's runtime: that one
    /// also runs the aggregator's rounds, which the sweep must never delay.
    pub fn start_sweep(self: Arc<Self>) -> std::io::Result<Sweeper> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("otsd-conn-sweep".into())
            .spawn(move || {
                while !stopped.load(Relaxed) {
                    std::thread::park_timeout(self.sweep_interval);
                    if stopped.load(Relaxed) {
                        break;
                    }
                    self.sweep_once(self.clock.tick());
                }
            })?;
        Ok(Sweeper {
            stop,
            thread: Some(thread),
        })
    }

    fn verdict(&self, conn: &Conn, now: u64) -> Option<Verdict> {
        let phase = conn.phase.load(Relaxed);
        if phase == CLOSED {
            return None;
        }
        let age = now.saturating_sub(conn.born);
        let write = conn.write_since.load(Relaxed);
        if write != 0 && now.saturating_sub(write) >= self.write_timeout {
            return Some(Verdict::Kill);
        }
        if age >= self.max_age.saturating_add(self.age_grace) {
            return Some(Verdict::Kill);
        }
        if write != 0 {
            return None;
        }
        let waited = now.saturating_sub(conn.phase_since.load(Relaxed));
        match phase {
            AWAIT_HEAD if waited >= self.header_timeout => Some(Verdict::HeadTimeout),
            IDLE if waited >= self.idle_timeout || age >= self.max_age => Some(Verdict::Idle),
            _ => None,
        }
    }

    /// One sweep at clock reading `now`.
    fn sweep_once(&self, now: u64) {
        let mut due = Vec::new();
        let mut reclaimable = Vec::new();
        {
            let registry = self.lock();
            for conn in registry.conns.values() {
                if let Some(verdict) = self.verdict(conn, now) {
                    due.push((verdict, conn.clone()));
                } else if let Some(since) = conn.stalled_since() {
                    if now.saturating_sub(since) >= self.reclaim_after {
                        reclaimable.push((since, Arc::downgrade(conn)));
                    }
                }
            }
        }
        // Longest stalled last, for `pop`.
        reclaimable.sort_unstable_by_key(|(since, _)| std::cmp::Reverse(*since));
        self.lock().reclaimable = reclaimable;
        for (verdict, conn) in due {
            let closed = match verdict {
                Verdict::Kill => conn.close(None, None),
                Verdict::HeadTimeout => conn.close(
                    Some(AWAIT_HEAD),
                    Some(&canned("408 Request Timeout", "header read timeout")),
                ),
                Verdict::Idle => conn.close(Some(IDLE), None),
            };
            if closed {
                tracing::debug!(?verdict, "closed a connection");
            }
        }
    }
}

/// The running sweep; stops it (and waits for its thread) when dropped.
pub struct Sweeper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A connection's socket, keeping its state current as hyper reads and
/// writes.
pub struct Watched {
    pub io: TcpStream,
    pub conn: Arc<Conn>,
    /// Bytes already read from the socket, given to the next reads first
    /// (a connection the fast path hands to hyper, [`super::fast`]).
    pub prefix: Vec<u8>,
}

impl Watched {
    /// Whether the sweep closed the connection; registers the task to be
    /// woken when it does.
    #[inline]
    fn closing(&self, cx: &Context<'_>) -> bool {
        if self.conn.closing.load(Acquire) {
            return true;
        }
        self.conn.waker.register(cx.waker());
        // Closed between the check and the registration: seen now.
        self.conn.closing.load(Acquire)
    }
}

/// A write on a connection the sweep closed.
fn aborted() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection closed by the server",
    )
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.closing(cx) {
            let answer = this
                .conn
                .answer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(bytes) = answer {
                // Straight to the socket (non-blocking, best effort; the
                // answer is small and nothing else is queued), whatever
                // readiness the reactor has seen so far.
                let _ = socket2::SockRef::from(&this.io).send(&bytes);
            }
            // EOF: hyper ends the connection.
            return Poll::Ready(Ok(()));
        }
        if !this.prefix.is_empty() {
            let n = buf.remaining().min(this.prefix.len());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.on_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.closing(cx) {
            return Poll::Ready(Err(aborted()));
        }
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.conn.on_write(&result, |n| *n > 0);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.closing(cx) {
            return Poll::Ready(Err(aborted()));
        }
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.conn.on_write(&result, |n| *n > 0);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The connection was closed by the sweep as a request came in.
#[derive(Debug, thiserror::Error)]
#[error("connection closed by the server")]
pub struct Closed;

/// Marks a request busy until dropped (with the answer's body, or with
/// the request if it never got one).
pub(super) struct Busy(pub(super) Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// A connection's service: the app's, keeping the connection's phase
/// current and closing it, after the answer, past its age.
#[derive(Clone)]
pub struct Tracked<S> {
    pub inner: S,
    pub conn: Arc<Conn>,
}

impl<S, B> hyper::service::Service<Request<hyper::body::Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Unpin,
{
    type Response = Response<TrackedBody<B>>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<hyper::body::Incoming>) -> Self::Future {
        if !self.conn.begin_request() {
            return TrackedFuture {
                inner: None,
                busy: None,
            };
        }
        TrackedFuture {
            busy: Some(Busy(self.conn.clone())),
            inner: Some(self.inner.call(req)),
        }
    }
}

/// [`Tracked`]'s answer in the making.
pub struct TrackedFuture<F> {
    inner: Option<F>,
    busy: Option<Busy>,
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<TrackedBody<B>>, Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(Box::new(Closed)));
        };
        let mut response = match std::task::ready!(Pin::new(inner).poll(cx)) {
            Ok(r) => r,
            Err(e) => return Poll::Ready(Err(e.into())),
        };
        let busy = this.busy.take();
        if let Some(Busy(conn)) = &busy {
            if conn.past_max_age() {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, _busy: busy })))
    }
}

/// An answer's body; the request stays busy until hyper drops it.
pub struct TrackedBody<B> {
    inner: B,
    _busy: Option<Busy>,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits() -> Limits {
        Limits {
            header_read_timeout: 100 * MS,
            idle_timeout: 200 * MS,
            write_timeout: 300 * MS,
            max_connection_age: 10_000 * MS,
            reclaim_after: 50 * MS,
            ..Limits::default()
        }
    }

    /// A connected pair: the server side and the client side.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Registers the server side of a new pair and reads it, as hyper
    /// would, on `rt` through a [`Watched`] until EOF or an error, then
    /// closes it; returns the connection and the client side.
    fn serve(rt: &tokio::runtime::Runtime, tracker: &Tracker) -> (Arc<Conn>, std::net::TcpStream) {
        let (server, client) = pair();
        server.set_nonblocking(true).unwrap();
        let conn = tracker.register();
        let c = conn.clone();
        rt.spawn(async move {
            let mut w = Watched {
                io: TcpStream::from_std(server).unwrap(),
                conn: c,
                prefix: Vec::new(),
            };
            let mut buf = [0u8; 64];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut w, &mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        (conn, client)
    }

    fn read_all(mut client: std::net::TcpStream) -> String {
        use std::io::Read;
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn at(tracker: &Tracker, now: u64) {
        tracker.clock.now.store(now, Relaxed);
    }

    #[test]
    fn each_limit_closes_its_phase_and_only_that() {
        let rt = runtime();
        let tracker = Tracker::new(&limits(), 1000 * MS);
        at(&tracker, 1);
        let (head, head_client) = serve(&rt, &tracker);
        let (idle, idle_client) = serve(&rt, &tracker);
        let (writing, writing_client) = serve(&rt, &tracker);
        let (busy, _busy_client) = serve(&rt, &tracker);
        for c in [&idle, &writing, &busy] {
            assert!(c.begin_request());
        }
        idle.end_request();
        writing.on_write::<usize>(&Poll::Pending, |_| true);
        // Busy for longer than every timeout but the age: left alone.
        tracker.sweep_once(150);
        assert_eq!(head.phase.load(Relaxed), CLOSED, "header timeout");
        assert!(read_all(head_client).starts_with("HTTP/1.1 408 Request Timeout"));
        assert_eq!(idle.phase.load(Relaxed), IDLE);
        tracker.sweep_once(250);
        assert_eq!(idle.phase.load(Relaxed), CLOSED, "idle timeout");
        assert_eq!(read_all(idle_client), "", "closed without a word");
        assert_eq!(writing.phase.load(Relaxed), BUSY);
        tracker.sweep_once(350);
        assert_eq!(writing.phase.load(Relaxed), CLOSED, "write timeout");
        assert_eq!(read_all(writing_client), "");
        assert_eq!(busy.phase.load(Relaxed), BUSY);
        // Past its age and the grace, even a busy connection goes.
        tracker.sweep_once(11_001);
        assert_eq!(busy.phase.load(Relaxed), CLOSED, "age");
        // A request arriving on a closed connection is refused.
        assert!(!busy.begin_request());
    }

    #[test]
    fn progress_restarts_the_clocks() {
        let tracker = Tracker::new(&limits(), 1000 * MS);
        at(&tracker, 1);
        let conn = tracker.register();
        assert!(conn.begin_request());
        conn.end_request();
        conn.on_write::<usize>(&Poll::Pending, |_| true);
        at(&tracker, 290);
        // The peer took some bytes: no longer a stalled write, and idle
        // only from now.
        conn.on_write(&Poll::Ready(Ok(10usize)), |n| *n > 0);
        tracker.sweep_once(400);
        assert_eq!(conn.phase.load(Relaxed), IDLE);
        // Bytes of a new head: waiting for it, from now.
        at(&tracker, 450);
        conn.on_read();
        assert_eq!(conn.phase.load(Relaxed), AWAIT_HEAD);
        tracker.sweep_once(540);
        assert_eq!(conn.phase.load(Relaxed), AWAIT_HEAD);
        tracker.sweep_once(560);
        assert_eq!(conn.phase.load(Relaxed), CLOSED);
    }

    #[test]
    fn reclaim_takes_the_longest_stalled_and_never_a_busy_one() {
        let tracker = Tracker::new(
            &Limits {
                reclaim_after: 50 * MS,
                ..Limits::default()
            },
            1000 * MS,
        );
        at(&tracker, 1);
        let busy = tracker.register();
        assert!(busy.begin_request());
        at(&tracker, 10);
        let writing = tracker.register();
        assert!(writing.begin_request());
        writing.on_write::<usize>(&Poll::Pending, |_| true);
        at(&tracker, 20);
        let idle = tracker.register();
        assert!(idle.begin_request());
        idle.end_request();
        at(&tracker, 65);
        let fresh = tracker.register();
        // Nothing had stalled long enough at the last sweep.
        assert!(!tracker.reclaim());
        tracker.sweep_once(100);
        assert!(tracker.reclaim());
        assert_eq!(writing.phase.load(Relaxed), CLOSED, "stalled since 10");
        assert!(tracker.reclaim());
        assert_eq!(idle.phase.load(Relaxed), CLOSED, "stalled since 20");
        // The fresh one (35 ms) is under the threshold; the busy one is
        // never taken.
        assert!(!tracker.reclaim());
        assert_eq!(fresh.phase.load(Relaxed), AWAIT_HEAD);
        assert_eq!(busy.phase.load(Relaxed), BUSY);
        // A stall that ended after the sweep is not taken either.
        tracker.sweep_once(200);
        assert!(fresh.begin_request());
        assert!(!tracker.reclaim());
        assert_eq!(fresh.phase.load(Relaxed), BUSY);
    }
}
