//! `salad-sd sim`: run the simulator as a standalone server.

use std::time::Duration;

use crate::{Faults, SimConfig, Simulator, Timings};

/// Flags of `salad-sd sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8485")]
    pub listen: String,
    /// Only accept this Salad-Api-Key (default: any non-empty key).
    #[arg(long, env = "SALAD_SIM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests per minute per API key (0 = unlimited).
    #[arg(long, default_value_t = 240)]
    pub rate_limit: u32,
    /// `container_replicas_quota` of every organization.
    #[arg(long, default_value_t = 100)]
    pub quota: u32,
    /// Use the slower demo timings (about 15 s from create to ready) as the base.
    #[arg(long)]
    pub demo_timings: bool,
    /// Download time per GB of the average node, in ms (nodes draw their speed around it,
    /// seeded); without it every download takes --download-ms.
    #[arg(long)]
    pub download_per_gb_ms: Option<u64>,
    /// Seed of the node-speed draw.
    #[arg(long, default_value_t = 15)]
    pub fleet_seed: u64,
    /// The first N nodes of every group are the slowest kind (a slow node on demand).
    #[arg(long, default_value_t = 0)]
    pub slow_first_nodes: u32,
    /// Compressed size of every image, in bytes (default: 2-8 GB by a hash of the name).
    #[arg(long)]
    pub image_bytes: Option<u64>,
    /// Image preparation time (ms).
    #[arg(long)]
    pub image_prepare_ms: Option<u64>,
    /// Instance allocating time (ms).
    #[arg(long)]
    pub allocate_ms: Option<u64>,
    /// Instance downloading time (ms).
    #[arg(long)]
    pub download_ms: Option<u64>,
    /// Instance creating time (ms).
    #[arg(long)]
    pub create_ms: Option<u64>,
    /// Time from running to started with a startup probe (ms).
    #[arg(long)]
    pub startup_ms: Option<u64>,
    /// Time from started to ready with a readiness probe (ms).
    #[arg(long)]
    pub readiness_ms: Option<u64>,
    /// Instance stopping time (ms).
    #[arg(long)]
    pub stop_ms: Option<u64>,
    /// Time from DELETE until the group is gone (ms).
    #[arg(long)]
    pub delete_ms: Option<u64>,
    /// Share of API requests answered 500 (0.0..=1.0).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Latency added to every API request (ms).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API connections closed without an answer (0.0..=1.0).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Images containing this substring fail to pull (repeatable).
    #[arg(long)]
    pub fail_image: Vec<String>,
    /// Suffix of generated access domains.
    #[arg(long, default_value = "salad.cloud")]
    pub access_domain_suffix: String,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        for (name, v) in [
            ("--error-rate", self.error_rate),
            ("--drop-rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                anyhow::bail!("{name} must be between 0.0 and 1.0, got {v}");
            }
        }
        let mut t = if self.demo_timings {
            Timings::realistic_demo()
        } else {
            Timings::default()
        };
        let set = |d: &mut Duration, v: Option<u64>| {
            if let Some(ms) = v {
                *d = Duration::from_millis(ms);
            }
        };
        set(&mut t.image_prepare, self.image_prepare_ms);
        set(&mut t.allocate, self.allocate_ms);
        set(&mut t.download, self.download_ms);
        set(&mut t.create, self.create_ms);
        set(&mut t.startup, self.startup_ms);
        set(&mut t.readiness, self.readiness_ms);
        set(&mut t.stop, self.stop_ms);
        set(&mut t.delete, self.delete_ms);
        Ok(SimConfig {
            timings: t,
            api_key: self.api_key.clone(),
            rate_limit_per_minute: self.rate_limit,
            faults: Faults {
                error_rate: self.error_rate,
                latency_ms: self.latency_ms,
                drop_rate: self.drop_rate,
                burst_429: 0,
                failing_images: self.fail_image.clone(),
            },
            access_domain_suffix: self.access_domain_suffix.clone(),
            replicas_quota: self.quota,
            fleet: crate::FleetModel {
                seed: self.fleet_seed,
                download_per_gb: self.download_per_gb_ms.map(Duration::from_millis),
                slow_first_nodes: self.slow_first_nodes,
                image_bytes: self.image_bytes,
                ..crate::FleetModel::default()
            },
            ..SimConfig::default()
        })
    }
}

/// Run the simulator until Ctrl-C. Prints
/// `saladcloud simulator listening on http://ADDR/api/public` once it accepts requests.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let handle = Simulator::start(config, args.listen.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    println!("saladcloud simulator listening on {}", handle.base_url());
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SimArgs,
    }

    fn parse(argv: &[&str]) -> SimArgs {
        Wrap::try_parse_from(std::iter::once("sim").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn flags_build_the_config() {
        let c = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "k",
            "--rate-limit",
            "10",
            "--demo-timings",
            "--download-ms",
            "1234",
            "--error-rate",
            "0.25",
            "--latency-ms",
            "5",
            "--drop-rate",
            "0.1",
            "--fail-image",
            "broken",
        ])
        .config()
        .unwrap();
        assert_eq!(c.api_key.as_deref(), Some("k"));
        assert_eq!(c.rate_limit_per_minute, 10);
        assert_eq!(c.timings.download, Duration::from_millis(1234));
        assert_eq!(
            c.timings.image_prepare,
            Timings::realistic_demo().image_prepare
        );
        assert_eq!(c.faults.error_rate, 0.25);
        assert_eq!(c.faults.latency_ms, 5);
        assert_eq!(c.faults.drop_rate, 0.1);
        assert_eq!(c.faults.failing_images, ["broken"]);
        assert_eq!(c.gpu_classes.len(), 6);

        let c = parse(&[]).config().unwrap();
        assert_eq!(c.timings, Timings::default());
        assert_eq!(c.rate_limit_per_minute, 240);
        assert!(parse(&["--error-rate", "1.5"]).config().is_err());
    }
}
