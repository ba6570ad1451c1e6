//! Logs on stderr: the filter from `RUST_LOG` (the ecosystem's convention; `SALAD_SD_LOG` is an
//! alias that wins when both are set), `info` by default; text (coloured only on a terminal) or
//! JSON lines for log pipelines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter directives: `SALAD_SD_LOG`, else `RUST_LOG`, else `info` (empty values count as
/// unset).
pub fn filter_directives(salad_sd_log: Option<&str>, rust_log: Option<&str>) -> String {
    [salad_sd_log, rust_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty())
        .unwrap_or("info")
        .to_string()
}

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let directives = filter_directives(
        std::env::var("SALAD_SD_LOG").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let (filter, bad) = match EnvFilter::try_new(&directives) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    if let Some(e) = bad {
        tracing::warn!("ignoring the log filter `{directives}` ({e}); logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_comes_from_the_environment_or_defaults_to_info() {
        let cases = [
            (None, None, "info", "nothing set: info, not only errors"),
            (None, Some("debug"), "debug", "RUST_LOG is honoured"),
            (
                Some("warn"),
                Some("debug"),
                "warn",
                "SALAD_SD_LOG is an alias that wins",
            ),
            (
                Some(""),
                Some("debug"),
                "debug",
                "an empty alias counts as unset",
            ),
            (Some("  "), None, "info", "blank everywhere: info"),
        ];
        for (salad, rust, want, reason) in cases {
            assert_eq!(filter_directives(salad, rust), want, "{reason}");
        }
    }
}
