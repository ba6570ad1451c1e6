//! How `salad-sd operator` logs: the filter from RUST_LOG (default info), JSON lines with
//! `--log-format json`, no ANSI colours when stderr is not a terminal. The operator is started
//! without any cluster (KUBECONFIG names a missing file), so it logs its start and exits 1.

use std::process::Stdio;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_salad-sd");

struct Out {
    code: i32,
    stderr: String,
}

async fn operator(args: &[&str], env: &[(&str, &str)]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("missing-kubeconfig");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("KUBECONFIG", &kubeconfig)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        cmd.spawn().expect("spawn salad-sd").wait_with_output(),
    )
    .await
    .expect("salad-sd operator exits within 30 s without a cluster")
    .expect("output");
    Out {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const OPERATOR: &[&str] = &["operator", "--listen", "127.0.0.1:0"];

#[tokio::test]
async fn info_is_the_default_and_text_logs_have_no_colours_off_a_terminal() {
    let out = operator(OPERATOR, &[]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("INFO") && out.stderr.contains("salad-sd operator starting"),
        "info is logged by default: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains('\u{1b}'),
        "no ANSI escapes when stderr is a pipe: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains("cannot reach the Kubernetes API"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn rust_log_is_honoured_and_salad_sd_log_is_an_alias() {
    let quiet = operator(OPERATOR, &[("RUST_LOG", "error")]).await;
    assert!(
        !quiet.stderr.contains("salad-sd operator starting"),
        "RUST_LOG=error hides info: {}",
        quiet.stderr
    );
    let alias = operator(OPERATOR, &[("RUST_LOG", "error"), ("SALAD_SD_LOG", "info")]).await;
    assert!(
        alias.stderr.contains("salad-sd operator starting"),
        "SALAD_SD_LOG wins over RUST_LOG: {}",
        alias.stderr
    );
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    let mut args = vec!["--log-format", "json"];
    args.extend_from_slice(OPERATOR);
    let out = operator(&args, &[]).await;
    let lines: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let start = lines
        .iter()
        .find(|l| l["fields"]["message"] == "salad-sd operator starting")
        .unwrap_or_else(|| panic!("a JSON start line in {}", out.stderr));
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["fields"]["leader_election"], true);
    assert!(!out.stderr.contains('\u{1b}'));
}
