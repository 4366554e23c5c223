//! Progress on stderr, only when stderr is a terminal: a bar while hashing
//! large files, a spinner while waiting for calendars, a bar of calendar
//! requests while upgrading. Scripts and tests (stderr not a terminal) see
//! nothing of it.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ots_proof::HashOp;

/// The bar or spinner on screen, if any, so that messages are printed
/// above it rather than through it ([`suspend`]).
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn show(bar: &ProgressBar) {
    if let Ok(mut shown) = SHOWN.lock() {
        *shown = Some(bar.clone());
    }
}

fn hide() {
    if let Ok(mut shown) = SHOWN.lock() {
        *shown = None;
    }
}

/// Runs `f` (which prints to stderr) with the bar on screen, if any,
/// cleared first and drawn again after.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = SHOWN.lock().ok().and_then(|s| s.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Files smaller than this hash too fast to need a bar.
pub const BAR_THRESHOLD: u64 = 64 << 20;

/// A reader that advances a progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Hashes `file`, with a bar when it is large and stderr is a terminal.
pub fn hash_file(hash: HashOp, file: File, path: &Path) -> io::Result<Vec<u8>> {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < BAR_THRESHOLD || !io::stderr().is_terminal() {
        return hash.digest_reader(file);
    }
    let bar = ProgressBar::new(len).with_message(format!("hashing {}", path.display()));
    if let Ok(style) =
        ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style);
    }
    let digest = hash.digest_reader(Counting {
        inner: file,
        bar: bar.clone(),
    });
    bar.finish_and_clear();
    digest
}

/// A spinner shown until dropped (on a terminal only).
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Starts a spinner with `message`.
    pub fn start(message: String) -> Spinner {
        if !io::stderr().is_terminal() {
            return Spinner(None);
        }
        let spinner = ProgressBar::new_spinner().with_message(message);
        spinner.enable_steady_tick(Duration::from_millis(120));
        show(&spinner);
        Spinner(Some(spinner))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            hide();
            s.finish_and_clear();
        }
    }
}

/// Upgrade requests answered out of those sent, as a bar (on a terminal
/// only, and only once there are at least [`REQUEST_BAR_THRESHOLD`]).
pub struct RequestBar {
    bar: Option<ProgressBar>,
    total: u64,
}

/// Fewer requests than this finish too fast to need a bar.
pub const REQUEST_BAR_THRESHOLD: usize = 4;

impl RequestBar {
    /// A bar of no requests yet.
    pub fn start() -> RequestBar {
        RequestBar {
            bar: None,
            total: 0,
        }
    }

    /// `n` more requests to answer.
    pub fn add(&mut self, n: usize) {
        let done = self.total;
        self.total += n as u64;
        if self.bar.is_none()
            && self.total >= REQUEST_BAR_THRESHOLD as u64
            && io::stderr().is_terminal()
        {
            let bar = ProgressBar::new(0).with_message("asking calendars");
            if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len}") {
                bar.set_style(style);
            }
            // Every request of the rounds before was answered.
            bar.set_position(done);
            show(&bar);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(self.total);
        }
    }

    /// One more answered (or failed).
    pub fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            hide();
            bar.finish_and_clear();
        }
    }
}
