//! Per-channel pacing for `chat.postMessage`: Slack allows about one message
//! per second per channel, with short bursts. A token bucket per lane keeps
//! us under that instead of learning it from 429s.

use std::collections::HashMap;

pub struct Pacer {
    rate_per_ms: f64,
    burst: f64,
    buckets: HashMap<String, Bucket>,
}

struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Pacer {
    pub fn new(per_second: f64, burst: u32) -> Self {
        Pacer {
            rate_per_ms: per_second / 1000.0,
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Take a token for `lane` if one is available now; otherwise return how
    /// many milliseconds until one will be.
    pub fn try_take(&mut self, lane: &str, now_ms: i64) -> Result<(), i64> {
        let burst = self.burst;
        let rate = self.rate_per_ms;
        let b = self.buckets.entry(lane.to_string()).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed = (now_ms - b.at_ms).max(0) as f64;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil() as i64)
        }
    }

    /// Forget lanes that have been idle long enough to be full again.
    pub fn prune(&mut self, now_ms: i64) {
        let full_after = (self.burst / self.rate_per_ms) as i64;
        self.buckets.retain(|_, b| now_ms - b.at_ms < full_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_one_per_second() {
        let mut p = Pacer::new(1.0, 3);
        for _ in 0..3 {
            assert_eq!(p.try_take("ch:C1", 0), Ok(()));
        }
        assert_eq!(p.try_take("ch:C1", 0), Err(1000));
        assert_eq!(p.try_take("ch:C1", 400), Err(600));
        assert_eq!(p.try_take("ch:C1", 1000), Ok(()));
        // Another channel has its own bucket.
        assert_eq!(p.try_take("ch:C2", 1000), Ok(()));
    }

    #[test]
    fn idle_lanes_refill_and_are_pruned() {
        let mut p = Pacer::new(1.0, 2);
        assert!(p.try_take("a", 0).is_ok());
        assert!(p.try_take("a", 0).is_ok());
        assert!(p.try_take("a", 0).is_err());
        p.prune(10_000);
        assert!(p.buckets.is_empty());
        assert!(p.try_take("a", 10_000).is_ok());
    }
}
