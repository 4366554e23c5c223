//! What the client tells the person running it, on stderr, in the
//! reference's words and levels: `-v` adds debug lines, `-q` hides info
//! lines, `-qq` hides warnings too.

/// Message levels, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Details (`-v`).
    Debug,
    /// Progress and results (the default).
    Info,
    /// Something was skipped.
    Warning,
    /// Something failed.
    Error,
}

/// A stderr logger with a verbosity threshold.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    threshold: Level,
}

impl Log {
    /// `verbosity` = number of `-v` minus number of `-q`.
    pub fn new(verbosity: i32) -> Self {
        let threshold = match verbosity {
            v if v > 0 => Level::Debug,
            0 => Level::Info,
            -1 => Level::Warning,
            _ => Level::Error,
        };
        Log { threshold }
    }

    /// Prints `message` if `level` passes the threshold.
    pub fn log(&self, level: Level, message: impl AsRef<str>) {
        if level >= self.threshold {
            // Above a progress bar, if one is on screen.
            crate::progress::suspend(|| eprintln!("{}", message.as_ref()));
        }
    }

    /// Debug line.
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(Level::Debug, message)
    }

    /// Info line.
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(Level::Info, message)
    }

    /// Warning line.
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(Level::Warning, message)
    }

    /// Error line.
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(Level::Error, message)
    }
}
