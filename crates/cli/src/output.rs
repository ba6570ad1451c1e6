//! Printing: human text or one JSON object per line, and build progress.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use salad_sd_controller::{Event, EventType};
use salad_sd_image::{Phase, Progress, ProgressSink};
use serde_json::{Value, json};

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for humans.
    Text,
    /// One JSON object per line (`{"type": "event" | "progress" | "build" | "result" | …}`).
    Json,
}

/// Where lines go.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    /// Text or JSON lines.
    pub format: Format,
    /// Write to stderr instead of stdout (`build`, whose stdout carries only the reference).
    pub stderr: bool,
}

impl Printer {
    fn write(&self, line: &str) {
        if self.stderr {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{line}");
        } else {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    }

    /// A line of text (text format only).
    pub fn text(&self, line: impl AsRef<str>) {
        if self.format == Format::Text {
            self.write(line.as_ref());
        }
    }

    /// A JSON object (JSON format only).
    pub fn json(&self, value: Value) {
        if self.format == Format::Json {
            self.write(&value.to_string());
        }
    }

    /// An engine event.
    pub fn event(&self, e: &Event) {
        let kind = match e.type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        self.text(format!(
            "{} {:<16} {}",
            if e.type_ == EventType::Warning {
                "!"
            } else {
                "*"
            },
            e.reason,
            e.message
        ));
        self.json(
            json!({"type": "event", "eventType": kind, "reason": e.reason, "message": e.message}),
        );
    }
}

/// Human byte counts: `512 B`, `3.0 MiB`, `1.25 GiB`.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / K / K)
    } else {
        format!("{:.2} GiB", f / K / K / K)
    }
}

/// Prints builder progress: every phase change, and uploads at most twice a second per layer.
pub struct BuildProgress {
    printer: Printer,
    last: Mutex<HashMap<String, (Phase, Instant)>>,
}

impl BuildProgress {
    /// A sink printing through `printer`.
    pub fn new(printer: Printer) -> Self {
        Self {
            printer,
            last: Mutex::new(HashMap::new()),
        }
    }
}

impl ProgressSink for BuildProgress {
    fn on_progress(&self, p: &Progress) {
        let base = p.layer == "base" || p.layer.starts_with("base:");
        {
            let mut last = self.last.lock().expect("progress lock");
            let now = Instant::now();
            if let Some((phase, at)) = last.get(&p.layer)
                && *phase == p.phase
                && (p.phase != Phase::Uploading || now - *at < Duration::from_millis(500))
            {
                return;
            }
            last.insert(p.layer.clone(), (p.phase, now));
        }
        if p.layer == "image" {
            self.printer
                .text("  image: config, manifest and recipe tag pushed");
            self.printer
                .json(json!({"type": "progress", "layer": "image", "phase": "Done"}));
            return;
        }
        let total = p.bytes_total.map(bytes);
        let what = match (p.phase, base) {
            (Phase::Resolving, true) if p.layer == "base" => "resolving the base image".into(),
            (Phase::Resolving, true) => return,
            (Phase::Resolving, false) => "looking up (per-model index, source)".into(),
            (Phase::Uploading, _) => format!(
                "streaming {} / {} into the registry",
                bytes(p.bytes_done),
                total.as_deref().unwrap_or("?")
            ),
            (Phase::Reused, _) => format!(
                "reused, already in the registry ({}, 0 bytes moved)",
                total.unwrap_or_else(|| bytes(p.bytes_done))
            ),
            (Phase::Done, _) => format!("pushed ({})", bytes(p.bytes_done)),
        };
        let layer = if base && p.layer != "base" {
            format!("base layer {}", &p.layer[5..p.layer.len().min(5 + 19)])
        } else if base {
            "base".to_string()
        } else {
            format!("layer {}", p.layer)
        };
        self.printer.text(format!("  {layer}: {what}"));
        self.printer.json(json!({
            "type": "progress",
            "layer": p.layer,
            "phase": format!("{:?}", p.phase),
            "bytesDone": p.bytes_done,
            "bytesTotal": p.bytes_total,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024 / 4), "1.25 GiB");
    }
}
