//! `make bench-build`: builds a synthetic ≥2 GiB model into a local registry and compares the
//! time with a plain `curl -T` upload of the same bytes. Prints one JSON line at the end.
//!
//! Usage: `bench_build [--model-mib N] [--small-mib N] [--second-mib N] [--chunked]
//! [--cap-mib-s N] [--three-mib N]`; `--chunked` uploads with 8 MiB `Content-Range` PATCHes
//! instead of one streaming PATCH. It also builds the big model from a source that caps each
//! connection at `--cap-mib-s` MiB/s (default 50; the builder's parallel ranges against the plain
//! upload), and three new models (`--three-mib`, 512, 256 MiB) of one image at once against the
//! largest alone.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use futures::StreamExt;
use salad_sd_image::{
    Builder, BuilderOptions, ConfigEdit, LayerContent, LayerSpec, Recipe, Source, SourcePolicy,
    StoredGzEncoder, UploadMode,
};
use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, RangedServer, RangedServerOptions,
    generated_content, generated_sha256, push_tiny_base_image,
};
use sha2::{Digest, Sha256};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(-1.0)
}

fn layer(name: &str, url: String, sha256: String, path: &str) -> LayerSpec {
    LayerSpec {
        name: name.into(),
        source: Source {
            url,
            sha256: Some(sha256),
            auth: None,
        },
        content: LayerContent::File {
            path_in_image: path.into(),
            mode: 0o644,
        },
    }
}

fn recipe(base: &str, layers: Vec<LayerSpec>) -> Recipe {
    Recipe {
        base_image: base.into(),
        layers,
        config: ConfigEdit {
            cmd: Some(vec!["--listen".into()]),
            ..Default::default()
        },
    }
}

/// Throughput (MiB/s) and output size of a gzip encoder over `size` bytes of generated content:
/// `level` 0–9 is flate2 (miniz_oxide), `None` is the builder's stored-block encoder.
fn gzip_probe(size: u64, level: Option<u32>) -> (f64, u64) {
    let chunks: Vec<bytes::Bytes> =
        futures::executor::block_on(generated_content(size, 99).collect());
    let out = Vec::with_capacity(size as usize + (1 << 20));
    let start = Instant::now();
    let len = match level {
        Some(level) => {
            let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
            for c in &chunks {
                gz.write_all(c).expect("in-memory gzip");
            }
            gz.finish().expect("in-memory gzip").len()
        }
        None => {
            let mut gz = StoredGzEncoder::new(out);
            for c in &chunks {
                gz.write_all(c).expect("in-memory gzip");
            }
            gz.finish().expect("in-memory gzip").len()
        }
    };
    let secs = start.elapsed().as_secs_f64();
    (size as f64 / (1 << 20) as f64 / secs, len as u64)
}

async fn curl_upload(reg: &LocalRegistry, file: &std::path::Path, digest: &str) -> Res<f64> {
    let start = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{}/v2/bench/curl/blobs/uploads/", reg.url()))
        .output()?;
    let headers = String::from_utf8_lossy(&out.stdout);
    let loc = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .ok_or("no Location from POST")?
        .trim()
        .to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let status = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-o",
            "/dev/null",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
        ])
        .arg(file)
        .arg(format!("{loc}{sep}digest={digest}"))
        .status()?;
    if !status.success() {
        return Err("curl -T upload failed".into());
    }
    Ok(start.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let model_mib = arg("--model-mib", 2048);
    let small_mib = arg("--small-mib", 256);
    let second_mib = arg("--second-mib", 64);
    let (model, small, second) = (model_mib << 20, small_mib << 20, second_mib << 20);

    let dir = tempfile::tempdir()?;
    let reg = LocalRegistry::start(&dir.path().join("registry")).await?;
    let models = ModelServer::start(ModelServerOptions::default()).await?;
    models.add_generated("/small", small, 1);
    models.add_generated("/big", model, 2);
    models.add_generated("/b1", second, 3);
    models.add_generated("/b2", second, 4);
    let base = format!("{}/bench/base:v1", reg.host_port());
    push_tiny_base_image(&reg.host_port(), "bench/base:v1", false).await?;
    eprintln!("hashing synthetic models (not timed)…");
    let (small_sha, big_sha) = (generated_sha256(small, 1), generated_sha256(model, 2));
    let (b1_sha, b2_sha) = (generated_sha256(second, 3), generated_sha256(second, 4));
    let opts = BuilderOptions {
        insecure_registries: vec![reg.host_port()],
        source_policy: SourcePolicy {
            allow_private_sources: true,
            allow_file_sources: false,
        },
        upload_mode: if std::env::args().any(|a| a == "--chunked") {
            UploadMode::Chunked
        } else {
            UploadMode::Auto
        },
        ..Default::default()
    };
    let builder = Builder::new(opts)?;
    let ckpt = "/webui/data/models/Stable-diffusion/model.safetensors";
    let lora = "/webui/data/models/Lora/lora.safetensors";

    // Flatness: a small model first, then the big one; VmHWM is monotonic.
    let t = Instant::now();
    builder
        .build(
            &recipe(
                &base,
                vec![layer("small", models.url("/small"), small_sha, ckpt)],
            ),
            &format!("{}/bench/flat", reg.host_port()),
        )
        .await?;
    let rss_small = vm_hwm_mib();
    eprintln!(
        "{small_mib} MiB build: {:.2} s, VmHWM {rss_small:.1} MiB",
        t.elapsed().as_secs_f64()
    );

    // Plain curl -T of the same bytes as the big model, from a page-cached temp file.
    let file = dir.path().join("model.bin");
    let digest = {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut h = Sha256::new();
        let mut s = generated_content(model, 2).boxed();
        while let Some(c) = s.next().await {
            h.update(&c);
            f.write_all(&c)?;
        }
        f.flush()?;
        format!("sha256:{}", hex::encode(h.finalize()))
    };
    let curl_s = curl_upload(&reg, &file, &digest).await?;
    std::fs::remove_file(&file)?;
    eprintln!("curl -T {model_mib} MiB: {curl_s:.2} s");

    let target = format!("{}/bench/app", reg.host_port());
    let r_big = recipe(
        &base,
        vec![layer("big", models.url("/big"), big_sha.clone(), ckpt)],
    );
    let t = Instant::now();
    let img = builder.build(&r_big, &target).await?;
    let build_s = t.elapsed().as_secs_f64();
    let rss = vm_hwm_mib();
    eprintln!(
        "build {model_mib} MiB: {build_s:.2} s, layer {} bytes, VmHWM {rss:.1} MiB",
        img.layers[0].size
    );

    let t = Instant::now();
    let again = builder.build(&r_big, &target).await?;
    let rebuild_s = t.elapsed().as_secs_f64();

    let two = |b: &str, sha: &str| {
        recipe(
            &base,
            vec![
                layer("big", models.url("/big"), big_sha.clone(), ckpt),
                layer("lora", models.url(b), sha.to_owned(), lora),
            ],
        )
    };
    builder.build(&two("/b1", &b1_sha), &target).await?;
    let big_served = models.bytes_served("/big");
    let changed = builder.build(&two("/b2", &b2_sha), &target).await?;
    assert_eq!(
        models.bytes_served("/big"),
        big_served,
        "the unchanged model was downloaded again"
    );
    eprintln!(
        "one of two changed: uploaded {} bytes (changed layer {} bytes), downloaded {}",
        changed.bytes_uploaded, changed.layers[1].size, changed.bytes_downloaded
    );

    // A source that caps each connection (a CDN edge, a slow peering link): the big model over
    // parallel ranges, against the plain upload of the same bytes; then three new models of
    // one image at once, against the largest alone.
    let cap_mib_s = arg("--cap-mib-s", 50);
    let capped = RangedServer::start(RangedServerOptions {
        bytes_per_sec: Some(cap_mib_s << 20),
        ..Default::default()
    })
    .await?;
    capped.add_generated("/big", model, 2);
    let t = Instant::now();
    builder
        .build(
            &recipe(
                &base,
                vec![layer("big", capped.url("/big"), big_sha.clone(), ckpt)],
            ),
            &format!("{}/bench/capped", reg.host_port()),
        )
        .await?;
    let capped_s = t.elapsed().as_secs_f64();
    let rss_capped = vm_hwm_mib();
    eprintln!(
        "build {model_mib} MiB from a source capped at {cap_mib_s} MiB/s per connection: {capped_s:.2} s ({} ranges, at most {} at once), VmHWM {rss_capped:.1} MiB",
        capped.requests().len(),
        capped.max_concurrent()
    );
    let three_mib = [arg("--three-mib", 1024), 512, 256];
    let mut three = Vec::new();
    for (i, mib) in three_mib.iter().enumerate() {
        let path = format!("/three-{i}");
        capped.add_generated(&path, mib << 20, 30 + i as u64);
        three.push(layer(
            &format!("m{i}"),
            capped.url(&path),
            generated_sha256(mib << 20, 30 + i as u64),
            &format!("/webui/data/models/Lora/m{i}.safetensors"),
        ));
    }
    let t = Instant::now();
    builder
        .build(
            &recipe(&base, vec![three[0].clone()]),
            &format!("{}/bench/largest", reg.host_port()),
        )
        .await?;
    let largest_s = t.elapsed().as_secs_f64();
    // Fresh names, so nothing is reused from the largest-alone build.
    for (i, l) in three.iter_mut().enumerate() {
        let path = format!("/three-b{i}");
        capped.add_generated(&path, three_mib[i] << 20, 40 + i as u64);
        l.source.url = capped.url(&path);
        l.source.sha256 = Some(generated_sha256(three_mib[i] << 20, 40 + i as u64));
    }
    let t = Instant::now();
    builder
        .build(
            &recipe(&base, three),
            &format!("{}/bench/three", reg.host_port()),
        )
        .await?;
    let three_s = t.elapsed().as_secs_f64();
    let rss_three = vm_hwm_mib();
    eprintln!(
        "three new models ({three_mib:?} MiB) at once: {three_s:.2} s; the largest alone {largest_s:.2} s; VmHWM {rss_three:.1} MiB"
    );

    let probe = 256u64 << 20;
    let pct = |n: u64| ((n as f64 / probe as f64 - 1.0) * 1e6).round() / 1e4;
    let (stored_mibs, stored_size) = gzip_probe(probe, None);
    let (none_mibs, none_size) = gzip_probe(probe, Some(0));
    let (fast_mibs, fast_size) = gzip_probe(probe, Some(1));
    eprintln!(
        "gzip probe on {} MiB of incompressible data: stored-block writer {stored_mibs:.0} MiB/s ({:+}%), flate2 level 0 {none_mibs:.0} MiB/s ({:+}%), flate2 level 1 {fast_mibs:.0} MiB/s ({:+}%)",
        probe >> 20,
        pct(stored_size),
        pct(none_size),
        pct(fast_size)
    );

    let out = serde_json::json!({
        "model_bytes": model,
        "build_s": (build_s * 1000.0).round() / 1000.0,
        "curl_upload_s": (curl_s * 1000.0).round() / 1000.0,
        "ratio": (build_s / curl_s * 1000.0).round() / 1000.0,
        "peak_rss_mib": (rss * 10.0).round() / 10.0,
        "peak_rss_small_mib": (rss_small * 10.0).round() / 10.0,
        "small_model_bytes": small,
        "rebuild_s": (rebuild_s * 1000.0).round() / 1000.0,
        "rebuild_uploaded_bytes": again.bytes_uploaded,
        "one_changed_uploaded_bytes": changed.bytes_uploaded,
        "one_changed_layer_bytes": changed.layers[1].size,
        "capped_source_mib_s_per_connection": cap_mib_s,
        "capped_build_s": (capped_s * 1000.0).round() / 1000.0,
        "capped_ratio_to_curl_upload": (capped_s / curl_s * 1000.0).round() / 1000.0,
        "capped_ranges": capped.requests().len(),
        "peak_rss_after_capped_mib": (rss_capped * 10.0).round() / 10.0,
        "three_models_mib": three_mib,
        "three_models_s": (three_s * 1000.0).round() / 1000.0,
        "largest_alone_s": (largest_s * 1000.0).round() / 1000.0,
        "three_ratio_to_largest": (three_s / largest_s * 1000.0).round() / 1000.0,
        "peak_rss_after_three_mib": (rss_three * 10.0).round() / 10.0,
        "gzip_stored_writer_mib_s": stored_mibs.round(),
        "gzip_stored_writer_overhead_pct": pct(stored_size),
        "gzip_flate2_level0_mib_s": none_mibs.round(),
        "gzip_flate2_level1_mib_s": fast_mibs.round(),
        "gzip_flate2_level1_size_pct": pct(fast_size),
    });
    println!("{out}");
    Ok(())
}
