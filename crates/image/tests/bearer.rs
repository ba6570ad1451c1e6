//! Runs the builder against a fake token-auth registry: an axum server on 127.0.0.1 that demands
//! `Authorization: Bearer <token>` on every /v2 request (401 with a Bearer challenge otherwise),
//! hands out scoped tokens from its own `/token` realm after checking Basic credentials, and
//! proxies authorised requests to a real CNCF distribution registry (`salad_sd_testkit::LocalRegistry`)
//! without the Authorization header, so storage semantics stay real.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONNECTION, HOST, LOCATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use salad_sd_image::{
    Builder, BuilderOptions, ConfigEdit, Error, LayerContent, LayerSpec, Recipe,
    RegistryCredentials, Secret, Source, SourcePolicy,
};
use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, list_tags, push_tiny_base_image,
};

const SERVICE: &str = "fake-token-registry";
const CKPT: &str = "/webui/data/models/Stable-diffusion/model.safetensors";
const PUSHER: (&str, &str) = ("pusher", "right-password");
const READER: (&str, &str) = ("reader", "reader-password");

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took longer than 60 s");
}

/// One call to the token endpoint.
#[derive(Clone, Debug)]
struct TokenCall {
    basic: Option<(String, String)>,
    service: Option<String>,
    scopes: Vec<String>,
    /// The token handed out, `None` when the credentials were refused.
    token: Option<String>,
}

/// One /v2 request as the fake registry saw it.
#[derive(Clone, Debug)]
struct V2Call {
    method: Method,
    path_and_query: String,
    bearer: Option<String>,
    /// Passed on to the storage registry (only when the token covered the request).
    forwarded: bool,
}

/// Access a token grants: repository → actions.
type Grants = HashMap<String, Vec<String>>;

struct FakeState {
    backend: String,
    public: String,
    http: reqwest::Client,
    answer_access_token: AtomicBool,
    /// Answer mounts with a fresh upload session (202), as the spec allows.
    refuse_mounts: AtomicBool,
    next_token: AtomicU64,
    /// Token lifetime in milliseconds; 0 means tokens never expire.
    token_ttl_ms: AtomicU64,
    tokens: Mutex<HashMap<String, (Grants, Instant)>>,
    token_calls: Mutex<Vec<TokenCall>>,
    v2_calls: Mutex<Vec<V2Call>>,
}

/// The fake token-auth registry; its task is aborted on drop.
struct FakeTokenRegistry {
    addr: SocketAddr,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTokenRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTokenRegistry {
    async fn start(backend: &LocalRegistry, answer_access_token: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState {
            backend: backend.url(),
            public: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            answer_access_token: AtomicBool::new(answer_access_token),
            refuse_mounts: AtomicBool::new(false),
            next_token: AtomicU64::new(1),
            token_ttl_ms: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            token_calls: Mutex::new(Vec::new()),
            v2_calls: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    fn host_port(&self) -> String {
        self.addr.to_string()
    }

    fn token_calls(&self) -> Vec<TokenCall> {
        self.state.token_calls.lock().unwrap().clone()
    }

    fn v2_calls(&self) -> Vec<V2Call> {
        self.state.v2_calls.lock().unwrap().clone()
    }

    fn issued_tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().keys().cloned().collect()
    }
}

async fn handle(State(st): State<Arc<FakeState>>, req: Request) -> Response {
    if req.uri().path() == "/token" {
        return token_endpoint(&st, &req);
    }
    if !req.uri().path().starts_with("/v2/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let needed = required_access(req.method(), req.uri().path(), req.uri().query());
    let ttl = st.token_ttl_ms.load(Ordering::Relaxed);
    let grants = bearer
        .as_ref()
        .and_then(|t| st.tokens.lock().unwrap().get(t).cloned())
        .filter(|(_, issued)| ttl == 0 || issued.elapsed() < Duration::from_millis(ttl))
        .map(|(g, _)| g);
    let missing = match &grants {
        None => Some(needed.first().cloned()),
        Some(g) => needed
            .iter()
            .find(|(repo, action)| !g.get(repo).is_some_and(|a| a.iter().any(|x| x == action)))
            .map(|m| Some(m.clone())),
    };
    st.v2_calls.lock().unwrap().push(V2Call {
        method: req.method().clone(),
        path_and_query: path_and_query.clone(),
        bearer: bearer.clone(),
        forwarded: missing.is_none(),
    });
    if let Some(missing) = missing {
        let mut challenge = format!(r#"Bearer realm="{}/token",service="{SERVICE}""#, st.public);
        if let Some((repo, action)) = missing {
            let actions = if action == "push" {
                "pull,push"
            } else {
                "pull"
            };
            challenge.push_str(&format!(r#",scope="repository:{repo}:{actions}""#));
        }
        if bearer.is_some() {
            let error = if grants.is_some() {
                "insufficient_scope"
            } else {
                "invalid_token"
            };
            challenge.push_str(&format!(r#",error="{error}""#));
        }
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response();
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).unwrap());
        return resp;
    }
    proxy(&st, req, &path_and_query).await
}

/// `(repository, action)` pairs a /v2 request needs; empty for the `/v2/` ping (any valid token).
fn required_access(method: &Method, path: &str, query: Option<&str>) -> Vec<(String, String)> {
    let rest = path.trim_start_matches("/v2/");
    let repo = ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .map(|i| rest[..i].to_owned());
    let Some(repo) = repo else {
        return Vec::new();
    };
    let action = if *method == Method::GET || *method == Method::HEAD {
        "pull"
    } else {
        "push"
    };
    let mut out = vec![(repo.clone(), action.to_owned())];
    if action == "push" {
        out.push((repo, "pull".to_owned()));
    }
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k == "from" {
                out.push((v.into_owned(), "pull".to_owned()));
            }
        }
    }
    out
}

fn token_endpoint(st: &FakeState, req: &Request) -> Response {
    let basic = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "service" => service = Some(v.into_owned()),
            "scope" => scopes.push(v.into_owned()),
            _ => {}
        }
    }
    let user = match &basic {
        Some((u, p)) if (u.as_str(), p.as_str()) == PUSHER => Some(PUSHER.0),
        Some((u, p)) if (u.as_str(), p.as_str()) == READER => Some(READER.0),
        // Anonymous token requests get pull access, as on Docker Hub.
        None => Some("anonymous"),
        Some(_) => None,
    };
    let mut call = TokenCall {
        basic: basic.clone(),
        service: service.clone(),
        scopes: scopes.clone(),
        token: None,
    };
    let Some(user) = user.filter(|_| service.as_deref() == Some(SERVICE)) else {
        st.token_calls.lock().unwrap().push(call);
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
        )
            .into_response();
    };
    // Like a real token server: grant the intersection of what was asked and what the account
    // may do (the reader and anonymous callers may only pull).
    let mut grants: Grants = HashMap::new();
    for scope in &scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some("repository"), Some(repo), Some(actions)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let entry = grants.entry(repo.to_owned()).or_default();
        for a in actions.split(',') {
            if a == "pull" || (a == "push" && user == PUSHER.0) {
                entry.push(a.to_owned());
            }
        }
    }
    let n = st.next_token.fetch_add(1, Ordering::Relaxed);
    let token = format!("tok{n}-{user}-9f2c4e7a1b");
    st.tokens
        .lock()
        .unwrap()
        .insert(token.clone(), (grants, Instant::now()));
    call.token = Some(token.clone());
    st.token_calls.lock().unwrap().push(call);
    let field = if st.answer_access_token.load(Ordering::Relaxed) {
        "access_token"
    } else {
        "token"
    };
    axum::Json(serde_json::json!({ field: token, "expires_in": 300 })).into_response()
}

async fn proxy(st: &FakeState, req: Request, path_and_query: &str) -> Response {
    let (parts, body) = req.into_parts();
    let mut target = format!("{}{path_and_query}", st.backend);
    if st.refuse_mounts.load(Ordering::Relaxed) && path_and_query.contains("mount=") {
        target = format!("{}{}", st.backend, parts.uri.path());
    }
    let mut rb = st.http.request(parts.method.clone(), target);
    for (k, v) in &parts.headers {
        if k != AUTHORIZATION && k != HOST && k != CONNECTION && k != TRANSFER_ENCODING {
            rb = rb.header(k, v);
        }
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        rb = rb.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k == TRANSFER_ENCODING || k == CONNECTION {
            continue;
        }
        if k == LOCATION
            && let Some(rest) = v.to_str().ok().and_then(|s| s.strip_prefix(&st.backend))
        {
            out = out.header(k, format!("{}{rest}", st.public));
            continue;
        }
        out = out.header(k, v);
    }
    let body = if parts.method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(resp.bytes_stream())
    };
    out.body(body).unwrap()
}

fn recipe(base: String, model_url: String) -> Recipe {
    Recipe {
        base_image: base,
        layers: vec![LayerSpec {
            name: "ckpt".into(),
            source: Source {
                url: model_url,
                sha256: None,
                auth: None,
            },
            content: LayerContent::File {
                path_in_image: CKPT.into(),
                mode: 0o644,
            },
        }],
        config: ConfigEdit {
            env: BTreeMap::from([("CKPT_PATH".to_owned(), CKPT.to_owned())]),
            entrypoint: None,
            cmd: None,
            labels: BTreeMap::new(),
        },
    }
}

fn options(fake: &FakeTokenRegistry, user: &str, password: &str) -> BuilderOptions {
    let mut creds = RegistryCredentials::default();
    creds.insert(&fake.host_port(), user, Secret::new(password));
    BuilderOptions {
        insecure_registries: vec![fake.host_port()],
        source_policy: SourcePolicy {
            allow_private_sources: true,
            ..Default::default()
        },
        registry_credentials: creds,
        ..Default::default()
    }
}

/// Every /v2 request that reached storage carried a token the fake issued to valid credentials,
/// and the challenge flow actually ran (some requests were refused first).
fn assert_storage_only_saw_tokens(fake: &FakeTokenRegistry) {
    let issued: Vec<String> = fake
        .token_calls()
        .into_iter()
        .filter_map(|c| c.token)
        .collect();
    let calls = fake.v2_calls();
    assert!(calls.iter().any(|c| c.forwarded), "nothing reached storage");
    assert!(
        calls.iter().any(|c| !c.forwarded && c.bearer.is_none()),
        "the builder never met a challenge: {calls:#?}"
    );
    for c in calls.iter().filter(|c| c.forwarded) {
        let t = c.bearer.as_ref().expect("forwarded without a token");
        assert!(issued.contains(t), "forwarded with an unknown token: {c:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow_builds_and_wrong_credentials_fail_cleanly() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalRegistry::start(dir.path()).await.unwrap();
        push_tiny_base_image(&storage.host_port(), "base/sd:v1", false)
            .await
            .unwrap();
        let fake = FakeTokenRegistry::start(&storage, false).await;
        let models = ModelServer::start(ModelServerOptions::default())
            .await
            .unwrap();
        models.add_generated("/ckpt", 300_000, 7);
        let r = recipe(
            format!("{}/base/sd:v1", fake.host_port()),
            models.url("/ckpt"),
        );
        let target = format!("{}/team/sd", fake.host_port());

        // Wrong password: the token endpoint refuses, the build fails with the typed auth error.
        let err = Builder::new(options(&fake, PUSHER.0, "wrong-password"))
            .unwrap()
            .build(&r, &target)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::RegistryAuth { status: 401, .. }),
            "{err}"
        );
        assert!(err.is_terminal());
        let msg = err.to_string();
        assert!(msg.contains(&fake.host_port()), "{msg}");
        assert!(!msg.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"));
        assert!(fake.issued_tokens().is_empty());
        assert!(fake.v2_calls().iter().all(|c| !c.forwarded));
        let refused = fake.token_calls();
        assert!(!refused.is_empty());
        assert!(refused.iter().all(|c| c.token.is_none()
            && c.basic == Some((PUSHER.0.to_owned(), "wrong-password".to_owned()))));

        // Right credentials: the build goes through the token flow.
        let img = Builder::new(options(&fake, PUSHER.0, PUSHER.1))
            .unwrap()
            .build(&r, &target)
            .await
            .unwrap();
        assert_eq!(img.layers.len(), 1);
        assert!(img.bytes_uploaded > 300_000);
        let calls = fake.token_calls();
        let ok: Vec<&TokenCall> = calls.iter().filter(|c| c.token.is_some()).collect();
        assert!(!ok.is_empty());
        for c in &ok {
            assert_eq!(c.basic, Some((PUSHER.0.to_owned(), PUSHER.1.to_owned())));
            assert_eq!(c.service.as_deref(), Some(SERVICE));
        }
        let scopes: Vec<Vec<String>> = ok.iter().map(|c| c.scopes.clone()).collect();
        assert!(
            scopes.contains(&vec!["repository:team/sd:pull,push".to_owned()]),
            "{scopes:?}"
        );
        assert!(
            scopes.contains(&vec!["repository:base/sd:pull".to_owned()]),
            "{scopes:?}"
        );
        assert!(
            scopes.contains(&vec![
                "repository:team/sd:pull,push".to_owned(),
                "repository:base/sd:pull".to_owned()
            ]),
            "the base layers should be mounted with a two-repository token: {scopes:?}"
        );
        let v2 = fake.v2_calls();
        for (method, needle) in [
            (Method::POST, "mount="),
            (Method::PATCH, "/blobs/uploads/"),
            (Method::PUT, "digest="),
            (Method::PUT, "/manifests/r-"),
            (Method::HEAD, "/blobs/"),
            (Method::HEAD, "/manifests/"),
        ] {
            assert!(
                v2.iter().any(|c| c.forwarded
                    && c.method == method
                    && c.path_and_query.contains(needle)),
                "no authorised {method} {needle}: {v2:#?}"
            );
        }
        assert_storage_only_saw_tokens(&fake);
        // The image really is in storage, under the recipe tag.
        let tags = list_tags(&storage.host_port(), "team/sd").await.unwrap();
        assert!(tags.contains(&img.tag), "{tags:?}");

        // A second builder (no cached tokens) finds the image through the token flow.
        let before = fake.token_calls().len();
        let builder = Builder::new(options(&fake, PUSHER.0, PUSHER.1)).unwrap();
        let found = builder.find_existing(&r, &target).await.unwrap();
        assert_eq!(found.map(|f| f.digest), Some(img.digest.clone()));
        let again = builder.build(&r, &target).await.unwrap();
        assert_eq!(again.digest, img.digest);
        assert_eq!(again.bytes_uploaded, 0);
        assert!(fake.token_calls().len() > before);
        assert_storage_only_saw_tokens(&fake);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_field_and_pull_only_account() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalRegistry::start(dir.path()).await.unwrap();
        push_tiny_base_image(&storage.host_port(), "base/sd:v1", true)
            .await
            .unwrap();
        let fake = FakeTokenRegistry::start(&storage, true).await;
        let models = ModelServer::start(ModelServerOptions::default())
            .await
            .unwrap();
        models.add_generated("/ckpt", 100_000, 3);
        let r = recipe(
            format!("{}/base/sd:v1", fake.host_port()),
            models.url("/ckpt"),
        );

        // `access_token` (OAuth2 style) instead of `token` works the same; mounts are answered
        // with an upload session, which the builder fills using its push token.
        fake.state.refuse_mounts.store(true, Ordering::Relaxed);
        let target = format!("{}/team/sd", fake.host_port());
        let img = Builder::new(options(&fake, PUSHER.0, PUSHER.1))
            .unwrap()
            .build(&r, &target)
            .await
            .unwrap();
        let tags = list_tags(&storage.host_port(), "team/sd").await.unwrap();
        assert!(tags.contains(&img.tag), "{tags:?}");
        let v2 = fake.v2_calls();
        assert!(v2.iter().any(|c| c.forwarded
            && c.method == Method::POST
            && c.path_and_query.contains("mount=")));
        let patches = v2
            .iter()
            .filter(|c| c.forwarded && c.method == Method::PATCH)
            .count();
        assert!(
            patches >= 3,
            "base layers and the model should be uploaded: {v2:#?}"
        );
        assert_storage_only_saw_tokens(&fake);

        // An account that gets pull-only tokens: the push is refused after a token was issued;
        // the error is the terminal auth error and quotes neither the password nor any token.
        let err = Builder::new(options(&fake, READER.0, READER.1))
            .unwrap()
            .build(&r, &format!("{}/other/sd", fake.host_port()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::RegistryAuth { .. }), "{err}");
        assert!(err.is_terminal());
        let msg = err.to_string();
        let debug = format!("{err:?}");
        assert!(
            msg.contains(&fake.host_port()) && msg.contains("other/sd"),
            "{msg}"
        );
        assert!(msg.contains("push to"), "{msg}");
        assert!(!msg.contains(READER.1) && !debug.contains(READER.1));
        let reader_tokens: Vec<String> = fake
            .token_calls()
            .into_iter()
            .filter(|c| c.basic.as_ref().is_some_and(|(u, _)| u == READER.0))
            .filter_map(|c| c.token)
            .collect();
        assert!(!reader_tokens.is_empty(), "the reader never got a token");
        for t in fake.issued_tokens() {
            assert!(
                !msg.contains(&t) && !debug.contains(&t),
                "token {t} in {msg}"
            );
        }
        // Nothing was written for the refused push.
        assert!(
            list_tags(&storage.host_port(), "other/sd")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!fake.v2_calls().iter().any(|c| c.forwarded
            && c.path_and_query.starts_with("/v2/other/sd/")
            && c.method != Method::GET
            && c.method != Method::HEAD));
        assert_storage_only_saw_tokens(&fake);
    })
    .await;
}

#[test]
fn required_access_covers_the_distribution_paths() {
    let get = required_access(&Method::GET, "/v2/a/b/manifests/v1", None);
    assert_eq!(get, vec![("a/b".to_owned(), "pull".to_owned())]);
    let mount = required_access(
        &Method::POST,
        "/v2/t/r/blobs/uploads/",
        Some("mount=sha256%3Aab&from=base%2Fsd"),
    );
    assert!(mount.contains(&("t/r".to_owned(), "push".to_owned())));
    assert!(mount.contains(&("base/sd".to_owned(), "pull".to_owned())));
    assert!(required_access(&Method::GET, "/v2/", None).is_empty());
}

/// The common real-world case: a public base on one token registry (anonymous pull tokens, no
/// credentials configured for it) and the target on another, so base layers are streamed from
/// one Bearer registry into the other. Tokens expire quickly; a long-lived builder must fetch
/// fresh ones instead of failing on its cached, expired tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_base_registry_and_expiring_tokens() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalRegistry::start(dir.path()).await.unwrap();
        push_tiny_base_image(&storage.host_port(), "library/sd:v1", true)
            .await
            .unwrap();
        let public = FakeTokenRegistry::start(&storage, true).await;
        let private = FakeTokenRegistry::start(&storage, false).await;
        for f in [&public, &private] {
            f.state.token_ttl_ms.store(1500, Ordering::Relaxed);
        }
        let models = ModelServer::start(ModelServerOptions::default())
            .await
            .unwrap();
        models.add_generated("/a", 50_000, 1);
        models.add_generated("/b", 60_000, 2);
        let base = format!("{}/library/sd:v1", public.host_port());
        let target = format!("{}/team/sd", private.host_port());
        let mut opts = options(&private, PUSHER.0, PUSHER.1);
        opts.insecure_registries.push(public.host_port());
        let builder = Builder::new(opts).unwrap();

        let first = builder
            .build(&recipe(base.clone(), models.url("/a")), &target)
            .await
            .unwrap();
        assert!(
            list_tags(&storage.host_port(), "team/sd")
                .await
                .unwrap()
                .contains(&first.tag)
        );
        // Base layers were copied with GET on the public registry and PATCH on the private one.
        assert!(public.v2_calls().iter().any(|c| c.forwarded
            && c.method == Method::GET
            && c.path_and_query.starts_with("/v2/library/sd/blobs/")));
        assert!(
            private
                .v2_calls()
                .iter()
                .any(|c| c.forwarded && c.method == Method::PATCH)
        );
        let anon = public.token_calls();
        assert!(!anon.is_empty());
        assert!(
            anon.iter().all(|c| c.basic.is_none() && c.token.is_some()),
            "{anon:?}"
        );
        assert!(
            anon.iter()
                .all(|c| c.scopes == vec!["repository:library/sd:pull".to_owned()])
        );

        // All cached tokens expire; the same builder must recover through the challenge.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        let second = builder
            .build(&recipe(base, models.url("/b")), &target)
            .await
            .unwrap();
        assert_ne!(second.digest, first.digest);
        let tags = list_tags(&storage.host_port(), "team/sd").await.unwrap();
        assert!(tags.contains(&second.tag), "{tags:?}");
        for f in [&public, &private] {
            assert!(
                f.v2_calls()
                    .iter()
                    .any(|c| !c.forwarded && c.bearer.is_some()),
                "no request was made with an expired token"
            );
            assert_storage_only_saw_tokens(f);
        }
    })
    .await;
}
