//! How many writes a pass keeps in flight: up to a ceiling, halved when DynamoDB throttles,
//! grown back by one per window of successes (additive increase, multiplicative decrease, as
//! TCP does), so that a pass on a provisioned table settles near what the table takes instead of
//! hammering it with a fixed number of writers that all back off and retry together.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Throttling that arrives within this long of a decrease is part of the same burst.
const COOL_DOWN: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(crate) struct Concurrency {
    permits: Semaphore,
    state: Mutex<State>,
    ceiling: usize,
}

#[derive(Debug)]
struct State {
    /// The limit now; permits beyond it are owed back and forgotten as they are released.
    limit: usize,
    owed: usize,
    successes: usize,
    last_decrease: Option<Instant>,
}

/// A write slot; when it is dropped, the slot is given back, unless the limit was lowered meanwhile.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    permit: Option<SemaphorePermit<'a>>,
    owner: &'a Concurrency,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.owner.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.owed > 0 {
            state.owed -= 1;
            if let Some(permit) = self.permit.take() {
                permit.forget();
            }
        }
    }
}

impl Concurrency {
    pub(crate) fn new(ceiling: usize) -> Concurrency {
        let ceiling = ceiling.max(1);
        Concurrency {
            permits: Semaphore::new(ceiling),
            state: Mutex::new(State { limit: ceiling, owed: 0, successes: 0, last_decrease: None }),
            ceiling,
        }
    }

    pub(crate) async fn slot(&self) -> Slot<'_> {
        let permit = self.permits.acquire().await.expect("the semaphore is never closed");
        Slot { permit: Some(permit), owner: self }
    }

    /// The limit now.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).limit
    }

    /// DynamoDB throttled a write: halve the limit, once per burst.
    pub(crate) fn throttled(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.last_decrease.is_some_and(|at| at.elapsed() < COOL_DOWN) || state.limit == 1 {
            return;
        }
        let lower = (state.limit / 2).max(1);
        state.owed += state.limit - lower;
        state.limit = lower;
        state.successes = 0;
        state.last_decrease = Some(Instant::now());
        tracing::debug!(limit = lower, "throttled: fewer writes in flight");
    }

    /// A write went through: after as many successes as the limit, allow one more in flight.
    pub(crate) fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.limit >= self.ceiling {
            return;
        }
        state.successes += 1;
        if state.successes >= state.limit {
            state.successes = 0;
            state.limit += 1;
            if state.owed > 0 {
                state.owed -= 1;
            } else {
                self.permits.add_permits(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttling_halves_the_writes_in_flight_and_successes_grow_them_back() {
        let c = Concurrency::new(32);
        c.throttled();
        assert_eq!(c.limit(), 16);
        c.throttled();
        assert_eq!(c.limit(), 16, "one decrease per burst");
        // The slots owed are forgotten as they come back, so that the semaphore ends up holding
        // exactly the new limit.
        let held: Vec<_> = futures::future::join_all((0..16).map(|_| c.slot())).await;
        drop(held);
        assert_eq!(c.permits.available_permits(), 16);
        for _ in 0..16 {
            c.succeeded();
        }
        assert_eq!(c.limit(), 17);
        assert_eq!(c.permits.available_permits(), 17);
    }
}
