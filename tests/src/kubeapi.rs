//! A mocked Kubernetes API server over plain HTTP on 127.0.0.1, for running the operator as a
//! process (or in a container) with a kubeconfig: the resources and Secrets it is given, watches
//! streamed from a list's `resourceVersion` (what was missed is replayed, then changes as they
//! happen: a status write is a `MODIFIED` event, as the real API server sends it), status and
//! Events recorded, and a `coordination.k8s.io` Lease with compare-and-swap on
//! `resourceVersion`, as the real API server does. Every request is logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
}

/// What a watch is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collection {
    Sdds,
    Secrets,
}

/// One watch event: its revision, collection, namespace and the `{type, object}` line.
type Change = (u64, Collection, String, Arc<Value>);

/// Changes kept for watches that start behind (the API server's watch cache is a window too).
const HISTORY: usize = 100_000;

struct State {
    /// The last `resourceVersion` given out.
    revision: u64,
    /// Recent changes, oldest first.
    history: std::collections::VecDeque<Change>,
    /// Changes as they happen, to open watches.
    live: tokio::sync::broadcast::Sender<Change>,
    /// Resources by `namespace/name`.
    sdds: BTreeMap<String, Value>,
    /// Secrets by `namespace/name`.
    secrets: BTreeMap<String, Value>,
    /// Leases by `namespace/name`.
    leases: BTreeMap<String, Value>,
    events: Vec<Value>,
    log: Vec<Seen>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            revision: 100,
            history: Default::default(),
            live: tokio::sync::broadcast::channel(16_384).0,
            sdds: Default::default(),
            secrets: Default::default(),
            leases: Default::default(),
            events: Default::default(),
            log: Default::default(),
        }
    }
}

impl State {
    /// Gives `object` the next `resourceVersion` and tells watches of `collection`.
    fn changed(&mut self, collection: Collection, kind: &str, object: &mut Value) {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let event = Arc::new(json!({ "type": kind, "object": object }));
        let change = (self.revision, collection, namespace, event);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        let _ = self.live.send(change);
    }
}

/// The server. Dropping it stops it.
pub struct MockKubeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockKubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message})
}

fn answer(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// A watch of `collection` (in `namespace`, or all) from `since`: the changes after it that
/// are still in the history, then each change as it happens. It stays open; a watch that falls
/// too far behind is ended, and the client lists again, as with the API server.
fn watch(
    st: &State,
    collection: Collection,
    namespace: Option<&str>,
    since: u64,
    metadata_only: bool,
) -> Response {
    let namespace = namespace.map(str::to_string);
    let wanted = move |(revision, of, ns, _): &Change| {
        *revision > since && *of == collection && namespace.as_ref().is_none_or(|n| n == ns)
    };
    let line = move |(_, _, _, event): Change| -> Result<Bytes, std::io::Error> {
        let line = if metadata_only {
            json!({ "type": event["type"], "object": meta_of(&event["object"]) })
        } else {
            (*event).clone()
        };
        let mut bytes = serde_json::to_vec(&line).expect("json");
        bytes.push(b'\n');
        Ok(Bytes::from(bytes))
    };
    let missed: Vec<Change> = st.history.iter().filter(|c| wanted(c)).cloned().collect();
    let live = tokio_stream_of(st.live.subscribe()).filter(move |c| {
        let keep = wanted(c);
        async move { keep }
    });
    let stream = futures::stream::iter(missed).chain(live).map(line);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("response")
}

/// The changes a broadcast receiver gets, until it falls behind or the server stops.
fn tokio_stream_of(
    rx: tokio::sync::broadcast::Receiver<Change>,
) -> impl futures::Stream<Item = Change> {
    futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(change) => Some((change, rx)),
            Err(_) => None,
        }
    })
}

impl MockKubeApi {
    /// Starts the server on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { handle(&state, method, uri, headers, body) }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server whose context's namespace is `namespace`.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: {}\nusers:\n- name: operator\n  user:\n    token: mock-token\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: operator\n    namespace: {namespace}\ncurrent-context: mock\n",
            self.url()
        )
    }

    /// Adds (or replaces) a resource.
    pub fn put_sdd(&self, sdd: Value) {
        self.put(Collection::Sdds, sdd);
    }

    /// Adds (or replaces) a Secret.
    pub fn put_secret(&self, secret: Value) {
        self.put(Collection::Secrets, secret);
    }

    fn put(&self, collection: Collection, mut object: Value) {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let k = key(ns, name);
        let mut st = self.state.lock().unwrap();
        let stored = match collection {
            Collection::Sdds => &st.sdds,
            Collection::Secrets => &st.secrets,
        };
        let kind = if stored.contains_key(&k) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.changed(collection, kind, &mut object);
        match collection {
            Collection::Sdds => st.sdds.insert(k, object),
            Collection::Secrets => st.secrets.insert(k, object),
        };
    }

    /// The resource as stored (with the status the operator applied).
    pub fn sdd(&self, ns: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().sdds.get(&key(ns, name)).cloned()
    }

    /// The holder of Lease `ns/name`, if any.
    pub fn lease_holder(&self, ns: &str, name: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .leases
            .get(&key(ns, name))
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// The Events posted so far.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }
}

fn handle(
    state: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut st = state.lock().unwrap();
    st.log.push(Seen {
        at: Instant::now(),
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
    });
    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let parameter = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    if parameter("watch").is_some_and(|w| w == "true" || w == "1") {
        let since = parameter("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(st.revision);
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (collection, namespace) = match parts.as_slice() {
            [.., "namespaces", ns, "stablediffusiondeployments"] => (Collection::Sdds, Some(*ns)),
            [.., "stablediffusiondeployments"] => (Collection::Sdds, None),
            ["api", "v1", "namespaces", ns, "secrets"] => (Collection::Secrets, Some(*ns)),
            ["api", "v1", "secrets"] => (Collection::Secrets, None),
            // Nothing else changes here: the watch stays open and quiet.
            _ => (Collection::Secrets, Some("")),
        };
        return watch(&st, collection, namespace, since, metadata_only);
    }
    let revision = st.revision.to_string();
    let list = |items: Vec<Value>| {
        let kind = if metadata_only {
            "PartialObjectMetadataList"
        } else {
            "List"
        };
        let items: Vec<Value> = items
            .into_iter()
            .map(|i| if metadata_only { meta_of(&i) } else { i })
            .collect();
        json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": revision }, "items": items })
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), parts.as_slice()) {
        // Resources: list (all or one namespace), status writes.
        (
            Method::GET,
            [
                "apis",
                "salad-sd.dev",
                "v1alpha1",
                "stablediffusiondeployments",
            ],
        ) => answer(StatusCode::OK, &list(st.sdds.values().cloned().collect())),
        (
            Method::GET,
            [
                "apis",
                "salad-sd.dev",
                "v1alpha1",
                "namespaces",
                ns,
                "stablediffusiondeployments",
            ],
        ) => {
            let prefix = format!("{ns}/");
            let items = st
                .sdds
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .collect();
            answer(StatusCode::OK, &list(items))
        }
        (
            Method::PATCH,
            [
                "apis",
                "salad-sd.dev",
                "v1alpha1",
                "namespaces",
                ns,
                "stablediffusiondeployments",
                name,
                "status",
            ],
        ) => match st.sdds.get(&key(ns, name)).cloned() {
            Some(mut sdd) => {
                sdd["status"] = body["status"].clone();
                st.changed(Collection::Sdds, "MODIFIED", &mut sdd);
                let written = answer(StatusCode::OK, &sdd);
                st.sdds.insert(key(ns, name), sdd);
                written
            }
            None => answer(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", "no such resource"),
            ),
        },
        // Secrets: list (metadata), get (full or metadata).
        (Method::GET, ["api", "v1", "secrets"]) => answer(
            StatusCode::OK,
            &list(st.secrets.values().cloned().collect()),
        ),
        (Method::GET, ["api", "v1", "namespaces", ns, "secrets", name]) => {
            match st.secrets.get(&key(ns, name)) {
                Some(s) if metadata_only => answer(StatusCode::OK, &meta_of(s)),
                Some(s) => answer(StatusCode::OK, s),
                None => answer(
                    StatusCode::NOT_FOUND,
                    &status(404, "NotFound", "no such secret"),
                ),
            }
        }
        // Events and the endpoint ConfigMap: accepted.
        (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => {
            st.events.push(body.clone());
            answer(StatusCode::CREATED, &body)
        }
        // A repeated Event: the recorder patches its series.
        (Method::PATCH, ["apis", "events.k8s.io", "v1", "namespaces", _, "events", _]) => {
            answer(StatusCode::OK, &body)
        }
        (Method::PATCH, ["api", "v1", "namespaces", _, "configmaps", _]) => {
            answer(StatusCode::OK, &body)
        }
        // The Lease.
        (
            Method::GET,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ],
        ) => match st.leases.get(&key(ns, name)) {
            Some(l) => answer(StatusCode::OK, l),
            None => answer(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", "no such lease"),
            ),
        },
        (
            Method::POST,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
            ],
        ) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if st.leases.contains_key(&key(ns, &name)) {
                return answer(
                    StatusCode::CONFLICT,
                    &status(409, "AlreadyExists", "lease exists"),
                );
            }
            let mut stored = body.clone();
            stored["metadata"]["resourceVersion"] = json!("1");
            stored["metadata"]["namespace"] = json!(ns);
            st.leases.insert(key(ns, &name), stored.clone());
            answer(StatusCode::CREATED, &stored)
        }
        (
            Method::PUT,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ],
        ) => {
            let k = key(ns, name);
            let current = st.leases.get(&k).cloned();
            let Some(current) = current else {
                return answer(
                    StatusCode::NOT_FOUND,
                    &status(404, "NotFound", "no such lease"),
                );
            };
            if current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                return answer(
                    StatusCode::CONFLICT,
                    &status(409, "Conflict", "the object has been modified"),
                );
            }
            let version = current["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let mut stored = body.clone();
            stored["metadata"]["resourceVersion"] = json!((version + 1).to_string());
            st.leases.insert(k, stored.clone());
            answer(StatusCode::OK, &stored)
        }
        (method, _) => answer(
            StatusCode::NOT_FOUND,
            &status(
                404,
                "NotFound",
                &format!("the mock API server does not serve {method} {path}"),
            ),
        ),
    }
}

/// The `PartialObjectMetadata` of an object.
fn meta_of(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"].clone(),
    })
}
