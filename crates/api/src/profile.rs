//! What each server kind needs: default image, where model files go, how it is launched, and
//! probes that make "started" mean "the checkpoint is loaded".
//!
//! Sources: `shared/reference/sd-deploy.md` §1.2–§1.5 (SD.Next), §3.9 (A1111), §1.7 (ComfyUI).

use crate::spec::{ModelKind, ServerKind};

/// A probe with every value filled in, in SaladCloud's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeDefaults {
    /// What the probe runs.
    pub handler: ProbeHandler,
    /// Seconds before the first check.
    pub initial_delay_seconds: i32,
    /// Seconds between checks.
    pub period_seconds: i32,
    /// Seconds before a check times out.
    pub timeout_seconds: i32,
    /// Consecutive passes needed.
    pub success_threshold: i32,
    /// Consecutive failures tolerated.
    pub failure_threshold: i32,
}

/// The check a probe performs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeHandler {
    /// HTTP GET on the server port.
    Http {
        /// Path and query.
        path: String,
        /// Port.
        port: i32,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// TCP connect.
    Tcp {
        /// Port.
        port: i32,
    },
    /// Command in the container.
    Exec {
        /// Command and arguments.
        command: Vec<String>,
    },
}

/// Per-kind facts about a server image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerProfile {
    /// Which server.
    pub kind: ServerKind,
}

/// Owner of baked files for SD.Next: its entrypoint `chown -R`s the data dir to uid 1000 at every
/// start, which copies every lower-layer byte on overlayfs unless the files already belong to it.
pub const SDNEXT_UID: u32 = 1000;

impl ServerProfile {
    /// The profile of a server kind.
    pub fn of(kind: ServerKind) -> Self {
        Self { kind }
    }

    /// Default base image, if the kind has one.
    pub fn default_base_image(self) -> Option<&'static str> {
        match self.kind {
            ServerKind::SdNext => Some("saladtechnologies/sdnext:base"),
            ServerKind::Automatic1111 => Some("saladtechnologies/a1111:ipv6-v1.9.4"),
            ServerKind::ComfyUi => Some(
                "ghcr.io/saladtechnologies/comfyui-api:comfy0.3.62-api1.10.0-torch2.8.0-cuda12.8-runtime",
            ),
            ServerKind::Custom => None,
        }
    }

    /// Directory a model of this kind goes to.
    pub fn model_dir(self, model: ModelKind) -> Option<&'static str> {
        use ModelKind::*;
        let dir = match (self.kind, model) {
            (ServerKind::SdNext, Checkpoint) => "/webui/data/models/Stable-diffusion",
            (ServerKind::SdNext, Lora) => "/webui/data/models/Lora",
            (ServerKind::SdNext, Vae) => "/webui/data/models/VAE",
            (ServerKind::SdNext, Embedding) => "/webui/data/models/embeddings",
            (ServerKind::SdNext, ControlNet) => "/webui/data/models/ControlNet",
            (ServerKind::Automatic1111, Checkpoint) => "/data/models/Stable-diffusion",
            (ServerKind::Automatic1111, Lora) => "/data/models/Lora",
            (ServerKind::Automatic1111, Vae) => "/data/models/VAE",
            (ServerKind::Automatic1111, Embedding) => "/data/embeddings",
            (ServerKind::Automatic1111, ControlNet) => "/data/models/ControlNet",
            (ServerKind::ComfyUi, Checkpoint) => "/opt/ComfyUI/models/checkpoints",
            (ServerKind::ComfyUi, Lora) => "/opt/ComfyUI/models/loras",
            (ServerKind::ComfyUi, Vae) => "/opt/ComfyUI/models/vae",
            (ServerKind::ComfyUi, Embedding) => "/opt/ComfyUI/models/embeddings",
            (ServerKind::ComfyUi, ControlNet) => "/opt/ComfyUI/models/controlnet",
            (ServerKind::Custom, Checkpoint) => "/models/checkpoints",
            (ServerKind::Custom, Lora) => "/models/lora",
            (ServerKind::Custom, Vae) => "/models/vae",
            (ServerKind::Custom, Embedding) => "/models/embeddings",
            (ServerKind::Custom, ControlNet) => "/models/controlnet",
            (_, Other) => return None,
        };
        Some(dir)
    }

    /// Directory extensions are unpacked into.
    pub fn extensions_dir(self) -> &'static str {
        match self.kind {
            ServerKind::SdNext => "/webui/data/extensions",
            ServerKind::Automatic1111 => "/data/config/auto/extensions",
            ServerKind::ComfyUi => "/opt/ComfyUI/custom_nodes",
            ServerKind::Custom => "/extensions",
        }
    }

    /// uid/gid that should own baked files.
    pub fn file_owner(self) -> u32 {
        match self.kind {
            ServerKind::SdNext => SDNEXT_UID,
            _ => 0,
        }
    }

    /// Image entrypoint and command that start the server on `port` over IPv6 with `ckpt` loaded,
    /// followed by `extra_args`. `None` keeps the base image's own.
    pub fn launch(
        self,
        port: i32,
        ckpt: Option<&str>,
        extra_args: &[String],
    ) -> Option<(Vec<String>, Vec<String>)> {
        match self.kind {
            ServerKind::SdNext => {
                let entrypoint = vec![
                    "/bin/bash".to_string(),
                    "-c".to_string(),
                    "${INSTALLDIR}/entrypoint.sh \"$0\" \"$@\"".to_string(),
                ];
                let mut cmd: Vec<String> = [
                    "--data-dir=/webui/data",
                    "--port",
                    &port.to_string(),
                    "--server-name",
                    "[::]",
                    "--quick",
                    "--use-cuda",
                    "--docs",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(ckpt) = ckpt {
                    cmd.push("--ckpt".into());
                    cmd.push(ckpt.into());
                }
                cmd.extend(extra_args.iter().cloned());
                Some((entrypoint, cmd))
            }
            ServerKind::Automatic1111 => {
                let mut webui =
                    String::from("python -u webui.py --listen --port 7859 --xformers --api");
                if let Some(ckpt) = ckpt {
                    webui.push_str(&format!(" --ckpt '{ckpt}'"));
                }
                for arg in extra_args {
                    webui.push_str(&format!(" '{}'", arg.replace('\'', "'\\''")));
                }
                let script = format!("{webui} & socat TCP6-LISTEN:{port},fork TCP4:127.0.0.1:7859");
                Some((vec!["/bin/sh".into(), "-c".into()], vec![script]))
            }
            ServerKind::ComfyUi | ServerKind::Custom => None,
        }
    }

    /// Environment the launch needs (listen address and port).
    pub fn launch_env(self, port: i32) -> Vec<(String, String)> {
        match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => vec![
                ("HOST".into(), "[::]".into()),
                ("PORT".into(), port.to_string()),
            ],
            ServerKind::ComfyUi => {
                vec![
                    ("HOST".into(), "::".into()),
                    ("PORT".into(), port.to_string()),
                ]
            }
            ServerKind::Custom => vec![],
        }
    }

    /// Default startup probe: passes only once a generation succeeds (SD.Next and A1111 answer
    /// HTTP before the checkpoint is loaded, so a 200 on a status page proves nothing).
    pub fn startup_probe(self, port: i32) -> Option<ProbeDefaults> {
        let warmup = format!(
            "import json,urllib.request as u; r=u.urlopen(u.Request('http://127.0.0.1:{port}/sdapi/v1/txt2img', \
             data=json.dumps({{'prompt':'warmup','steps':1,'width':64,'height':64}}).encode(), \
             headers={{'Content-Type':'application/json'}}), timeout=50); \
             assert r.status == 200 and json.load(r)['images']"
        );
        match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => Some(ProbeDefaults {
                handler: ProbeHandler::Exec {
                    command: vec!["python".into(), "-c".into(), warmup],
                },
                initial_delay_seconds: 60,
                period_seconds: 10,
                timeout_seconds: 55,
                success_threshold: 1,
                failure_threshold: 20,
            }),
            ServerKind::ComfyUi => Some(ProbeDefaults {
                handler: ProbeHandler::Http {
                    path: "/health".into(),
                    port,
                    headers: vec![],
                },
                initial_delay_seconds: 10,
                period_seconds: 10,
                timeout_seconds: 10,
                success_threshold: 1,
                failure_threshold: 20,
            }),
            ServerKind::Custom => None,
        }
    }

    /// Default liveness probe.
    pub fn liveness_probe(self, port: i32) -> Option<ProbeDefaults> {
        let path = match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => "/sdapi/v1/memory",
            ServerKind::ComfyUi => "/health",
            ServerKind::Custom => return None,
        };
        Some(http_probe(path, port, 30, 10))
    }

    /// Default readiness probe (only meaningful with the gateway on).
    pub fn readiness_probe(self, port: i32) -> Option<ProbeDefaults> {
        let path = match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => "/sdapi/v1/progress",
            ServerKind::ComfyUi => "/ready",
            ServerKind::Custom => return None,
        };
        Some(http_probe(path, port, 5, 3))
    }
}

/// An HTTP GET probe checked every `period` seconds, failing after three misses.
fn http_probe(path: &str, port: i32, period: i32, timeout: i32) -> ProbeDefaults {
    ProbeDefaults {
        handler: ProbeHandler::Http {
            path: path.into(),
            port,
            headers: vec![],
        },
        initial_delay_seconds: 0,
        period_seconds: period,
        timeout_seconds: timeout,
        success_threshold: 1,
        failure_threshold: 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdnext_launch_listens_on_ipv6_and_loads_the_checkpoint() {
        let (entrypoint, cmd) = ServerProfile::of(ServerKind::SdNext)
            .launch(
                7860,
                Some("/webui/data/models/Stable-diffusion/a.safetensors"),
                &["--no-hashing".into()],
            )
            .expect("sdnext has a launch command");
        assert_eq!(entrypoint[0], "/bin/bash");
        let joined = cmd.join(" ");
        assert!(joined.contains("--server-name [::]"), "{joined}");
        assert!(joined.contains("--port 7860"), "{joined}");
        assert!(joined.contains("--ckpt /webui/data/models/Stable-diffusion/a.safetensors"));
        assert!(joined.ends_with("--no-hashing"));
    }

    #[test]
    fn default_probes_fit_saladcloud_limits() {
        for kind in [
            ServerKind::SdNext,
            ServerKind::Automatic1111,
            ServerKind::ComfyUi,
        ] {
            let p = ServerProfile::of(kind);
            for probe in [
                p.startup_probe(7860),
                p.liveness_probe(7860),
                p.readiness_probe(7860),
            ]
            .into_iter()
            .flatten()
            {
                assert!((0..=1200).contains(&probe.initial_delay_seconds));
                assert!((1..=120).contains(&probe.period_seconds));
                assert!((1..=60).contains(&probe.timeout_seconds));
                assert!((1..=10).contains(&probe.success_threshold));
                assert!((1..=20).contains(&probe.failure_threshold));
            }
        }
    }

    #[test]
    fn sdnext_startup_probe_requires_a_generation_not_just_http() {
        let probe = ServerProfile::of(ServerKind::SdNext)
            .startup_probe(7860)
            .unwrap();
        match probe.handler {
            ProbeHandler::Exec { command } => assert!(command.join(" ").contains("txt2img")),
            other => panic!("expected an exec warm-up probe, got {other:?}"),
        }
    }
}
