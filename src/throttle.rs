//! Per-user token buckets, in memory: how often one person may make the bot
//! record or say something it did not have to (a click refused for want of
//! level, an @mention). A refill of one token per interval, up to `burst`.
//!
//! The map is bounded: at `max_keys` users, buckets that have refilled
//! completely (indistinguishable from a user never seen) are forgotten; if
//! none has, a new user is treated as over the limit. A flood of distinct
//! user ids therefore cannot grow memory, and what it costs is replies that
//! were optional. Each replica keeps its own buckets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What to do with one more act by this user.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; `suppressed` acts were dropped since the last allowed one.
    Allow { suppressed: u32 },
    /// Over the limit: drop it (the caller counts it).
    Suppress,
}

pub struct Throttle {
    burst: u32,
    refill_ms: i64,
    max_keys: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    buckets: HashMap<String, Bucket>,
    last_prune: i64,
}

struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date (ms).
    at: i64,
    suppressed: u32,
}

/// A full map is swept at most this often, so a flood of new users does not
/// make every check walk the whole map.
const PRUNE_EVERY_MS: i64 = 1_000;

impl Throttle {
    pub fn new(burst: u32, refill: Duration, max_keys: usize) -> Throttle {
        Throttle {
            burst: burst.max(1),
            refill_ms: i64::try_from(refill.as_millis()).unwrap_or(i64::MAX).max(1),
            max_keys: max_keys.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn check(&self, key: &str, now_ms: i64) -> Verdict {
        let mut inner = self.inner.lock().expect("throttle lock");
        if !inner.buckets.contains_key(key) && inner.buckets.len() >= self.max_keys {
            if now_ms - inner.last_prune >= PRUNE_EVERY_MS {
                inner.last_prune = now_ms;
                inner.buckets.retain(|_, b| !self.full(b, now_ms));
            }
            if inner.buckets.len() >= self.max_keys {
                return Verdict::Suppress;
            }
        }
        let bucket = inner.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now_ms,
            suppressed: 0,
        });
        self.refill(bucket, now_ms);
        if bucket.tokens > 0 {
            bucket.tokens -= 1;
            Verdict::Allow {
                suppressed: std::mem::take(&mut bucket.suppressed),
            }
        } else {
            bucket.suppressed = bucket.suppressed.saturating_add(1);
            Verdict::Suppress
        }
    }

    fn refill(&self, b: &mut Bucket, now_ms: i64) {
        if now_ms < b.at {
            // The clock stepped back: count from now.
            b.at = now_ms;
            return;
        }
        let gained = (now_ms - b.at) / self.refill_ms;
        if gained > 0 {
            let tokens = i64::from(b.tokens) + gained;
            b.tokens = u32::try_from(tokens.min(i64::from(self.burst))).unwrap_or(self.burst);
            b.at += gained * self.refill_ms;
        }
    }

    fn full(&self, b: &Bucket, now_ms: i64) -> bool {
        let gained = (now_ms - b.at).max(0) / self.refill_ms;
        i64::from(b.tokens) + gained >= i64::from(self.burst)
    }

    /// Users currently remembered.
    pub fn tracked(&self) -> usize {
        self.inner.lock().expect("throttle lock").buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval_counting_what_was_dropped() {
        let t = Throttle::new(2, Duration::from_secs(10), 100);
        assert_eq!(t.check("U1", 0), Verdict::Allow { suppressed: 0 });
        assert_eq!(t.check("U1", 1), Verdict::Allow { suppressed: 0 });
        assert_eq!(t.check("U1", 2), Verdict::Suppress);
        assert_eq!(t.check("U1", 3), Verdict::Suppress);
        // Another user has their own bucket.
        assert_eq!(t.check("U2", 3), Verdict::Allow { suppressed: 0 });
        assert_eq!(t.check("U1", 10_000), Verdict::Allow { suppressed: 2 });
        assert_eq!(t.check("U1", 10_001), Verdict::Suppress);
        // A long pause refills to the burst, not beyond.
        assert_eq!(t.check("U1", 1_000_000), Verdict::Allow { suppressed: 1 });
        assert_eq!(t.check("U1", 1_000_001), Verdict::Allow { suppressed: 0 });
        assert_eq!(t.check("U1", 1_000_002), Verdict::Suppress);
    }

    #[test]
    fn a_flood_of_users_cannot_grow_the_map() {
        let t = Throttle::new(1, Duration::from_secs(60), 10);
        for i in 0..1_000 {
            t.check(&format!("U{i}"), i);
        }
        assert_eq!(t.tracked(), 10);
        // Beyond the cap and with nobody refilled, a new user is over the limit ...
        assert_eq!(t.check("UNEW", 2_000), Verdict::Suppress);
        // ... until the remembered ones have refilled and can be forgotten.
        assert_eq!(t.check("UNEW", 70_000), Verdict::Allow { suppressed: 0 });
        assert!(t.tracked() <= 10);
    }
}
