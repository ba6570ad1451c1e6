//! A stand-in for SaladCloud's job queue and its worker, on 127.0.0.1, for the runtime test.
//!
//! The real worker (`salad-http-job-queue-worker`, SaladTechnologies/salad-cloud-job-queue-worker
//! `internal/workers/workers.go`) learns from the instance metadata service whether the instance
//! is ready, then streams jobs from SaladCloud's queue service (gRPC, `SALAD_SERVICE_ENDPOINT`,
//! default `job-queue-worker-api.salad.com:443`). For each job it POSTs the job's JSON input to
//! `http://localhost:{port}{path}` (port and path from the group's `queue_connection`), and
//! completes the job with the response body when the server answers 2xx, or rejects it (the
//! queue retries it) otherwise. It is one job at a time, and it stops when SaladCloud says the
//! instance is gone.
//!
//! The stand-in worker ([`WORKER_SCRIPT`], Python 3 standard library, packed by
//! [`worker_archive`] as the release archive is: `salad-http-job-queue-worker` at the top of a
//! `.tar.gz`) does the same against [`JobQueue`] over plain HTTP: `GET /jobs/next` (204 when the
//! queue is empty; 404 means the instance is gone and the worker exits 1), the POST to the
//! server, then `POST /jobs/{id}/complete` or `/jobs/{id}/reject`. It reads the queue's address
//! from the real worker's `SALAD_SERVICE_ENDPOINT` (`127.0.0.1:PORT`). Like Go's dialer it
//! tries every address `localhost` resolves to, and `::1` then `127.0.0.1` when nothing
//! resolves (no `/etc/hosts` in a test rootfs).

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The stand-in worker, run as `/usr/local/bin/salad-http-job-queue-worker` in the image.
pub const WORKER_SCRIPT: &str = r#"#!/usr/bin/python3
# Stand-in for salad-http-job-queue-worker: one job at a time from the stand-in queue to the
# server (POST its input to http://localhost:PORT/PATH), the answer back to the queue.
import json, os, socket, sys, time, urllib.error, urllib.request

queue = "http://" + os.environ["SALAD_SERVICE_ENDPOINT"]
def say(*a): print("standin worker:", *a, file=sys.stderr, flush=True)

def localhost_addresses():
    try:
        found = [ai[4][0] for ai in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)]
    except OSError:
        found = []
    return found or ["::1", "127.0.0.1"]

def post_to_server(port, path, body):
    last = None
    for addr in localhost_addresses():
        host = "[%s]" % addr if ":" in addr else addr
        req = urllib.request.Request("http://%s:%d%s" % (host, port, path), data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            last = e
    raise last

def call(method, path, body=None):
    req = urllib.request.Request(queue + path, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()

say("started; queue", queue)
while True:
    try:
        status, body = call("GET", "/jobs/next")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            say("the queue says this instance is gone; exiting"); sys.exit(1)
        say("queue answered", e.code); time.sleep(1); continue
    except OSError as e:
        say("queue unreachable:", e); time.sleep(1); continue
    if status == 204:
        time.sleep(0.2); continue
    job = json.loads(body)
    try:
        code, answer = post_to_server(job["port"], job["path"], json.dumps(job["input"]).encode())
    except OSError as e:
        say("job", job["id"], "failed:", e); code, answer = 0, b""
    outcome = "complete" if 200 <= code < 300 else "reject"
    say("job", job["id"], "->", code, outcome)
    call("POST", "/jobs/%s/%s" % (job["id"], outcome), answer)
"#;

/// The stand-in worker as a release archive: a `.tar.gz` with the executable
/// `salad-http-job-queue-worker` at its top, and the archive's sha256.
pub fn worker_archive() -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(WORKER_SCRIPT.len() as u64);
    h.set_mtime(0);
    tar.append_data(
        &mut h,
        "salad-http-job-queue-worker",
        WORKER_SCRIPT.as_bytes(),
    )
    .expect("in-memory tar");
    let tar = tar.into_inner().expect("in-memory tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("in-memory gzip");
    let bytes = gz.finish().expect("in-memory gzip");
    let sha = hex::encode(Sha256::digest(&bytes));
    (bytes, sha)
}

/// A finished job: how it ended and the server's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct JobResult {
    /// `complete` (the server answered 2xx) or `reject`.
    pub outcome: String,
    /// The server's answer (JSON when it was JSON, else the text as a string).
    pub output: Value,
}

#[derive(Default)]
struct QueueState {
    waiting: Mutex<VecDeque<Value>>,
    results: Mutex<Vec<(String, JobResult)>>,
    polls: Mutex<u64>,
    gone: Mutex<bool>,
    next_id: Mutex<u64>,
}

/// The stand-in queue on `127.0.0.1`, also serving the worker archive at `/worker.tar.gz`.
pub struct JobQueue {
    addr: SocketAddr,
    state: Arc<QueueState>,
    archive_sha256: String,
    task: tokio::task::JoinHandle<()>,
}

impl JobQueue {
    /// Starts the queue on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(QueueState::default());
        let (archive, archive_sha256) = worker_archive();
        let archive = Bytes::from(archive);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route(
                "/worker.tar.gz",
                get(move || {
                    let archive = archive.clone();
                    async move { archive }
                }),
            )
            .route("/jobs/next", get(next))
            .route("/jobs/{id}/{outcome}", post(finish))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            archive_sha256,
            task,
        })
    }

    /// `127.0.0.1:PORT`: the worker's `SALAD_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// URL and sha256 of the stand-in worker's release archive.
    pub fn worker_source(&self) -> (String, String) {
        (
            format!("http://{}/worker.tar.gz", self.addr),
            self.archive_sha256.clone(),
        )
    }

    /// Adds a job whose `input` the worker posts to `port` and `path`; returns its id.
    pub fn enqueue(&self, path: &str, port: i32, input: Value) -> String {
        let mut n = self.state.next_id.lock().expect("lock");
        *n += 1;
        let id = format!("job-{n}");
        self.state
            .waiting
            .lock()
            .expect("lock")
            .push_back(json!({"id": id, "path": path, "port": port, "input": input}));
        id
    }

    /// The result of job `id`, once the worker returned it.
    pub fn result(&self, id: &str) -> Option<JobResult> {
        self.state
            .results
            .lock()
            .expect("lock")
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, r)| r.clone())
    }

    /// How many times a worker asked for a job.
    pub fn polls(&self) -> u64 {
        *self.state.polls.lock().expect("lock")
    }

    /// From now on, tell workers their instance is gone (the real worker then exits).
    pub fn say_instance_gone(&self) {
        *self.state.gone.lock().expect("lock") = true;
    }
}

impl Drop for JobQueue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(state): State<Arc<QueueState>>) -> Response {
    *state.polls.lock().expect("lock") += 1;
    if *state.gone.lock().expect("lock") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match state.waiting.lock().expect("lock").pop_front() {
        Some(job) => axum::Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn finish(
    State(state): State<Arc<QueueState>>,
    Path((id, outcome)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let output = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    state
        .results
        .lock()
        .expect("lock")
        .push((id, JobResult { outcome, output }));
    StatusCode::OK
}
