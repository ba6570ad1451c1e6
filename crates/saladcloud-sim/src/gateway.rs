//! A minimal fake server behind each container group's access domain: SD.Next's API, or
//! comfyui-api's (`POST /prompt`, `/health`, `/ready`, as its `src/server.ts` answers them) for
//! a group whose probes call comfyui-api's `/ready` or `/health`.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use crate::png;
use crate::world::GatewayTarget;

const MODEL_NAME: &str = "v1-5-pruned-emaonly";
const MODEL_HASH: &str = "6ce0161689";
/// Generated images are capped at this size per side to keep responses small.
pub const MAX_SIDE: u32 = 64;

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        msg.to_owned(),
    )
        .into_response()
}

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

/// Answer one request addressed to the access domain `dns`, served by `target` (the group
/// behind the domain, if any); `api_key` is the simulator's key, checked when the gateway
/// requires auth.
pub(crate) fn handle(
    target: Option<GatewayTarget>,
    api_key: Option<&str>,
    dns: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(target) = target else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("no container group serves the access domain {dns}"),
        );
    };
    if target.auth {
        let key = headers
            .get("salad-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if key.is_empty() {
            return text(
                StatusCode::UNAUTHORIZED,
                "this container gateway requires a Salad-Api-Key header",
            );
        }
        if api_key.is_some_and(|k| k != key) {
            return text(StatusCode::FORBIDDEN, "invalid Salad-Api-Key");
        }
    }
    if target.ready_instances == 0 {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "no ready instances for container group {} (image {})",
                target.name, target.image
            ),
        );
    }
    if target.comfyui_api {
        return comfyui_api(method, path, body);
    }
    match (method.as_str(), path) {
        ("POST", "/sdapi/v1/txt2img") => txt2img(body),
        ("GET", "/sdapi/v1/sd-models") => json_ok(json!([{
            "title": format!("{MODEL_NAME}.safetensors [{MODEL_HASH}]"),
            "model_name": MODEL_NAME,
            "hash": MODEL_HASH,
            "sha256": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
            "filename": format!("/app/models/Stable-diffusion/{MODEL_NAME}.safetensors"),
            "config": null,
        }])),
        ("GET", "/sdapi/v1/progress") => json_ok(json!({
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": {"skipped": false, "interrupted": false, "job": "", "job_count": 0,
                      "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0},
            "current_image": null,
            "textinfo": null,
        })),
        ("GET", "/internal/ping") => json_ok(json!({})),
        _ => text(
            StatusCode::NOT_FOUND,
            &format!("{method} {path}: not found"),
        ),
    }
}

fn txt2img(body: &Bytes) -> Response {
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => Value::Null,
        }
    };
    let (status, v) = txt2img_json(&req);
    (status, axum::Json(v)).into_response()
}

/// SD.Next's txt2img answer to a JSON request.
fn txt2img_json(req: &Value) -> (StatusCode, Value) {
    if !req.is_object() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "request body must be a JSON object"}),
        );
    }
    let mut params = json!({
        "prompt": "", "negative_prompt": "", "seed": -1, "subseed": -1, "sampler_name": null,
        "batch_size": 1, "n_iter": 1, "steps": 20, "cfg_scale": 7.0, "width": 512, "height": 512,
        "enable_hr": false, "hr_scale": 2.0, "sampler_index": "Euler a", "send_images": true,
        "save_images": false, "alwayson_scripts": {},
    });
    if let (Some(p), Some(r)) = (params.as_object_mut(), req.as_object()) {
        for (k, v) in r {
            p.insert(k.clone(), v.clone());
        }
    }
    let dim = |k: &str| -> u32 { params[k].as_u64().map_or(512, |v| v.clamp(1, 4096) as u32) };
    let (width, height) = (dim("width"), dim("height"));
    let seed = match params["seed"].as_i64() {
        Some(s) if s >= 0 => s as u64,
        _ => rand::rng().random_range(0..4_294_967_295u64),
    };
    let count = (params["batch_size"].as_u64().unwrap_or(1)
        * params["n_iter"].as_u64().unwrap_or(1))
    .clamp(1, 4);
    let images: Vec<String> = (0..count)
        .map(|i| {
            base64::engine::general_purpose::STANDARD.encode(png::gradient(
                width.min(MAX_SIDE),
                height.min(MAX_SIDE),
                seed + i,
            ))
        })
        .collect();
    let all_seeds: Vec<u64> = (0..count).map(|i| seed + i).collect();
    let info = json!({
        "prompt": params["prompt"],
        "negative_prompt": params["negative_prompt"],
        "seed": seed,
        "all_seeds": all_seeds,
        "width": width,
        "height": height,
        "sampler_name": params["sampler_name"].as_str().or(params["sampler_index"].as_str()).unwrap_or("Euler a"),
        "cfg_scale": params["cfg_scale"],
        "steps": params["steps"],
        "batch_size": params["batch_size"],
        "sd_model_name": MODEL_NAME,
        "sd_model_hash": MODEL_HASH,
        "version": "saladcloud-sim",
    });
    (
        StatusCode::OK,
        json!({
            "images": images,
            "parameters": params,
            "info": info.to_string(),
        }),
    )
}

/// comfyui-api 1.19's answers: `/health` and `/ready` once warm, and the synchronous
/// `POST /prompt` (a workflow with a node that has `filename_prefix`, else 400 with `error` and
/// `location`), answered with the request plus `id`, `images` (base64 PNG, one per batch item),
/// `filenames` and `stats`.
fn comfyui_api(method: &Method, path: &str, body: &Bytes) -> Response {
    const VERSION: &str = "1.19.2";
    match (method.as_str(), path) {
        ("GET", "/health") => json_ok(json!({"version": VERSION, "status": "healthy"})),
        ("GET", "/ready") => json_ok(json!({"version": VERSION, "status": "ready"})),
        ("POST", "/prompt") => comfyui_prompt(body),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"message": format!("Route {method}:{path} not found"),
                              "error": "Not Found", "statusCode": 404}),
            ),
        )
            .into_response(),
    }
}

fn comfyui_prompt(body: &Bytes) -> Response {
    let req = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (status, v) = comfyui_prompt_json(req);
    (status, axum::Json(v)).into_response()
}

/// comfyui-api's synchronous `POST /prompt` answer to a JSON request.
fn comfyui_prompt_json(mut req: Value) -> (StatusCode, Value) {
    let bad = |error: &str, location: &str| {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": error, "location": location}),
        )
    };
    if !req.is_object() {
        return bad("body must be a JSON object", "body");
    }
    let Some(prompt) = req["prompt"].as_object() else {
        return bad("prompt is required", "prompt");
    };
    if !prompt
        .values()
        .any(|n| n["inputs"].get("filename_prefix").is_some())
    {
        return bad(
            "Prompt must contain a node with a \"filename_prefix\" input, such as \"SaveImage\"",
            "prompt",
        );
    }
    let latent = prompt
        .values()
        .find(|n| n["class_type"] == "EmptyLatentImage")
        .map(|n| n["inputs"].clone())
        .unwrap_or(Value::Null);
    let dim = |k: &str| latent[k].as_u64().map_or(512, |v| v.clamp(1, 4096) as u32);
    let count = latent["batch_size"].as_u64().unwrap_or(1).clamp(1, 4);
    let seed = prompt
        .values()
        .find_map(|n| n["inputs"]["seed"].as_u64())
        .unwrap_or(0);
    let id = req["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::rng().random::<u128>()));
    let images: Vec<String> = (0..count)
        .map(|i| {
            base64::engine::general_purpose::STANDARD.encode(png::gradient(
                dim("width").min(MAX_SIDE),
                dim("height").min(MAX_SIDE),
                seed + i,
            ))
        })
        .collect();
    let filenames: Vec<String> = (0..count).map(|i| format!("{id}_{i:05}_.png")).collect();
    let obj = req.as_object_mut().expect("checked above");
    obj.insert("id".into(), json!(id));
    obj.insert("images".into(), json!(images));
    obj.insert("filenames".into(), json!(filenames));
    obj.insert(
        "stats".into(),
        json!({"preprocess_time": 0, "comfy_round_trip_time": 1, "postprocess_time": 0,
               "upload_time": 0, "total_time": 1}),
    );
    (StatusCode::OK, req)
}

/// What the fake server of an instance answers to a job the queue worker posts to `path`:
/// the generation endpoint's JSON, or the error the worker returns to the queue.
pub(crate) fn job_answer(comfyui_api: bool, path: &str, input: &Value) -> Result<Value, String> {
    let (status, body) = match (comfyui_api, path) {
        (true, "/prompt") => comfyui_prompt_json(input.clone()),
        (false, "/sdapi/v1/txt2img") => txt2img_json(input),
        _ => return Err(format!("POST {path}: 404 not found")),
    };
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("POST {path}: {} {body}", status.as_u16()))
    }
}
