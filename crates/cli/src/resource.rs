//! Reading a `StableDiffusionDeployment` from a file and giving it the identity a cluster would.
//!
//! Without a cluster nobody assigns `metadata.uid` or `metadata.generation`, so:
//! - **uid**: `metadata.uid` when the file has one; otherwise a deterministic UUID-shaped value,
//!   the first 16 bytes of `sha256("salad-sd-cli/v1\n{organization}\n{project}\n{namespace}\n{name}")`
//!   (namespace `default` when absent). The same file always maps to the same uid, so every run
//!   finds the container groups earlier runs created (the engine recognises its groups by the uid
//!   in their `SALAD_SD_OWNER_UID` environment variable, and names them `{name}-{uid[..8]}-…`).
//! - **generation**: `metadata.generation` when present, otherwise `1`. A spec change between
//!   runs still gets a new container group name under BlueGreen: the engine picks the next free
//!   name (`…-1-1`, `…-1-2`) when the generation's name is taken or was used before.

use std::path::Path;

use anyhow::{Context, bail};
use salad_sd_api::StableDiffusionDeployment;
use sha2::{Digest, Sha256};

/// Loads the resource in `path` (`-` reads stdin) and fills in uid, namespace and generation.
pub fn load(path: &Path) -> anyhow::Result<StableDiffusionDeployment> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the resource from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let mut sdd = parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    fill_identity(&mut sdd);
    Ok(sdd)
}

/// Parses one `StableDiffusionDeployment` document.
pub fn parse(text: &str) -> anyhow::Result<StableDiffusionDeployment> {
    let value: serde_json::Value =
        serde_saphyr::from_str(text).context("the file is not valid YAML")?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "StableDiffusionDeployment" {
        bail!("expected kind: StableDiffusionDeployment, found kind: {kind:?}");
    }
    let sdd: StableDiffusionDeployment = serde_json::from_value(value)
        .context("the document is not a valid StableDiffusionDeployment")?;
    if sdd.metadata.name.as_deref().unwrap_or("").is_empty() {
        bail!("metadata.name is required");
    }
    Ok(sdd)
}

/// Sets namespace (`default`), uid (derived) and generation (1) when the file has none.
pub fn fill_identity(sdd: &mut StableDiffusionDeployment) {
    let namespace = sdd
        .metadata
        .namespace
        .get_or_insert_with(|| "default".into())
        .clone();
    if sdd.metadata.uid.as_deref().unwrap_or("").is_empty() {
        let s = &sdd.spec.saladcloud;
        sdd.metadata.uid = Some(derived_uid(
            &s.organization,
            &s.project,
            &namespace,
            sdd.metadata.name.as_deref().unwrap_or_default(),
        ));
    }
    if sdd.metadata.generation.is_none() {
        sdd.metadata.generation = Some(1);
    }
    sdd.status = None;
}

/// The uid a resource gets when its file has none (see the module docs).
pub fn derived_uid(organization: &str, project: &str, namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(
        format!("salad-sd-cli/v1\n{organization}\n{project}\n{namespace}\n{name}").as_bytes(),
    );
    let mut b: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x50; // version 5 layout (name-based, SHA)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: salad-sd.dev/v1alpha1\nkind: StableDiffusionDeployment\nmetadata:\n  name: sd\nspec:\n  saladcloud:\n    organization: acme\n    project: p\n    apiKeySecretRef: {name: k, key: apiKey}\n  server: {kind: SDNext}\n  models:\n    - name: a.safetensors\n      kind: Checkpoint\n      source: {url: 'https://example.com/a'}\n  image: {repository: ghcr.io/acme/sd}\n  resources: {cpu: 2, memory: 8Gi, gpuClasses: [RTX 3060]}\n";

    #[test]
    fn identity_is_deterministic_and_explicit_values_win() {
        let mut a = parse(DOC).unwrap();
        fill_identity(&mut a);
        let mut b = parse(DOC).unwrap();
        fill_identity(&mut b);
        assert_eq!(a.metadata.uid, b.metadata.uid);
        assert_eq!(a.metadata.generation, Some(1));
        assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
        let uid = a.metadata.uid.unwrap();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "5");
        assert_ne!(uid, derived_uid("acme", "p", "default", "other"));
        assert_ne!(uid, derived_uid("acme", "q", "default", "sd"));

        let explicit = DOC.replace("  name: sd\n", "  name: sd\n  uid: u-1\n  generation: 7\n");
        let mut c = parse(&explicit).unwrap();
        fill_identity(&mut c);
        assert_eq!(c.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(c.metadata.generation, Some(7));
    }

    #[test]
    fn wrong_kind_and_missing_name_are_refused() {
        let e = parse(&DOC.replace("kind: StableDiffusionDeployment", "kind: Pod")).unwrap_err();
        assert!(e.to_string().contains("Pod"), "{e}");
        assert!(parse(&DOC.replace("  name: sd\n", "  labels: {}\n")).is_err());
    }
}
