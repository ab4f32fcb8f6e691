//! The invocation's time: Lambda's deadline turned into the instant by which the work must be
//! done, and the milliseconds the log line and metrics report.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Converts Lambda's deadline (epoch milliseconds) into the instant by which the write must
/// have finished, `margin` earlier. `None` when the runtime gave no deadline.
pub(crate) fn from_epoch_ms(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    deadline_at(
        deadline_ms,
        margin,
        u64::try_from(epoch_ms()).unwrap_or(0),
        Instant::now(),
    )
}

/// Below this a "deadline" cannot be an epoch time (it is September 2001): `cargo lambda watch`
/// sends the remaining milliseconds instead (600000), and taking that as a date in 1970 would
/// report every batch as out of time.
const EARLIEST_EPOCH_DEADLINE_MS: u64 = 1_000_000_000_000;

fn deadline_at(deadline_ms: u64, margin: Duration, now_ms: u64, now: Instant) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let remaining_ms = if deadline_ms < EARLIEST_EPOCH_DEADLINE_MS {
        deadline_ms
    } else {
        deadline_ms.saturating_sub(now_ms)
    };
    Some(now + Duration::from_millis(remaining_ms).saturating_sub(margin))
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Whole milliseconds of `duration` for the log line and metrics (saturating: no invocation
/// lasts 584 million years).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_795_314_843_596;

    fn budget(deadline_ms: u64, margin_ms: u64) -> Option<Duration> {
        let now = Instant::now();
        deadline_at(deadline_ms, Duration::from_millis(margin_ms), NOW_MS, now).map(|d| d - now)
    }

    #[test]
    fn the_write_must_finish_a_margin_before_the_deadline() {
        assert_eq!(
            budget(NOW_MS + 5_000, 1_000),
            Some(Duration::from_millis(4_000))
        );
        assert_eq!(
            budget(NOW_MS + 500, 1_000),
            Some(Duration::ZERO),
            "inside the margin: no time left"
        );
        assert_eq!(budget(NOW_MS - 10, 0), Some(Duration::ZERO), "already past");
        assert_eq!(budget(0, 1_000), None, "no deadline given");
    }

    #[test]
    fn a_relative_deadline_from_cargo_lambda_is_taken_as_remaining_time() {
        assert_eq!(budget(600_000, 1_000), Some(Duration::from_millis(599_000)));
    }
}
