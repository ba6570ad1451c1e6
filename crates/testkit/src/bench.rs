//! What the controller benchmarks deploy, shared so that their figures compare.

use serde_json::{Value, json};

/// Resource `sd-NNNN` of a benchmark: SD.Next on the tiny base in `registry`, one tiny model
/// from `model_url`, 1 replica; `per_project` resources to a project, API key Secret
/// `salad-key-KK` for `i % keys`. Metadata has only name and namespace `bench`.
pub fn bench_resource(
    i: usize,
    registry: &str,
    model_url: &str,
    keys: usize,
    per_project: usize,
) -> Value {
    json!({
        "apiVersion": "salad-sd.dev/v1alpha1",
        "kind": "StableDiffusionDeployment",
        "metadata": { "name": format!("sd-{i:04}"), "namespace": "bench" },
        "spec": {
            "saladcloud": {
                "organization": "bench-org",
                "project": format!("proj-{:03}", i / per_project),
                "apiKeySecretRef": { "name": format!("salad-key-{:02}", i % keys), "key": "apiKey" }
            },
            "server": { "kind": "SDNext", "baseImage": format!("{registry}/base/sdnext:tiny") },
            "models": [{ "name": "tiny.safetensors", "kind": "Checkpoint", "source": { "url": model_url } }],
            "image": { "repository": format!("{registry}/sd/bench") },
            "replicas": 1,
            "resources": { "memory": "8Gi", "gpuClasses": ["RTX 3060 Ti (8 GB)"] }
        }
    })
}
