use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest, Sha256};

pub(crate) const GEN_BLOCK: usize = 1 << 20;

/// How a path misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misbehavior {
    /// Answer 404.
    NotFound,
    /// Answer 200 with a `text/html` login page.
    Html,
    /// Announce the full size but break the connection after this many bytes.
    Truncate { after: u64 },
    /// Answer 302 to this URL.
    Redirect(String),
    /// Send the content without `Content-Length` (chunked).
    NoContentLength,
    /// Like `Truncate`, for the next request only; then the path behaves again.
    TruncateOnce { after: u64 },
}

/// Options of [`ModelServer::start`].
#[derive(Clone, Debug, Default)]
pub struct ModelServerOptions {
    /// Serve files below this directory (URL path = relative file path).
    pub root: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` on every request.
    pub bearer_token: Option<String>,
}

#[derive(Default)]
struct ServerState {
    root: Option<PathBuf>,
    bearer: Option<String>,
    generated: Mutex<HashMap<String, (u64, u64)>>,
    misbehave: Mutex<HashMap<String, Misbehavior>>,
    served: Mutex<HashMap<String, u64>>,
    requests: Mutex<Vec<(String, bool)>>,
}

/// A tiny HTTP file server on 127.0.0.1 for models: files from a directory and generated
/// deterministic content of any size (no disk needed), with byte counters and misbehaviour.
pub struct ModelServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl ModelServer {
    /// Starts the server on a free port of 127.0.0.1.
    pub async fn start(opts: ModelServerOptions) -> std::io::Result<Self> {
        let state = Arc::new(ServerState {
            root: opts.root,
            bearer: opts.bearer_token,
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

    /// Serves `size` bytes of deterministic content (see [`generated_content`]) at `path`.
    pub fn add_generated(&self, path: &str, size: u64, seed: u64) {
        self.state
            .generated
            .lock()
            .expect("lock")
            .insert(norm(path), (size, seed));
    }

    /// Makes `path` misbehave (or behave again with `None`).
    pub fn set_misbehavior(&self, path: &str, m: Option<Misbehavior>) {
        let mut map = self.state.misbehave.lock().expect("lock");
        match m {
            Some(m) => map.insert(norm(path), m),
            None => map.remove(&norm(path)),
        };
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, norm(path))
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Body bytes handed to the network for `path` so far.
    pub fn bytes_served(&self, path: &str) -> u64 {
        self.state
            .served
            .lock()
            .expect("lock")
            .get(&norm(path))
            .copied()
            .unwrap_or(0)
    }

    /// Body bytes handed to the network for all paths.
    pub fn total_bytes_served(&self) -> u64 {
        self.state.served.lock().expect("lock").values().sum()
    }

    /// Requests seen so far: `(path, had an Authorization header)`.
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.state.requests.lock().expect("lock").clone()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn norm(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

pub(crate) fn seed_block(seed: u64) -> Bytes {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = BytesMut::with_capacity(GEN_BLOCK);
    while out.len() < GEN_BLOCK {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.freeze()
}

pub(crate) fn gen_chunk(block: &Bytes, seed: u64, index: u64, len: usize) -> Bytes {
    let mut b = BytesMut::from(&block[..len]);
    let stamp = (index ^ seed.rotate_left(17)).to_le_bytes();
    let n = stamp.len().min(len);
    b[..n].copy_from_slice(&stamp[..n]);
    b.freeze()
}

/// The deterministic content served for `(size, seed)`, as a stream of ≤1 MiB chunks.
pub fn generated_content(
    size: u64,
    seed: u64,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let block = seed_block(seed);
    let chunks = size.div_ceil(GEN_BLOCK as u64);
    futures::stream::iter(0..chunks).map(move |i| {
        let len = (size - i * GEN_BLOCK as u64).min(GEN_BLOCK as u64) as usize;
        gen_chunk(&block, seed, i, len)
    })
}

/// sha256 (hex) of [`generated_content`]`(size, seed)`.
pub fn generated_sha256(size: u64, seed: u64) -> String {
    let block = seed_block(seed);
    let mut h = Sha256::new();
    let chunks = size.div_ceil(GEN_BLOCK as u64);
    for i in 0..chunks {
        let len = (size - i * GEN_BLOCK as u64).min(GEN_BLOCK as u64) as usize;
        h.update(gen_chunk(&block, seed, i, len));
    }
    hex::encode(h.finalize())
}

async fn handle(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .requests
        .lock()
        .expect("lock")
        .push((path.clone(), auth.is_some()));
    if let Some(token) = &state.bearer
        && auth.as_deref() != Some(format!("Bearer {token}").as_str())
    {
        return (StatusCode::UNAUTHORIZED, "token required").into_response();
    }
    let misbehave = {
        let mut map = state.misbehave.lock().expect("lock");
        let m = map.get(&path).cloned();
        if let Some(Misbehavior::TruncateOnce { .. }) = m {
            map.remove(&path);
        }
        m
    };
    // `Range: bytes=N-` (what a resuming download sends): answered 206 from byte N.
    let range_start = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok());
    match &misbehave {
        Some(Misbehavior::NotFound) => return (StatusCode::NOT_FOUND, "not found").into_response(),
        Some(Misbehavior::Html) => {
            return (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<!doctype html><html><body>Please log in to download this model.</body></html>",
            )
                .into_response();
        }
        Some(Misbehavior::Redirect(to)) => {
            return (StatusCode::FOUND, [(header::LOCATION, to.clone())]).into_response();
        }
        _ => {}
    }
    let generated = state.generated.lock().expect("lock").get(&path).copied();
    let (size, stream): (
        u64,
        futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    ) = match generated {
        Some((size, seed)) => (size, generated_content(size, seed).map(Ok).boxed()),
        None => {
            let Some(file) = resolve_file(state.root.as_deref(), &path) else {
                return (StatusCode::NOT_FOUND, "not found").into_response();
            };
            let Ok(f) = tokio::fs::File::open(&file).await else {
                return (StatusCode::NOT_FOUND, "not found").into_response();
            };
            let Ok(meta) = f.metadata().await else {
                return (StatusCode::NOT_FOUND, "not found").into_response();
            };
            (
                meta.len(),
                tokio_util::io::ReaderStream::with_capacity(f, 256 << 10).boxed(),
            )
        }
    };
    let truncate = match misbehave {
        Some(Misbehavior::Truncate { after }) | Some(Misbehavior::TruncateOnce { after }) => {
            Some(after)
        }
        _ => None,
    };
    let skip = match range_start {
        Some(start) if start >= size => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response();
        }
        Some(start) => start,
        None => 0,
    };
    let counter_state = state.clone();
    let counter_path = path.clone();
    let mut sent = 0u64;
    let mut skipped = 0u64;
    let body = stream.map(move |item| {
        let mut chunk = item?;
        if skipped < skip {
            let drop = (skip - skipped).min(chunk.len() as u64);
            skipped += drop;
            chunk = chunk.slice(drop as usize..);
        }
        if let Some(after) = truncate {
            if sent >= after {
                return Err(std::io::Error::other("truncated on purpose"));
            }
            chunk.truncate((after - sent).min(chunk.len() as u64) as usize);
        }
        sent += chunk.len() as u64;
        *counter_state
            .served
            .lock()
            .expect("lock")
            .entry(counter_path.clone())
            .or_default() += chunk.len() as u64;
        Ok::<_, std::io::Error>(chunk)
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if range_start.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {skip}-{}/{size}", size - 1)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    if misbehave != Some(Misbehavior::NoContentLength) {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size - skip));
    }
    resp
}

fn resolve_file(root: Option<&Path>, path: &str) -> Option<PathBuf> {
    let root = root?;
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}
