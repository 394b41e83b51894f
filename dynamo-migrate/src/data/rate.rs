//! A shared rate limit for the writers of a pass: items per second, or a share of the target
//! table's provisioned write capacity measured with `ReturnConsumedCapacity`.

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Mutex;

/// How fast a data step may write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLimit {
    /// At most this many items written (or deleted) per second.
    ItemsPerSecond(f64),
    /// At most this share (0 to 1) of the target table's provisioned write capacity units, as
    /// DynamoDB reports them consumed.
    WriteCapacityShare(f64),
}

impl RateLimit {
    /// A rate must be a positive number (a share at most 1); anything else is a mistake in the
    /// migration, refused before the pass reads anything.
    pub(crate) fn check(&self) -> Result<(), String> {
        match *self {
            RateLimit::ItemsPerSecond(n) if !(n.is_finite() && n > 0.0) => {
                Err(format!("RateLimit::ItemsPerSecond({n}) must be a positive number of items per second"))
            }
            RateLimit::WriteCapacityShare(share) if !(share.is_finite() && share > 0.0 && share <= 1.0) => {
                Err(format!(
                    "RateLimit::WriteCapacityShare({share}) must be a share of the table's write capacity above 0 and at most 1"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A token bucket that may go into debt: a writer takes what it expects to use, waits while the
/// bucket is below zero, and settles the difference once DynamoDB says what it consumed.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// The rate, as an `f64`'s bits: a pass shared by workers changes it as they come and go.
    per_second: std::sync::atomic::AtomicU64,
    state: Mutex<(f64, Instant)>,
}

impl Limiter {
    pub(crate) fn new(per_second: f64) -> Limiter {
        // One second's worth of burst, so that the first batches do not wait.
        Limiter {
            per_second: std::sync::atomic::AtomicU64::new(per_second.to_bits()),
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from_bits(self.per_second.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Changes the rate from now on.
    pub(crate) fn set_rate(&self, per_second: f64) {
        self.per_second.store(per_second.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes `units`, waiting until the bucket is not in debt.
    pub(crate) async fn take(&self, units: f64) {
        loop {
            let wait = {
                let per_second = self.per_second();
                let mut state = self.state.lock().await;
                let now = Instant::now();
                state.0 = (state.0 + (now - state.1).as_secs_f64() * per_second).min(per_second);
                state.1 = now;
                if state.0 >= 0.0 {
                    state.0 -= units;
                    return;
                }
                Duration::from_secs_f64(-state.0 / per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Corrects what was taken by what was really used (positive: more was used).
    pub(crate) async fn settle(&self, extra_units: f64) {
        self.state.lock().await.0 -= extra_units;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_must_be_positive_numbers() {
        for bad in [
            RateLimit::ItemsPerSecond(0.0),
            RateLimit::ItemsPerSecond(-5.0),
            RateLimit::ItemsPerSecond(f64::NAN),
            RateLimit::ItemsPerSecond(f64::INFINITY),
            RateLimit::WriteCapacityShare(0.0),
            RateLimit::WriteCapacityShare(1.5),
            RateLimit::WriteCapacityShare(f64::NAN),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        assert!(RateLimit::ItemsPerSecond(0.5).check().is_ok());
        assert!(RateLimit::WriteCapacityShare(1.0).check().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_holds_writers_to_the_rate() {
        let limiter = Limiter::new(100.0);
        let start = Instant::now();
        for _ in 0..30 {
            limiter.take(25.0).await;
        }
        // 750 units at 100/s with 100 of burst: 6.25 s of (paused, simulated) time.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((6.0..8.0).contains(&elapsed), "{elapsed}");
        limiter.settle(200.0).await;
        let before = Instant::now();
        limiter.take(1.0).await;
        assert!(before.elapsed().as_secs_f64() >= 1.5, "a settled debt is waited out");
    }
}
