//! Sliding-window rate limiter, one per API key, shared by every [`crate::Client`] in the process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
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
    grants: VecDeque<Instant>,
    stats: RateLimiterStats,
}

/// Grants at most `budget` permits in any window of `window` length (a sliding log, so no
/// window, however aligned, exceeds the budget). Callers wait asynchronously for a permit.
#[derive(Debug)]
pub struct RateLimiter {
    budget: u32,
    window: Duration,
    state: Mutex<State>,
}

impl RateLimiter {
    /// A limiter of `budget` permits per `window` (a budget of 0 is treated as 1).
    pub fn new(budget: u32, window: Duration) -> Self {
        let budget = budget.max(1);
        Self {
            budget,
            window,
            state: Mutex::new(State {
                grants: VecDeque::with_capacity(budget as usize),
                stats: RateLimiterStats {
                    budget,
                    window,
                    ..RateLimiterStats::default()
                },
            }),
        }
    }

    /// Waits until a permit is available and takes it.
    pub async fn acquire(&self) {
        let started = Instant::now();
        let mut waited = false;
        loop {
            let wake_at = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while st
                    .grants
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    st.grants.pop_front();
                }
                if st.grants.len() < self.budget as usize {
                    st.grants.push_back(now);
                    st.stats.acquired += 1;
                    if waited {
                        let w = now.duration_since(started);
                        st.stats.delayed += 1;
                        st.stats.total_wait += w;
                        st.stats.max_wait = st.stats.max_wait.max(w);
                    }
                    return;
                }
                // Full: the oldest grant leaves the window at `oldest + window`.
                st.grants[0] + self.window
            };
            waited = true;
            tokio::time::sleep_until(wake_at).await;
        }
    }

    /// Current counters.
    pub fn stats(&self) -> RateLimiterStats {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let in_window = st
            .grants
            .iter()
            .filter(|t| now.duration_since(**t) < self.window)
            .count();
        RateLimiterStats {
            in_window: u32::try_from(in_window).unwrap_or(u32::MAX),
            ..st.stats
        }
    }
}

type Registry = Mutex<HashMap<[u8; 32], Arc<RateLimiter>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The process-wide limiter for an API key. The registry is keyed by a SHA-256 of the key,
/// never the key itself. The first client created for a key fixes its budget and window; later
/// clients with the same key share that limiter whatever their own settings. Limiters are kept
/// for the life of the process, so clients created per reconcile still share one history.
pub(crate) fn shared_limiter(api_key: &str, budget: u32, window: Duration) -> Arc<RateLimiter> {
    let digest: [u8; 32] = Sha256::digest(api_key.as_bytes()).into();
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    map.entry(digest)
        .or_insert_with(|| Arc::new(RateLimiter::new(budget, window)))
        .clone()
}
