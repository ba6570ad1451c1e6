//! A model source that takes `Range` requests (as Hugging Face's and Civitai's CDNs do), with a
//! byte rate cap per connection (a slow link to the source), optionally no range support (one
//! stream only), and a range that breaks once mid-way (to test resumption). Serves the same
//! generated content as [`crate::ModelServer`] ([`crate::generated_sha256`] holds). 127.0.0.1 only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use crate::model_server::{GEN_BLOCK, gen_chunk, seed_block};

/// Options of [`RangedServer::start`].
#[derive(Clone, Debug, Default)]
pub struct RangedServerOptions {
    /// Ignore `Range` (answer 200 with everything), as some sources do.
    pub no_ranges: bool,
    /// Bytes per second per connection (each response is paced), `None`: as fast as it goes.
    pub bytes_per_sec: Option<u64>,
    /// The first range request that does not start at 0 breaks after this many bytes.
    pub break_one_range_after: Option<u64>,
}

#[derive(Default)]
struct ServerState {
    opts: RangedServerOptions,
    files: Mutex<HashMap<String, (u64, u64)>>,
    requests: Mutex<Vec<(String, Option<String>)>>,
    broke: AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    served: AtomicU64,
}

/// The server. Dropping it stops it.
pub struct RangedServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RangedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RangedServer {
    /// Starts the server on a free port of 127.0.0.1.
    pub async fn start(opts: RangedServerOptions) -> std::io::Result<Self> {
        let state = Arc::new(ServerState {
            opts,
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Serves `size` bytes of generated content (seed `seed`) at `path`.
    pub fn add_generated(&self, path: &str, size: u64, seed: u64) {
        self.state
            .files
            .lock()
            .expect("lock")
            .insert(path.to_string(), (size, seed));
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests so far: path and `Range` header.
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Most responses that were streaming at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Body bytes sent so far.
    pub fn bytes_served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }
}

/// `bytes=a-b`, `bytes=a-` of a file of `size` bytes.
fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = match b.trim() {
        "" => size.checked_sub(1)?,
        b => b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
    };
    (a <= b).then_some((a, b))
}

/// Bytes `start..=end` of the generated content.
fn content(size: u64, seed: u64, start: u64, end: u64) -> impl futures::Stream<Item = Bytes> {
    let block = seed_block(seed);
    let first = start / GEN_BLOCK as u64;
    let last = end / GEN_BLOCK as u64;
    futures::stream::iter(first..=last).map(move |i| {
        let len = (size - i * GEN_BLOCK as u64).min(GEN_BLOCK as u64) as usize;
        let chunk = gen_chunk(&block, seed, i, len);
        let base = i * GEN_BLOCK as u64;
        let from = start.saturating_sub(base) as usize;
        let to = ((end + 1 - base) as usize).min(len);
        chunk.slice(from..to)
    })
}

struct InFlight(Arc<ServerState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .requests
        .lock()
        .expect("lock")
        .push((path.clone(), range.clone()));
    let Some((size, seed)) = state.files.lock().expect("lock").get(&path).copied() else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let ranged = range
        .as_deref()
        .filter(|_| !state.opts.no_ranges)
        .and_then(|r| parse_range(r, size));
    let (status, start, end) = match ranged {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
        None if range.is_some() && !state.opts.no_ranges => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response();
        }
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let break_after = state
        .opts
        .break_one_range_after
        .filter(|_| status == StatusCode::PARTIAL_CONTENT && start > 0)
        .filter(|_| !state.broke.swap(true, Ordering::SeqCst));
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let guard = InFlight(state.clone());
    let rate = state.opts.bytes_per_sec;
    let counter = state.clone();
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    // Pieces of about 5 ms at the capped rate (16–256 KiB): smooth pacing without spending
    // the machine's CPU on wake-ups the builder under test then has to compete with.
    let piece = rate.map_or(256 << 10, |r| (r / 200).clamp(16 << 10, 256 << 10)) as usize;
    let pieces = content(size, seed, start, end).flat_map(move |chunk| {
        let n = chunk.len().div_ceil(piece);
        futures::stream::iter(
            (0..n).map(move |i| chunk.slice(i * piece..((i + 1) * piece).min(chunk.len()))),
        )
    });
    let body = pieces.then(move |piece| {
        let counter = counter.clone();
        let _alive = &guard;
        let piece_len = piece.len() as u64;
        let out = if break_after.is_some_and(|after| sent >= after) {
            Err(std::io::Error::other("range broken on purpose"))
        } else {
            Ok(piece)
        };
        sent += piece_len;
        let due = rate.map(|r| started + Duration::from_secs_f64(sent as f64 / r as f64));
        async move {
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            if out.is_err() {
                // Let what was sent reach the client before the connection drops.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Ok(p) = &out {
                counter.served.fetch_add(p.len() as u64, Ordering::SeqCst);
            }
            out
        }
    });
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len);
    if !state.opts.no_ranges {
        resp = resp.header(header::ACCEPT_RANGES, "bytes");
    }
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    resp.body(Body::from_stream(body)).expect("response")
}
