//! What each server kind needs: default image, where model files go, how it is launched, and
//! probes that make "started" mean "the checkpoint is loaded".
//!
//! Sources, upstream: SaladTechnologies/sdnext branch `docker-build` (`Dockerfile`,
//! `entrypoint.sh`) and vladmandic/sdnext (`modules/paths.py`, `modules/shared.py`,
//! `modules/cmd_args.py`, `configs/Dockerfile.cuda`) for SD.Next;
//! AbdBarho/stable-diffusion-webui-docker `services/AUTOMATIC1111/entrypoint.sh` and SaladCloud's
//! A1111 `Dockerfile.ipv6` for A1111; SaladTechnologies/comfyui-api (`docker/comfyui.dockerfile`,
//! `src/config.ts`) and ComfyUI `folder_paths.py` for ComfyUI.

use crate::spec::{ModelKind, SdNextBackend, SdNextLayout, ServerKind, ServerSpec};

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

/// What a server image needs from us: where its files go, how it starts, how it is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerProfile {
    /// Which server.
    pub kind: ServerKind,
    /// SD.Next image layout (ignored for other kinds).
    pub layout: SdNextLayout,
    /// SD.Next backend (ignored for other kinds).
    pub backend: SdNextBackend,
    /// Whether the server hashes model files at load.
    pub model_hashing: bool,
}

/// The uid SaladCloud's SD.Next image runs the server as (`webui-user`), and the owner of every
/// file the builder writes. Upstream's `entrypoint.sh` runs `chown -R` over the data directory
/// at every start, and overlayfs copies a file up on any chown, even one to the owner it already
/// has: so we launch through [`SDNEXT_START_SCRIPT`], which chowns only what this uid does not
/// own yet and never touches the baked model files.
pub const SDNEXT_UID: u32 = 1000;

/// The SaladBase layout's start, as upstream's `entrypoint.sh` (activate the venv when there is
/// one, own the data directory, drop to uid 1000, run `launch.py --data-dir`), except that it
/// chowns only entries not already owned by `$RUN_UID`: the model layers are, so their bytes stay
/// in the lower layers. Arguments after the script name are SD.Next's.
pub const SDNEXT_START_SCRIPT: &str = r#"set -Eeuo pipefail
if [ -f "$INSTALLDIR/venv/bin/activate" ]; then source "$INSTALLDIR/venv/bin/activate"; fi
find "$DATA_DIR" ! -user "$RUN_UID" -exec chown -h "$RUN_UID:$RUN_UID" {} +
mkdir -p /tmp/gradio && chown "$RUN_UID:$RUN_UID" /tmp/gradio
exec runuser -u "$(id -un "$RUN_UID")" -- python "$INSTALLDIR/launch.py" --data-dir="$DATA_DIR" "$@""#;

/// Port Automatic1111 itself listens on inside the container; `socat` forwards the server port
/// (dual-stack IPv6) to it, as SaladCloud's A1111 image does.
pub const A1111_INNER_PORT: i32 = 7859;

/// Quotes `arg` for a POSIX shell.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

impl ServerProfile {
    /// The profile of a server spec.
    pub fn of(server: &ServerSpec) -> Self {
        Self {
            kind: server.kind,
            layout: server.layout,
            backend: server.backend,
            model_hashing: server.model_hashing,
        }
    }

    /// The profile of a kind with every other choice at its default.
    pub fn of_kind(kind: ServerKind) -> Self {
        Self::of(&ServerSpec {
            kind,
            ..ServerSpec::default()
        })
    }

    fn upstream_sdnext(self) -> bool {
        self.kind == ServerKind::SdNext && self.layout == SdNextLayout::Upstream
    }

    /// Default base image, if the kind has one.
    pub fn default_base_image(self) -> Option<&'static str> {
        match self.kind {
            ServerKind::SdNext if self.upstream_sdnext() => Some("vladmandic/sdnext-cuda:latest"),
            ServerKind::SdNext => Some("saladtechnologies/sdnext:base"),
            ServerKind::Automatic1111 => Some("saladtechnologies/a1111:ipv6-v1.9.4"),
            ServerKind::ComfyUi => Some(
                "ghcr.io/saladtechnologies/comfyui-api:comfy0.3.62-api1.10.0-torch2.8.0-cuda12.8-runtime",
            ),
            ServerKind::Custom => None,
        }
    }

    /// SD.Next's models directory.
    fn sdnext_models(self) -> &'static str {
        if self.upstream_sdnext() {
            "/mnt/models"
        } else {
            "/webui/data/models"
        }
    }

    /// Directory a model of this kind goes to: where the server looks for it.
    pub fn model_dir(self, model: ModelKind) -> Option<String> {
        use ModelKind::*;
        let dir = match (self.kind, model) {
            (ServerKind::SdNext, Checkpoint) => {
                format!("{}/Stable-diffusion", self.sdnext_models())
            }
            (ServerKind::SdNext, Lora) => format!("{}/Lora", self.sdnext_models()),
            (ServerKind::SdNext, Vae) => format!("{}/VAE", self.sdnext_models()),
            (ServerKind::SdNext, Embedding) => format!("{}/embeddings", self.sdnext_models()),
            // The diffusers backend disables sd-webui-controlnet and reads its own directory.
            (ServerKind::SdNext, ControlNet) => match self.backend {
                SdNextBackend::Diffusers => format!("{}/control/controlnet", self.sdnext_models()),
                SdNextBackend::Original => format!("{}/ControlNet", self.sdnext_models()),
            },
            // The image's entrypoint links these into the webui tree at start.
            (ServerKind::Automatic1111, Checkpoint) => "/data/models/Stable-diffusion".into(),
            (ServerKind::Automatic1111, Lora) => "/data/models/Lora".into(),
            (ServerKind::Automatic1111, Vae) => "/data/models/VAE".into(),
            (ServerKind::Automatic1111, Embedding) => "/data/embeddings".into(),
            (ServerKind::Automatic1111, ControlNet) => "/data/models/ControlNet".into(),
            (ServerKind::ComfyUi, Checkpoint) => "/opt/ComfyUI/models/checkpoints".into(),
            (ServerKind::ComfyUi, Lora) => "/opt/ComfyUI/models/loras".into(),
            (ServerKind::ComfyUi, Vae) => "/opt/ComfyUI/models/vae".into(),
            (ServerKind::ComfyUi, Embedding) => "/opt/ComfyUI/models/embeddings".into(),
            (ServerKind::ComfyUi, ControlNet) => "/opt/ComfyUI/models/controlnet".into(),
            (ServerKind::Custom, Checkpoint) => "/models/checkpoints".into(),
            (ServerKind::Custom, Lora) => "/models/lora".into(),
            (ServerKind::Custom, Vae) => "/models/vae".into(),
            (ServerKind::Custom, Embedding) => "/models/embeddings".into(),
            (ServerKind::Custom, ControlNet) => "/models/controlnet".into(),
            (_, Other) => return None,
        };
        Some(dir)
    }

    /// Directory extensions are unpacked into.
    pub fn extensions_dir(self) -> &'static str {
        match self.kind {
            ServerKind::SdNext if self.upstream_sdnext() => "/mnt/data/extensions",
            ServerKind::SdNext => "/webui/data/extensions",
            ServerKind::Automatic1111 => "/data/config/auto/extensions",
            ServerKind::ComfyUi => "/opt/ComfyUI/custom_nodes",
            ServerKind::Custom => "/extensions",
        }
    }

    /// Image entrypoint (`None`: keep the base image's) and command that start the server on
    /// `port` over IPv6 with `ckpt` loaded, followed by `extra_args`. `None` keeps both of the
    /// base image's.
    pub fn launch(
        self,
        port: i32,
        ckpt: Option<&str>,
        extra_args: &[String],
    ) -> Option<(Option<Vec<String>>, Vec<String>)> {
        let port = port.to_string();
        let backend = match self.backend {
            SdNextBackend::Diffusers => "diffusers",
            SdNextBackend::Original => "original",
        };
        let ckpt_args = ckpt
            .map(|c| vec!["--ckpt".to_string(), c.to_string()])
            .unwrap_or_default();
        match self.kind {
            // `[::]` makes SD.Next (uvicorn through asyncio) listen on IPv6 only: anything in the
            // container calls it on [::1], never 127.0.0.1.
            ServerKind::SdNext if self.upstream_sdnext() => {
                let mut cmd = strings(&["python", "launch.py", "--skip-all", "--quick"]);
                cmd.extend(strings(&["--port", &port, "--server-name", "[::]"]));
                cmd.extend(strings(&["--backend", backend]));
                cmd.extend(ckpt_args);
                cmd.extend(extra_args.iter().cloned());
                Some((None, cmd))
            }
            ServerKind::SdNext => {
                let entrypoint =
                    strings(&["/bin/bash", "-c", SDNEXT_START_SCRIPT, "salad-sd-start"]);
                let mut cmd = strings(&["--port", &port, "--server-name", "[::]", "--quick"]);
                cmd.extend(strings(&["--use-cuda", "--backend", backend]));
                cmd.extend(ckpt_args);
                cmd.extend(extra_args.iter().cloned());
                Some((Some(entrypoint), cmd))
            }
            // The base ENTRYPOINT (`/docker/entrypoint.sh`) links /data into the webui tree and
            // then runs this command.
            ServerKind::Automatic1111 => {
                let inner = A1111_INNER_PORT.to_string();
                let mut webui =
                    strings(&["python", "-u", "webui.py", "--listen", "--port", &inner]);
                webui.extend(strings(&["--xformers", "--api", "--no-download-sd-model"]));
                if !self.model_hashing {
                    webui.push("--no-hashing".into());
                }
                webui.extend(ckpt_args);
                webui.extend(extra_args.iter().cloned());
                let webui: Vec<String> = webui.iter().map(|a| shell_quote(a)).collect();
                let script = format!(
                    "{} & exec socat TCP6-LISTEN:{port},fork TCP4:127.0.0.1:{inner}",
                    webui.join(" ")
                );
                Some((None, strings(&["/bin/sh", "-c", &script])))
            }
            ServerKind::ComfyUi | ServerKind::Custom => None,
        }
    }

    /// Environment the launch needs (listen address and port, model hashing).
    pub fn launch_env(self, port: i32) -> Vec<(String, String)> {
        let mut env = match self.kind {
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
        };
        if self.kind == ServerKind::SdNext && !self.model_hashing {
            env.push(("SD_NOHASHING".into(), "true".into()));
        }
        env
    }

    /// Default startup probe: passes only once a generation succeeds (SD.Next and A1111 answer
    /// HTTP before the checkpoint is loaded, so a 200 on a status page proves nothing). The first
    /// generation loads the checkpoint; the window (30 s + 20 × 30 s, about 10.5 minutes) covers
    /// an SDXL file on a slow node. The call goes to `[::1]`: SD.Next listens on IPv6 only.
    pub fn startup_probe(self, port: i32) -> Option<ProbeDefaults> {
        let warmup = format!(
            "import json,urllib.request as u; r=u.urlopen(u.Request('http://[::1]:{port}/sdapi/v1/txt2img', \
             data=json.dumps({{'prompt':'warmup','steps':1,'width':64,'height':64}}).encode(), \
             headers={{'Content-Type':'application/json'}}), timeout=25); \
             assert r.status == 200 and json.load(r)['images']"
        );
        match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => Some(ProbeDefaults {
                handler: ProbeHandler::Exec {
                    command: vec!["python".into(), "-c".into(), warmup],
                },
                initial_delay_seconds: 30,
                period_seconds: 30,
                timeout_seconds: 30,
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
                period_seconds: 30,
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

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
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

    fn sdnext(layout: SdNextLayout) -> ServerProfile {
        ServerProfile::of(&ServerSpec {
            layout,
            ..ServerSpec::default()
        })
    }

    #[test]
    fn sdnext_launch_listens_on_ipv6_and_loads_the_checkpoint() {
        let (entrypoint, cmd) = sdnext(SdNextLayout::SaladBase)
            .launch(
                7860,
                Some("/webui/data/models/Stable-diffusion/a.safetensors"),
                &["--lowvram".into()],
            )
            .expect("sdnext has a launch command");
        let entrypoint = entrypoint.expect("SaladBase starts through our script");
        assert_eq!(entrypoint[..2], ["/bin/bash", "-c"]);
        assert_eq!(entrypoint[2], SDNEXT_START_SCRIPT);
        let joined = cmd.join(" ");
        assert!(joined.contains("--server-name [::]"), "{joined}");
        assert!(joined.contains("--port 7860"), "{joined}");
        assert!(joined.contains("--backend diffusers"), "{joined}");
        assert!(joined.contains("--ckpt /webui/data/models/Stable-diffusion/a.safetensors"));
        assert!(joined.ends_with("--lowvram"));
    }

    #[test]
    fn the_start_script_never_chowns_what_uid_1000_already_owns() {
        assert!(SDNEXT_START_SCRIPT.contains(r#"! -user "$RUN_UID""#));
        assert!(!SDNEXT_START_SCRIPT.contains("chown -R"));
    }

    #[test]
    fn upstream_sdnext_keeps_the_base_entrypoint_and_uses_its_directories() {
        let p = sdnext(SdNextLayout::Upstream);
        let (entrypoint, cmd) = p.launch(7860, None, &[]).unwrap();
        assert_eq!(entrypoint, None);
        assert_eq!(cmd[..2], ["python", "launch.py"]);
        assert!(cmd.join(" ").contains("--server-name [::]"));
        assert_eq!(
            p.model_dir(ModelKind::Checkpoint).unwrap(),
            "/mnt/models/Stable-diffusion"
        );
        assert_eq!(
            p.model_dir(ModelKind::ControlNet).unwrap(),
            "/mnt/models/control/controlnet"
        );
        assert_eq!(
            p.default_base_image(),
            Some("vladmandic/sdnext-cuda:latest")
        );
    }

    #[test]
    fn controlnet_directory_follows_the_backend() {
        let original = ServerProfile::of(&ServerSpec {
            backend: SdNextBackend::Original,
            ..ServerSpec::default()
        });
        assert_eq!(
            original.model_dir(ModelKind::ControlNet).unwrap(),
            "/webui/data/models/ControlNet"
        );
        assert_eq!(
            sdnext(SdNextLayout::SaladBase)
                .model_dir(ModelKind::ControlNet)
                .unwrap(),
            "/webui/data/models/control/controlnet"
        );
    }

    #[test]
    fn a1111_keeps_the_base_entrypoint_and_quotes_every_argument() {
        let p = ServerProfile::of_kind(ServerKind::Automatic1111);
        let (entrypoint, cmd) = p
            .launch(
                7860,
                Some("/data/models/Stable-diffusion/it's.ckpt"),
                &["--a b".into()],
            )
            .unwrap();
        assert_eq!(
            entrypoint, None,
            "the base's /docker/entrypoint.sh must run"
        );
        assert_eq!(cmd[..2], ["/bin/sh", "-c"]);
        let script = &cmd[2];
        assert!(script.contains("--no-download-sd-model"), "{script}");
        assert!(script.contains("--no-hashing"), "{script}");
        assert!(
            script.contains(r#"--ckpt '/data/models/Stable-diffusion/it'\''s.ckpt'"#),
            "{script}"
        );
        assert!(script.contains("'--a b'"), "{script}");
        assert!(
            script.ends_with("TCP6-LISTEN:7860,fork TCP4:127.0.0.1:7859"),
            "{script}"
        );
    }

    #[test]
    fn hashing_is_off_unless_asked() {
        let env = sdnext(SdNextLayout::SaladBase).launch_env(7860);
        assert!(env.contains(&("SD_NOHASHING".into(), "true".into())));
        let hashing = ServerProfile::of(&ServerSpec {
            model_hashing: true,
            ..ServerSpec::default()
        });
        assert!(
            !hashing
                .launch_env(7860)
                .iter()
                .any(|(k, _)| k == "SD_NOHASHING")
        );
    }

    #[test]
    fn shell_quote_round_trips_through_sh() {
        for arg in [
            "plain",
            "with space",
            "it's",
            "$HOME",
            "a\\b",
            "",
            "--x=[::]",
        ] {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("printf %s {}", shell_quote(arg))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), arg);
        }
    }

    #[test]
    fn default_probes_fit_saladcloud_limits() {
        for kind in [
            ServerKind::SdNext,
            ServerKind::Automatic1111,
            ServerKind::ComfyUi,
        ] {
            let p = ServerProfile::of_kind(kind);
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
    fn startup_window_allows_about_ten_minutes() {
        for kind in [
            ServerKind::SdNext,
            ServerKind::Automatic1111,
            ServerKind::ComfyUi,
        ] {
            let p = ServerProfile::of_kind(kind).startup_probe(7860).unwrap();
            let window = p.initial_delay_seconds + p.failure_threshold * p.period_seconds;
            assert!(window >= 600, "{kind:?}: {window} s");
        }
    }

    #[test]
    fn sdnext_startup_probe_requires_a_generation_on_ipv6_loopback() {
        let probe = ServerProfile::of_kind(ServerKind::SdNext)
            .startup_probe(7860)
            .unwrap();
        match probe.handler {
            ProbeHandler::Exec { command } => {
                let c = command.join(" ");
                assert!(c.contains("txt2img"));
                assert!(c.contains("http://[::1]:7860/"), "{c}");
                assert!(!c.contains("127.0.0.1"), "{c}");
            }
            other => panic!("expected an exec warm-up probe, got {other:?}"),
        }
    }
}
