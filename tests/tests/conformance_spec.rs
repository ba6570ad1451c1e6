//! `scripts/spec.sh`, which finds the SaladCloud spec for `make conformance`: where
//! `../shared` is absent it fetches the pinned version into a cache and uses it only when its
//! sha256 matches, with a clear error otherwise. The download is stood in for by `file://` URLs
//! (no network in tests).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn spec_sh(dir: &Path, url: &str, sha: &str) -> Run {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/spec.sh"))
        .env_remove("SPEC")
        .env("SHARED_SPEC", dir.join("no-shared/openapi.yaml"))
        .env("SPEC_URL", url)
        .env("SPEC_SHA256", sha)
        .env("SPEC_CACHE", dir.join("cache/openapi.yaml"))
        .output()
        .expect("bash");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn without_shared_the_pinned_spec_is_fetched_checked_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.yaml");
    std::fs::write(
        &origin,
        "openapi: 3.1.0\ninfo: { version: 0.9.0-alpha.17 }\n",
    )
    .unwrap();
    let sha = sha256(&origin);

    let run = spec_sh(dir.path(), &format!("file://{}", origin.display()), &sha);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cached = dir.path().join("cache/openapi.yaml");
    assert_eq!(Path::new(&run.stdout), cached.canonicalize().unwrap());
    assert_eq!(sha256(&cached), sha);

    // Once cached and verified, the origin is not needed again.
    let gone = format!("file://{}", dir.path().join("gone.yaml").display());
    let again = spec_sh(dir.path(), &gone, &sha);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, run.stdout);
}

#[test]
fn a_spec_whose_sha256_differs_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.yaml");
    std::fs::write(&origin, "openapi: 3.1.0\n# tampered\n").unwrap();
    let pinned = "0cc245ccf2c497e664b49c9e5352f833f80c43459b3c34b3b75502f4334a0797";
    let run = spec_sh(dir.path(), &format!("file://{}", origin.display()), pinned);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("sha256 mismatch") && run.stderr.contains(pinned),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    assert!(
        !dir.path().join("cache/openapi.yaml").exists(),
        "nothing unverified is cached"
    );
    let leftovers = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    assert_eq!(leftovers, 0, "no temporary file left behind");
}

#[test]
fn an_unreachable_origin_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("missing.yaml").display());
    let run = spec_sh(dir.path(), &url, "00");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot download")
            && run.stderr.contains(&url)
            && run.stderr.contains("SPEC="),
        "says what failed and how to provide the spec: {}",
        run.stderr
    );
}

#[test]
fn the_pin_matches_the_shared_copy_where_there_is_one() {
    let script = std::fs::read_to_string(repo_root().join("scripts/spec.sh")).unwrap();
    let shared = repo_root().join("../shared/saladcloud");
    let Ok(source) = std::fs::read_to_string(shared.join("SOURCE.md")) else {
        eprintln!("../shared absent: nothing to compare the pin with");
        return;
    };
    let pinned_sha = script
        .lines()
        .find_map(|l| l.strip_prefix("SPEC_SHA256=\"${SPEC_SHA256:-"))
        .and_then(|l| l.strip_suffix("}\""))
        .expect("the pinned sha256 in scripts/spec.sh");
    assert!(source.contains(pinned_sha), "SOURCE.md names {pinned_sha}");
    assert_eq!(sha256(&shared.join("openapi.yaml")), pinned_sha);
    let commit = script
        .lines()
        .find_map(|l| l.strip_prefix("SPEC_COMMIT="))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    assert!(source.contains(commit), "SOURCE.md names commit {commit}");
    assert!(
        source.contains("SaladTechnologies/salad-cloud-docs")
            && script.contains("SaladTechnologies/salad-cloud-docs/raw/")
    );
}
