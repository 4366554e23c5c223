//! The upstream calendars of the aggregator: each round's tip is
//! submitted to all of them at once through the shared calendar client
//! (`ots-calendar`, which reads at most 10,000 bytes of a reply and
//! decodes it rooted at the tip), the replies that are valid are merged
//! under the tip, and each upstream's last success and last error are kept
//! for the info page.
//!
//! A reply is kept only if it decodes as a timestamp of the tip within the
//! protocol's limits (done by the client: every op's limits, the depth,
//! the attestations' payloads; and every leaf of a decoded tree is an
//! attestation), holds a pending attestation (only its paths to pending
//! attestations are passed on: no calendar can have more for a tip it was
//! just sent, and a client given a Bitcoin attestation with its reply
//! would take the proof for complete and never upgrade it, as the
//! private calendar's [`crate::upstream::proof::accept_reply`] judges
//! too), and, merged with the replies kept before it, still leaves
//! every client's proof within the 10,000 bytes a client reads and within
//! the depth a client decodes (256 nodes from its own digest, less room
//! for its own tree of files). Anything else is logged and dropped, and
//! counts as that upstream's failure.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ots_calendar::{Calendar, CalendarError, Client, ClientConfig, Redirects};
use ots_proof::{Attestation, Timestamp};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::AggregateSettings;
use crate::metrics::upstream::{Figures, Outcome, UpstreamMetrics};
use crate::metrics::Metrics;

/// How much longer than the round's deadline the client itself waits.
const CLIENT_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

/// Why an upstream's answer to a round was not used.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The client's error: unreachable, TLS, timeout, an HTTP status, a
    /// reply over 10,000 bytes, or one that does not decode rooted at the
    /// tip.
    #[error("{0}")]
    Calendar(#[from] CalendarError),
    /// No answer within `--upstream-timeout`.
    #[error("calendar {url}: no answer within {}ms (--upstream-timeout)", bound.as_millis())]
    Timeout {
        /// The calendar.
        url: String,
        /// The timeout.
        bound: Duration,
    },
    /// No answer within `--upstream-grace` of the others' answers.
    #[error("calendar {url}: no answer within {}ms of the others' (--upstream-grace)", bound.as_millis())]
    Late {
        /// The calendar.
        url: String,
        /// The grace.
        bound: Duration,
    },
    /// No pending attestation in the reply: nothing a client can upgrade.
    #[error("calendar {url}: the reply has no pending attestation")]
    NoPending {
        /// The calendar.
        url: String,
    },
    /// Its messages hold too many bytes once decoded (10,000 bytes of
    /// `reverse`s on a long message decode to megabytes, in every client).
    #[error("calendar {url}: the reply's messages hold {bytes} bytes once decoded, over {max}")]
    TooManyBytes {
        /// The calendar.
        url: String,
        /// Their bytes.
        bytes: usize,
        /// [`crate::upstream::proof::MAX_MESSAGE_BYTES`].
        max: usize,
    },
    /// With the clients' paths in front of it, the clients' proofs would
    /// be deeper than a client decodes.
    #[error("calendar {url}: the reply ({depth} nodes deep) leaves no depth for the path in front of it (at most {max})")]
    TooDeep {
        /// The calendar.
        url: String,
        /// The reply's depth, in nodes from the tip.
        depth: usize,
        /// The most the round's paths leave.
        max: usize,
    },
    /// Merged with the replies kept before it, the clients' proofs would
    /// exceed what a client reads.
    #[error("calendar {url}: the reply ({len} bytes) leaves no room in a {max}-byte proof")]
    NoRoom {
        /// The calendar.
        url: String,
        /// The reply's size, serialized.
        len: usize,
        /// A client's reply limit.
        max: usize,
    },
}

/// What the info page shows of one upstream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamStatus {
    /// The calendar's URL.
    pub url: String,
    /// Unix time of its last kept reply.
    pub last_success: Option<u64>,
    /// Its last failure, as logged.
    pub last_error: Option<String>,
    /// Unix time of its last failure.
    pub last_error_at: Option<u64>,
    /// Rounds it answered with a kept reply.
    pub answered: u64,
    /// Rounds it failed.
    pub failed: u64,
}

struct Upstream {
    calendar: Calendar,
    status: Mutex<UpstreamStatus>,
}

/// The upstream calendars and their state.
pub struct Upstreams {
    list: Vec<Upstream>,
    min: usize,
    timeout: Duration,
    grace: Duration,
    /// Each upstream's requests, once registered.
    metrics: OnceLock<UpstreamMetrics>,
    /// The URLs as given (the metrics' label values).
    configured: Vec<String>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("urls", &self.urls())
            .field("min", &self.min)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Upstreams {
    /// The upstreams of `settings`, reached through one client (one
    /// connection pool, the system's roots plus `ca_file`).
    pub fn new(settings: &AggregateSettings) -> Result<Upstreams, CalendarError> {
        let client = Client::new(&ClientConfig {
            // A backstop only: the round's own deadline ends the wait
            // first, so that a silent upstream is always reported as one.
            timeout: settings.upstream_timeout + CLIENT_TIMEOUT_MARGIN,
            ca_file: settings.ca_file.clone(),
            user_agent: concat!("otsd-aggregate/", env!("CARGO_PKG_VERSION")).to_string(),
            // An upstream may not send rounds to other hosts.
            redirects: Redirects::SameOrigin,
            ..ClientConfig::default()
        })?;
        let list = settings
            .upstreams
            .iter()
            .map(|url| {
                let calendar = client.calendar(url)?;
                let status = Mutex::new(UpstreamStatus {
                    url: calendar.url().to_string(),
                    ..UpstreamStatus::default()
                });
                Ok(Upstream { calendar, status })
            })
            .collect::<Result<Vec<_>, CalendarError>>()?;
        Ok(Upstreams {
            list,
            min: settings.upstream_min,
            timeout: settings.upstream_timeout,
            grace: settings.upstream_grace,
            metrics: OnceLock::new(),
            configured: settings.upstreams.clone(),
        })
    }

    /// The URLs, as parsed.
    pub fn urls(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|u| u.calendar.url().to_string())
            .collect()
    }

    /// How many must answer a round.
    pub fn min(&self) -> usize {
        self.min
    }

    /// Registers the `otsd_upstream_*` families on `metrics`: each
    /// round's submission by result and its duration, and each upstream's
    /// last success and last error (an aggregator keeps no backlog).
    pub fn register_metrics(self: &Arc<Self>, metrics: &Metrics) {
        if self.metrics.get().is_some() {
            return;
        }
        let me = self.clone();
        let registered = UpstreamMetrics::register(metrics, &self.configured, move || {
            me.status()
                .into_iter()
                .zip(&me.configured)
                .map(|(s, url)| Figures {
                    url: url.clone(),
                    last_success: s.last_success,
                    last_error_at: s.last_error_at,
                    ..Figures::default()
                })
                .collect()
        });
        let _ = self.metrics.set(registered);
    }

    /// Each upstream's state, in order.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.list.iter().map(|u| lock(&u.status).clone()).collect()
    }

    /// Submits `tip` to every upstream at once and waits until all have
    /// answered, or the timeout has passed, or `min` have answered and the
    /// others have had the grace time. Returns the kept replies merged
    /// under the tip, serialized (at most `budget` bytes and `max_depth`
    /// nodes deep, the tip included), with when each of them arrived; or,
    /// when fewer than `min` were kept, the text of the 503 naming every
    /// failure.
    pub async fn submit(
        &self,
        tip: [u8; 32],
        budget: usize,
        max_depth: usize,
    ) -> Result<(Vec<u8>, Vec<tokio::time::Instant>), String> {
        let n = self.list.len();
        let started = tokio::time::Instant::now();
        let (tx, mut rx) = mpsc::channel(n);
        // Dropped on return: an upstream still running is abandoned.
        let mut tasks = JoinSet::new();
        for (i, up) in self.list.iter().enumerate() {
            let (calendar, tx) = (up.calendar.clone(), tx.clone());
            tasks.spawn(async move {
                let mut reply = calendar.submit(&tip).await;
                // Once more on a transport failure: the calendar may have
                // closed the kept-alive connection just as it was reused
                // (the round's deadline still bounds the whole).
                if matches!(reply, Err(CalendarError::Unreachable { .. })) {
                    reply = calendar.submit(&tip).await;
                }
                let _ = tx.send((i, reply)).await;
            });
        }
        drop(tx);
        let mut deadline = started + self.timeout;
        // Whether the grace, not the timeout, ends the wait.
        let mut by_grace = false;
        let mut answers: Vec<Option<Result<Timestamp, Refused>>> = (0..n).map(|_| None).collect();
        let mut arrived = vec![started; n];
        let mut came = vec![false; n];
        let (mut done, mut answered) = (0, 0);
        while done < n {
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some((i, reply)) = received else { break };
            done += 1;
            let reply = reply.map_err(Refused::from);
            if reply.is_ok() {
                answered += 1;
                let graced = tokio::time::Instant::now() + self.grace;
                if answered == self.min && graced < deadline {
                    deadline = graced;
                    by_grace = true;
                }
            }
            answers[i] = Some(reply);
            arrived[i] = tokio::time::Instant::now();
            came[i] = true;
        }
        let mut merged = Timestamp::new(tip.to_vec()).expect("a 32-byte message");
        let mut tail = Vec::new();
        let mut kept = 0;
        let mut kept_at = Vec::with_capacity(n);
        let mut failures = Vec::new();
        for (i, ((up, answer), arrived)) in self.list.iter().zip(answers).zip(arrived).enumerate() {
            let url = up.calendar.url().to_string();
            let elapsed = came[i].then(|| arrived.saturating_duration_since(started));
            let answer = answer.unwrap_or_else(|| {
                Err(match by_grace {
                    true => Refused::Late {
                        url: url.clone(),
                        bound: self.grace,
                    },
                    false => Refused::Timeout {
                        url: url.clone(),
                        bound: self.timeout,
                    },
                })
            });
            let result = answer.and_then(|mut ts| {
                let pending = |a: &Attestation| matches!(a, Attestation::Pending { .. });
                if !crate::upstream::proof::prune(&mut ts, &pending) {
                    return Err(Refused::NoPending { url: url.clone() });
                }
                let bytes = crate::upstream::proof::message_bytes(&ts);
                if bytes > crate::upstream::proof::MAX_MESSAGE_BYTES {
                    return Err(Refused::TooManyBytes {
                        url: url.clone(),
                        bytes,
                        max: crate::upstream::proof::MAX_MESSAGE_BYTES,
                    });
                }
                // Merging never deepens: the reply's own depth decides.
                let depth = crate::upstream::proof::depth(&ts);
                if depth > max_depth {
                    return Err(Refused::TooDeep {
                        url: url.clone(),
                        depth,
                        max: max_depth,
                    });
                }
                let mut candidate = merged.clone();
                let len = ts.serialize().map_or(0, |b| b.len());
                // Same message by construction: decoded rooted at the tip.
                let _ = candidate.merge(ts);
                match candidate.serialize() {
                    Ok(bytes) if bytes.len() <= budget => Ok((candidate, bytes)),
                    _ => Err(Refused::NoRoom {
                        url: url.clone(),
                        len,
                        max: ots_calendar::MAX_REPLY_LEN,
                    }),
                }
            });
            if let Some(m) = self.metrics.get() {
                let outcome = match &result {
                    Ok(_) => Outcome::Accepted,
                    Err(Refused::Calendar(e)) => Outcome::of_error(e),
                    Err(
                        Refused::NoRoom { .. }
                        | Refused::TooDeep { .. }
                        | Refused::NoPending { .. }
                        | Refused::TooManyBytes { .. },
                    ) => Outcome::Refused,
                    Err(Refused::Timeout { .. } | Refused::Late { .. }) => Outcome::Failed,
                };
                let answered = match outcome {
                    Outcome::Failed => None,
                    _ => elapsed,
                };
                m.request(i, outcome, answered);
            }
            let mut status = lock(&up.status);
            match result {
                Ok((candidate, bytes)) => {
                    merged = candidate;
                    tail = bytes;
                    kept += 1;
                    kept_at.push(arrived);
                    if status.last_error_at.is_some() && status.last_error_at >= status.last_success
                    {
                        tracing::info!(upstream = %url, "upstream answering again");
                    }
                    status.answered += 1;
                    status.last_success = Some(unix_now());
                }
                Err(e) => {
                    let message = e.to_string();
                    // Logged at warn when it starts or changes (the texts
                    // are stable), so that a calendar down for hours is
                    // not a line per round.
                    if status.last_error.as_deref() != Some(&message)
                        || status.last_success > status.last_error_at
                    {
                        tracing::warn!(upstream = %url, error = %message, "upstream reply not used");
                    } else {
                        tracing::debug!(upstream = %url, error = %message, "upstream reply not used");
                    }
                    status.failed += 1;
                    status.last_error = Some(message.clone());
                    status.last_error_at = Some(unix_now());
                    failures.push(message);
                }
            }
        }
        if kept >= self.min {
            return Ok((tail, kept_at));
        }
        let mut body = format!(
            "upstream calendars unavailable: {kept} of {n} answered, at least {} needed\n",
            self.min
        );
        for f in failures {
            body.push_str(&f);
            body.push('\n');
        }
        Err(body)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Status figures only: nothing a panic could leave half-done matters.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
