//! Sliding-window rate limiter, one per API key, shared by every [`crate::Client`] in the process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Counters of a [`RateLimiter`], for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimiterStats {
    /// Requests allowed per window.
    pub budget: u32,
    /// Window length.
    pub window: Duration,
    /// Permits handed out since the limiter was created.
    pub acquired: u64,
    /// Permits that had to wait.
    pub delayed: u64,
    /// Sum of all waits.
    pub total_wait: Duration,
    /// Longest single wait.
    pub max_wait: Duration,
    /// Permits handed out within the current window.
    pub in_window: u32,
}

#[derive(Debug)]
struct State {
    /// One slot per permit in the window: `None` while its request is in flight, then the time
    /// it finished. Counting from the end of a request (not from the grant) keeps the client's
    /// window at least as conservative as the server's, which counts arrivals: a burst granted at
    /// once but delivered over a few seconds can then never meet the server's window twice.
    slots: Vec<(u64, Option<Instant>)>,
    next_id: u64,
    stats: RateLimiterStats,
}

/// Grants at most `budget` permits in any window of `window` length, counting each permit until
/// `window` after its request finished. Waiters are served first come, first served, so a rare
/// request (say a GPU class lookup) is not starved by a crowd of polls.
#[derive(Debug)]
pub struct RateLimiter {
    budget: u32,
    window: Duration,
    state: Arc<Mutex<State>>,
    /// FIFO queue of waiters (tokio's mutex is fair).
    turnstile: tokio::sync::Mutex<()>,
}

/// A granted permit. Dropping it marks the request finished; the permit then counts against the
/// budget for one more window.
#[derive(Debug)]
pub struct Permit {
    id: u64,
    state: Arc<Mutex<State>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(slot) = st.slots.iter_mut().find(|(id, _)| *id == self.id) {
            slot.1 = Some(now);
        }
    }
}

/// How often a full limiter whose permits are all in flight looks again.
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(50);

impl RateLimiter {
    /// A limiter of `budget` permits per `window` (a budget of 0 is treated as 1).
    pub fn new(budget: u32, window: Duration) -> Self {
        let budget = budget.max(1);
        Self {
            budget,
            window,
            state: Arc::new(Mutex::new(State {
                slots: Vec::with_capacity(budget as usize),
                next_id: 0,
                stats: RateLimiterStats {
                    budget,
                    window,
                    ..RateLimiterStats::default()
                },
            })),
            turnstile: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits (in arrival order) until a permit is available and takes it. Hold the permit until
    /// the response has arrived.
    pub async fn acquire(&self) -> Permit {
        let started = Instant::now();
        let _turn = self.turnstile.lock().await;
        loop {
            let wake_at = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let window = self.window;
                st.slots
                    .retain(|(_, done)| done.is_none_or(|t| now.duration_since(t) < window));
                if st.slots.len() < self.budget as usize {
                    let id = st.next_id;
                    st.next_id += 1;
                    st.slots.push((id, None));
                    st.stats.acquired += 1;
                    let w = now.duration_since(started);
                    if !w.is_zero() {
                        st.stats.delayed += 1;
                        st.stats.total_wait += w;
                        st.stats.max_wait = st.stats.max_wait.max(w);
                    }
                    return Permit {
                        id,
                        state: self.state.clone(),
                    };
                }
                // Full: the earliest finished permit leaves the window at `done + window`.
                st.slots
                    .iter()
                    .filter_map(|(_, done)| done.map(|t| t + window))
                    .min()
                    .unwrap_or(now + IN_FLIGHT_RECHECK)
            };
            tokio::time::sleep_until(wake_at).await;
        }
    }

    /// How long a request would wait for a permit if it asked now (zero when one is free).
    /// Requests already waiting for theirs are not counted: a lower bound.
    pub fn free_in(&self) -> Duration {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let window = self.window;
        let mut in_window = 0;
        let mut first_out: Option<Instant> = None;
        for (_, done) in &st.slots {
            match done {
                Some(t) if now.duration_since(*t) >= window => {}
                Some(t) => {
                    in_window += 1;
                    first_out = Some(first_out.map_or(*t + window, |f| f.min(*t + window)));
                }
                None => in_window += 1,
            }
        }
        if in_window < self.budget as usize {
            return Duration::ZERO;
        }
        first_out.map_or(IN_FLIGHT_RECHECK, |t| t.saturating_duration_since(now))
    }

    /// Current counters.
    pub fn stats(&self) -> RateLimiterStats {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let in_window = st
            .slots
            .iter()
            .filter(|(_, done)| done.is_none_or(|t| now.duration_since(t) < self.window))
            .count();
        RateLimiterStats {
            in_window: u32::try_from(in_window).unwrap_or(u32::MAX),
            ..st.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_permit_counts_until_a_window_after_its_request_finished() {
        let window = Duration::from_secs(60);
        let limiter = Arc::new(RateLimiter::new(1, window));
        let t0 = Instant::now();
        let slow = limiter.acquire().await;
        let waiter = tokio::spawn({
            let l = limiter.clone();
            async move {
                let _p = l.acquire().await;
                Instant::now()
            }
        });
        // Counting from the grant would free the slot at 60 s; the request is still running.
        tokio::time::sleep(Duration::from_secs(200)).await;
        assert!(
            !waiter.is_finished(),
            "an in-flight request keeps its permit"
        );
        drop(slow);
        let granted = waiter.await.unwrap();
        assert_eq!(
            granted.duration_since(t0),
            Duration::from_secs(260),
            "finished at 200 s, plus one window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn free_in_says_when_a_spent_budget_frees() {
        let window = Duration::from_secs(60);
        let limiter = RateLimiter::new(2, window);
        assert_eq!(limiter.free_in(), Duration::ZERO);
        drop(limiter.acquire().await);
        assert_eq!(limiter.free_in(), Duration::ZERO, "one of two left");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let running = limiter.acquire().await;
        assert_eq!(
            limiter.free_in(),
            Duration::from_secs(50),
            "the first permit leaves the window 60 s after it finished"
        );
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert_eq!(limiter.free_in(), Duration::ZERO);
        drop(limiter.acquire().await);
        assert_eq!(
            limiter.free_in(),
            Duration::from_secs(60),
            "spent again; the running request counts until it finishes"
        );
        drop(running);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let limiter = Arc::new(RateLimiter::new(1, Duration::from_secs(1)));
        let first = limiter.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (l, o) = (limiter.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = l.acquire().await;
                o.lock().unwrap().push(i);
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
