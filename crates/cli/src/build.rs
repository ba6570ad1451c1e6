//! `salad-sd build -f FILE`: the image of a resource, built and pushed without Docker.

use std::path::PathBuf;
use std::sync::Arc;

use salad_sd_api::StableDiffusionDeployment;
use salad_sd_controller::builds::{BuildManager, BuildSettings};
use salad_sd_controller::desired;
use salad_sd_controller::failure::{Backoff, Failure};
use salad_sd_controller::metrics::Metrics;
use salad_sd_controller::secrets::{self, MapSecretStore};
use salad_sd_image::BuiltImage;
use serde_json::json;

use crate::creds;
use crate::exit::{self, EXIT_ERROR, EXIT_STALLED};
use crate::output::{BuildProgress, Format, Printer, bytes};
use crate::resource;

pub const BUILD_HELP: &str = "\
Progress (bytes done / total per model layer) goes to stderr; the last line of stdout is the
image reference by digest (host/repository@sha256:…), ready for a pipeline:

  IMAGE=$(salad-sd build -f sd.yaml | tail -n1)

A rebuild of an unchanged resource finds the recipe tag and moves no bytes; a model with a
pinned sha256 that an earlier build pushed is reused without downloading it.

Push credentials: spec.image.pushSecretRef is read as a docker config JSON from
SALAD_SD_SECRET_<SECRET>_DOCKERCONFIGJSON (or _FILE, e.g. ~/.docker/config.json) or
<secrets-dir>/<secret>/.dockerconfigjson; model download tokens likewise (see `apply --help`).

Exit codes: 0 built (or already there), 1 error (retrying may help), 3 the build cannot succeed
without a change to the spec or the sources (wrong sha256, 404, refused credentials, …).";

/// Flags of `salad-sd build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The StableDiffusionDeployment YAML (`-` for stdin).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    #[command(flatten)]
    pub build: BuildFlags,
    /// Directory of Secrets: `<dir>/<secret>/<key>` files.
    #[arg(long, env = "SALAD_SD_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Progress format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
}

/// Builder flags shared with `apply` and `diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildFlags {
    /// Registry reached over plain http, `HOST:PORT` (repeatable; local registries only).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Allow http model URLs and private/loopback addresses (tests and the demo).
    #[arg(long)]
    pub allow_private_sources: bool,
}

impl BuildFlags {
    /// The build settings these flags ask for.
    pub fn settings(&self) -> BuildSettings {
        BuildSettings {
            insecure_registries: self.insecure_registries.clone(),
            allow_private_sources: self.allow_private_sources,
            ..BuildSettings::default()
        }
    }
}

/// Builds (or finds) the image of `sdd` through the engine's builds, printing progress through
/// `printer`; a failure comes with its exit code.
pub async fn build_image(
    builds: &BuildManager,
    sdd: &StableDiffusionDeployment,
    store: &MapSecretStore,
    printer: Printer,
) -> Result<BuiltImage, (u8, String)> {
    let spec = &sdd.spec;
    let fail = |f: Failure| (exit::for_failure(&f), f.message().to_string());
    let resolved = secrets::resolve(spec, store)
        .await
        .map_err(|e| fail(e.into()))?;
    let recipe = desired::recipe(spec, &resolved);
    printer.text(format!(
        "building {} ({} model layer(s) on {})",
        spec.image.repository,
        recipe.layers.len(),
        recipe.base_image
    ));
    let started = std::time::Instant::now();
    let img = builds
        .build_now(
            &spec.image.repository,
            &recipe,
            resolved.push_credentials.clone(),
            Arc::new(BuildProgress::new(printer)),
        )
        .await
        .map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    let reused = img.layers.iter().filter(|l| l.reused).count();
    printer.text(format!(
        "image {} (tag {}): {} layer(s) pushed, {} reused; {} uploaded, {} downloaded in {secs:.1}s",
        img.reference,
        img.tag,
        img.layers.len() - reused,
        reused,
        bytes(img.bytes_uploaded),
        bytes(img.bytes_downloaded),
    ));
    printer.json(json!({
        "type": "build",
        "reference": img.reference,
        "tag": img.tag,
        "recipeHash": img.recipe_hash,
        "bytesUploaded": img.bytes_uploaded,
        "bytesDownloaded": img.bytes_downloaded,
        "seconds": secs,
        "layers": img.layers.iter().map(|l| json!({
            "name": l.name, "digest": l.digest, "size": l.size, "sha256": l.file_sha256, "reused": l.reused,
        })).collect::<Vec<_>>(),
    }));
    Ok(img)
}

/// Runs `salad-sd build`.
pub async fn run(args: BuildArgs) -> u8 {
    let printer = Printer {
        format: args.output,
        stderr: true,
    };
    let sdd = match resource::load(&args.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_ERROR;
        }
    };
    let invalid = salad_sd_api::validate::validate(&sdd.spec);
    if !invalid.is_empty() {
        for i in &invalid {
            eprintln!("invalid: {i}");
        }
        return EXIT_STALLED;
    }
    let (mut store, have_key) =
        match creds::store(&sdd.spec, &creds::from_process(args.secrets_dir.as_deref())) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e:#}");
                return EXIT_ERROR;
            }
        };
    if !have_key {
        // Building talks to registries and model hosts only; the SaladCloud API key that
        // secret resolution insists on is never used, so a placeholder stands in for it.
        let r = &sdd.spec.saladcloud.api_key_secret_ref;
        store = store.with(&r.name, &r.key, "unused-by-build");
    }
    let builds = BuildManager::new(
        args.build.settings(),
        Backoff::default(),
        Arc::new(Metrics::new()),
    );
    match build_image(&builds, &sdd, &store, printer).await {
        Ok(img) => {
            println!("{}", img.reference);
            0
        }
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}
