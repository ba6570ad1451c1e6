//! The fleet after Ready, pure: what status says of the instances (counts, a short list, the
//! download estimate), which slow nodes to reallocate (within the organization's per-minute
//! quota and a share of the group at once), and which SaladCloud system events become
//! Kubernetes Events (each once, past a high-water mark kept in status).
//!
//! Observe gathers [`FleetFacts`] (the instances come with the groups), [`decide`] decides, the
//! engine reallocates what [`FleetDecision::reallocate`] lists, and the report writes
//! [`FleetDecision::status`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use salad_sd_api::{FleetCounts, FleetSpec, FleetStatus, GroupFleetStatus, InstanceStatus};
use saladcloud::model::{ContainerGroupInstance, InstanceState, SystemLog};

use crate::diff::ready_instances;
use crate::plan::ObservedGroup;
use crate::reason::Reason;
use crate::report::Event;

/// SaladCloud's average node: about 2 minutes per GB in Downloading.
pub const AVERAGE_SECONDS_PER_GB: f64 = 120.0;
/// Instances listed in status per group.
pub const LISTED_INSTANCES: usize = 10;
/// System events published per reconcile (the rest follow on the next poll).
pub const EVENTS_PER_RECONCILE: usize = 20;

/// What observe knows of the fleet besides the groups and their instances.
#[derive(Clone, Debug, Default)]
pub struct FleetFacts {
    /// When the instances were listed (`None`: no slow-node judgement).
    pub observed_at: Option<Timestamp>,
    /// System logs per group name (read where instances were listed).
    pub system_logs: BTreeMap<String, Vec<SystemLog>>,
    /// The organization's `max_container_group_reallocations_per_minute`, when read.
    pub reallocations_per_minute: Option<u32>,
    /// Reallocations this operator asked for (instance id, when), newest last.
    pub recent: Vec<(String, Timestamp)>,
    /// SaladCloud refused a reallocation: not before then, and why.
    pub blocked: Option<(Timestamp, String)>,
}

/// Whether a group's system logs are worth a read in this reconcile. Instances are listed on
/// every progress poll while readiness is in question; the logs are not: reading them on each of
/// those polls doubled a group's cost in the key's 240 requests/minute and, with a few resources
/// rolling out on one key, exhausted it (`make bench-controller`'s spec change then waited out a
/// 429). So the logs are read
/// - the first time this process lists the group's instances (a new group, or after a restart:
///   the events since the high-water mark in status are caught up),
/// - then at most once per `every` (the poll interval) while the instances are listed,
/// - and at once when the listing shows trouble the logs explain: an instance shown in status
///   before that is gone, on another node, or back from running (interrupted, reallocated).
///
/// Nothing is published twice or lost by reading less often: events past the mark in status are
/// published at the next read.
pub fn system_logs_due(
    group: &str,
    instances: &[ContainerGroupInstance],
    prev: Option<&FleetStatus>,
    last_read: Option<Timestamp>,
    now: Timestamp,
    every: std::time::Duration,
) -> bool {
    let Some(last) = last_read else {
        return true;
    };
    if now.duration_since(last).unsigned_abs() >= every {
        return true;
    }
    let Some(shown) = prev.and_then(|p| p.groups.iter().find(|g| g.name == group)) else {
        return false;
    };
    shown
        .instances
        .iter()
        .any(|was| match instances.iter().find(|i| i.id == was.id) {
            None => true,
            Some(now) => {
                now.machine_id != was.machine_id
                    || (was.state == state_name(InstanceState::Running)
                        && matches!(
                            now.state,
                            InstanceState::Allocating
                                | InstanceState::Downloading
                                | InstanceState::Creating
                        ))
            }
        })
}

/// One instance to move to another node.
#[derive(Clone, Debug, PartialEq)]
pub struct Reallocation {
    /// Its group.
    pub group: String,
    /// The instance id.
    pub instance: String,
    /// Why, for the Event.
    pub why: String,
}

/// What [`decide`] decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetDecision {
    /// `status.fleet`.
    pub status: Option<FleetStatus>,
    /// Instances to reallocate now.
    pub reallocate: Vec<Reallocation>,
    /// System events as Kubernetes Events, oldest first.
    pub events: Vec<Event>,
}

/// The groups the fleet shows.
pub struct Groups<'a> {
    /// The group that serves (or will serve) the spec.
    pub target: Option<&'a ObservedGroup>,
    /// The group still serving while the target rolls out.
    pub previous: Option<&'a ObservedGroup>,
    /// Ready instances the target needs.
    pub min_ready: u32,
}

/// Decides the fleet part of a reconcile.
pub fn decide(
    spec: &FleetSpec,
    prev: Option<&FleetStatus>,
    groups: &Groups<'_>,
    layer_bytes: Option<u64>,
    facts: &FleetFacts,
) -> FleetDecision {
    let Some(target) = groups.target else {
        return FleetDecision::default();
    };
    let image_bytes = target
        .group
        .container
        .size
        .or(layer_bytes)
        .filter(|b| *b > 0);
    let rolling = groups.previous.is_some();
    let mut shown = Vec::new();
    if let Some(p) = groups.previous {
        shown.push(group_status(p, "serving", prev));
    }
    shown.push(group_status(
        target,
        if rolling { "rollingOut" } else { "serving" },
        prev,
    ));
    let counts = &shown.last().expect("the target is shown").counts;
    let replicas = target.group.replicas;
    let summary = summary(counts, replicas, target.instances.as_deref());
    let needed = groups.min_ready.min(replicas).max(1);
    let estimate = (counts.ready < needed as i32)
        .then(|| {
            estimate_minutes(
                target.instances.as_deref(),
                counts,
                needed,
                image_bytes,
                facts.observed_at,
            )
        })
        .flatten();

    let (reallocate, reallocation) = slow_nodes(spec, groups, image_bytes, facts);
    let (events, seen) = system_events(prev, &facts.system_logs, &facts.recent);
    FleetDecision {
        status: Some(FleetStatus {
            summary,
            image_bytes: image_bytes.map(|b| b as i64),
            estimated_minutes_to_ready: estimate,
            groups: shown,
            reallocation,
            events_seen_until: seen,
        }),
        reallocate,
        events,
    }
}

fn state_name(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Allocating => "allocating",
        InstanceState::Downloading => "downloading",
        InstanceState::Creating => "creating",
        InstanceState::Running => "running",
        InstanceState::Stopping => "stopping",
        _ => "unknown",
    }
}

/// Progress in steps of 10 %, so that a download costs at most ten status writes.
pub fn bucket(progress: f64) -> i32 {
    ((progress.clamp(0.0, 100.0) / 10.0).floor() as i32) * 10
}

fn group_status(g: &ObservedGroup, role: &str, prev: Option<&FleetStatus>) -> GroupFleetStatus {
    let group = &g.group;
    let Some(list) = g.instances.as_deref() else {
        // Not listed this time (steady state): the counts SaladCloud gives, the list as last seen.
        let c = group.current_state.instance_status_counts;
        let kept = prev
            .and_then(|p| p.groups.iter().find(|s| s.name == group.name))
            .cloned();
        return GroupFleetStatus {
            name: group.name.clone(),
            role: role.into(),
            counts: FleetCounts {
                allocating: c.allocating_count as i32,
                downloading: 0,
                creating: c.creating_count as i32,
                running: c.running_count as i32,
                stopping: c.stopping_count as i32,
                ready: ready_instances(group, None) as i32,
            },
            instances: kept
                .as_ref()
                .map(|k| k.instances.clone())
                .unwrap_or_default(),
            more: kept.map_or(0, |k| k.more),
        };
    };
    let mut counts = FleetCounts {
        ready: ready_instances(group, Some(list)) as i32,
        ..FleetCounts::default()
    };
    for i in list {
        match i.state {
            InstanceState::Allocating => counts.allocating += 1,
            InstanceState::Downloading => counts.downloading += 1,
            InstanceState::Creating => counts.creating += 1,
            InstanceState::Running => counts.running += 1,
            InstanceState::Stopping => counts.stopping += 1,
            _ => {}
        }
    }
    let mut sorted: Vec<&ContainerGroupInstance> = list.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let instances = sorted
        .iter()
        .take(LISTED_INSTANCES)
        .map(|i| InstanceStatus {
            id: i.id.clone(),
            machine_id: i.machine_id.clone(),
            state: state_name(i.state).into(),
            ready: i.state == InstanceState::Running && i.ready.unwrap_or(true),
            version: i.version as i32,
            download_percent: (i.state == InstanceState::Downloading)
                .then(|| bucket(i.pulling_progress.unwrap_or(0.0))),
            since: i.update_time.map(|t| t.to_string()),
        })
        .collect();
    GroupFleetStatus {
        name: group.name.clone(),
        role: role.into(),
        counts,
        instances,
        more: list.len().saturating_sub(LISTED_INSTANCES) as i32,
    }
}

/// `2/3 ready, 1 downloading 40%, 1 allocating`.
pub fn summary(c: &FleetCounts, replicas: u32, list: Option<&[ContainerGroupInstance]>) -> String {
    let mut s = format!("{}/{replicas} ready", c.ready);
    if c.downloading > 0 {
        let progress: Vec<f64> = list
            .unwrap_or_default()
            .iter()
            .filter(|i| i.state == InstanceState::Downloading)
            .map(|i| i.pulling_progress.unwrap_or(0.0))
            .collect();
        let mean = progress.iter().sum::<f64>() / progress.len().max(1) as f64;
        s.push_str(&format!(
            ", {} downloading {}%",
            c.downloading,
            bucket(mean)
        ));
    }
    for (n, what) in [(c.allocating, "allocating"), (c.creating, "creating")] {
        if n > 0 {
            s.push_str(&format!(", {n} {what}"));
        }
    }
    s
}

fn seconds_since(t: Option<Timestamp>, now: Timestamp) -> Option<f64> {
    let t = t?;
    let d = now.duration_since(t).as_secs_f64();
    (d >= 0.0).then_some(d)
}

/// Minutes, rounded up, in steps of 5 above 10.
pub fn round_minutes(seconds: f64) -> i32 {
    let m = (seconds / 60.0).ceil().max(1.0) as i32;
    if m > 10 { (m + 4) / 5 * 5 } else { m }
}

/// Time until `needed` instances are ready: instances already past the download count first;
/// then downloading ones by their observed rate; then the rest at the documented rate.
fn estimate_minutes(
    list: Option<&[ContainerGroupInstance]>,
    counts: &FleetCounts,
    needed: u32,
    image_bytes: Option<u64>,
    now: Option<Timestamp>,
) -> Option<i32> {
    let documented = image_bytes.map(|b| b as f64 / 1e9 * AVERAGE_SECONDS_PER_GB)?;
    let past_download = (counts.creating + counts.running) as u32;
    if past_download >= needed {
        return Some(1);
    }
    let mut remaining: Vec<f64> = Vec::new();
    if let (Some(list), Some(now)) = (list, now) {
        for i in list
            .iter()
            .filter(|i| i.state == InstanceState::Downloading)
        {
            let p = i.pulling_progress.unwrap_or(0.0);
            let left = match seconds_since(i.update_time, now) {
                Some(elapsed) if p >= 1.0 && elapsed > 0.0 => elapsed / p * (100.0 - p),
                _ => documented,
            };
            remaining.push(left);
        }
    }
    remaining.sort_by(f64::total_cmp);
    let k = (needed - past_download) as usize;
    let secs = remaining.get(k - 1).copied().unwrap_or(documented);
    Some(round_minutes(secs))
}

/// Slow nodes to reallocate, and what status says about it.
fn slow_nodes(
    spec: &FleetSpec,
    groups: &Groups<'_>,
    image_bytes: Option<u64>,
    facts: &FleetFacts,
) -> (Vec<Reallocation>, Option<String>) {
    let rule = &spec.slow_node_reallocation;
    let (Some(now), Some(bytes)) = (facts.observed_at, image_bytes) else {
        return (Vec::new(), None);
    };
    let gb = bytes as f64 / 1e9;
    let allowed_total = rule.seconds_per_gb.max(1) as f64 * gb;
    let mut slow: Vec<(f64, Reallocation)> = Vec::new();
    let mut in_flight = 0u32;
    let mut replicas = 0u32;
    for g in groups.previous.into_iter().chain(groups.target) {
        replicas = replicas.max(g.group.replicas);
        for i in g.instances.as_deref().unwrap_or_default() {
            let ours = facts.recent.iter().any(|(id, _)| id == &i.id);
            if ours
                && matches!(
                    i.state,
                    InstanceState::Allocating | InstanceState::Downloading
                )
            {
                in_flight += 1;
            }
            if i.state != InstanceState::Downloading {
                continue;
            }
            let Some(elapsed) = seconds_since(i.update_time, now) else {
                continue;
            };
            if elapsed < rule.grace_period_seconds.max(0) as f64 {
                continue;
            }
            let p = i.pulling_progress.unwrap_or(0.0);
            let projected = if p > 0.0 {
                elapsed / (p / 100.0)
            } else {
                f64::INFINITY
            };
            // Nearly done: finishing here is quicker than a fresh average node (half the
            // threshold, SaladCloud's 2 min/GB by default) starting over.
            let remaining = projected - elapsed;
            if projected <= allowed_total || remaining <= allowed_total / 2.0 {
                continue;
            }
            let per_gb = projected / gb;
            let speed = if per_gb.is_finite() {
                format!("about {:.0} s/GB", per_gb)
            } else {
                "no progress".to_string()
            };
            slow.push((
                projected,
                Reallocation {
                    group: g.group.name.clone(),
                    instance: i.id.clone(),
                    why: format!(
                        "instance {} on node {} downloads the {:.1} GB image at {speed} ({:.0}% after {:.0} min), slower than the threshold of {} s/GB",
                        i.id,
                        i.machine_id,
                        gb,
                        p,
                        elapsed / 60.0,
                        rule.seconds_per_gb
                    ),
                },
            ));
        }
    }
    if slow.is_empty() {
        return (Vec::new(), None);
    }
    // The slowest first; ties by id, so the choice does not depend on list order.
    slow.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.instance.cmp(&b.1.instance))
    });
    let n = slow.len();
    if !rule.enabled {
        return (
            Vec::new(),
            Some(format!(
                "{n} slow node(s) downloading; reallocation is off (spec.fleet.slowNodeReallocation.enabled)"
            )),
        );
    }
    if let Some((until, why)) = facts.blocked.as_ref().filter(|(until, _)| *until > now) {
        return (
            Vec::new(),
            Some(format!(
                "{n} slow node(s) wait: SaladCloud refused a reallocation ({why}); next try after {until}"
            )),
        );
    }
    let quota = facts.reallocations_per_minute.unwrap_or(1);
    if quota == 0 {
        return (
            Vec::new(),
            Some(format!(
                "{n} slow node(s) stay: the organization's reallocation quota is 0 per minute (max_container_group_reallocations_per_minute)"
            )),
        );
    }
    let last_minute = facts
        .recent
        .iter()
        .filter(|(_, t)| now.duration_since(*t).as_secs_f64() < 60.0)
        .count() as u32;
    let cap = (replicas * rule.max_percent_at_once.clamp(1, 100) as u32 / 100).max(1);
    let room = cap
        .saturating_sub(in_flight)
        .min(quota.saturating_sub(last_minute)) as usize;
    let chosen: Vec<Reallocation> = slow.into_iter().take(room).map(|(_, r)| r).collect();
    let message = if chosen.is_empty() {
        if in_flight >= cap {
            format!(
                "{n} slow node(s) wait: {in_flight} instance(s) are being reallocated (at most {cap} at once)"
            )
        } else {
            format!(
                "{n} slow node(s) wait: {last_minute} reallocation(s) in the last minute, quota {quota} per minute"
            )
        }
    } else {
        format!(
            "reallocating {} of {n} slow node(s) (at most {cap} at once, quota {quota} per minute)",
            chosen.len()
        )
    };
    (chosen, Some(message))
}

/// The Kubernetes Event of a SaladCloud system event, by its documented name
/// ([`saladcloud::model::system_events`], from SaladCloud's `system-events.mdx`); `None` for
/// what status already shows (allocated, downloading, creating, starting, the startup probe
/// passing), so a rollout does not cost a write per instance and phase for what the instance
/// list says; `None` for container group events (the operator's own changes, which it reports
/// itself) and for reallocations this operator asked for (`ours`: it published
/// `SlowNodeReallocated` already). A name the document does not list is published as it is.
pub fn event_for(log: &SystemLog, group: &str, ours: bool) -> Option<Event> {
    use saladcloud::model::system_events as se;
    let name = log.event_name.trim();
    let instance = log.instance_id.as_deref().unwrap_or("?");
    let machine = log.machine_id.as_deref().unwrap_or("?");
    let message = format!("`{group}` instance {instance} on node {machine}: {name}");
    // As documented, but without regard to case: nothing here hangs on a capital letter.
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    let starts = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let (warning, reason) = if [
        se::ALLOCATED,
        se::DOWNLOADING,
        se::CREATING,
        se::STARTING,
        se::STARTUP_PROBE_PASSED,
    ]
    .into_iter()
    .any(is)
        || starts(se::GROUP_PREFIX)
    {
        return None;
    } else if is(se::RUNNING) || is(se::READY) {
        (false, Reason::InstanceStarted)
    } else if is(se::NOT_READY) {
        (true, Reason::InstanceNotReady)
    } else if is(se::LIVENESS_PROBE_FAILED) || is(se::STARTUP_PROBE_FAILED) {
        (true, Reason::InstanceProbeFailed)
    } else if starts(se::INTERRUPTED_PREFIX) {
        (true, Reason::InstanceInterrupted)
    } else if is(se::REALLOCATED_BY_USER) && ours {
        return None;
    } else if starts(se::REALLOCATED_PREFIX) {
        (false, Reason::InstanceReallocated)
    } else if is(se::EXITED_SUCCESSFULLY) {
        (false, Reason::InstanceExited)
    } else if starts(se::EXITED_PREFIX) {
        (true, Reason::InstanceExited)
    } else {
        (false, Reason::InstanceEvent)
    };
    Some(if warning {
        Event::warning(reason, message)
    } else {
        Event::normal(reason, message)
    })
}

/// System events newer than the high-water mark, oldest first (at most
/// [`EVENTS_PER_RECONCILE`]), and the new mark.
fn system_events(
    prev: Option<&FleetStatus>,
    logs: &BTreeMap<String, Vec<SystemLog>>,
    recent: &[(String, Timestamp)],
) -> (Vec<Event>, Option<String>) {
    let mark = prev.and_then(|p| p.events_seen_until.clone());
    let since: Option<Timestamp> = mark.as_deref().and_then(|m| m.parse().ok());
    let mut new: Vec<(Timestamp, &str, &SystemLog)> = logs
        .iter()
        .flat_map(|(g, list)| list.iter().map(move |l| (g.as_str(), l)))
        .filter_map(|(g, l)| l.event_time.map(|t| (t, g, l)))
        .filter(|(t, _, _)| since.is_none_or(|s| *t > s))
        .collect();
    new.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.2.instance_id.cmp(&b.2.instance_id))
    });
    new.truncate(EVENTS_PER_RECONCILE);
    let seen = new.last().map(|(t, _, _)| t.to_string()).or(mark);
    let events = new
        .into_iter()
        .filter_map(|(_, g, l)| {
            let ours = l
                .instance_id
                .as_deref()
                .is_some_and(|i| recent.iter().any(|(id, _)| id == i));
            event_for(l, g, ours)
        })
        .collect();
    (events, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_named(name: &str) -> saladcloud::model::ContainerGroup {
        serde_json::from_value(serde_json::json!({
            "id": "5b8c3a1e-0000-4000-8000-000000000001",
            "name": name,
            "container": {"image": "r/i@sha256:0", "resources": {"cpu": 4, "memory": 12288}},
            "current_state": {"status": "deploying"},
            "replicas": 1,
            "version": 1,
        }))
        .expect("a group")
    }

    fn inst(
        id: &str,
        state: InstanceState,
        progress: Option<f64>,
        since: &str,
    ) -> ContainerGroupInstance {
        ContainerGroupInstance {
            id: id.into(),
            machine_id: format!("m-{id}"),
            state,
            update_time: Some(since.parse().unwrap()),
            version: 1,
            ready: Some(state == InstanceState::Running),
            started: Some(state == InstanceState::Running),
            pulling_progress: progress,
            deletion_cost: None,
            cpu_percent: None,
            memory_usage_mb: None,
            memory_usage_percent: None,
        }
    }

    fn observed(replicas: u32, bytes: u64, list: Vec<ContainerGroupInstance>) -> ObservedGroup {
        let mut group = group_named("g-1");
        group.replicas = replicas;
        group.version = 1;
        group.container.size = Some(bytes);
        ObservedGroup {
            group,
            instances: Some(list),
        }
    }

    const T0: &str = "2026-01-01T00:00:00Z";

    fn at(minutes: f64) -> Timestamp {
        T0.parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_secs_f64(minutes * 60.0)
    }

    fn facts(now_min: f64) -> FleetFacts {
        FleetFacts {
            observed_at: Some(at(now_min)),
            reallocations_per_minute: Some(10),
            ..FleetFacts::default()
        }
    }

    fn run(g: &ObservedGroup, spec: &FleetSpec, facts: &FleetFacts) -> FleetDecision {
        decide(
            spec,
            None,
            &Groups {
                target: Some(g),
                previous: None,
                min_ready: 3,
            },
            None,
            facts,
        )
    }

    #[test]
    fn the_slow_node_table() {
        // 5 GB image; threshold 240 s/GB = 20 minutes in total; grace 2 minutes.
        struct Case {
            reason: &'static str,
            list: Vec<ContainerGroupInstance>,
            now: f64,
            tweak: fn(&mut FleetSpec, &mut FleetFacts),
            moved: Vec<&'static str>,
            says: &'static str,
        }
        let none = |_: &mut FleetSpec, _: &mut FleetFacts| {};
        let cases = vec![
            Case {
                reason: "a fast download is left alone",
                list: vec![inst("a", InstanceState::Downloading, Some(50.0), T0)],
                now: 5.0,
                tweak: none,
                moved: vec![],
                says: "",
            },
            Case {
                reason: "a slow one inside the grace period is not judged yet",
                list: vec![inst("a", InstanceState::Downloading, Some(1.0), T0)],
                now: 1.5,
                tweak: none,
                moved: vec![],
                says: "",
            },
            Case {
                reason: "a slow one after the grace period moves",
                list: vec![inst("a", InstanceState::Downloading, Some(10.0), T0)],
                now: 5.0,
                tweak: none,
                moved: vec!["a"],
                says: "reallocating 1 of 1",
            },
            Case {
                reason: "slow but nearly done: finishing beats starting over on a new node",
                list: vec![inst("a", InstanceState::Downloading, Some(90.0), T0)],
                now: 25.0,
                tweak: none,
                moved: vec![],
                says: "",
            },
            Case {
                reason: "no progress at all counts as slow",
                list: vec![inst("a", InstanceState::Downloading, None, T0)],
                now: 4.0,
                tweak: none,
                moved: vec!["a"],
                says: "reallocating",
            },
            Case {
                reason: "switched off: reported, not moved",
                list: vec![inst("a", InstanceState::Downloading, Some(10.0), T0)],
                now: 5.0,
                tweak: |s, _| s.slow_node_reallocation.enabled = false,
                moved: vec![],
                says: "reallocation is off",
            },
            Case {
                reason: "a quota of 0 forbids it and says so",
                list: vec![inst("a", InstanceState::Downloading, Some(10.0), T0)],
                now: 5.0,
                tweak: |_, f| f.reallocations_per_minute = Some(0),
                moved: vec![],
                says: "quota is 0 per minute",
            },
            Case {
                reason: "a refusal waits until its time",
                list: vec![inst("a", InstanceState::Downloading, Some(10.0), T0)],
                now: 5.0,
                tweak: |_, f| f.blocked = Some((at(6.0), "429".into())),
                moved: vec![],
                says: "next try after",
            },
            Case {
                reason: "the quota of the last minute is used up",
                list: vec![inst("a", InstanceState::Downloading, Some(10.0), T0)],
                now: 5.0,
                tweak: |_, f| {
                    f.reallocations_per_minute = Some(1);
                    f.recent = vec![("other".into(), at(4.5))];
                },
                moved: vec![],
                says: "quota 1 per minute",
            },
            Case {
                reason: "never more than the share at once: the slowest of three goes (4 replicas × 25 %)",
                list: vec![
                    inst("a", InstanceState::Downloading, Some(10.0), T0),
                    inst("b", InstanceState::Downloading, Some(2.0), T0),
                    inst("c", InstanceState::Downloading, Some(8.0), T0),
                    inst("d", InstanceState::Running, None, T0),
                ],
                now: 5.0,
                tweak: none,
                moved: vec!["b"],
                says: "reallocating 1 of 3",
            },
            Case {
                reason: "one of ours still re-downloading fills the share",
                list: vec![
                    inst("a", InstanceState::Downloading, Some(10.0), T0),
                    inst("b", InstanceState::Allocating, None, T0),
                ],
                now: 5.0,
                tweak: |_, f| f.recent = vec![("b".into(), at(0.0))],
                moved: vec![],
                says: "at most 1 at once",
            },
        ];
        for c in cases {
            let mut spec = FleetSpec::default();
            let mut f = facts(c.now);
            (c.tweak)(&mut spec, &mut f);
            let replicas = c.list.len().max(1) as u32;
            let g = observed(replicas, 5_000_000_000, c.list);
            let d = run(&g, &spec, &f);
            let moved: Vec<&str> = d.reallocate.iter().map(|r| r.instance.as_str()).collect();
            assert_eq!(moved, c.moved, "{}", c.reason);
            let said = d.status.unwrap().reallocation.unwrap_or_default();
            assert!(said.contains(c.says), "{}: {said}", c.reason);
        }
    }

    #[test]
    fn status_counts_lists_and_buckets() {
        let g = observed(
            3,
            5_000_000_000,
            vec![
                inst("b", InstanceState::Running, None, T0),
                inst("a", InstanceState::Running, None, T0),
                inst("c", InstanceState::Downloading, Some(43.7), T0),
            ],
        );
        let d = run(&g, &FleetSpec::default(), &facts(1.0));
        let s = d.status.unwrap();
        assert_eq!(s.summary, "2/3 ready, 1 downloading 40%");
        let shown = &s.groups[0];
        assert_eq!(shown.role, "serving");
        assert_eq!(shown.counts.downloading, 1);
        assert_eq!(shown.counts.ready, 2);
        let ids: Vec<&str> = shown.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            ["a", "b", "c"],
            "sorted by id, whatever the list order"
        );
        assert_eq!(shown.instances[2].download_percent, Some(40));
        // A poll later with 44.9 %: the same status (no write).
        let g2 = observed(
            3,
            5_000_000_000,
            vec![
                inst("a", InstanceState::Running, None, T0),
                inst("b", InstanceState::Running, None, T0),
                inst("c", InstanceState::Downloading, Some(44.9), T0),
            ],
        );
        let d2 = run(&g2, &FleetSpec::default(), &facts(1.0));
        assert_eq!(d2.status.unwrap().groups, s.groups);
    }

    #[test]
    fn the_estimate_comes_from_the_documented_rate_then_the_observed_one() {
        // Before any download: 5 GB × 2 min/GB = 10 minutes.
        let g = observed(
            1,
            5_000_000_000,
            vec![inst("a", InstanceState::Allocating, None, T0)],
        );
        let d = decide(
            &FleetSpec::default(),
            None,
            &Groups {
                target: Some(&g),
                previous: None,
                min_ready: 1,
            },
            None,
            &facts(0.5),
        );
        assert_eq!(d.status.unwrap().estimated_minutes_to_ready, Some(10));
        // 25 % after 10 minutes: 30 more minutes.
        let g = observed(
            1,
            5_000_000_000,
            vec![inst("a", InstanceState::Downloading, Some(25.0), T0)],
        );
        let mut f = facts(10.0);
        f.reallocations_per_minute = Some(0);
        let d = decide(
            &FleetSpec::default(),
            None,
            &Groups {
                target: Some(&g),
                previous: None,
                min_ready: 1,
            },
            None,
            &f,
        );
        assert_eq!(d.status.unwrap().estimated_minutes_to_ready, Some(30));
        assert_eq!(round_minutes(61.0), 2);
        assert_eq!(round_minutes(11.0 * 60.0 + 1.0), 15);
    }

    #[test]
    fn system_logs_are_read_first_then_on_the_poll_cadence_or_on_trouble() {
        let now: Timestamp = "2025-01-01T00:10:00Z".parse().unwrap();
        let minute = std::time::Duration::from_secs(60);
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        let running = |id: &str| inst(id, InstanceState::Running, None, "2025-01-01T00:00:00Z");
        let shown = |list: &[ContainerGroupInstance]| FleetStatus {
            groups: vec![GroupFleetStatus {
                name: "g".into(),
                instances: list
                    .iter()
                    .map(|i| InstanceStatus {
                        id: i.id.clone(),
                        machine_id: i.machine_id.clone(),
                        state: state_name(i.state).into(),
                        ..InstanceStatus::default()
                    })
                    .collect(),
                ..GroupFleetStatus::default()
            }],
            ..FleetStatus::default()
        };
        let before = shown(&[running("a"), running("b")]);
        let steady = [running("a"), running("b")];
        let cases: Vec<(&str, Vec<ContainerGroupInstance>, Option<Timestamp>, bool)> = vec![
            ("never read by this process", steady.to_vec(), None, true),
            (
                "read a poll interval ago",
                steady.to_vec(),
                Some(ago(60)),
                true,
            ),
            (
                "read a second ago, nothing new",
                steady.to_vec(),
                Some(ago(1)),
                false,
            ),
            (
                "a new instance starting is the instance list's news",
                vec![
                    running("a"),
                    running("b"),
                    inst("c", InstanceState::Allocating, None, "2025-01-01T00:09:59Z"),
                ],
                Some(ago(1)),
                false,
            ),
            ("an instance gone", vec![running("a")], Some(ago(1)), true),
            (
                "an instance on another node",
                vec![
                    running("a"),
                    ContainerGroupInstance {
                        machine_id: "m-other".into(),
                        ..running("b")
                    },
                ],
                Some(ago(1)),
                true,
            ),
            (
                "an instance back from running",
                vec![
                    running("a"),
                    inst(
                        "b",
                        InstanceState::Downloading,
                        Some(0.0),
                        "2025-01-01T00:09:59Z",
                    ),
                ],
                Some(ago(1)),
                true,
            ),
        ];
        for (reason, list, last, due) in cases {
            assert_eq!(
                system_logs_due("g", &list, Some(&before), last, now, minute),
                due,
                "{reason}"
            );
        }
    }

    fn log(name: &str, min: f64) -> SystemLog {
        SystemLog {
            event_name: name.into(),
            event_time: Some(at(min)),
            instance_id: Some("i-1".into()),
            machine_id: Some("m-1".into()),
            version: Some("1".into()),
            resource_gpu_class: None,
        }
    }

    #[test]
    fn system_events_are_published_once_past_the_mark() {
        use saladcloud::model::system_events as se;
        let logs = BTreeMap::from([(
            "g-1".to_string(),
            vec![
                log(se::DOWNLOADING, 1.0),
                log(se::INTERRUPTED_NODE_OFFLINE, 2.0),
                log(se::REALLOCATED_BY_PLATFORM, 2.0),
                log(se::RUNNING, 3.0),
            ],
        )]);
        let (events, mark) = system_events(None, &logs, &[]);
        let reasons: Vec<Reason> = events.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [
                Reason::InstanceInterrupted,
                Reason::InstanceReallocated,
                Reason::InstanceStarted
            ],
            "downloading is in the instance list, not an Event"
        );
        assert_eq!(events[0].type_, crate::report::EventType::Warning);
        let prev = FleetStatus {
            events_seen_until: mark.clone(),
            ..FleetStatus::default()
        };
        let (again, mark2) = system_events(Some(&prev), &logs, &[]);
        assert!(
            again.is_empty(),
            "the same logs a poll (or a restart) later: nothing new"
        );
        assert_eq!(mark2, mark);
    }

    /// Every event name SaladCloud documents (`SaladTechnologies/salad-cloud-docs`,
    /// `container-engine/explanation/container-groups/system-events.mdx`), written out as the
    /// document spells it, and what it becomes.
    #[test]
    fn documented_system_events_map_to_their_events() {
        use crate::report::EventType::{Normal, Warning};
        type Want = Option<(Reason, crate::report::EventType)>;
        let cases: &[(&str, Want, &str)] = &[
            (
                "Container Group Started",
                None,
                "the operator reports its own starts",
            ),
            ("Container Group Stopped", None, "nor its stops"),
            (
                "Container Group Desired Replica Count Updated from 1 to 3",
                None,
                "nor scaling",
            ),
            ("Container Group Updated (Version 2)", None, "nor updates"),
            (
                "Instance Allocated",
                None,
                "the instance list shows allocation",
            ),
            ("Instance Creating", None, "and creating"),
            ("Instance Downloading", None, "and the download"),
            ("Instance Starting", None, "and starting"),
            (
                "Instance Running",
                Some((Reason::InstanceStarted, Normal)),
                "running once",
            ),
            (
                "Instance Restarted",
                Some((Reason::InstanceEvent, Normal)),
                "said as it is",
            ),
            (
                "Instance Recreated",
                Some((Reason::InstanceEvent, Normal)),
                "said as it is",
            ),
            (
                "Instance Reallocated by User",
                Some((Reason::InstanceReallocated, Normal)),
                "someone else moved it (portal, API)",
            ),
            (
                "Instance Reallocated by Platform",
                Some((Reason::InstanceReallocated, Normal)),
                "SaladCloud moved it",
            ),
            (
                "Instance Interrupted (Priority)",
                Some((Reason::InstanceInterrupted, Warning)),
                "a higher priority took the node: it costs the user",
            ),
            (
                "Instance Interrupted (Node Offline)",
                Some((Reason::InstanceInterrupted, Warning)),
                "the node went away",
            ),
            (
                "Instance Exited:1 (Error)",
                Some((Reason::InstanceExited, Warning)),
                "a crash",
            ),
            (
                "Instance Exited:137 (Likely Out of System Memory)",
                Some((Reason::InstanceExited, Warning)),
                "out of memory",
            ),
            (
                "Instance Exited:0 (Exited Successfully)",
                Some((Reason::InstanceExited, Normal)),
                "a clean exit is no warning",
            ),
            (
                "Instance Interrupted (Liveness Probe Failure)",
                Some((Reason::InstanceProbeFailed, Warning)),
                "a probe failure, not a node interruption",
            ),
            (
                "Instance Interrupted (Startup Probe Failure)",
                Some((Reason::InstanceProbeFailed, Warning)),
                "a probe failure, not a node interruption",
            ),
            (
                "Instance Startup Probe Passed",
                None,
                "status shows it started",
            ),
            (
                "Instance Not Ready (Readiness Probe Failure)",
                Some((Reason::InstanceNotReady, Warning)),
                "out of the rotation",
            ),
            (
                "Instance Ready (Readiness Probe Passed)",
                Some((Reason::InstanceStarted, Normal)),
                "ready again is good news, not a probe failure",
            ),
            (
                "instance interrupted (node offline)",
                Some((Reason::InstanceInterrupted, Warning)),
                "case does not matter",
            ),
            (
                "Instance Something New",
                Some((Reason::InstanceEvent, Normal)),
                "an undocumented name is published as it is",
            ),
        ];
        for (name, want, reason) in cases {
            let got = event_for(&log(name, 1.0), "g-1", false).map(|e| (e.reason, e.type_));
            assert_eq!(got, *want, "{name}: {reason}");
        }
    }

    #[test]
    fn a_reallocation_the_operator_asked_for_is_not_announced_twice() {
        use saladcloud::model::system_events as se;
        let l = log(se::REALLOCATED_BY_USER, 1.0);
        assert_eq!(
            event_for(&l, "g-1", true),
            None,
            "SlowNodeReallocated said it"
        );
        let platform = log(se::REALLOCATED_BY_PLATFORM, 2.0);
        assert!(
            event_for(&platform, "g-1", true).is_some(),
            "SaladCloud's own move is news"
        );
        let logs = BTreeMap::from([("g-1".to_string(), vec![l, platform])]);
        let (events, _) = system_events(None, &logs, &[("i-1".into(), at(0.5))]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, Reason::InstanceReallocated);
    }
}
