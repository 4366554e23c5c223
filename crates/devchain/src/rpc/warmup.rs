//! Bitcoin Core's start-up ("warm-up") as its RPC server shows it: from
//! the moment the port listens until everything is loaded, Core answers
//! every well-formed request with `-28` (`RPC_IN_WARMUP`) and the current
//! step of [`WARMUP_STAGES`]. A warm-up of duration `d` spends `d / 4` on
//! each step.

use std::time::{Duration, Instant};

/// Core's start-up steps as its RPC reports them during warm-up.
pub const WARMUP_STAGES: [&str; 4] = [
    "Loading banlist…",
    "Loading block index…",
    "Verifying blocks…",
    "Loading wallet…",
];

/// A warm-up in progress: started at an instant, lasting a duration.
#[derive(Debug, Clone, Copy)]
pub struct Warmup {
    start: Instant,
    duration: Duration,
}

impl Warmup {
    /// A warm-up starting now and lasting `duration`.
    pub fn new(duration: Duration) -> Self {
        Warmup {
            start: Instant::now(),
            duration,
        }
    }

    /// The step Core would report now, or `None` once warm-up is over.
    pub fn status(&self) -> Option<&'static str> {
        let elapsed = self.start.elapsed();
        if elapsed >= self.duration {
            return None;
        }
        let stage = elapsed.as_nanos() * WARMUP_STAGES.len() as u128 / self.duration.as_nanos();
        WARMUP_STAGES
            .get(stage as usize)
            .or(WARMUP_STAGES.last())
            .copied()
    }

    /// Time left until warm-up ends (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.duration.saturating_sub(self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_cores_order_then_end() {
        let w = Warmup::new(Duration::from_secs(3600));
        assert_eq!(w.status(), Some("Loading banlist…"));
        assert!(w.remaining() > Duration::from_secs(3000));
        let over = Warmup::new(Duration::ZERO);
        assert_eq!(over.status(), None);
        assert_eq!(over.remaining(), Duration::ZERO);
    }
}
