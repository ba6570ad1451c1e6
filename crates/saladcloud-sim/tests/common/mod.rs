//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use reqwest::{Client, Method, Response, StatusCode};
use saladcloud_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

pub const ORG: &str = "acme";
pub const PROJECT: &str = "demo";
pub const KEY: &str = "test-key";
pub const RTX_4090: &str = "ed563892-aacd-40f5-80b7-90c9be6c759b";

/// Run a test body with a hard time bound.
pub async fn bounded<F: Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test timed out");
}

pub struct T {
    pub sim: SimHandle,
    pub c: Client,
}

impl T {
    /// Default config without the rate limit (tests poll much faster than 4 requests/s).
    pub async fn start() -> Self {
        Self::with(SimConfig {
            rate_limit_per_minute: 0,
            ..SimConfig::default()
        })
        .await
    }

    pub async fn with(config: SimConfig) -> Self {
        let sim = Simulator::start(config, "127.0.0.1:0").await.unwrap();
        let c = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self { sim, c }
    }

    /// Timings with wide instance steps, for tests that must observe a short-lived state
    /// right after an action even on a loaded machine.
    pub async fn with_wide_steps() -> Self {
        let ms = Duration::from_millis;
        Self::with(SimConfig {
            timings: saladcloud_sim::Timings {
                allocate: ms(700),
                download: ms(700),
                create: ms(700),
                ..saladcloud_sim::Timings::default()
            },
            rate_limit_per_minute: 0,
            ..SimConfig::default()
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    pub fn groups_url(&self) -> String {
        self.url(&format!(
            "/organizations/{ORG}/projects/{PROJECT}/containers"
        ))
    }

    pub fn group_url(&self, name: &str) -> String {
        format!("{}/{name}", self.groups_url())
    }

    pub async fn req(&self, method: Method, url: &str, body: Option<&Value>) -> Response {
        let mut r = self
            .c
            .request(method.clone(), url)
            .header("Salad-Api-Key", KEY);
        if let Some(b) = body {
            let ct = if method == Method::PATCH {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            r = r.header("Content-Type", ct).body(b.to_string());
        }
        r.send().await.unwrap()
    }

    pub async fn create(&self, body: &Value) -> Response {
        self.req(Method::POST, &self.groups_url(), Some(body)).await
    }

    pub async fn create_ok(&self, body: &Value) -> Value {
        let r = self.create(body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "create failed: {v}");
        v
    }

    pub async fn get(&self, name: &str) -> (StatusCode, Value) {
        let r = self.req(Method::GET, &self.group_url(name), None).await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn group(&self, name: &str) -> Value {
        let (s, v) = self.get(name).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub async fn patch(&self, name: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .req(Method::PATCH, &self.group_url(name), Some(body))
            .await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn instances(&self, name: &str) -> Vec<Value> {
        let r = self
            .req(
                Method::GET,
                &format!("{}/instances", self.group_url(name)),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["instances"].as_array().unwrap().clone()
    }

    pub async fn action(&self, name: &str, action: &str) -> StatusCode {
        self.req(
            Method::POST,
            &format!("{}/{action}", self.group_url(name)),
            None,
        )
        .await
        .status()
    }

    /// Poll the group until `pred` holds; returns that observation.
    pub async fn wait_group(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let g = self.group(name).await;
            if pred(&g) {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Poll until the group runs with `n` running and ready instances on its current version.
    pub async fn wait_ready(&self, name: &str, n: usize) -> Vec<Value> {
        loop {
            let g = self.group(name).await;
            let insts = self.instances(name).await;
            if g["current_state"]["status"] == "running"
                && !g["pending_change"].as_bool().unwrap()
                && insts.len() == n
                && insts.iter().all(|i| {
                    i["state"] == "running" && i["ready"] == true && i["version"] == g["version"]
                })
            {
                return insts;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// A minimal valid create body.
pub fn body(name: &str) -> Value {
    json!({
        "name": name,
        "container": {
            "image": "ghcr.io/acme/sdnext:v1",
            "resources": {"cpu": 4, "memory": 12288, "gpu_classes": [RTX_4090]},
        },
        "autostart_policy": true,
        "replicas": 2,
        "restart_policy": "always",
    })
}

/// A create body with the container gateway and a readiness probe.
pub fn body_with_gateway(name: &str, auth: bool) -> Value {
    let mut b = body(name);
    b["networking"] = json!({"auth": auth, "port": 7860, "protocol": "http"});
    b["readiness_probe"] = json!({
        "http": {"path": "/internal/ping", "port": 7860, "scheme": "http", "headers": []},
        "initial_delay_seconds": 0, "period_seconds": 1, "timeout_seconds": 1,
        "success_threshold": 1, "failure_threshold": 3,
    });
    b
}
