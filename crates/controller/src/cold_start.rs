//! What a cold start of one new instance costs, by part: the model layers every new node
//! downloads with the image (not billed: SaladCloud bills from the container's start) and the
//! models the container fetches before its server starts (billed). Pure; estimates at
//! SaladCloud's "about 2 minutes per GB" ([`SECONDS_PER_GB`]).

use std::collections::BTreeSet;

use salad_sd_api::profile::SECONDS_PER_GB;
use salad_sd_api::{ColdStartStatus, StableDiffusionDeploymentSpec};

use crate::desired;

/// A model layer of the image: its size and, once built, its blob digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayer {
    /// Bytes, when known.
    pub size: Option<u64>,
    /// Blob digest, when built.
    pub digest: Option<String>,
}

/// The inputs, all known without I/O.
#[derive(Clone, Debug, PartialEq)]
pub struct ColdStartInput {
    /// The model layers of the spec's image.
    pub layers: Vec<ImageLayer>,
    /// Layer digests of the serving image.
    pub serving: BTreeSet<String>,
    /// Bytes fetched at start.
    pub fetched_bytes: u64,
    /// Hourly price of one instance, when known.
    pub hourly_price: Option<f64>,
    /// Replicas.
    pub replicas: u32,
}

/// Seconds to download `bytes` on an average node.
pub fn seconds_for(bytes: u64) -> i64 {
    (bytes as f64 / 1e9 * SECONDS_PER_GB).ceil() as i64
}

fn gb(bytes: u64) -> String {
    if bytes < 100_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.2} GB", bytes as f64 / 1e9)
    }
}

fn minutes(seconds: i64) -> String {
    if seconds < 120 {
        format!("~{seconds} s")
    } else {
        format!("~{:.1} min", seconds as f64 / 60.0)
    }
}

/// The cold start of `input`.
pub fn compute(input: &ColdStartInput) -> ColdStartStatus {
    let image_bytes: Option<u64> = input.layers.iter().map(|l| l.size).sum();
    let image_bytes_new: Option<u64> = input
        .layers
        .iter()
        .filter(|l| l.digest.as_ref().is_none_or(|d| !input.serving.contains(d)))
        .map(|l| l.size)
        .sum();
    let image_seconds = image_bytes.map(seconds_for);
    let fetch_seconds = seconds_for(input.fetched_bytes);
    let per_start = input
        .hourly_price
        .map(|p| p * fetch_seconds as f64 / 3600.0);
    let image_part = match (image_bytes, image_bytes_new, image_seconds) {
        (Some(0), _, _) => "no model layers in the image".to_string(),
        (Some(all), Some(new), Some(s)) => format!(
            "image: {} of model layers ({} not in the serving image), {} per new node, not billed",
            gb(all),
            gb(new),
            minutes(s)
        ),
        _ => "image: model layer sizes unknown until built (or give source.sizeBytes)".into(),
    };
    let fetch_part = if input.fetched_bytes == 0 {
        "nothing fetched at start".to_string()
    } else {
        format!(
            "fetched at start: {}, {} at every start, billed{}",
            gb(input.fetched_bytes),
            minutes(fetch_seconds),
            per_start
                .map(|c| format!(
                    " (${c:.4} per start, ${:.4} per rollout of {})",
                    c * input.replicas as f64,
                    input.replicas
                ))
                .unwrap_or_default()
        )
    };
    ColdStartStatus {
        image_bytes: image_bytes.map(|b| b as i64),
        image_bytes_new: image_bytes_new.map(|b| b as i64),
        image_seconds,
        fetched_bytes: input.fetched_bytes as i64,
        fetch_seconds,
        fetch_cost_usd_per_start: per_start.map(|c| format!("{c:.4}")),
        fetch_cost_usd_per_rollout: per_start.map(|c| format!("{:.4}", c * input.replicas as f64)),
        summary: format!("{image_part}; {fetch_part}"),
    }
}

/// The layer digests of the image the groups run now: all of the built image's when a group
/// already runs it, else those status recorded for the image it reported (the serving one).
pub fn serving_layers(
    built: Option<&salad_sd_image::BuiltImage>,
    group_images: &[&str],
    status_image: Option<&salad_sd_api::ImageStatus>,
) -> BTreeSet<String> {
    match built {
        Some(img) if group_images.contains(&img.reference.as_str()) => {
            img.layers.iter().map(|l| l.digest.clone()).collect()
        }
        _ => status_image
            .filter(|i| {
                i.reference
                    .as_deref()
                    .is_some_and(|r| group_images.contains(&r))
            })
            .map(|i| i.layers.iter().map(|l| l.digest.clone()).collect())
            .unwrap_or_default(),
    }
}

/// The input for `spec`: the built image's layers when there is one, else the baked models'
/// declared sizes; `serving` from [`serving_layers`].
pub fn input_for(
    spec: &StableDiffusionDeploymentSpec,
    built: Option<&salad_sd_image::BuiltImage>,
    serving: BTreeSet<String>,
    hourly_price: Option<f64>,
) -> ColdStartInput {
    let layers = match built {
        Some(img) => img
            .layers
            .iter()
            .map(|l| ImageLayer {
                size: Some(l.size),
                digest: Some(l.digest.clone()),
            })
            .collect(),
        None => spec
            .models
            .iter()
            .filter(|m| m.delivery.is_baked())
            .map(|m| &m.source)
            .chain(spec.extensions.iter().map(|e| &e.source))
            .map(|s| ImageLayer {
                size: s.size_bytes.map(|b| b.max(0) as u64),
                digest: None,
            })
            .collect(),
    };
    ColdStartInput {
        layers,
        serving,
        fetched_bytes: desired::fetched_bytes(spec),
        hourly_price,
        replicas: spec.replicas.max(0) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DREAMSHAPER: u64 = 2_132_625_894;

    fn layer(size: u64, digest: &str) -> ImageLayer {
        ImageLayer {
            size: Some(size),
            digest: Some(digest.into()),
        }
    }

    #[test]
    fn the_cold_start_table() {
        struct Case {
            reason: &'static str,
            input: ColdStartInput,
            image_bytes: Option<i64>,
            image_bytes_new: Option<i64>,
            image_seconds: Option<i64>,
            fetch_seconds: i64,
            per_start: Option<&'static str>,
            per_rollout: Option<&'static str>,
        }
        let base = ColdStartInput {
            layers: vec![],
            serving: BTreeSet::new(),
            fetched_bytes: 0,
            hourly_price: Some(0.25),
            replicas: 3,
        };
        let cases = [
            Case {
                reason: "baked Dreamshaper, first rollout: every node downloads it with the image, nothing billed",
                input: ColdStartInput {
                    layers: vec![layer(DREAMSHAPER, "sha256:a")],
                    ..base.clone()
                },
                image_bytes: Some(DREAMSHAPER as i64),
                image_bytes_new: Some(DREAMSHAPER as i64),
                image_seconds: Some(256),
                fetch_seconds: 0,
                per_start: Some("0.0000"),
                per_rollout: Some("0.0000"),
            },
            Case {
                reason: "a LoRA added next to a served checkpoint: only its layer is new",
                input: ColdStartInput {
                    layers: vec![
                        layer(DREAMSHAPER, "sha256:a"),
                        layer(150_000_000, "sha256:b"),
                    ],
                    serving: ["sha256:a".to_string()].into(),
                    ..base.clone()
                },
                image_bytes: Some(DREAMSHAPER as i64 + 150_000_000),
                image_bytes_new: Some(150_000_000),
                image_seconds: Some(274),
                fetch_seconds: 0,
                per_start: Some("0.0000"),
                per_rollout: Some("0.0000"),
            },
            Case {
                reason: "Dreamshaper fetched at start: 256 s billed at $0.25/h on each of 3 starts",
                input: ColdStartInput {
                    fetched_bytes: DREAMSHAPER,
                    ..base.clone()
                },
                image_bytes: Some(0),
                image_bytes_new: Some(0),
                image_seconds: Some(0),
                fetch_seconds: 256,
                per_start: Some("0.0178"),
                per_rollout: Some("0.0533"),
            },
            Case {
                reason: "not built yet and no declared size: the image part is unknown, not zero",
                input: ColdStartInput {
                    layers: vec![ImageLayer {
                        size: None,
                        digest: None,
                    }],
                    hourly_price: None,
                    ..base.clone()
                },
                image_bytes: None,
                image_bytes_new: None,
                image_seconds: None,
                fetch_seconds: 0,
                per_start: None,
                per_rollout: None,
            },
        ];
        for c in cases {
            let got = compute(&c.input);
            assert_eq!(got.image_bytes, c.image_bytes, "{}", c.reason);
            assert_eq!(got.image_bytes_new, c.image_bytes_new, "{}", c.reason);
            assert_eq!(got.image_seconds, c.image_seconds, "{}", c.reason);
            assert_eq!(got.fetch_seconds, c.fetch_seconds, "{}", c.reason);
            assert_eq!(
                got.fetched_bytes, c.input.fetched_bytes as i64,
                "{}",
                c.reason
            );
            assert_eq!(
                got.fetch_cost_usd_per_start.as_deref(),
                c.per_start,
                "{}",
                c.reason
            );
            assert_eq!(
                got.fetch_cost_usd_per_rollout.as_deref(),
                c.per_rollout,
                "{}",
                c.reason
            );
            assert!(!got.summary.is_empty(), "{}", c.reason);
        }
    }

    #[test]
    fn the_comfyui_example_fetches_dreamshaper_and_bakes_nothing() {
        let sdd = crate::testing::spec_from_yaml(include_str!(
            "../../../manifests/examples/comfyui-dreamshaper.yaml"
        ));
        let got = compute(&input_for(&sdd.spec, None, BTreeSet::new(), Some(0.25)));
        assert_eq!(got.fetched_bytes, DREAMSHAPER as i64);
        assert_eq!(got.fetch_seconds, 256);
        assert_eq!(got.image_bytes, Some(0));
        assert!(got.summary.contains("2.13 GB"), "{}", got.summary);
    }

    #[test]
    fn the_serving_image_is_the_one_a_group_runs() {
        let built = salad_sd_image::BuiltImage {
            reference: "r/i@sha256:new".into(),
            digest: "sha256:new".into(),
            tag: "t".into(),
            recipe_hash: "h".into(),
            layers: vec![salad_sd_image::BuiltLayer {
                name: "ckpt".into(),
                digest: "sha256:l1".into(),
                size: 10,
                file_sha256: "f".into(),
                reused: true,
            }],
            bytes_uploaded: 0,
            bytes_downloaded: 0,
        };
        let old = salad_sd_api::ImageStatus {
            reference: Some("r/i@sha256:old".into()),
            layers: vec![salad_sd_api::LayerStatus {
                name: "ckpt".into(),
                digest: "sha256:l0".into(),
                size: 9,
                sha256: None,
            }],
            ..Default::default()
        };
        let digests = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
        assert_eq!(
            digests(serving_layers(
                Some(&built),
                &["r/i@sha256:new"],
                Some(&old)
            )),
            ["sha256:l1"],
            "a group already runs the built image: nothing is new"
        );
        assert_eq!(
            digests(serving_layers(
                Some(&built),
                &["r/i@sha256:old"],
                Some(&old)
            )),
            ["sha256:l0"],
            "the old image serves: its layers, from status"
        );
        assert!(
            serving_layers(Some(&built), &[], Some(&old)).is_empty(),
            "no group: every layer is new"
        );
    }
}
