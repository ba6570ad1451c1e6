//! `salad-sd submit --filename` and `salad-sd jobs` against the simulator's job queue: a
//! txt2img job reaches a queue-connected group's worker and its PNG is written to a file; a job
//! the server cannot answer fails with its last error; a resource not in queue mode is refused.

use std::process::Stdio;
use std::time::Duration;

use saladcloud::model::{ContainerGroupPrototype, QueuePrototype};
use saladcloud::{ApiKey, Client, ClientConfig};
use saladcloud_sim::{SimConfig, Simulator, Timings};

const BIN: &str = env!("CARGO_BIN_EXE_salad-sd");
const API_KEY: &str = "sk-test-submit-key";
const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");
const UID: &str = "7a1b2c3d-0000-4000-8000-000000000001";
const QUEUE: &str = "dreamshaper-7a1b2c3d";

async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn salad-sd");
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("salad-sd finishes within 90 s")
        .expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn group(client: &Client, name: &str, path: &str) {
    let prototype: ContainerGroupPrototype = serde_json::from_value(serde_json::json!({
        "name": name,
        "container": {"image": "ghcr.io/acme/sd@sha256:1", "resources": {"cpu": 4, "memory": 12288}},
        "autostart_policy": true,
        "replicas": 1,
        "restart_policy": "always",
        "queue_connection": {"path": path, "port": 7860, "queue_name": QUEUE},
    }))
    .unwrap();
    client
        .create_container_group("acme", "image-gen", &prototype)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_writes_the_png_jobs_lists_it_and_a_failure_says_its_error() {
    let sim = Simulator::start(
        SimConfig {
            api_key: Some(API_KEY.into()),
            timings: Timings::fast(),
            job_time: Duration::from_millis(300),
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let client =
        Client::new(ClientConfig::new(ApiKey::new(API_KEY)).with_base_url(sim.base_url())).unwrap();
    client
        .create_queue(
            "acme",
            "image-gen",
            &QueuePrototype {
                name: QUEUE.into(),
                display_name: None,
                description: None,
            },
        )
        .await
        .unwrap();
    group(&client, "submit-demo", "/sdapi/v1/txt2img").await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sd.yaml");
    let yaml = SEED
        .replace(
            "  name: dreamshaper\n",
            &format!("  name: dreamshaper\n  uid: {UID}\n"),
        )
        .replace(
            "spec:\n",
            &format!(
                "spec:\n  queue:\n    enabled: true\n    worker:\n      sha256: \"{}\"\n",
                "5e".repeat(32)
            ),
        );
    std::fs::write(&file, &yaml).unwrap();
    let file = file.to_str().unwrap();
    let url = sim.base_url();
    let env = [("SALAD_API_KEY", API_KEY), ("SALAD_API_URL", url.as_str())];
    let prefix = dir.path().join("apple");
    let prefix = prefix.to_str().unwrap();

    let (code, stdout, stderr) = run(
        &[
            "submit",
            "--filename",
            file,
            "--prompt",
            "a red apple",
            "--steps",
            "4",
            "--size",
            "64",
            "-o",
            prefix,
            "--interval",
            "1s",
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let job_id = stdout.lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(job_id.len(), 36, "the job id first: {stdout}");
    assert!(stderr.contains("succeeded"), "progress on stderr: {stderr}");
    let png = std::fs::read(format!("{prefix}-0.png")).expect("the image was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));

    let (code, stdout, _) = run(&["jobs", "--filename", file], &env).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&job_id) && stdout.contains("succeeded"),
        "{stdout}"
    );

    // A server that cannot answer: SaladCloud's retries, then the last error.
    client
        .delete_container_group("acme", "image-gen", "submit-demo")
        .await
        .unwrap();
    group(&client, "submit-broken", "/no/such/endpoint").await;
    let (code, _, stderr) = run(
        &[
            "submit",
            "--filename",
            file,
            "--prompt",
            "x",
            "-o",
            prefix,
            "--interval",
            "1s",
        ],
        &env,
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("failed") && stderr.contains("404"),
        "{stderr}"
    );

    // Not in queue mode: refused, nothing enqueued.
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, SEED).unwrap();
    let (code, _, stderr) = run(
        &[
            "submit",
            "--filename",
            plain.to_str().unwrap(),
            "--prompt",
            "x",
        ],
        &env,
    )
    .await;
    assert_ne!(code, 0);
    assert!(stderr.contains("not in queue mode"), "{stderr}");
    sim.shutdown().await;
}
