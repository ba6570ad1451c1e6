//! `salad-sd logs --filename`: the container log lines of a resource's group through the
//! simulator's log query, and a query SaladCloud refuses said clearly.

use std::process::Stdio;
use std::time::Duration;

use saladcloud::model::ContainerGroupPrototype;
use saladcloud::{ApiKey, Client, ClientConfig};
use saladcloud_sim::{SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_salad-sd");
const API_KEY: &str = "sk-test-logs-key";
const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");

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
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("salad-sd logs finishes within 60 s")
        .expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn logs_of_a_file_resource_and_a_refused_query() {
    let sim = Simulator::start(
        SimConfig {
            api_key: Some(API_KEY.into()),
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let client =
        Client::new(ClientConfig::new(ApiKey::new(API_KEY)).with_base_url(sim.base_url())).unwrap();
    let prototype: ContainerGroupPrototype = serde_json::from_value(serde_json::json!({
        "name": "logs-demo",
        "container": {"image": "ghcr.io/acme/sd@sha256:1", "resources": {"cpu": 4, "memory": 12288}},
        "autostart_policy": true,
        "replicas": 2,
        "restart_policy": "always",
    }))
    .unwrap();
    client
        .create_container_group("acme", "image-gen", &prototype)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sd.yaml");
    let yaml = SEED.replace(
        "    project: image-gen\n",
        "    project: image-gen\n    containerGroupName: logs-demo\n",
    );
    assert!(yaml.contains("containerGroupName: logs-demo"));
    std::fs::write(&file, yaml).unwrap();
    let file = file.to_str().unwrap();
    let url = sim.base_url();
    let env = [("SALAD_API_KEY", API_KEY), ("SALAD_API_URL", url.as_str())];

    // Wait until both instances started (about 1.5 s on the fast timings).
    let mut out = (0, String::new(), String::new());
    for _ in 0..50 {
        out = run(&["logs", "--filename", file, "--tail", "10"], &env).await;
        if out.1.matches("starting server").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, stdout, stderr) = out;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.matches("starting server").count(), 2, "{stdout}");
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY));

    // --tail 1: only the newest line.
    let (_, one, _) = run(&["logs", "--filename", file, "--tail", "1"], &env).await;
    assert_eq!(one.lines().count(), 1, "{one}");

    // A query SaladCloud refuses (an instance id that breaks the query) is said clearly.
    let (code, _, stderr) = run(&["logs", "--filename", file, "--instance", "x\"y"], &env).await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("SaladCloud refused the log query"),
        "{stderr}"
    );
    assert!(stderr.contains("400"), "{stderr}");
    sim.shutdown().await;
}
