//! Query budgets of a list: a rate (token bucket) and a daily allowance.

use std::time::{Duration, Instant};

/// A token bucket: `rate` queries a second on average, at most `burst` at
/// once. Time is passed in, so tests drive it by hand.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `burst` is at least one query.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket { rate: rate.max(f64::MIN_POSITIVE), burst, tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (zero if one is there now).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

const DAY_MS: i64 = 86_400_000;

/// Queries allowed per UTC day; `None` is unlimited.
#[derive(Debug, Clone)]
pub struct DailyBudget {
    limit: Option<u64>,
    day: i64,
    used: u64,
}

impl DailyBudget {
    pub fn new(limit: Option<u64>) -> Self {
        DailyBudget { limit, day: i64::MIN, used: 0 }
    }

    fn roll(&mut self, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
    }

    /// Counts a query if the day's allowance has room for it.
    pub fn try_spend(&mut self, now_ms: i64) -> bool {
        self.roll(now_ms);
        match self.limit {
            Some(limit) if self.used >= limit => false,
            _ => {
                self.used += 1;
                true
            }
        }
    }

    /// Queries counted today.
    pub fn used(&mut self, now_ms: i64) -> u64 {
        self.roll(now_ms);
        self.used
    }

    /// The share of today's allowance used, 0 when unlimited.
    pub fn used_ratio(&self, now_ms: i64) -> f64 {
        let used = if now_ms.div_euclid(DAY_MS) == self.day { self.used } else { 0 };
        match self.limit {
            Some(0) => 1.0,
            Some(limit) => used as f64 / limit as f64,
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3.0, t0);
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert_eq!(b.wait(t0), Duration::from_millis(500));
        assert!(!b.try_take(t0 + Duration::from_millis(400)));
        assert!(b.try_take(t0 + Duration::from_millis(500)));
        // Asking every millisecond for ten seconds, the burst and then the
        // rate pass: 3 + 20 (the 20th token may be a rounding short at 10 s).
        let mut b = TokenBucket::new(2.0, 3.0, t0);
        let passed = (0..=10_000).filter(|i| b.try_take(t0 + Duration::from_millis(*i))).count();
        assert!((22..=23).contains(&passed), "{passed}");
    }

    #[test]
    fn a_bucket_does_not_fill_past_its_burst_or_go_back_in_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 1.0, t0);
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take(later));
        assert!(!b.try_take(later));
        assert!(!b.try_take(t0), "an earlier instant adds nothing");
    }

    #[test]
    fn the_daily_budget_resets_at_midnight_utc() {
        let mut d = DailyBudget::new(Some(2));
        let day = 20_000 * DAY_MS;
        assert!(d.try_spend(day + 1));
        assert!(d.try_spend(day + 2));
        assert!(!d.try_spend(day + 3));
        assert_eq!(d.used_ratio(day + 4), 1.0);
        assert!(d.try_spend(day + DAY_MS));
        assert_eq!(d.used(day + DAY_MS), 1);
        assert_eq!(d.used_ratio(day + DAY_MS), 0.5);
        let mut free = DailyBudget::new(None);
        assert!((0..1000).all(|i| free.try_spend(i)));
        assert_eq!(free.used_ratio(0), 0.0);
    }
}
