//! Reconnect delays: doubling from `base` up to `cap`, each drawn between
//! half and all of that ("equal jitter"), so replicas that lost Slack at
//! the same moment do not reconnect in step, and a server that keeps
//! closing the socket is retried at most every `cap`.

use std::time::Duration;

pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, failures: 0 }
    }

    /// The delay before the next attempt; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A connection that stayed up a while starts the count again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_stay_under_the_cap() {
        let (base, cap) = (Duration::from_millis(500), Duration::from_secs(30));
        let mut b = Backoff::new(base, cap);
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} outside {ceiling:?}");
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(&ceilings[..4], &[500, 1000, 2000, 4000]);
        assert_eq!(*ceilings.last().unwrap(), 30_000);
        for _ in 0..100 {
            assert!(b.next_delay() <= cap);
        }
        b.reset();
        assert_eq!(b.ceiling(), base);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
            seen.insert(b.next_delay().as_micros());
        }
        assert!(seen.len() > 10, "{seen:?}");
    }
}
