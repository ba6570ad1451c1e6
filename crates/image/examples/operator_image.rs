//! The operator's own image, without a Docker daemon (`make image`, `make push-image`):
//!
//! ```text
//! operator_image assemble --binary PATH --version V --out DIR [--ca-certificates PATH]
//! operator_image push --from DIR --to HOST/REPO:TAG [--insecure-registry HOST:PORT]
//! ```
//!
//! `assemble` writes an OCI image layout of two layers: a base (CA certificates from the build
//! machine's Debian `ca-certificates`, `/etc/passwd` and `/etc/group` naming the non-root user
//! 65532, its home, `/tmp`) and the static `salad-sd` binary; the process runs as 65532:65532.
//! Nothing else: no shell, no libc (the binary is static musl). The same files give the same
//! digest (see `salad_sd_image::assemble`). It prints one JSON line.
//!
//! `push` pushes that layout unchanged (the digest that was tested is the digest that is
//! pushed); credentials come from `REGISTRY_USERNAME` / `REGISTRY_PASSWORD` when set. It prints
//! `HOST/REPO@sha256:…` as the last line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use salad_sd_image::assemble::{AssembledImage, Entry, EntryContent, RunSettings, assemble};
use salad_sd_image::{Builder, BuilderOptions, ImageReference, RegistryCredentials, Secret};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The non-root user the operator runs as (distroless' `nonroot`).
const NONROOT: u64 = 65532;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn required(args: &[String], name: &str) -> Res<String> {
    flag(args, name).ok_or_else(|| format!("{name} is required").into())
}

/// The operator image's layers and settings.
fn operator_image(binary: &[u8], ca_certificates: &[u8], version: &str) -> Res<AssembledImage> {
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{NONROOT}:\n");
    let base = vec![
        Entry::dir("etc", 0o755),
        Entry::file("etc/passwd", 0o644, passwd.into_bytes()),
        Entry::file("etc/group", 0o644, group.into_bytes()),
        Entry::dir("etc/ssl", 0o755),
        Entry::dir("etc/ssl/certs", 0o755),
        Entry::file(
            "etc/ssl/certs/ca-certificates.crt",
            0o644,
            ca_certificates.to_vec(),
        ),
        Entry::dir("home", 0o755),
        Entry::owned("home/nonroot", 0o700, NONROOT, EntryContent::Dir),
        Entry::dir("tmp", 0o1777),
    ];
    let app = vec![
        Entry::dir("usr", 0o755),
        Entry::dir("usr/local", 0o755),
        Entry::dir("usr/local/bin", 0o755),
        Entry::file("usr/local/bin/salad-sd", 0o755, binary.to_vec()),
    ];
    let labels = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            "salad-sd-operator".to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            version.to_string(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            "https://github.com/salad-sd/salad-sd-operator".to_string(),
        ),
        (
            "org.opencontainers.image.licenses".to_string(),
            "Apache-2.0".to_string(),
        ),
    ]);
    Ok(assemble(
        &[base, app],
        &RunSettings {
            user: format!("{NONROOT}:{NONROOT}"),
            entrypoint: vec!["/usr/local/bin/salad-sd".into()],
            cmd: vec!["operator".into()],
            env: vec![
                "PATH=/usr/local/bin".into(),
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into(),
            ],
            exposed_ports: vec!["8080/tcp".into()],
            working_dir: "/".into(),
            labels,
        },
    )?)
}

async fn push(args: &[String]) -> Res<()> {
    let from = PathBuf::from(required(args, "--from")?);
    let to = required(args, "--to")?;
    let image = AssembledImage::read_layout(&from)?;
    let host = ImageReference::parse(&to)?.registry;
    let mut credentials = RegistryCredentials::default();
    if let (Ok(user), Ok(password)) = (
        std::env::var("REGISTRY_USERNAME"),
        std::env::var("REGISTRY_PASSWORD"),
    ) {
        credentials.insert(&host, user, Secret::new(password));
    }
    let builder = Builder::new(BuilderOptions {
        insecure_registries: flag(args, "--insecure-registry").into_iter().collect(),
        registry_credentials: credentials,
        ..BuilderOptions::default()
    })?;
    let pushed = builder.push_assembled(&image, &to).await?;
    eprintln!("pushed {to} ({})", image.digest);
    println!("{pushed}");
    Ok(())
}

fn assemble_layout(args: &[String]) -> Res<()> {
    let binary_path = required(args, "--binary")?;
    let version = required(args, "--version")?;
    let out = PathBuf::from(required(args, "--out")?);
    let ca_path = flag(args, "--ca-certificates")
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let binary = std::fs::read(&binary_path).map_err(|e| format!("{binary_path}: {e}"))?;
    let ca = std::fs::read(&ca_path).map_err(|e| format!("{ca_path}: {e}"))?;
    let image = operator_image(&binary, &ca, &version)?;
    image.write_layout(&out)?;
    let layers: Vec<_> = image
        .layers
        .iter()
        .map(|l| serde_json::json!({ "digest": l.digest, "bytes": l.blob.len() }))
        .collect();
    let total: usize = image.layers.iter().map(|l| l.blob.len()).sum();
    println!(
        "{}",
        serde_json::json!({
            "image": out.display().to_string(),
            "digest": image.digest,
            "version": version,
            "compressed_bytes": total,
            "binary_bytes": binary.len(),
            "layers": layers,
        })
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("assemble") => assemble_layout(&args),
        Some("push") => push(&args).await,
        _ => Err("usage: operator_image assemble --binary PATH --version V --out DIR [--ca-certificates PATH] | push --from DIR --to REF [--insecure-registry HOST:PORT]".into()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
