//! `salad-sd build -f FILE`: the image of a resource, built and pushed without Docker.

use std::path::PathBuf;
use std::sync::Arc;

use salad_sd_api::StableDiffusionDeployment;
use salad_sd_controller::desired;
use salad_sd_controller::secrets::{self, MapSecretStore};
use salad_sd_image::{Builder, BuilderOptions, BuiltImage, SourcePolicy};
use serde_json::json;

use crate::creds;
use crate::exit::{EXIT_ERROR, EXIT_STALLED};
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

/// Builds (or finds) the image of `sdd`, printing progress through `printer`.
pub async fn build_image(
    sdd: &StableDiffusionDeployment,
    store: &MapSecretStore,
    flags: &BuildFlags,
    printer: Printer,
) -> Result<BuiltImage, (u8, String)> {
    let spec = &sdd.spec;
    let resolved = secrets::resolve(spec, store).await.map_err(|e| {
        let code = if e.is_terminal() {
            EXIT_STALLED
        } else {
            EXIT_ERROR
        };
        (code, e.to_string())
    })?;
    let recipe = desired::recipe(spec, &resolved);
    let builder = Builder::new(BuilderOptions {
        insecure_registries: flags.insecure_registries.clone(),
        source_policy: SourcePolicy {
            allow_private_sources: flags.allow_private_sources,
            allow_file_sources: false,
        },
        registry_credentials: resolved.push_credentials.clone(),
        progress: Some(Arc::new(BuildProgress::new(printer))),
        ..BuilderOptions::default()
    })
    .map_err(|e| (EXIT_ERROR, e.to_string()))?;
    printer.text(format!(
        "building {} ({} model layer(s) on {})",
        spec.image.repository,
        recipe.layers.len(),
        recipe.base_image
    ));
    let started = std::time::Instant::now();
    let img = builder
        .build(&recipe, &spec.image.repository)
        .await
        .map_err(|e| {
            let code = if e.is_terminal() {
                EXIT_STALLED
            } else {
                EXIT_ERROR
            };
            (code, format!("image build failed: {e}"))
        })?;
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
    match build_image(&sdd, &store, &args.build, printer).await {
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
