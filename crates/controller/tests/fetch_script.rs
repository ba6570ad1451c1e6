//! The fetcher a container runs before its server (`profile::FETCH_SCRIPT`, through
//! `FETCH_STEP`), run here with the machine's python3 against the model server on 127.0.0.1:
//! verified downloads, resume after a broken transfer, a mismatch that stops the start, a token
//! sent to the model's host and never printed.

use std::path::Path;
use std::process::{Command, Output};

use salad_sd_api::profile::{FETCH_SCRIPT, FETCH_STEP};
use salad_sd_testkit::{Misbehavior, ModelServer, ModelServerOptions, generated_sha256};

const SIZE: u64 = 3 * 1024 * 1024 + 123;

fn entry(
    server: &ModelServer,
    path: &str,
    dest: &Path,
    sha: &str,
    token_env: Option<&str>,
) -> String {
    serde_json::json!([{
        "name": "model.safetensors",
        "url": server.url(path),
        "host": format!("http://{}", server.addr()),
        "sha256": sha,
        "path": dest,
        "tokenEnv": token_env,
    }])
    .to_string()
}

/// Runs the start's fetch step the way a container does (`/bin/sh -c`), then `echo started`.
async fn run(list: String, extra_env: &[(&str, &str)]) -> Output {
    let script = format!("set -eu\n{FETCH_STEP}\necho started");
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &script])
        .env("SALAD_SD_FETCH", list)
        .env("SALAD_SD_FETCH_PY", FETCH_SCRIPT);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("sh runs"))
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn a_broken_transfer_is_resumed_with_range_and_verified() {
    let server = ModelServer::start(ModelServerOptions::default())
        .await
        .unwrap();
    server.add_generated("/m.safetensors", SIZE, 7);
    server.set_misbehavior(
        "/m.safetensors",
        Some(Misbehavior::TruncateOnce { after: 1 << 20 }),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("models/checkpoints/model.safetensors");
    let out = run(
        entry(
            &server,
            "/m.safetensors",
            &dest,
            &generated_sha256(SIZE, 7),
            None,
        ),
        &[],
    )
    .await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        text(&out.stdout).trim(),
        "started",
        "the server starts after the fetch"
    );
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), SIZE);
    assert!(stderr.contains("attempt 1 failed"), "{stderr}");
    assert_eq!(
        server.bytes_served("/m.safetensors"),
        SIZE,
        "the second request resumed where the first broke instead of starting over"
    );
    assert!(!dest.with_extension("safetensors.part").exists());

    // A restart of the container finds the verified file and downloads nothing.
    let out = run(
        entry(
            &server,
            "/m.safetensors",
            &dest,
            &generated_sha256(SIZE, 7),
            None,
        ),
        &[],
    )
    .await;
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("already present and verified"));
    assert_eq!(server.bytes_served("/m.safetensors"), SIZE);
}

#[tokio::test]
async fn a_wrong_sha256_stops_the_start_with_a_clear_message() {
    let server = ModelServer::start(ModelServerOptions::default())
        .await
        .unwrap();
    server.add_generated("/m.safetensors", SIZE, 8);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.safetensors");
    let wrong = "0".repeat(64);
    let out = run(entry(&server, "/m.safetensors", &dest, &wrong, None), &[]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        !text(&out.stdout).contains("started"),
        "the server must not start"
    );
    assert!(
        stderr.contains("sha256 mismatch: expected 0000"),
        "{stderr}"
    );
    assert!(stderr.contains(&generated_sha256(SIZE, 8)), "{stderr}");
    assert!(stderr.contains("the server is not started"), "{stderr}");
    assert!(!dest.exists());
    assert!(!dir.path().join("model.safetensors.part").exists());
}

#[tokio::test]
async fn a_missing_file_fails_at_once_and_the_token_is_sent_but_never_printed() {
    let token = "hf_secret_token_123";
    let server = ModelServer::start(ModelServerOptions {
        bearer_token: Some(token.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    server.add_generated("/m.safetensors", SIZE, 9);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.safetensors");
    let sha = generated_sha256(SIZE, 9);

    let out = run(entry(&server, "/m.safetensors", &dest, &sha, None), &[]).await;
    assert!(!out.status.success(), "no token: the server answers 401");
    assert!(
        text(&out.stderr).contains("HTTP 401"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("not retried"));

    let out = run(
        entry(
            &server,
            "/m.safetensors",
            &dest,
            &sha,
            Some("SALAD_SD_FETCH_TOKEN_X"),
        ),
        &[("SALAD_SD_FETCH_TOKEN_X", token)],
    )
    .await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(token), "{stderr}");
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), SIZE);
}

#[tokio::test]
async fn the_token_is_not_sent_to_the_host_a_redirect_leads_to() {
    let token = "civitai_secret_456";
    let origin = ModelServer::start(ModelServerOptions::default())
        .await
        .unwrap();
    let cdn = ModelServer::start(ModelServerOptions::default())
        .await
        .unwrap();
    cdn.add_generated("/blob", SIZE, 10);
    origin.add_generated("/m.safetensors", SIZE, 10);
    origin.set_misbehavior(
        "/m.safetensors",
        Some(Misbehavior::Redirect(cdn.url("/blob"))),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.safetensors");
    let out = run(
        entry(
            &origin,
            "/m.safetensors",
            &dest,
            &generated_sha256(SIZE, 10),
            Some("SALAD_SD_FETCH_TOKEN_Y"),
        ),
        &[("SALAD_SD_FETCH_TOKEN_Y", token)],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(origin.requests(), [("/m.safetensors".to_string(), true)]);
    assert_eq!(
        cdn.requests(),
        [("/blob".to_string(), false)],
        "the redirect target never sees the token"
    );
}
