//! Conformance runner for `make conformance`.
//!
//! 1. Starts the SaladCloud simulator in-process behind a small recording proxy, replays the
//!    request corpus through the real [`Client`], and validates every JSON response body against
//!    the spec's response schema for that path, method and status (`format: url` is treated as a
//!    plain string). Prints `simulator response violations: N over M responses`.
//! 2. Replays the same corpus against Stoplight Prism (`--base-url`), reads Prism's
//!    `sl-violations` header of every response and counts the request-side violations. Prints
//!    them and, as the last line, `spec violations: N over M requests`; exits 1 when N > 0.
//!
//! Usage: `conformance --base-url http://127.0.0.1:4010 --spec ../shared/saladcloud/openapi.yaml
//! [--skip-sim] [--strict-sim]`. Simulator violations are reported but only fail the run with
//! `--strict-sim`.
//!
//! Before counting, a canary request that breaks the spec on purpose (sent with plain reqwest,
//! not counted) must come back with a request-side violation, so a silent Prism cannot produce
//! a false "0 violations".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use saladcloud::*;
use serde_json::Value;

const ORG: &str = "acme-corp";
const PROJECT: &str = "dev-env";
const FALLBACK_GPU: &str = "ed563892-aacd-40f5-80b7-90c9be6c759b";

struct Args {
    base_url: String,
    spec: String,
    skip_sim: bool,
    strict_sim: bool,
}

fn parse_args() -> Args {
    let mut base_url = None;
    let mut spec = "../shared/saladcloud/openapi.yaml".to_owned();
    let mut skip_sim = false;
    let mut strict_sim = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--base-url" => base_url = it.next(),
            "--spec" => spec = it.next().unwrap_or(spec),
            "--skip-sim" => skip_sim = true,
            "--strict-sim" => strict_sim = true,
            other => {
                eprintln!(
                    "unknown argument `{other}`; usage: conformance --base-url URL --spec PATH [--skip-sim] [--strict-sim]"
                );
                std::process::exit(2);
            }
        }
    }
    let Some(base_url) = base_url else {
        eprintln!("usage: conformance --base-url URL --spec PATH [--skip-sim] [--strict-sim]");
        std::process::exit(2);
    };
    Args {
        base_url,
        spec,
        skip_sim,
        strict_sim,
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus: every client operation, minimal and maximal bodies.
// ---------------------------------------------------------------------------------------------

fn resources(gpu: &str) -> CreateResources {
    CreateResources {
        cpu: 2,
        memory: 4096,
        gpu_classes: vec![gpu.to_owned()],
        storage_amount: None,
        shm_size: None,
    }
}

fn probe(kind: &str, with_headers: bool) -> Probe {
    let mut p = Probe {
        http: None,
        tcp: None,
        grpc: None,
        exec: None,
        initial_delay_seconds: 5,
        period_seconds: 10,
        timeout_seconds: 5,
        success_threshold: 1,
        failure_threshold: 3,
    };
    match kind {
        "http" => {
            p.http = Some(HttpProbe {
                path: "/sdapi/v1/progress".into(),
                port: 7860,
                scheme: HttpScheme::Http,
                headers: if with_headers {
                    vec![HttpHeader::new("X-Probe", "salad-sd")]
                } else {
                    Vec::new()
                },
            })
        }
        "tcp" => p.tcp = Some(TcpProbe { port: 7860 }),
        "grpc" => {
            p.grpc = Some(GrpcProbe {
                port: 50051,
                service: "health".into(),
            })
        }
        _ => {
            p.exec = Some(ExecProbe {
                command: vec!["curl".into(), "-fsS".into(), "http://[::1]:7860/".into()],
            })
        }
    }
    p
}

fn minimal(name: &str, gpu: &str) -> ContainerGroupPrototype {
    ContainerGroupPrototype::new(
        name,
        CreateContainer::new("ghcr.io/salad-sd/sdnext:1.0.0", resources(gpu)),
        1,
    )
}

fn logging(kind: usize) -> ContainerLogging {
    let mut l = ContainerLogging::default();
    match kind {
        0 => {
            l.axiom = Some(AxiomLogging {
                host: "api.axiom.co".into(),
                api_token: Secret::new("xaat-token"),
                dataset: "salad".into(),
            })
        }
        1 => {
            l.datadog = Some(DatadogLogging {
                host: "http-intake.logs.datadoghq.com".into(),
                api_key: Secret::new("dd-key"),
                tags: vec![HttpHeader::new("env", "dev")],
            })
        }
        2 => {
            l.new_relic = Some(NewRelicLogging {
                host: "log-api.newrelic.com".into(),
                ingestion_key: Secret::new("nr-key"),
            })
        }
        3 => {
            l.splunk = Some(SplunkLogging {
                host: "https://splunk.example.com:8088".into(),
                token: Secret::new("splunk-token"),
            })
        }
        4 => {
            l.tcp = Some(TcpLogging {
                host: "logs.example.com".into(),
                port: 5140,
            })
        }
        _ => {
            l.http = Some(HttpLogging {
                host: "logs.example.com".into(),
                port: 443,
                format: HttpLogFormat::JsonLines,
                compression: HttpLogCompression::Gzip,
                headers: vec![HttpHeader::new("Authorization", "Bearer x")],
                path: Some("/ingest".into()),
                user: Some("salad".into()),
                password: Some(Secret::new("log-pass")),
            })
        }
    }
    l
}

fn registry(kind: usize) -> RegistryAuthentication {
    match kind {
        0 => RegistryAuthentication::Basic {
            username: "bot".into(),
            password: Secret::new("pw"),
        },
        1 => RegistryAuthentication::DockerHub {
            username: "bot".into(),
            personal_access_token: Secret::new("dckr_pat"),
        },
        2 => RegistryAuthentication::AwsEcr {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: Secret::new("aws-secret"),
        },
        3 => RegistryAuthentication::GcpGar {
            service_key: Secret::new("{\"type\":\"service_account\"}"),
        },
        _ => RegistryAuthentication::GcpGcr {
            service_key: Secret::new("{\"type\":\"service_account\"}"),
        },
    }
}

fn maximal(name: &str, gpu: &str) -> ContainerGroupPrototype {
    let mut env = BTreeMap::new();
    env.insert("SD_MODEL".to_owned(), "sd-1.5".to_owned());
    env.insert("HF_TOKEN".to_owned(), "hf_example".to_owned());
    let container = CreateContainer {
        image: "ghcr.io/salad-sd/sdnext:1.0.0".into(),
        resources: CreateResources {
            cpu: 4,
            memory: 16384,
            gpu_classes: vec![gpu.to_owned()],
            storage_amount: Some(53_687_091_200),
            shm_size: Some(2048),
        },
        command: Some(vec!["python".into(), "launch.py".into(), "--listen".into()]),
        environment_variables: env,
        priority: Some(Priority::High),
        image_caching: Some(true),
        registry_authentication: Some(registry(0)),
        logging: Some(logging(5)),
    };
    let mut p = ContainerGroupPrototype::new(name, container, 2);
    p.display_name = Some("SD Next, max".into());
    p.autostart_policy = false;
    p.restart_policy = RestartPolicy::OnFailure;
    p.country_codes = vec!["us".into(), "ca".into(), "de".into()];
    p.networking = Some(CreateNetworking {
        protocol: NetworkingProtocol::Http,
        port: 7860,
        auth: true,
        load_balancer: Some(LoadBalancer::LeastNumberOfConnections),
        single_connection_limit: Some(true),
        client_request_timeout: Some(100_000),
        server_response_timeout: Some(90_000),
    });
    p.startup_probe = Some(probe("http", true));
    p.liveness_probe = Some(probe("exec", false));
    p.readiness_probe = Some(probe("http", false));
    p.scaling_actions = vec![
        ScalingAction {
            schedule: "0 8 * * 1-5".into(),
            replicas: 2,
        },
        ScalingAction {
            schedule: "0 20 * * *".into(),
            replicas: 0,
        },
    ];
    p.scheduled_scaling_enabled = Some(true);
    p
}

fn variants(gpu: &str) -> Vec<ContainerGroupPrototype> {
    let mut out = Vec::new();
    // Every registry kind and logging provider, and the remaining probe kinds.
    for i in 0..5 {
        let mut p = minimal(&format!("conf-var-{i}"), gpu);
        p.container.registry_authentication = Some(registry(i));
        p.container.logging = Some(logging(i));
        p.container.priority = Some([Priority::Medium, Priority::Low, Priority::Batch][i % 3]);
        p.restart_policy = [RestartPolicy::Never, RestartPolicy::Always][i % 2];
        p.networking = Some(CreateNetworking {
            protocol: NetworkingProtocol::Http,
            port: 7860,
            auth: false,
            load_balancer: Some(LoadBalancer::RoundRobin),
            single_connection_limit: None,
            client_request_timeout: None,
            server_response_timeout: None,
        });
        p.startup_probe = Some(probe("tcp", false));
        p.liveness_probe = Some(probe("grpc", false));
        out.push(p);
    }
    // Queue-based autoscaling fields.
    let mut q = minimal("conf-queue", gpu);
    q.queue_connection = Some(QueueConnection {
        path: "/generate".into(),
        port: 7860,
        queue_name: "conf-queue".into(),
    });
    q.queue_autoscaler = Some(QueueAutoscaler {
        desired_queue_length: 5,
        min_replicas: 0,
        max_replicas: 10,
        max_upscale_per_minute: Some(5),
        max_downscale_per_minute: Some(2),
        polling_period: Some(30),
    });
    out.push(q);
    out
}

fn patch_minimal() -> ContainerGroupPatch {
    ContainerGroupPatch {
        replicas: Some(3),
        ..Default::default()
    }
}

fn patch_maximal(gpu: &str) -> ContainerGroupPatch {
    let mut env = BTreeMap::new();
    env.insert("SD_MODEL".to_owned(), "sdxl".to_owned());
    ContainerGroupPatch {
        display_name: Nullable::Value("SD Next, patched".into()),
        replicas: Some(4),
        country_codes: Nullable::Value(vec!["us".into()]),
        container: Some(UpdateContainer {
            image: Some("ghcr.io/salad-sd/sdnext:1.0.1".into()),
            command: Nullable::Value(vec!["python".into(), "launch.py".into()]),
            environment_variables: Some(env),
            priority: Some(Priority::Medium),
            image_caching: Some(false),
            registry_authentication: Some(registry(1)),
            logging: Nullable::Value(logging(5)),
            resources: Some(UpdateResources {
                cpu: Some(8),
                memory: Some(30720),
                gpu_classes: Some(vec![gpu.to_owned()]),
                storage_amount: Nullable::Value(107_374_182_400),
                shm_size: Nullable::Value(4096),
            }),
        }),
        networking: Some(UpdateNetworking { port: Some(7861) }),
        startup_probe: Nullable::Value(probe("http", true)),
        // Same kind as on create: merge-patch would merge a different kind into the old one.
        liveness_probe: Nullable::Value(probe("exec", false)),
        readiness_probe: Nullable::Value(probe("http", false)),
        queue_autoscaler: None,
        scaling_actions: Some(vec![ScalingAction {
            schedule: "*/30 * * * *".into(),
            replicas: 1,
        }]),
        scheduled_scaling_enabled: Some(false),
    }
}

fn patch_nulls() -> ContainerGroupPatch {
    ContainerGroupPatch {
        display_name: Nullable::Null,
        country_codes: Nullable::Null,
        container: Some(UpdateContainer {
            command: Nullable::Null,
            logging: Nullable::Null,
            resources: Some(UpdateResources {
                storage_amount: Nullable::Null,
                shm_size: Nullable::Null,
                ..Default::default()
            }),
            ..Default::default()
        }),
        startup_probe: Nullable::Null,
        liveness_probe: Nullable::Null,
        readiness_probe: Nullable::Null,
        ..Default::default()
    }
}

/// Sends the whole corpus; returns the client-side outcome of each call.
async fn run_corpus(client: &Client) -> Vec<(String, Result<(), String>)> {
    fn done<T>(label: &str, r: Result<T, Error>) -> (String, Result<(), String>) {
        (label.to_owned(), r.map(|_| ()).map_err(|e| e.to_string()))
    }
    let mut out = Vec::new();
    let gpus = client.list_gpu_classes(ORG).await;
    let gpu = gpus
        .as_ref()
        .ok()
        .and_then(|g| g.first().map(|c| c.id.clone()))
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .unwrap_or_else(|| FALLBACK_GPU.to_owned());
    out.push(done("list_gpu_classes", gpus));
    out.push(done("get_quotas", client.get_quotas(ORG).await));
    out.push(done(
        "list_container_groups",
        client.list_container_groups(ORG, PROJECT).await,
    ));
    // Job queues, before the groups: `conf-queued` connects to one.
    out.push(done(
        "create_queue",
        client
            .create_queue(
                ORG,
                PROJECT,
                &saladcloud::model::QueuePrototype {
                    name: "conf-queue".into(),
                    display_name: Some("Conformance queue".into()),
                    description: Some("jobs for the conformance corpus".into()),
                },
            )
            .await,
    ));
    out.push(done("list_queues", client.list_queues(ORG, PROJECT).await));
    out.push(done(
        "get_queue",
        client.find_queue(ORG, PROJECT, "conf-queue").await,
    ));
    let mut queued = minimal("conf-queued", &gpu);
    queued.queue_connection = Some(saladcloud::model::QueueConnection {
        path: "/sdapi/v1/txt2img".into(),
        port: 7860,
        queue_name: "conf-queue".into(),
    });
    queued.queue_autoscaler = Some(saladcloud::model::QueueAutoscaler {
        desired_queue_length: 2,
        min_replicas: 0,
        max_replicas: 3,
        max_upscale_per_minute: Some(2),
        max_downscale_per_minute: Some(1),
        polling_period: Some(30),
    });
    queued.scaling_actions = Vec::new();
    let job = client
        .create_job(
            ORG,
            PROJECT,
            "conf-queue",
            &saladcloud::model::QueueJobPrototype {
                input: serde_json::json!({"prompt": "a red apple", "steps": 4}),
                metadata: Some(serde_json::Map::from_iter([(
                    "by".to_string(),
                    serde_json::json!("conformance"),
                )])),
                webhook: None,
            },
        )
        .await;
    let job_id = job
        .as_ref()
        .ok()
        .map(|j| j.id.clone())
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .unwrap_or_else(|| "0f2b6f8e-3c1d-4e5a-9b7c-2d4e6f8a0b1d".to_owned());
    out.push(done("create_queue_job", job));
    out.push(done(
        "get_queue_job",
        client.get_job(ORG, PROJECT, "conf-queue", &job_id).await,
    ));
    out.push(done(
        "list_queue_jobs",
        client
            .list_jobs(ORG, PROJECT, "conf-queue", Some(1), Some(10))
            .await,
    ));
    out.push(done(
        "delete_queue_job",
        client.delete_job(ORG, PROJECT, "conf-queue", &job_id).await,
    ));
    let mut scheduled = minimal("conf-scheduled", &gpu);
    scheduled.scaling_actions = vec![
        saladcloud::model::ScalingAction {
            schedule: "0 8 * * 1-5".into(),
            replicas: 3,
        },
        saladcloud::model::ScalingAction {
            schedule: "0 20 * * *".into(),
            replicas: 0,
        },
    ];
    scheduled.scheduled_scaling_enabled = Some(true);
    let creates = [
        minimal("conf-min", &gpu),
        maximal("conf-max", &gpu),
        queued,
        scheduled,
    ]
    .into_iter()
    .chain(variants(&gpu));
    for p in creates {
        let label = format!("create_container_group {}", p.name);
        out.push(done(
            &label,
            client.create_container_group(ORG, PROJECT, &p).await,
        ));
    }
    out.push(done(
        "get_container_group",
        client.get_container_group(ORG, PROJECT, "conf-max").await,
    ));
    for (label, patch) in [
        ("update_container_group minimal", patch_minimal()),
        ("update_container_group maximal", patch_maximal(&gpu)),
        ("update_container_group nulls", patch_nulls()),
    ] {
        out.push(done(
            label,
            client
                .update_container_group(ORG, PROJECT, "conf-max", &patch)
                .await,
        ));
    }
    out.push(done(
        "start_container_group",
        client.start_container_group(ORG, PROJECT, "conf-max").await,
    ));
    let instances = client
        .list_container_group_instances(ORG, PROJECT, "conf-max")
        .await;
    let instance = instances
        .as_ref()
        .ok()
        .and_then(|l| l.first().map(|i| i.id.clone()))
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .unwrap_or_else(|| "0f2b6f8e-3c1d-4e5a-9b7c-2d4e6f8a0b1c".to_owned());
    out.push(done("list_container_group_instances", instances));
    out.push(done(
        "get_system_logs",
        client.get_system_logs(ORG, PROJECT, "conf-max").await,
    ));
    let end = jiff::Timestamp::now();
    let query = saladcloud::model::LogEntryQuery {
        start_time: end - jiff::SignedDuration::from_hours(1),
        end_time: end,
        query: r#"resource.labels.container_group_name = "conf-max""#.into(),
        page_size: Some(100),
        sort_order: Some(saladcloud::model::SortOrder::Asc),
    };
    out.push(done(
        "query_log_entries",
        client.query_log_entries(ORG, &query).await,
    ));
    out.push(done(
        "reallocate_container_group_instance",
        client
            .reallocate_instance(ORG, PROJECT, "conf-max", &instance)
            .await,
    ));
    out.push(done(
        "recreate_container_group_instance",
        client
            .recreate_instance(ORG, PROJECT, "conf-max", &instance)
            .await,
    ));
    out.push(done(
        "restart_container_group_instance",
        client
            .restart_instance(ORG, PROJECT, "conf-max", &instance)
            .await,
    ));
    out.push(done(
        "stop_container_group",
        client.stop_container_group(ORG, PROJECT, "conf-max").await,
    ));
    out.push(done(
        "delete_container_group",
        client
            .delete_container_group(ORG, PROJECT, "conf-min")
            .await,
    ));
    out.push(done(
        "update_container_group autoscaler",
        client
            .update_container_group(
                ORG,
                PROJECT,
                "conf-queued",
                &ContainerGroupPatch {
                    queue_autoscaler: Some(saladcloud::model::QueueAutoscaler {
                        desired_queue_length: 1,
                        min_replicas: 1,
                        max_replicas: 5,
                        max_upscale_per_minute: None,
                        max_downscale_per_minute: None,
                        polling_period: Some(60),
                    }),
                    scaling_actions: Some(Vec::new()),
                    scheduled_scaling_enabled: Some(false),
                    ..ContainerGroupPatch::default()
                },
            )
            .await,
    ));
    out.push(done(
        "delete_container_group queued",
        client
            .delete_container_group(ORG, PROJECT, "conf-queued")
            .await,
    ));
    out.push(done(
        "delete_queue",
        client.delete_queue(ORG, PROJECT, "conf-queue").await,
    ));
    out.push(done(
        "delete_container_group absent",
        client
            .delete_container_group(ORG, PROJECT, "conf-never-created")
            .await,
    ));
    out
}

fn client_for(base_url: &str, key: &str) -> Client {
    let mut cfg = ClientConfig::new(ApiKey::new(key)).with_base_url(base_url);
    cfg.retry = RetryPolicy::none();
    cfg.request_timeout = Duration::from_secs(20);
    cfg.rate_limit_per_minute = 10_000;
    Client::new(cfg).expect("client config")
}

// ---------------------------------------------------------------------------------------------
// Part 1: simulator responses against the spec's response schemas.
// ---------------------------------------------------------------------------------------------

/// One proxied exchange: method, path, status, response body.
type Exchange = (Method, String, u16, Bytes);

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<Exchange>>>,
}

async fn forward(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let mut req = p
        .http
        .request(method.clone(), format!("{}{}", p.upstream, path));
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.body(body).send().await {
        Ok(resp) => {
            let status = resp.status();
            let rh = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap_or_default();
            p.log
                .lock()
                .unwrap()
                .push((method, path, status.as_u16(), bytes.clone()));
            let mut out = (status, bytes).into_response();
            if let Some(ct) = rh.get("content-type") {
                out.headers_mut().insert("content-type", ct.clone());
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

fn strip_url_format(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("format").and_then(Value::as_str) == Some("url") {
                m.remove("format");
            }
            m.values_mut().for_each(strip_url_format);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_url_format),
        _ => {}
    }
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => spec.pointer(r.trim_start_matches('#')).unwrap_or(v),
        None => v,
    }
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && a.ends_with('}')) || a == b)
}

/// The `$ref` (or inline schema) of the response for `(method, path, status)`.
fn response_schema(spec: &Value, method: &Method, path: &str, status: u16) -> Option<Value> {
    let paths = spec.get("paths")?.as_object()?;
    let (_, item) = paths.iter().find(|(t, _)| path_matches(t, path))?;
    let op = item.get(method.as_str().to_ascii_lowercase())?;
    let responses = op.get("responses")?;
    let resp = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))?;
    let resp = resolve(spec, resp);
    let content = resp.get("content")?.as_object()?;
    content.values().next()?.get("schema").cloned()
}

async fn check_simulator(spec: &Value) -> Result<(usize, usize), String> {
    let sim = saladcloud_sim::Simulator::start(
        saladcloud_sim::SimConfig {
            timings: saladcloud_sim::Timings::fast(),
            rate_limit_per_minute: 0,
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .await
    .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let proxy = Proxy {
        upstream: sim.base_url(),
        http: reqwest::Client::new(),
        log: Arc::default(),
    };
    let log = proxy.log.clone();
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let client = client_for(&format!("http://{addr}"), "conformance-sim-key");
    let outcomes = run_corpus(&client).await;
    server.abort();
    sim.shutdown().await;
    for (label, r) in &outcomes {
        if let Err(e) = r {
            println!("  simulator: {label}: client error: {e}");
        }
    }

    let mut components = spec.get("components").cloned().unwrap_or(Value::Null);
    strip_url_format(&mut components);
    let mut violations = 0;
    let mut responses = 0;
    let entries = log.lock().unwrap().clone();
    for (method, path, status, body) in entries {
        let Some(schema) = response_schema(spec, &method, &path, status) else {
            if !body.is_empty() {
                println!(
                    "  simulator: {method} {path} -> {status}: no response schema in the spec for this status but a body was sent"
                );
                violations += 1;
                responses += 1;
            }
            continue;
        };
        responses += 1;
        let instance: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                println!("  simulator: {method} {path} -> {status}: body is not JSON: {e}");
                violations += 1;
                continue;
            }
        };
        let mut root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": components,
        });
        let mut schema = schema;
        strip_url_format(&mut schema);
        if let (Value::Object(r), Value::Object(s)) = (&mut root, schema) {
            r.extend(s);
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("cannot compile the response schema: {e}"))?;
        for err in validator.iter_errors(&instance) {
            violations += 1;
            println!(
                "  simulator: {method} {path} -> {status}: {} at `{}`",
                err,
                err.instance_path()
            );
        }
    }
    Ok((violations, responses))
}

// ---------------------------------------------------------------------------------------------
// Part 2: requests against Prism.
// ---------------------------------------------------------------------------------------------

fn request_violations(headers: &reqwest::header::HeaderMap) -> Vec<Value> {
    let Some(raw) = headers.get("sl-violations") else {
        return Vec::new();
    };
    let parsed: Vec<Value> = serde_json::from_slice(raw.as_bytes()).unwrap_or_default();
    parsed
        .into_iter()
        .filter(|v| match v.get("location") {
            Some(Value::Array(a)) => a.first().and_then(Value::as_str) == Some("request"),
            Some(Value::String(s)) => s.starts_with("request"),
            _ => false,
        })
        .collect()
}

/// Sends a deliberately invalid create; Prism must flag it.
async fn canary(base_url: &str) -> Result<(), String> {
    let resp = reqwest::Client::new()
        .post(format!(
            "{base_url}/organizations/{ORG}/projects/{PROJECT}/containers"
        ))
        .header(API_KEY_HEADER, "canary")
        .json(&serde_json::json!({"name": "Bad_Name", "replicas": 501}))
        .send()
        .await
        .map_err(|e| format!("canary request failed: {e}"))?;
    let found = request_violations(resp.headers());
    if found.is_empty() {
        Err(format!(
            "canary: Prism answered {} without request violations to an invalid body; \
             the violation detector is not working",
            resp.status()
        ))
    } else {
        Ok(())
    }
}

async fn check_prism(base_url: &str) -> (usize, usize) {
    let records: Arc<Mutex<Vec<RequestRecord>>> = Arc::default();
    let sink = records.clone();
    let client = client_for(base_url, "conformance-prism-key")
        .with_observer(Arc::new(move |r| sink.lock().unwrap().push(r)));
    let outcomes = run_corpus(&client).await;
    let records = records.lock().unwrap().clone();
    let mut violations = 0;
    let mut ops = BTreeSet::new();
    for r in &records {
        ops.insert(r.operation);
        for v in request_violations(&r.response_headers) {
            violations += 1;
            println!(
                "  prism: {} (HTTP {:?}): {} at {}",
                r.operation,
                r.status,
                v.get("message").and_then(Value::as_str).unwrap_or("?"),
                v.get("location").cloned().unwrap_or(Value::Null)
            );
        }
    }
    for (label, r) in &outcomes {
        match r {
            Ok(()) => {}
            Err(e) if e.contains("unexpected response body") => {
                println!("  prism: {label}: (ignored) could not decode Prism's example body");
            }
            Err(e) => println!("  prism: {label}: client error: {e}"),
        }
    }
    println!(
        "prism: {} requests over {} operations: {}",
        records.len(),
        ops.len(),
        ops.iter().copied().collect::<Vec<_>>().join(", ")
    );
    (violations, records.len())
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let spec_text = std::fs::read_to_string(&args.spec).unwrap_or_else(|e| {
        eprintln!("cannot read the spec {}: {e}", args.spec);
        std::process::exit(2);
    });
    let spec: Value = serde_saphyr::from_str(&spec_text).unwrap_or_else(|e| {
        eprintln!("cannot parse the spec {}: {e}", args.spec);
        std::process::exit(2);
    });

    if let Err(e) = canary(&args.base_url).await {
        eprintln!("{e}");
        std::process::exit(2);
    }
    let mut sim_failed = false;
    let sim_line = if args.skip_sim {
        None
    } else {
        match check_simulator(&spec).await {
            Ok((n, m)) => {
                sim_failed = args.strict_sim && n > 0;
                Some(format!(
                    "simulator response violations: {n} over {m} responses"
                ))
            }
            Err(e) => {
                eprintln!("simulator check failed: {e}");
                std::process::exit(2);
            }
        }
    };
    let (n, m) = check_prism(&args.base_url).await;
    if let Some(line) = sim_line {
        println!("{line}");
    }
    println!("spec violations: {n} over {m} requests");
    if n > 0 || sim_failed {
        std::process::exit(1);
    }
}
