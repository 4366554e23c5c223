//! Durations on the command line: a number in the flag's own unit, as
//! before (`--upstream-timeout 250` is milliseconds for `otsd aggregate`,
//! seconds for a calendar), or a number with its unit (`250ms`, `2s`,
//! `1.5s`, `5m`, `24h`), the same everywhere. The bare forms stay for the
//! scripts written against them; the unit forms are what the docs use,
//! since the two commands' bare units differ.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Longest duration a flag takes: ten years, past any timeout or interval
/// anyone means, short of overflowing an `Instant`.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why a duration flag's value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number, with or without a known unit.
    #[error("{0:?} is not a duration: a number, or one with ms, s, m or h (250ms, 2s, 5m)")]
    Malformed(String),
    /// Longer than [`MAX_DURATION`].
    #[error("{0:?} is longer than ten years")]
    TooLong(String),
    /// Zero, where the flag needs a positive duration.
    #[error("{0:?}: must be more than zero")]
    Zero(String),
}

/// A duration given in milliseconds when bare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

/// A duration given in seconds when bare (fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

/// Parses `value`, a bare number counting `bare`s.
pub fn parse(value: &str, bare: Duration) -> Result<Duration, DurationError> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let malformed = || DurationError::Malformed(value.to_owned());
    // Digits and dots only: no sign, exponent, "inf" or "NaN".
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(malformed());
    }
    let n: f64 = number.parse().map_err(|_| malformed())?;
    let unit = match unit.trim_start() {
        "" => bare,
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(malformed()),
    };
    let secs = n * unit.as_secs_f64();
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::TooLong(value.to_owned()));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| malformed())
}

/// [`Millis`], refusing zero (a round interval, a timeout).
pub fn positive_millis(value: &str) -> Result<Millis, DurationError> {
    match value.parse::<Millis>()? {
        Millis(Duration::ZERO) => Err(DurationError::Zero(value.to_owned())),
        m => Ok(m),
    }
}

/// How a default shows in `--help`: in a unit, so it reads the same under
/// both commands, and parses back to itself.
fn show(d: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        write!(f, "{}s", d.as_secs_f64())
    } else if ms % 3_600_000 == 0 && ms > 0 {
        write!(f, "{}h", ms / 3_600_000)
    } else if ms % 1000 == 0 {
        write!(f, "{}s", ms / 1000)
    } else {
        write!(f, "{ms}ms")
    }
}

impl FromStr for Millis {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, Duration::from_millis(1)).map(Millis)
    }
}

impl FromStr for Secs {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, Duration::from_secs(1)).map(Secs)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(self.0, f)
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn bare_numbers_count_the_flags_unit_and_units_mean_the_same_everywhere() {
        assert_eq!(parse("250", MS), Ok(Duration::from_millis(250)));
        assert_eq!(parse("250", S), Ok(Duration::from_secs(250)));
        assert_eq!(parse("1.5", S), Ok(Duration::from_millis(1500)));
        for bare in [MS, S] {
            assert_eq!(parse("250ms", bare), Ok(Duration::from_millis(250)));
            assert_eq!(parse("2s", bare), Ok(Duration::from_secs(2)));
            assert_eq!(parse("0.5s", bare), Ok(Duration::from_millis(500)));
            assert_eq!(parse("5m", bare), Ok(Duration::from_secs(300)));
            assert_eq!(parse("5min", bare), Ok(Duration::from_secs(300)));
            assert_eq!(parse("24h", bare), Ok(Duration::from_secs(86_400)));
            assert_eq!(parse(" 2 s ", bare), Ok(Duration::from_secs(2)));
            assert_eq!(parse("0", bare), Ok(Duration::ZERO));
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_value() {
        for bad in [
            "", "s", "-1", "-1s", "1e3", "inf", "NaN", "1.", ".5", "1..2", "2 sec", "2S", "1d",
            "0x10",
        ] {
            assert_eq!(
                parse(bad, S),
                Err(DurationError::Malformed(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse("100000000000h", S),
            Err(DurationError::TooLong("100000000000h".to_owned()))
        );
        let long = "9".repeat(400);
        assert!(parse(&long, S).is_err());
        assert_eq!(
            positive_millis("0s"),
            Err(DurationError::Zero("0s".to_owned()))
        );
        assert_eq!(positive_millis("1"), Ok(Millis(MS)));
    }

    #[test]
    fn defaults_show_in_a_unit_and_parse_back() {
        for d in [
            Duration::from_millis(250),
            Duration::from_millis(1500),
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(24 * 3600),
            Duration::ZERO,
        ] {
            let shown = Millis(d).to_string();
            assert_eq!(shown.parse::<Millis>(), Ok(Millis(d)), "{shown}");
            assert_eq!(shown.parse::<Secs>(), Ok(Secs(d)), "{shown}");
        }
        assert_eq!(Millis(Duration::from_millis(250)).to_string(), "250ms");
        assert_eq!(Secs(Duration::from_secs(86_400)).to_string(), "24h");
        assert_eq!(Secs(Duration::from_secs(10)).to_string(), "10s");
    }
}
