//! Helpers for unit tests.

use salad_sd_api::StableDiffusionDeployment;

use crate::secrets::ResolvedSecrets;

/// A resource from YAML, with metadata a cluster would set.
pub fn spec_from_yaml(yaml: &str) -> StableDiffusionDeployment {
    let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(yaml).expect("valid YAML");
    sdd.metadata.uid = Some("3f2a9c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b".into());
    sdd.metadata.generation = Some(1);
    sdd.metadata.namespace = Some("default".into());
    sdd
}

/// Secrets as the seed example needs them.
pub fn resolved_secrets() -> ResolvedSecrets {
    ResolvedSecrets {
        api_key: Some(saladcloud::ApiKey::new("test-key")),
        ..Default::default()
    }
}
