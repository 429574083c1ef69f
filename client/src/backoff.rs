//! The waits between retries, in one place: exponential backoff from
//! [`backon`], with or without jitter.
//!
//! Three loops retry: the cluster connection (refused commands), the
//! pub/sub task (reconnections) and [`Lock::acquire`](crate::Lock::acquire)
//! (a busy lock). Each takes its waits from an iterator made here.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// `first`, doubling up to `max`, forever (or up to `times` waits).
pub(crate) fn doubling(first: Duration, max: Duration, times: Option<usize>) -> ExponentialBackoff {
    let builder = ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(first)
        .with_max_delay(max);
    match times {
        Some(times) => builder.with_max_times(times),
        None => builder.without_max_times(),
    }
    .build()
}

/// Waits that double from `first` up to `max`, forever, each drawn at
/// random from `[wait / 2, wait)`, so that many clients cut off at once do
/// not retry in lockstep.
pub(crate) fn doubling_with_jitter(first: Duration, max: Duration) -> ExponentialBackoff {
    // backon's jitter adds up to 100 % to a wait: half the waits, plus that.
    ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(first / 2)
        .with_max_delay(max / 2)
        .without_max_times()
        .with_jitter()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(waits: impl Iterator<Item = Duration>) -> Vec<u128> {
        waits.map(|wait| wait.as_millis()).collect()
    }

    #[test]
    fn doubling_up_to_the_cap() {
        let ms = Duration::from_millis;
        let waits = doubling(ms(25), ms(800), Some(10));
        assert_eq!(
            millis(waits),
            [25, 50, 100, 200, 400, 800, 800, 800, 800, 800]
        );
        let forever = doubling(ms(50), ms(2_000), None);
        assert_eq!(
            millis(forever.take(8)),
            [50, 100, 200, 400, 800, 1_600, 2_000, 2_000]
        );
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let (first, max) = (Duration::from_millis(10), Duration::from_millis(200));
        let mut ceiling = first;
        for wait in doubling_with_jitter(first, max).take(40) {
            // backon computes in f32: allow a microsecond of rounding.
            let slack = Duration::from_micros(1);
            assert!(
                wait + slack >= ceiling / 2 && wait <= ceiling + slack,
                "{wait:?} not within [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(max);
        }
    }
}
