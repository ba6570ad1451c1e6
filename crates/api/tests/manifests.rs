//! The install manifests as a cluster user meets them: `kubectl apply -f crds/` sees only
//! Kubernetes objects, `kubectl apply -k manifests/base` renders (CRD included), and the
//! Deployment's rollout can complete with its two replicas under a PodDisruptionBudget.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The files `kubectl apply -f DIR` reads: *.json, *.yaml, *.yml (kubectl's FileExtensions).
fn applied_by_kubectl(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["json", "yaml", "yml"].contains(&e))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn kubectl_apply_f_crds_sees_only_kubernetes_objects() {
    let files = applied_by_kubectl(&repo_root().join("crds"));
    assert!(!files.is_empty());
    for file in files {
        for doc in docs(&file) {
            let api_version = doc["apiVersion"].as_str().unwrap_or_default();
            assert!(
                !api_version.is_empty()
                    && doc["kind"].is_string()
                    && doc["metadata"]["name"].is_string(),
                "{}: not a Kubernetes object",
                file.display()
            );
            assert!(
                !api_version.starts_with("kustomize.config.k8s.io"),
                "{}: a kustomization is not a Kubernetes object; `kubectl apply -f crds/` would exit 1",
                file.display()
            );
        }
    }
}

fn base() -> Vec<Value> {
    let dir = repo_root().join("manifests/base");
    let kustomization = &docs(&dir.join("kustomization.yaml"))[0];
    kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .filter(|r| r.ends_with(".yaml"))
        .flat_map(|r| docs(&dir.join(r)))
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in manifests/base"))
}

#[test]
fn two_replicas_a_pdb_that_keeps_one_and_readiness_that_a_standby_passes() {
    let objects = base();
    let deployment = find(&objects, "Deployment");
    let pdb = find(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
    assert!(
        replicas > 1,
        "minAvailable 1 of {replicas} never blocks a drain"
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the PDB selects the operator's pods");
    }
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env = container["env"].as_array().unwrap();
    let named = |n: &str| env.iter().find(|e| e["name"] == n).cloned();
    assert_eq!(
        named("RUST_LOG").map(|e| e["value"].clone()),
        Some(Value::from("info")),
        "the operator reads RUST_LOG"
    );
    assert_eq!(
        named("POD_NAMESPACE").map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone()),
        Some(Value::from("metadata.namespace")),
        "the Lease lives in the pod's own namespace"
    );
}

#[test]
fn the_leader_election_role_allows_what_the_lease_code_does() {
    let objects = base();
    let role = objects
        .iter()
        .find(|o| {
            o["kind"] == "Role" && o["metadata"]["name"] == "salad-sd-operator-leader-election"
        })
        .expect("the leader-election Role");
    let rule = &role["rules"][0];
    assert_eq!(rule["apiGroups"][0], "coordination.k8s.io");
    for verb in ["get", "create", "update"] {
        assert!(
            rule["verbs"].as_array().unwrap().iter().any(|v| v == verb),
            "{verb}: acquire, renew and release need it"
        );
    }
}

#[test]
fn kustomize_renders_the_base_with_the_crd_and_the_pdb() {
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo_root().join("manifests/base"))
        .output()
    else {
        eprintln!("kubectl not installed: skipping the kustomize render (CI has it)");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    let kinds: Vec<Value> = serde_saphyr::from_multiple::<Value>(&rendered)
        .unwrap()
        .into_iter()
        .map(|d| d["kind"].clone())
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}
