//! Paying for what serves: who sets the replica count (the spec, a schedule or SaladCloud's
//! queue autoscaler), and queue mode (jobs through a SaladCloud job queue instead of, or beside,
//! the gateway).
//!
//! Precedence of the replica count, one owner at a time:
//! 1. `spec.queue.autoscaler`: SaladCloud's queue autoscaler sets replicas between its bounds;
//!    `spec.replicas` (and `kubectl scale`) is not applied, and status says so.
//! 2. `spec.scaling.schedule`: each action sets replicas when its cron fires (UTC). A change of
//!    `spec.replicas` (`kubectl scale`) is applied once, at once, and holds until the next action
//!    fires; the operator does not undo what the schedule set.
//! 3. Otherwise `spec.replicas`, and drift is corrected.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most scheduled actions SaladCloud keeps for a group (`scaling-actions`, maxItems).
pub const MAX_SCHEDULED_ACTIONS: usize = 100;

/// Scheduled scaling.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// Replica counts set on a schedule by SaladCloud (its scheduled scaling). Each entry sets
    /// the replicas when its cron expression fires, in UTC (SaladCloud's schedule has no time
    /// zone). Up to 100 entries. Cannot be combined with queue.autoscaler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub schedule: Vec<ScheduledReplicas>,
}

/// One scheduled scaling action.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledReplicas {
    /// Five-field cron expression (minute hour day-of-month month day-of-week), UTC, for
    /// example `0 8 * * 1-5` for 08:00 on weekdays.
    #[schemars(regex(pattern = r"^([0-9A-Za-z*/,-]+)([\t ]+[0-9A-Za-z*/,-]+){4}$"))]
    pub cron: String,
    /// Replicas from then on (0-500).
    #[schemars(range(min = 0, max = 500))]
    pub replicas: i32,
}

/// Queue mode: a SaladCloud job queue feeds the server. The operator creates the queue (named
/// after the resource), connects the container group to it at creation (SaladCloud cannot add
/// or change a queue connection later: changing these settings rolls out a new group), adds
/// SaladCloud's job queue worker to the image and runs it beside the server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("!(has(self.enabled) && self.enabled) || (has(self.worker) && has(self.worker.sha256))").message("queue.worker.sha256 is required: the sha256 of the worker archive (by default https://github.com/SaladTechnologies/salad-cloud-job-queue-worker/releases/download/v0.7.0/salad-http-job-queue-worker_x86_64.tar.gz: curl -fsSL URL | sha256sum, checked against the .sha256 file on the release page)"))]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// Connect the group to a job queue.
    #[serde(default)]
    pub enabled: bool,
    /// HTTP path the worker posts each job's input to. Defaults to the server kind's generation
    /// endpoint: `/sdapi/v1/txt2img` for SDNext and Automatic1111, `/prompt` for ComfyUI;
    /// required for Custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// Port the worker posts to. Defaults to server.port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Scale the group by queue length (SaladCloud's queue autoscaler), down to 0 instances
    /// when the queue is empty. While set, it owns the replica count: spec.replicas is not
    /// applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<QueueAutoscalerSpec>,
    /// Where the job queue worker binary comes from: a pinned release and its sha256, which a
    /// mirror may replace.
    #[serde(default)]
    pub worker: QueueWorkerSpec,
}

/// SaladCloud's queue autoscaler, within SaladCloud's limits.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("queue.autoscaler.minReplicas must not be above maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct QueueAutoscalerSpec {
    /// Fewest instances (0-100); 0 stops every GPU while the queue is empty.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub min_replicas: i32,
    /// Most instances (1-500).
    #[schemars(range(min = 1, max = 500))]
    pub max_replicas: i32,
    /// Jobs waiting per instance the autoscaler aims for (1-100, default 1).
    #[serde(default = "default_queue_length")]
    #[schemars(range(min = 1, max = 100))]
    pub desired_queue_length: i32,
    /// How often SaladCloud checks the queue, in seconds (15-1800, default 30).
    #[serde(default = "default_polling")]
    #[schemars(range(min = 15, max = 1800))]
    pub polling_period_seconds: i32,
    /// Most instances added per minute (1-100); unset leaves SaladCloud's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_upscale_per_minute: Option<i32>,
    /// Most instances removed per minute (1-100); unset leaves SaladCloud's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_downscale_per_minute: Option<i32>,
}

fn default_queue_length() -> i32 {
    1
}
fn default_polling() -> i32 {
    30
}

/// The job queue worker binary added to the image (SaladCloud's `salad-http-job-queue-worker`,
/// installed at `/usr/local/bin/salad-http-job-queue-worker`), downloaded and verified at build
/// time like a baked model.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("!has(self.url) || has(self.sha256)").message("queue.worker: a url needs its sha256"))]
#[serde(rename_all = "camelCase")]
pub struct QueueWorkerSpec {
    /// HTTPS URL of the worker release archive (a `.tar.gz` with `salad-http-job-queue-worker`
    /// at its top). Defaults to SaladCloud's v0.7.0 release,
    /// `https://github.com/SaladTechnologies/salad-cloud-job-queue-worker/releases/download/v0.7.0/salad-http-job-queue-worker_x86_64.tar.gz`;
    /// set it (with sha256) to use a mirror. Never a moving `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub url: Option<String>,
    /// Hex sha256 of that archive (the default's or the mirror's); the build refuses a download
    /// that does not match. Required while the operator pins no checksum for the default
    /// release: compute it with `curl -fsSL URL | sha256sum` and compare it with the `.sha256`
    /// file on the release page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// Who sets the container group's replica count.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplicasOwner {
    // spec.replicas, drift corrected.
    #[default]
    Spec,
    // spec.scaling.schedule: SaladCloud's scheduled scaling.
    Schedule,
    // spec.queue.autoscaler: SaladCloud's queue autoscaler.
    QueueAutoscaler,
}

impl ReplicasOwner {
    /// The owner a spec names.
    pub fn of(spec: &crate::StableDiffusionDeploymentSpec) -> Self {
        if spec.queue.enabled && spec.queue.autoscaler.is_some() {
            Self::QueueAutoscaler
        } else if !spec.scaling.schedule.is_empty() {
            Self::Schedule
        } else {
            Self::Spec
        }
    }
}

/// The replica count and its owner.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// Who sets the replica count: Spec, Schedule or QueueAutoscaler.
    pub owner: ReplicasOwner,
    /// The replica count SaladCloud holds for the serving group now (what the owner last set).
    #[serde(default)]
    pub replicas: i32,
    /// The spec.replicas the operator last applied under a schedule: a new value there (for
    /// example from `kubectl scale`) is applied once and holds until the next scheduled action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_replicas_applied: Option<i32>,
    /// One line on who owns replicas and what spec.replicas does meanwhile.
    #[serde(default)]
    pub message: String,
}

/// The job queue.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// SaladCloud queue name (in the resource's organization and project).
    pub name: String,
    /// Jobs waiting, as SaladCloud last reported (rounded to steps so status is not rewritten
    /// for every job: exact below 10, then to 10s, then 100s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<i32>,
    /// Path and port the worker posts jobs to.
    #[serde(default)]
    pub job_path: String,
    /// How to submit a job.
    #[serde(default)]
    pub submit: String,
}

/// What is wrong with a five-field cron expression, as SaladCloud's scheduler reads it: minute
/// (0-59), hour (0-23), day of month (1-31), month (1-12 or JAN-DEC), day of week (0-7 or
/// SUN-SAT); each field `*`, a value, a range `a-b`, a list `a,b` and an optional `/step`.
pub fn cron_problem(expr: &str) -> Option<String> {
    const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
        ("minute", 0, 59, &[]),
        ("hour", 0, 23, &[]),
        ("day of month", 1, 31, &[]),
        (
            "month",
            1,
            12,
            &[
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ],
        ),
        (
            "day of week",
            0,
            7,
            &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        ),
    ];
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if parts.len() != 5 {
        return Some(format!(
            "`{expr}` has {} fields; a schedule has five: minute hour day-of-month month day-of-week",
            parts.len()
        ));
    }
    for (part, (name, lo, hi, names)) in parts.iter().zip(FIELDS) {
        let value = |v: &str| -> Option<u32> {
            let first = if names.is_empty() { None } else { Some(lo) };
            v.parse().ok().or_else(|| {
                names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(v))
                    .map(|i| i as u32 + first.unwrap_or(0))
            })
        };
        for item in part.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(s) = step
                && !s.parse::<u32>().is_ok_and(|s| (1..=hi).contains(&s))
            {
                return Some(format!(
                    "`{expr}`: step `/{s}` in the {name} field must be 1-{hi}"
                ));
            }
            if range == "*" {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            match (value(a), value(b)) {
                (Some(a), Some(b)) if a >= lo && b <= hi && a <= b => {}
                _ => {
                    return Some(format!(
                        "`{expr}`: `{item}` is not a {name} ({lo}-{hi}{})",
                        if names.is_empty() { "" } else { " or its name" }
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_as_saladcloud_reads_them() {
        for ok in [
            "0 8 * * 1-5",
            "*/15 * * * *",
            "0 0 1 JAN *",
            "30 22 * * SUN,sat",
            "0 9-17/2 * * 7",
        ] {
            assert_eq!(cron_problem(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("0 8 * *", "five"),
            ("60 * * * *", "minute"),
            ("0 24 * * *", "hour"),
            ("0 0 0 * *", "day of month"),
            ("0 0 * 13 *", "month"),
            ("0 0 * * 8", "day of week"),
            ("0 0 * * MON-FOO", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "minute"),
        ] {
            let problem = cron_problem(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(problem.contains(says), "{bad}: {problem}");
        }
    }

    #[test]
    fn one_owner_of_replicas() {
        let mut spec: crate::StableDiffusionDeploymentSpec =
            serde_json::from_value(serde_json::json!({
                "saladcloud": {"organization": "o", "project": "p",
                  "apiKeySecretRef": {"name": "k", "key": "k"}},
                "image": {"repository": "r/x"},
                "resources": {"cpu": 4, "memory": "12Gi", "gpuClasses": ["RTX 3060 Ti"]}
            }))
            .unwrap();
        assert_eq!(ReplicasOwner::of(&spec), ReplicasOwner::Spec);
        spec.scaling.schedule.push(ScheduledReplicas {
            cron: "0 8 * * *".into(),
            replicas: 3,
        });
        assert_eq!(ReplicasOwner::of(&spec), ReplicasOwner::Schedule);
        spec.queue.autoscaler = Some(QueueAutoscalerSpec {
            min_replicas: 0,
            max_replicas: 5,
            desired_queue_length: 1,
            polling_period_seconds: 30,
            max_upscale_per_minute: None,
            max_downscale_per_minute: None,
        });
        assert_eq!(
            ReplicasOwner::of(&spec),
            ReplicasOwner::Schedule,
            "an autoscaler without queue mode owns nothing"
        );
        spec.queue.enabled = true;
        assert_eq!(ReplicasOwner::of(&spec), ReplicasOwner::QueueAutoscaler);
    }
}
