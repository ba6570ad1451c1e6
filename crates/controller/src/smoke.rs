//! The post-rollout smoke test: one small txt2img through the Container Gateway.

use std::time::Instant;

use base64::Engine as _;
use salad_sd_api::{SmokeTestSpec, SmokeTestStatus};
use saladcloud::{ApiKey, ContainerGroup};

/// Sends a txt2img to the group's access domain (or to `gateway_override` with the domain as
/// `Host`) and checks that a PNG comes back.
pub async fn run(
    http: &reqwest::Client,
    gateway_override: Option<&str>,
    group: &ContainerGroup,
    api_key: Option<&ApiKey>,
    cfg: &SmokeTestSpec,
) -> SmokeTestStatus {
    let failed = |message: String, latency: Option<i64>| SmokeTestStatus {
        result: "Failed".into(),
        group_version: None,
        latency_ms: latency,
        message: Some(message),
    };
    let Some(dns) = group
        .networking
        .as_ref()
        .map(|n| n.dns.clone())
        .filter(|d| !d.is_empty())
    else {
        return failed(
            "the container group has no gateway access domain".into(),
            None,
        );
    };
    let (url, host) = match gateway_override {
        Some(base) => (
            format!("{}/sdapi/v1/txt2img", base.trim_end_matches('/')),
            Some(dns.clone()),
        ),
        None => (format!("https://{dns}/sdapi/v1/txt2img"), None),
    };
    let body = serde_json::json!({
        "prompt": cfg.prompt,
        "steps": cfg.steps,
        "width": cfg.size,
        "height": cfg.size,
        "batch_size": 1,
        "send_images": true,
        "save_images": false,
    });
    let mut req = http.post(&url).json(&body);
    if let Some(host) = host {
        req = req.header(reqwest::header::HOST, host);
    }
    if let Some(key) = api_key {
        req = req.header(saladcloud::API_KEY_HEADER, key.expose());
    }
    let started = Instant::now();
    let response = req.send().await;
    let latency = Some(started.elapsed().as_millis() as i64);
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return failed(
                format!("txt2img request to {dns} failed: {}", e.without_url()),
                latency,
            );
        }
    };
    let status = response.status();
    if !status.is_success() {
        return failed(format!("txt2img on {dns} answered HTTP {status}"), latency);
    }
    let json: serde_json::Value = match response.json().await {
        Ok(j) => j,
        Err(_) => return failed(format!("txt2img on {dns} did not answer JSON"), latency),
    };
    let png = json["images"][0]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|bytes| bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    match png {
        Some(bytes) => SmokeTestStatus {
            result: "Passed".into(),
            group_version: None,
            latency_ms: latency,
            message: Some(format!("txt2img returned a {} byte PNG", bytes.len())),
        },
        None => failed(format!("txt2img on {dns} returned no PNG image"), latency),
    }
}
