//! Which fee a timestamp transaction pays, and why: the higher of what the
//! node requires (the relay fee rate for a round's first version, the
//! BIP125 minimum — old fee plus the incremental relay fee for its size —
//! for a replacement) and the node's `estimatesmartfee` for the
//! confirmation target, capped by `--btc-max-fee`. Without an estimate
//! (Core answers `errors` and no `feerate` when it has too little data)
//! the minimum is paid. The rule that decided is kept with each version,
//! for the operator.

use bitcoin::Amount;
use serde::{Deserialize, Serialize};

/// The rule that set a version's fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeRule {
    /// The node's estimate for the confirmation target, above the minimum.
    Estimate,
    /// The minimum the node relays (the relay fee rate for a first
    /// version, the BIP125 minimum for a replacement), at or above the
    /// estimate.
    Minimum,
    /// The node had no estimate: the minimum.
    NoEstimate,
    /// The estimate would pass `--btc-max-fee`: the cap.
    Cap,
    /// The node refused the previous attempt's fee: that fee plus a
    /// quarter.
    AfterRejection,
}

impl FeeRule {
    /// A short machine-readable name (the JSON and metrics label).
    pub fn label(self) -> &'static str {
        match self {
            FeeRule::Estimate => "estimate",
            FeeRule::Minimum => "minimum",
            FeeRule::NoEstimate => "no_estimate",
            FeeRule::Cap => "cap",
            FeeRule::AfterRejection => "after_rejection",
        }
    }
}

/// Why a version pays what it pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeChoice {
    /// The rule that decided.
    pub rule: FeeRule,
    /// The node's estimate when the fee was chosen, sat/kvB (`None`: it
    /// had none).
    pub estimate: Option<u64>,
}

/// The minimum passes the cap: no version can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap {
    /// The minimum.
    pub minimum: Amount,
}

/// The fee of a version: the higher of `minimum` (what the node requires)
/// and `at_estimate` (the fee at the node's estimated rate, `None` without
/// an estimate), at most `max`. Refused when the minimum alone passes
/// `max`.
pub fn choose(
    minimum: Amount,
    at_estimate: Option<Amount>,
    max: Amount,
) -> Result<(Amount, FeeRule), OverCap> {
    if minimum > max {
        return Err(OverCap { minimum });
    }
    Ok(match at_estimate {
        None => (minimum, FeeRule::NoEstimate),
        Some(fee) if fee <= minimum => (minimum, FeeRule::Minimum),
        Some(fee) if fee > max => (max, FeeRule::Cap),
        Some(fee) => (fee, FeeRule::Estimate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Amount = Amount::from_sat(10_000);

    fn sat(n: u64) -> Amount {
        Amount::from_sat(n)
    }

    #[test]
    fn the_minimum_wins_over_a_lower_estimate() {
        assert_eq!(
            choose(sat(459), Some(sat(300)), MAX),
            Ok((sat(459), FeeRule::Minimum))
        );
        assert_eq!(
            choose(sat(459), Some(sat(459)), MAX),
            Ok((sat(459), FeeRule::Minimum)),
            "a tie pays the minimum"
        );
    }

    #[test]
    fn a_higher_estimate_wins() {
        assert_eq!(
            choose(sat(459), Some(sat(3_060)), MAX),
            Ok((sat(3_060), FeeRule::Estimate))
        );
    }

    #[test]
    fn the_cap_wins_over_a_higher_estimate_and_refuses_a_minimum_above_it() {
        assert_eq!(
            choose(sat(459), Some(sat(50_000)), MAX),
            Ok((MAX, FeeRule::Cap))
        );
        assert_eq!(
            choose(sat(10_001), Some(sat(50_000)), MAX),
            Err(OverCap {
                minimum: sat(10_001)
            })
        );
        assert_eq!(choose(MAX, None, MAX), Ok((MAX, FeeRule::NoEstimate)));
    }

    #[test]
    fn without_an_estimate_the_minimum_is_paid() {
        assert_eq!(
            choose(sat(459), None, MAX),
            Ok((sat(459), FeeRule::NoEstimate))
        );
    }
}
