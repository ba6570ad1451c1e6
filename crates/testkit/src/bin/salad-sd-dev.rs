//! `salad-sd-dev`: helpers for `make demo`, on 127.0.0.1 only: a throwaway registry, a model
//! file server, a tiny base image and a txt2img client. Not part of the product binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, generated_sha256, push_tiny_base_image,
};

/// Development helpers for the demo (local registry, model server, base image, txt2img).
#[derive(Debug, Parser)]
#[command(name = "salad-sd-dev")]
struct Cli {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DevCommand {
    /// Run a CNCF distribution registry (Debian docker-registry) on 127.0.0.1 until stopped;
    /// prints `registry listening on 127.0.0.1:PORT`.
    Registry {
        /// Storage, config and log directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serve model files on 127.0.0.1 until stopped; prints `models listening on http://ADDR`
    /// and one `model PATH SIZE SHA256` line per generated file.
    ServeModels {
        /// Serve the files below this directory too.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Serve deterministic generated content: `PATH:MIB:SEED` (repeatable).
        #[arg(long, value_parser = parse_generated)]
        generate: Vec<(String, u64, u64)>,
    },
    /// Push a tiny base image (two small layers, SD.Next-like config) to a plain-http registry.
    PushBaseImage {
        /// `127.0.0.1:PORT`.
        #[arg(long)]
        registry: String,
        /// `repository:tag`.
        reference: String,
    },
    /// POST a txt2img to a container gateway and save the first image.
    Txt2img {
        /// The access URL (`https://<domain>`) or bare domain of the container group.
        #[arg(long)]
        access_url: String,
        /// Send the request here with the domain as `Host` (the simulator's address).
        #[arg(long)]
        gateway_url: Option<String>,
        /// Prompt.
        #[arg(long, default_value = "a lighthouse on a cliff at sunset")]
        prompt: String,
        /// Where to write the PNG.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_generated(s: &str) -> Result<(String, u64, u64), String> {
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    match parts.as_slice() {
        [seed, mib, path] => Ok((
            (*path).to_string(),
            mib.parse().map_err(|_| format!("bad size in {s}"))?,
            seed.parse().map_err(|_| format!("bad seed in {s}"))?,
        )),
        _ => Err(format!("expected PATH:MIB:SEED, got {s}")),
    }
}

async fn until_stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: DevCommand) -> anyhow::Result<()> {
    match cmd {
        DevCommand::Registry { dir } => {
            let reg = LocalRegistry::start(&dir).await?;
            say(format!("registry listening on {}", reg.host_port()));
            until_stopped().await;
            drop(reg);
        }
        DevCommand::ServeModels { dir, generate } => {
            let server = ModelServer::start(ModelServerOptions {
                root: dir,
                bearer_token: None,
            })
            .await?;
            say(format!("models listening on http://{}", server.addr()));
            for (path, mib, seed) in generate {
                let size = mib * 1024 * 1024;
                server.add_generated(&path, size, seed);
                say(format!(
                    "model {} {size} {}",
                    server.url(&path),
                    generated_sha256(size, seed)
                ));
            }
            until_stopped().await;
        }
        DevCommand::PushBaseImage {
            registry,
            reference,
        } => {
            let digest = push_tiny_base_image(&registry, &reference, false).await?;
            say(format!("{registry}/{reference}@{digest}"));
        }
        DevCommand::Txt2img {
            access_url,
            gateway_url,
            prompt,
            out,
        } => {
            let domain = access_url
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?;
            let url = match &gateway_url {
                Some(g) => format!("{}/sdapi/v1/txt2img", g.trim_end_matches('/')),
                None => format!("https://{domain}/sdapi/v1/txt2img"),
            };
            let mut req = http.post(&url).json(&serde_json::json!({
                "prompt": prompt, "steps": 4, "width": 256, "height": 256, "batch_size": 1,
            }));
            if gateway_url.is_some() {
                req = req.header(reqwest::header::HOST, &domain);
            }
            let resp = req.send().await?.error_for_status()?;
            let body: serde_json::Value = resp.json().await?;
            let b64 = body["images"][0]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the answer has no images[0]"))?;
            let png = base64::engine::general_purpose::STANDARD.decode(b64)?;
            anyhow::ensure!(
                png.starts_with(b"\x89PNG\r\n\x1a\n"),
                "images[0] is not a PNG"
            );
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&out, &png)?;
            say(format!(
                "saved a {} byte PNG to {}",
                png.len(),
                out.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_specs_parse() {
        assert_eq!(
            parse_generated("m/a.safetensors:48:7").unwrap(),
            ("m/a.safetensors".to_string(), 48, 7)
        );
        assert!(parse_generated("a:b").is_err());
        assert!(parse_generated("a:x:1").is_err());
    }
}
