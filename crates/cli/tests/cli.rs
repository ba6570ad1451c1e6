//! The `salad-sd` binary against an in-process SaladCloud simulator, a local registry
//! (Debian docker-registry) and a local model server, all on 127.0.0.1.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, generated_sha256, push_tiny_base_image,
};
use saladcloud::{ApiKey, Client, ClientConfig};
use saladcloud_sim::{SimConfig, SimHandle, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_salad-sd");
const API_KEY: &str = "sk-test-VERY-SECRET-api-key-4711";
const HF_TOKEN: &str = "hf-VERY-SECRET-download-token-0815";
const ORG: &str = "acme";
const PROJECT: &str = "image-gen";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the binary with a clean environment plus `env`, killed if it outlives 60 s.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn salad-sd");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("salad-sd {args:?} did not finish within 60 s"))
        .expect("salad-sd output");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

struct World {
    sim: SimHandle,
    registry: LocalRegistry,
    models: ModelServer,
    _dir: tempfile::TempDir,
    ckpt_sha: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(
        SimConfig {
            api_key: Some(API_KEY.into()),
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let registry = LocalRegistry::start(&dir.path().join("registry"))
        .await
        .expect("docker-registry (apt-get install docker-registry)");
    push_tiny_base_image(&registry.host_port(), "base/sdnext:v1", false)
        .await
        .unwrap();
    let models = ModelServer::start(ModelServerOptions {
        root: None,
        bearer_token: Some(HF_TOKEN.into()),
    })
    .await
    .unwrap();
    models.add_generated("ckpt.safetensors", 3 << 20, 1);
    World {
        ckpt_sha: generated_sha256(3 << 20, 1),
        sim,
        registry,
        models,
        _dir: dir,
    }
}

impl World {
    fn spec(&self, extra_env: &str) -> String {
        format!(
            r#"apiVersion: salad-sd.dev/v1alpha1
kind: StableDiffusionDeployment
metadata:
  name: sd
spec:
  saladcloud:
    organization: {ORG}
    project: {PROJECT}
    apiKeySecretRef: {{name: salad-api-key, key: apiKey}}
  server:
    kind: SDNext
    baseImage: {reg}/base/sdnext:v1
    env:
      - name: MODE
        value: "{extra_env}"
  models:
    - name: ckpt.safetensors
      kind: Checkpoint
      source:
        url: {url}
        sha256: {sha}
        authSecretRef: {{name: hf, key: token}}
  image:
    repository: {reg}/acme/sd
  replicas: 2
  resources:
    cpu: 2
    memory: 8Gi
    gpuClasses: [RTX 3060 (12 GB)]
  gateway:
    enabled: true
  smokeTest:
    prompt: a cat
    steps: 2
    size: 64
"#,
            reg = self.registry.host_port(),
            url = self.models.url("ckpt.safetensors"),
            sha = self.ckpt_sha,
        )
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SALAD_API_KEY", API_KEY.to_string()),
            ("SALAD_API_URL", self.sim.base_url()),
            ("SALAD_SD_SECRET_HF_TOKEN", HF_TOKEN.to_string()),
        ]
    }

    async fn cli(&self, args: &[&str]) -> Out {
        let reg = self.registry.host_port();
        let gateway = format!("http://{}", self.sim.addr());
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--insecure-registry", &reg, "--allow-private-sources"]);
        if matches!(args[0], "apply" | "delete") {
            all.extend(["--interval", "1s", "--gateway-url", &gateway]);
        }
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run(&all, &env).await;
        for secret in [API_KEY, HF_TOKEN] {
            assert!(
                !out.all().contains(secret),
                "a credential leaked into the output of {args:?}:\n{}",
                out.all()
            );
        }
        out
    }

    async fn groups(&self) -> Vec<saladcloud::ContainerGroup> {
        let client =
            Client::new(ClientConfig::new(ApiKey::new(API_KEY)).with_base_url(self.sim.base_url()))
                .unwrap();
        client.list_container_groups(ORG, PROJECT).await.unwrap()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn build_diff_apply_change_and_delete_from_a_file() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let w = world().await;
        let files = tempfile::tempdir().unwrap();
        let a = write(files.path(), "a.yaml", &w.spec("a"));
        let b = write(files.path(), "b.yaml", &w.spec("b"));

        // build: progress on stderr, the reference by digest as the last stdout line.
        let out = w.cli(&["build", "-f", &a]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        let reference = out.stdout.lines().last().unwrap_or_default().to_string();
        assert!(
            reference.starts_with(&format!("{}/acme/sd@sha256:", w.registry.host_port())),
            "{reference}"
        );
        assert!(
            out.stderr.contains("layer ckpt.safetensors"),
            "{}",
            out.stderr
        );
        assert!(
            w.models.requests().iter().all(|(_, auth)| *auth),
            "token sent"
        );

        // diff before apply: changes (exit 2), nothing created.
        let out = w.cli(&["diff", "-f", &a]).await;
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(
            out.stdout.contains("create container group `sd-"),
            "{}",
            out.stdout
        );
        assert!(w.groups().await.is_empty());

        // apply --wait: Ready, smoke test through the simulator's gateway.
        let out = w.cli(&["apply", "--wait", "-f", &a]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(out.stdout.contains("Ready: 2/2"), "{}", out.stdout);
        assert!(out.stdout.contains("smoke test: Passed"), "{}", out.stdout);
        assert!(
            out.stdout.contains(&reference),
            "the built image is deployed"
        );
        let groups = w.groups().await;
        assert_eq!(groups.len(), 1);
        let first = groups[0].name.clone();
        assert!(first.ends_with("-1"), "{first}");
        assert!(
            groups[0]
                .container
                .environment_variables
                .contains_key("SALAD_SD_OWNER_UID")
        );

        // diff after apply: in sync (exit 0), also in JSON; the cold start of the built image.
        let out = w.cli(&["diff", "-f", &a]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(
            out.stdout.contains("cold start per new instance: image: ")
                && out.stdout.contains("nothing fetched at start"),
            "{}",
            out.stdout
        );
        let out = w.cli(&["diff", "-f", &a, "--output", "json"]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        let last: serde_json::Value =
            serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
        assert_eq!(last["changes"], false, "{last}");
        let cold = &last["coldStart"];
        assert!(cold["imageBytes"].as_i64().unwrap_or(0) > 0, "{cold}");
        assert_eq!(
            cold["imageBytesNew"], 0,
            "the serving image has every layer: {cold}"
        );
        assert_eq!(cold["fetchedBytes"], 0, "{cold}");

        // A spec change in a later run: a new group under a new name, the old one retired.
        let out = w.cli(&["diff", "-f", &b]).await;
        assert_eq!(out.code, 2, "{}", out.all());
        assert!(out.stdout.contains("replace"), "{}", out.stdout);
        let out = w.cli(&["apply", "--wait", "-f", &b]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        let names: Vec<String> = w.groups().await.into_iter().map(|g| g.name).collect();
        assert_eq!(names, [format!("{first}-1")], "old group retired");

        // Back to the first spec: its name was used before; the engine picks the next one.
        let out = w.cli(&["apply", "--wait", "-f", &a]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(out.stdout.contains("NameTaken"), "{}", out.stdout);
        let names: Vec<String> = w.groups().await.into_iter().map(|g| g.name).collect();
        assert_eq!(names, [format!("{first}-2")]);

        // delete: the groups are gone.
        let out = w.cli(&["delete", "-f", &a]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(w.groups().await.is_empty());
        let out = w.cli(&["delete", "-f", &a]).await;
        assert_eq!(out.code, 0, "deleting again is fine: {}", out.all());
    })
    .await
    .expect("the flow finishes within 240 s");
}

const INVALID: &str = r#"apiVersion: salad-sd.dev/v1alpha1
kind: StableDiffusionDeployment
metadata:
  name: broken
spec:
  saladcloud:
    organization: acme
    project: image-gen
    apiKeySecretRef: {name: salad-api-key, key: apiKey}
  server:
    kind: Custom
  models:
    - name: a.safetensors
      kind: Checkpoint
      source: {url: "https://example.com/a.safetensors"}
  image: {repository: ghcr.io/acme/sd}
  resources: {cpu: 2, memory: 8Gi, gpuClasses: [RTX 3060]}
"#;

#[tokio::test]
async fn a_bad_spec_stalls_with_the_field_named() {
    let files = tempfile::tempdir().unwrap();
    let f = write(files.path(), "bad.yaml", INVALID);
    // Nothing listens here: an invalid spec must be refused before any network call.
    let env = [
        ("SALAD_API_KEY", API_KEY),
        ("SALAD_API_URL", "http://127.0.0.1:9/api/public"),
    ];
    for cmd in ["apply", "diff", "build"] {
        let out = run(&[cmd, "-f", &f], &env).await;
        assert_eq!(out.code, 3, "{cmd}: {}", out.all());
        assert!(
            out.all().contains("server.baseImage"),
            "{cmd}: {}",
            out.all()
        );
        assert!(!out.all().contains(API_KEY));
    }
}

#[tokio::test]
async fn missing_credentials_and_files_are_errors() {
    let files = tempfile::tempdir().unwrap();
    let valid = INVALID.replace("kind: Custom", "kind: SDNext");
    let f = write(files.path(), "ok.yaml", &valid);
    let out = run(&["apply", "-f", &f], &[]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("SALAD_API_KEY"), "{}", out.stderr);
    let out = run(&["diff", "-f", "/nonexistent/sd.yaml"], &[]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let help = run(&["apply", "--help"], &[]).await;
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);
    assert!(help.stdout.contains("SALAD_SD_SECRET_"), "{}", help.stdout);
    let help = run(&["operator", "--help"], &[]).await;
    assert_eq!(help.code, 0, "{}", help.all());
    assert!(help.stdout.contains("--namespace"), "{}", help.stdout);
}
