//! `salad-sd logs NAME` (also `kubectl sdd logs NAME` through the `kubectl-sdd` name): the
//! container logs of a resource's container group, from SaladCloud's organization log query
//! (`POST /organizations/{org}/log-entries`), for a resource in the cluster or in a file.
//!
//! SaladCloud keeps logs 90 days and answers at most one page per query (the spec's page size
//! is at most 100) without streaming, so `--since` and `--tail` page through by time and
//! `--follow` polls every few seconds: well inside the 240 requests a minute of an API key,
//! which the client's rate limiter enforces anyway.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use saladcloud::model::{LOG_QUERY_MAX_PAGE_SIZE, LogEntry, LogEntryQuery, SortOrder, log_labels};
use saladcloud::{ApiKey, Client, ClientConfig};

use crate::exit;

/// `salad-sd logs` flags (kubectl's conventions: `-f` follows, `--filename` names a file).
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The StableDiffusionDeployment in the cluster (current kubeconfig context).
    pub name: Option<String>,
    /// Read the resource from this YAML file instead of the cluster (credentials as for apply).
    #[arg(long = "filename", visible_alias = "file", conflicts_with = "name")]
    pub filename: Option<PathBuf>,
    /// Namespace of NAME (default: the context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Keep printing new lines (polls every 5 s) until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only lines newer than this (`90s`, `20m`, `1h`; default 1h).
    #[arg(long, value_parser = crate::drive::parse_duration)]
    pub since: Option<Duration>,
    /// Only this instance (its id).
    #[arg(long)]
    pub instance: Option<String>,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// SaladCloud API base URL (the simulator's for the demo and tests).
    #[arg(long, env = "SALAD_API_URL", default_value = saladcloud::DEFAULT_BASE_URL)]
    pub salad_api_url: String,
    /// Directory of Secrets (`<dir>/<secret>/<key>`), for `--filename`.
    #[arg(long, env = "SALAD_SD_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Poll interval of `--follow`.
    #[arg(long, default_value = "5s", value_parser = crate::drive::parse_duration, hide = true)]
    pub interval: Duration,
}

/// The query for a group's lines (and one instance's). The label names are SaladCloud's
/// documented ones ([`log_labels`], from `SaladTechnologies/salad-cloud-docs`,
/// `container-engine/reference/log-queries.mdx`), whose first example is exactly this query.
pub fn query(project: &str, group: &str, instance: Option<&str>) -> String {
    let mut q = format!(
        r#"resource.type = "{}" and resource.labels.{} = "{project}" and resource.labels.{} = "{group}""#,
        log_labels::TYPE_CONTAINER,
        log_labels::PROJECT_NAME,
        log_labels::CONTAINER_GROUP_NAME,
    );
    if let Some(i) = instance {
        q.push_str(&format!(
            r#" and resource.labels.{} = "{i}""#,
            log_labels::INSTANCE_ID
        ));
    }
    q
}

/// One line as printed: time, instance (short), text.
pub fn format_line(e: &LogEntry) -> String {
    let time = e.time.map(|t| t.to_string()).unwrap_or_default();
    let instance = e
        .resource
        .labels
        .get(log_labels::INSTANCE_ID)
        .map(|i| i.chars().take(8).collect::<String>())
        .unwrap_or_default();
    let text = e
        .text_log
        .clone()
        .or_else(|| e.json_log.as_ref().map(|j| j.to_string()))
        .unwrap_or_default();
    format!("{time} {instance} {text}")
}

fn key_of(e: &LogEntry) -> (Option<Timestamp>, String, Option<String>) {
    (
        e.time,
        e.resource
            .labels
            .get(log_labels::INSTANCE_ID)
            .cloned()
            .unwrap_or_default(),
        e.text_log.clone(),
    )
}

/// Where the resource's logs are.
struct Target {
    organization: String,
    project: String,
    group: String,
    key: ApiKey,
}

async fn target(args: &LogsArgs) -> anyhow::Result<Target> {
    let crate::jobs::Located { sdd, key } = crate::jobs::locate(
        args.name.as_deref(),
        args.filename.as_deref(),
        args.namespace.as_deref(),
        args.secrets_dir.as_deref(),
    )
    .await?;
    let key = key.expose().to_string();
    let group = match sdd.status.as_ref().and_then(|s| s.container_group.as_ref()) {
        Some(g) => g.name.clone(),
        None => {
            // A file has no status: the newest group the engine named for it.
            let prefix = salad_sd_api::names::group_name_prefix(
                sdd.metadata.name.as_deref().unwrap_or_default(),
                sdd.metadata.uid.as_deref().unwrap_or_default(),
            );
            let client = client_for(&args.salad_api_url, ApiKey::new(key.clone()))?;
            let mut names: Vec<String> = client
                .list_container_groups(
                    &sdd.spec.saladcloud.organization,
                    &sdd.spec.saladcloud.project,
                )
                .await?
                .into_iter()
                .map(|g| g.name)
                .filter(|n| {
                    n.starts_with(&prefix)
                        || sdd.spec.saladcloud.container_group_name.as_deref() == Some(n)
                })
                .collect();
            names.sort();
            names.pop().with_context(|| {
                format!(
                    "`{}` has no container group yet",
                    sdd.metadata.name.clone().unwrap_or_default()
                )
            })?
        }
    };
    Ok(Target {
        organization: sdd.spec.saladcloud.organization.clone(),
        project: sdd.spec.saladcloud.project.clone(),
        group,
        key: ApiKey::new(key),
    })
}

fn client_for(url: &str, key: ApiKey) -> anyhow::Result<Client> {
    Ok(Client::new(
        ClientConfig::new(key).with_base_url(url.to_string()),
    )?)
}

/// Runs `salad-sd logs`.
pub async fn run(args: LogsArgs) -> u8 {
    match logs(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::EXIT_ERROR
        }
    }
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let t = target(&args).await?;
    let client = client_for(&args.salad_api_url, t.key.clone())?;
    let q = query(&t.project, &t.group, args.instance.as_deref());
    let now = Timestamp::now();
    let since = args.since.unwrap_or(Duration::from_secs(3600));
    let start = now - SignedDuration::try_from(since).unwrap_or(SignedDuration::from_hours(1));
    let page = |start: Timestamp, end: Timestamp, order: SortOrder, size: u32| LogEntryQuery {
        start_time: start,
        end_time: end,
        query: q.clone(),
        page_size: Some(size.clamp(1, LOG_QUERY_MAX_PAGE_SIZE)),
        sort_order: Some(order),
    };
    let fetch = |query: LogEntryQuery| {
        let client = &client;
        let org = &t.organization;
        async move {
            client.query_log_entries(org, &query).await.map_err(|e| {
                anyhow::anyhow!("SaladCloud refused the log query `{}`: {e}", query.query)
            })
        }
    };
    let mut seen: HashSet<(Option<Timestamp>, String, Option<String>)> = HashSet::new();
    let mut last = start;
    let mut lines: Vec<LogEntry> = Vec::new();
    if let Some(n) = args.tail {
        // Newest first, pages back in time until N lines (or the window) are read.
        let mut end = now;
        while lines.len() < n {
            let got = fetch(page(start, end, SortOrder::Desc, (n - lines.len()) as u32)).await?;
            let Some(oldest) = got.items.iter().filter_map(|e| e.time).min() else {
                break;
            };
            let full =
                got.items.len() as u32 >= LOG_QUERY_MAX_PAGE_SIZE.min((n - lines.len()) as u32);
            lines.extend(got.items.into_iter().filter(|e| seen.insert(key_of(e))));
            if !full || oldest <= start {
                break;
            }
            end = oldest;
        }
        lines.sort_by_key(|e| e.time);
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    } else {
        // Oldest first, page by page.
        let mut from = start;
        loop {
            let got = fetch(page(from, now, SortOrder::Asc, LOG_QUERY_MAX_PAGE_SIZE)).await?;
            let n = got.items.len() as u32;
            let newest = got.items.iter().filter_map(|e| e.time).max();
            lines.extend(got.items.into_iter().filter(|e| seen.insert(key_of(e))));
            match newest {
                Some(t) if n >= LOG_QUERY_MAX_PAGE_SIZE && t > from => from = t,
                _ => break,
            }
        }
    }
    for e in &lines {
        println!("{}", format_line(e));
        if let Some(t) = e.time {
            last = last.max(t);
        }
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(args.interval).await;
        let got = fetch(page(
            last,
            Timestamp::now(),
            SortOrder::Asc,
            LOG_QUERY_MAX_PAGE_SIZE,
        ))
        .await?;
        for e in got.items {
            if seen.insert(key_of(&e)) {
                println!("{}", format_line(&e));
                if let Some(t) = e.time {
                    last = last.max(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_group_and_the_instance() {
        // SaladCloud's own example ("Find Logs From All Containers in a Specific Container
        // Group", log-queries.mdx), on one line.
        assert_eq!(
            query("default", "my-cg", None),
            r#"resource.type = "container" and resource.labels.project_name = "default" and resource.labels.container_group_name = "my-cg""#
        );
        assert!(
            query("p", "g", Some("i-1")).ends_with(r#" and resource.labels.instance_id = "i-1""#)
        );
    }

    #[test]
    fn a_line_shows_its_instance_from_the_documented_label() {
        let e: LogEntry = serde_json::from_value(serde_json::json!({
            "time": "2026-01-01T00:00:00Z",
            "receive_time": "2026-01-01T00:00:01Z",
            "severity": "info",
            "text_log": "hello",
            "resource": {"type": "container", "labels": {
                "project_name": "p",
                "container_group_name": "g",
                "container_group_version": "3",
                "instance_id": "0123456789abcdef",
                "machine_id": "m",
            }},
        }))
        .unwrap();
        assert_eq!(format_line(&e), "2026-01-01T00:00:00Z 01234567 hello");
        assert_eq!(key_of(&e).1, "0123456789abcdef");
    }
}
