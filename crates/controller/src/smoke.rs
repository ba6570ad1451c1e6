//! The post-rollout smoke test: one small generation through the Container Gateway, in the
//! server's own API: SD.Next's and A1111's `POST /sdapi/v1/txt2img`, comfyui-api's synchronous
//! `POST /prompt` with a txt2img workflow for the default checkpoint.

use std::time::Instant;

use base64::Engine as _;
use salad_sd_api::profile::comfyui_txt2img;
use salad_sd_api::{ServerKind, SmokeTestSpec, SmokeTestStatus, StableDiffusionDeploymentSpec};
use saladcloud::{ApiKey, ContainerGroup};

use crate::desired;

/// Seed of the ComfyUI smoke workflow (any fixed value: the result is only checked for a PNG).
const COMFYUI_SEED: u64 = 42;

/// The request a smoke test sends for a spec: path on the access domain and JSON body. Pure.
#[derive(Clone, Debug, PartialEq)]
pub struct SmokeRequest {
    /// Path on the access domain.
    pub path: &'static str,
    /// JSON body.
    pub body: serde_json::Value,
    /// What the request is called in messages.
    pub what: &'static str,
}

/// What to send to the server of `spec`: comfyui-api's `POST /prompt` with a txt2img workflow
/// for the default checkpoint (`images` in the answer are base64, as comfyui-api's
/// `src/server.ts` returns them when no webhook or upload is asked for), else txt2img.
/// `Err` says why no request can be built.
pub fn request(
    spec: &StableDiffusionDeploymentSpec,
    cfg: &SmokeTestSpec,
) -> Result<SmokeRequest, String> {
    match spec.server.kind {
        ServerKind::ComfyUi => {
            let Some(ckpt) = desired::default_checkpoint(spec) else {
                return Err("the ComfyUI smoke test generates with the default checkpoint, and the spec has none: add a model of kind Checkpoint (default: true when there are several)".into());
            };
            let workflow =
                comfyui_txt2img(&ckpt.name, &cfg.prompt, cfg.steps, cfg.size, COMFYUI_SEED);
            Ok(SmokeRequest {
                path: "/prompt",
                body: serde_json::json!({ "prompt": workflow }),
                what: "POST /prompt",
            })
        }
        ServerKind::SdNext | ServerKind::Automatic1111 | ServerKind::Custom => Ok(SmokeRequest {
            path: "/sdapi/v1/txt2img",
            body: serde_json::json!({
                "prompt": cfg.prompt,
                "steps": cfg.steps,
                "width": cfg.size,
                "height": cfg.size,
                "batch_size": 1,
                "send_images": true,
                "save_images": false,
            }),
            what: "txt2img",
        }),
    }
}

/// Sends the smoke request of `spec` to the group's access domain (or to `gateway_override`
/// with the domain as `Host`) and checks that a PNG comes back.
pub async fn run(
    http: &reqwest::Client,
    gateway_override: Option<&str>,
    group: &ContainerGroup,
    api_key: Option<&ApiKey>,
    spec: &StableDiffusionDeploymentSpec,
    cfg: &SmokeTestSpec,
) -> SmokeTestStatus {
    let failed = |message: String, latency: Option<i64>| SmokeTestStatus {
        result: "Failed".into(),
        group_version: None,
        latency_ms: latency,
        message: Some(message),
        job_id: None,
    };
    let request = match request(spec, cfg) {
        Ok(r) => r,
        Err(message) => return failed(message, None),
    };
    let what = request.what;
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
            format!("{}{}", base.trim_end_matches('/'), request.path),
            Some(dns.clone()),
        ),
        None => (format!("https://{dns}{}", request.path), None),
    };
    let mut req = http.post(&url).json(&request.body);
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
                format!("{what} request to {dns} failed: {}", e.without_url()),
                latency,
            );
        }
    };
    let status = response.status();
    if !status.is_success() {
        return failed(format!("{what} on {dns} answered HTTP {status}"), latency);
    }
    let json: serde_json::Value = match response.json().await {
        Ok(j) => j,
        Err(_) => return failed(format!("{what} on {dns} did not answer JSON"), latency),
    };
    match first_png(&json) {
        Some(bytes) => SmokeTestStatus {
            result: "Passed".into(),
            group_version: None,
            latency_ms: latency,
            message: Some(format!("{what} returned a {} byte PNG", bytes.len())),
            job_id: None,
        },
        None => failed(format!("{what} on {dns} returned no PNG image"), latency),
    }
}

/// The first of `images` (base64), when it decodes to a PNG: both APIs answer this way.
/// The result of a smoke test that went through the job queue, from its job. Pure.
pub fn from_job(job: &crate::salad::JobFacts, pending: &SmokeTestStatus) -> SmokeTestStatus {
    use saladcloud::model::QueueJobStatus as S;
    let base = SmokeTestStatus {
        latency_ms: job.elapsed_ms,
        ..pending.clone()
    };
    let failed = |message: String| SmokeTestStatus {
        result: "Failed".into(),
        job_id: None,
        message: Some(message),
        ..base.clone()
    };
    let output = job.output.clone().unwrap_or_default();
    match job.status {
        S::Pending | S::Running => SmokeTestStatus {
            message: Some(format!(
                "job {} is {} in the queue",
                pending.job_id.as_deref().unwrap_or_default(),
                if job.status == S::Pending {
                    "waiting"
                } else {
                    "running"
                }
            )),
            ..base
        },
        S::Succeeded => match first_png(&output) {
            Some(bytes) => SmokeTestStatus {
                result: "Passed".into(),
                job_id: None,
                message: Some(format!(
                    "the queue job returned a {} byte PNG (latency from enqueueing, a cold start included)",
                    bytes.len()
                )),
                ..base
            },
            None => failed("the queue job succeeded but its answer has no PNG image".into()),
        },
        S::Failed | S::Cancelled => failed(format!(
            "the queue job {}: {}",
            if job.status == S::Failed {
                "failed (after SaladCloud's retries)"
            } else {
                "was cancelled"
            },
            snippet(&output)
        )),
    }
}

/// A JSON value in at most 300 characters.
fn snippet(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn first_png(json: &serde_json::Value) -> Option<Vec<u8>> {
    json["images"][0]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|bytes| bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec_from_yaml;

    const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");
    const COMFY: &str = include_str!("../../../manifests/examples/comfyui-dreamshaper.yaml");

    #[test]
    fn each_server_is_asked_in_its_own_api() {
        struct Case {
            reason: &'static str,
            yaml: &'static str,
            edit: fn(&mut StableDiffusionDeploymentSpec),
            path: Result<&'static str, &'static str>,
        }
        let cases = [
            Case {
                reason: "SD.Next answers A1111's txt2img",
                yaml: SEED,
                edit: |_| {},
                path: Ok("/sdapi/v1/txt2img"),
            },
            Case {
                reason: "A1111 is the API txt2img comes from",
                yaml: SEED,
                edit: |s| s.server.kind = ServerKind::Automatic1111,
                path: Ok("/sdapi/v1/txt2img"),
            },
            Case {
                reason: "comfyui-api has no txt2img: a workflow goes to /prompt",
                yaml: COMFY,
                edit: |_| {},
                path: Ok("/prompt"),
            },
            Case {
                reason: "a ComfyUI workflow needs a checkpoint to load",
                yaml: COMFY,
                edit: |s| s.models.clear(),
                path: Err("has none"),
            },
        ];
        for case in cases {
            let mut spec = spec_from_yaml(case.yaml).spec;
            (case.edit)(&mut spec);
            let got = request(&spec, &SmokeTestSpec::default());
            match (got, case.path) {
                (Ok(r), Ok(path)) => assert_eq!(r.path, path, "{}", case.reason),
                (Err(e), Err(want)) => assert!(e.contains(want), "{}: {e}", case.reason),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.reason),
            }
        }
    }

    #[test]
    fn the_comfyui_workflow_loads_the_default_checkpoint_and_saves_an_image() {
        let spec = spec_from_yaml(COMFY).spec;
        let cfg = SmokeTestSpec {
            prompt: "a red apple".into(),
            steps: 3,
            size: 128,
        };
        let r = request(&spec, &cfg).unwrap();
        let nodes = r.body["prompt"].as_object().unwrap();
        let of = |class: &str| {
            nodes
                .values()
                .find(|n| n["class_type"] == class)
                .unwrap_or_else(|| panic!("no {class} node"))
        };
        assert_eq!(
            of("CheckpointLoaderSimple")["inputs"]["ckpt_name"],
            "dreamshaper_8.safetensors"
        );
        assert!(of("SaveImage")["inputs"]["filename_prefix"].is_string());
        assert_eq!(of("KSampler")["inputs"]["steps"], 3);
        assert_eq!(of("EmptyLatentImage")["inputs"]["width"], 128);
        assert!(
            nodes.values().any(
                |n| n["class_type"] == "CLIPTextEncode" && n["inputs"]["text"] == "a red apple"
            )
        );
    }
}
