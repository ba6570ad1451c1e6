//! From what happened to `status`: conditions (kstatus-compatible, with observedGeneration and
//! transition times kept when nothing changed), phase, summaries, Events and when to look
//! again. Pure: [`report`] takes the previous status, the generation, the time and the plan or
//! the failure, and returns the [`Reconciled`] result.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use rand::Rng;
use salad_sd_api::{
    BuildStatus, ContainerGroupStatus, ImageStatus, InstanceCounts, Phase, SmokeTestStatus,
    StableDiffusionDeploymentStatus,
};
use saladcloud::model::ContainerGroup;

use crate::diff::ready_instances;
use crate::failure::{Backoff, Failure, consequence};
use crate::plan::{ImageState, Observed, ObservedGroup, Outcome, Plan};

pub use salad_sd_api::condition::{IMAGE_READY, READY, RECONCILING, STALLED, SYNCED};

/// Kubernetes Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something happened.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An event to publish on the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason (for warnings: the failure's reason).
    pub reason: String,
    /// What happened, and for warnings what to do.
    pub message: String,
}

impl Event {
    /// A Normal event.
    pub fn normal(reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The result of one reconcile.
#[derive(Clone, Debug)]
pub struct Reconciled {
    /// The status to write.
    pub status: StableDiffusionDeploymentStatus,
    /// Events to publish.
    pub events: Vec<Event>,
    /// When to look again.
    pub requeue_after: Duration,
    /// Deletion is finished: remove the finalizer.
    pub release_finalizer: bool,
    /// The plan, when one was made.
    pub plan: Option<Plan>,
    /// What failed this reconcile (already in status and events).
    pub failure: Option<Failure>,
}

/// What a reconcile knows when it reports.
pub struct Context<'a> {
    /// Status before this reconcile.
    pub prev: &'a StableDiffusionDeploymentStatus,
    /// The spec's generation.
    pub generation: i64,
    /// Now.
    pub now: Time,
    /// Drift check interval when all is well.
    pub poll: Duration,
    /// Requeue while work is in progress.
    pub progress: Duration,
    /// The backoff policy.
    pub backoff: &'a Backoff,
    /// Failures in a row, this reconcile's included when it failed.
    pub failures: u32,
    /// Events the actions produced.
    pub events: Vec<Event>,
}

/// What a reconcile that got as far as planning found and did.
pub struct Planned<'a> {
    /// The plan.
    pub plan: Plan,
    /// The world it was made from.
    pub observed: &'a Observed,
    /// The image of the current recipe, when built.
    pub built: Option<&'a salad_sd_image::BuiltImage>,
    /// Build progress, while building.
    pub building: Option<BuildStatus>,
    /// Desired replicas.
    pub replicas: i32,
    /// Hourly price of one instance.
    pub hourly_price: Option<f64>,
    /// Smoke test result.
    pub smoke: Option<SmokeTestStatus>,
    /// The resource is being deleted.
    pub deleting: bool,
    /// A build or an action failed.
    pub failure: Option<Failure>,
}

fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms * 9 / 10..=ms * 11 / 10 + 1))
}

/// Status, events and requeue for a reconcile that failed before it could plan: status keeps
/// what it knew about the groups and says what failed; a resource that served this generation
/// is still reported as serving.
pub fn report_failure(mut cx: Context<'_>, failure: Failure) -> Reconciled {
    let c = consequence(&failure, cx.failures, cx.backoff);
    announce(&mut cx, &c);
    let mut status = cx.prev.clone();
    let serving = cx.prev.is_ready_at(Some(cx.generation)) && !c.stalled;
    let mut conds = Vec::new();
    if serving {
        conds.extend(cx.prev.condition(READY).map(|r| Cond {
            type_: READY.into(),
            status: r.status.clone(),
            reason: r.reason.clone(),
            message: r.message.clone(),
        }));
    } else {
        conds.push(Cond::new(READY, false, &c.reason, &c.message));
    }
    conds.push(if c.stalled {
        Cond::new(STALLED, true, &c.reason, &c.message)
    } else {
        Cond::new(RECONCILING, true, &c.reason, &c.message)
    });
    conds.extend(
        cx.prev
            .condition(IMAGE_READY)
            .filter(|i| i.observed_generation == Some(cx.generation))
            .map(|i| Cond {
                type_: IMAGE_READY.into(),
                status: i.status.clone(),
                reason: i.reason.clone(),
                message: i.message.clone(),
            }),
    );
    conds.push(Cond::new(SYNCED, false, &c.reason, &c.message));
    if c.stalled {
        status.phase = if cx.prev.ready_replicas > 0 {
            Phase::Degraded
        } else {
            Phase::Failed
        };
    }
    status.message = Some(c.message.clone());
    status.observed_generation = Some(cx.generation);
    status.conditions = merge_conditions(&cx.prev.conditions, conds, cx.generation, cx.now);
    Reconciled {
        status,
        events: cx.events,
        requeue_after: c.requeue_after,
        release_finalizer: false,
        plan: None,
        failure: Some(failure),
    }
}

/// Status, events and requeue for a reconcile that planned (and acted, unless a dry run).
pub fn report(mut cx: Context<'_>, p: Planned<'_>) -> Reconciled {
    let plan = p.plan;
    // A stall the planner found is a failure like any other: same conditions, same backoff.
    let failure = p.failure.or(match &plan.outcome {
        Outcome::Stalled { reason, message } => Some(Failure::stalled(*reason, message.clone())),
        _ => None,
    });
    let target = plan
        .target
        .as_ref()
        .and_then(|t| p.observed.groups.iter().find(|g| &g.group.name == t));
    let previous = plan
        .retiring
        .iter()
        .find_map(|n| p.observed.groups.iter().find(|g| &g.group.name == n));
    let image_ready = p.observed.image == ImageState::Ready;
    let ready = target.map_or(0, |g| {
        ready_instances(&g.group, g.instances.as_deref()) as i32
    });
    let (mut phase, mut conds) = phase_and_conditions(
        &plan.outcome,
        image_ready,
        target.is_some(),
        !plan.retiring.is_empty() || target.is_some_and(|g| g.group.pending_change),
        p.deleting,
    );
    let c = failure
        .as_ref()
        .map(|f| consequence(f, cx.failures, cx.backoff));
    if let Some(c) = &c {
        conds = vec![Cond::new(READY, false, &c.reason, &c.message)];
        conds.push(if c.stalled {
            Cond::new(STALLED, true, &c.reason, &c.message)
        } else {
            Cond::new(RECONCILING, true, &c.reason, &c.message)
        });
        // Degraded: the newest spec cannot be served (it stalled, or its image failed) while an
        // earlier group serves. A transient SaladCloud failure keeps the phase it interrupted.
        let image_failed = matches!(p.observed.image, ImageState::Failed { .. });
        if p.deleting {
            phase = Phase::Deleting;
        } else if ready > 0 && (c.stalled || image_failed) {
            phase = Phase::Degraded;
        } else if c.stalled {
            phase = Phase::Failed;
        }
    }

    let build_failure = failure
        .as_ref()
        .filter(|_| matches!(p.observed.image, ImageState::Failed { .. }));
    conds.push(match (&p.observed.image, build_failure) {
        (ImageState::Ready, _) => Cond::new(
            IMAGE_READY,
            true,
            "Built",
            "the image for the current spec is in the registry",
        ),
        (ImageState::Failed { .. }, Some(f)) => {
            Cond::new(IMAGE_READY, false, f.reason(), f.message())
        }
        (ImageState::Failed { message }, None) => {
            Cond::new(IMAGE_READY, false, "BuildFailed", message.clone())
        }
        (ImageState::Missing, _) => Cond::new(
            IMAGE_READY,
            false,
            "BuildQueued",
            "the image for the current spec is not built yet",
        ),
        (ImageState::Building, _) => Cond::new(
            IMAGE_READY,
            false,
            "Building",
            "building the image for the current spec",
        ),
    });
    if image_ready
        && cx
            .prev
            .condition(IMAGE_READY)
            .is_none_or(|c| c.status != "True")
        && let Some(img) = p.built
    {
        cx.events.push(Event::normal(
            "ImageBuilt",
            format!(
                "image {} ready ({} layers, {} bytes uploaded)",
                img.reference,
                img.layers.len(),
                img.bytes_uploaded
            ),
        ));
    }
    conds.push(synced(
        &plan,
        target.is_some(),
        image_ready,
        failure.as_ref(),
    ));

    let message = match (&c, &plan.outcome) {
        (Some(c), _) => c.message.clone(),
        (None, Outcome::Converged) => "serving the desired state".to_string(),
        (None, Outcome::Stopped) => "stopped on request".to_string(),
        (None, Outcome::Released) => "deleted".to_string(),
        (None, Outcome::Progressing { message, .. } | Outcome::Stalled { message, .. }) => {
            message.clone()
        }
    };
    if let Some(c) = &c {
        announce(&mut cx, c);
    }
    if plan.outcome == Outcome::Converged
        && cx
            .prev
            .condition(READY)
            .is_none_or(|c| c.status != "True" || c.reason != "Serving")
    {
        cx.events.push(Event::normal(
            "RolloutComplete",
            format!(
                "`{}` serves the desired state",
                plan.target.clone().unwrap_or_default()
            ),
        ));
    }

    let current_replicas = target.map_or(0, |g| g.group.replicas as i32);
    // The IMAGE column shows what serves: a failed new build leaves the last built image.
    let image = match (p.built, cx.prev.image.clone().filter(|_| target.is_some())) {
        (None, Some(serving)) => Some(ImageStatus {
            build: p.building.clone(),
            ..serving
        }),
        (built, _) => image_status(built, p.building.clone()),
    };
    let mut status = StableDiffusionDeploymentStatus {
        observed_generation: Some(cx.generation),
        phase,
        message: Some(message),
        conditions: merge_conditions(&cx.prev.conditions, conds, cx.generation, cx.now),
        image,
        container_group: target.map(group_status).or_else(|| {
            plan.target.as_ref().map(|n| ContainerGroupStatus {
                name: n.clone(),
                ..Default::default()
            })
        }),
        previous_container_group: previous.map(group_status),
        replicas: current_replicas,
        ready_replicas: ready,
        replica_summary: Some(format!("{ready}/{}", p.replicas)),
        estimated_hourly_cost_usd: p
            .hourly_price
            .map(|price| format!("{:.3}", price * p.replicas.max(0) as f64)),
        smoke_test: p.smoke,
        endpoint_config_map: cx.prev.endpoint_config_map.clone(),
    };
    if plan.outcome == Outcome::Stopped {
        status.estimated_hourly_cost_usd = Some("0.000".into());
    }
    let requeue_after = match (&c, &plan.outcome) {
        (Some(c), _) => c.requeue_after,
        (None, Outcome::Converged | Outcome::Stopped) => jitter(cx.poll),
        _ => cx.progress,
    };
    Reconciled {
        status,
        events: cx.events,
        requeue_after,
        release_finalizer: plan.outcome == Outcome::Released,
        plan: Some(plan),
        failure,
    }
}

/// The Warning Event of a failure: every retry, a stall when it first shows or changes.
fn announce(cx: &mut Context<'_>, c: &crate::failure::Consequence) {
    let shown = if c.stalled {
        cx.prev.condition(STALLED)
    } else {
        cx.prev.condition(RECONCILING)
    };
    let already = shown.is_some_and(|s| s.status == "True" && s.message == c.message);
    if c.repeat_event || !already {
        cx.events
            .push(Event::warning(&c.event_reason, c.event_message.clone()));
    }
}

/// `Synced`: true only when a container group exists and matches the spec.
fn synced(plan: &Plan, group_exists: bool, image_ready: bool, failure: Option<&Failure>) -> Cond {
    if let Some(f) = failure {
        return Cond::new(SYNCED, false, f.reason(), f.message());
    }
    if plan.outcome == Outcome::Released {
        return Cond::new(
            SYNCED,
            false,
            "Released",
            "the resource no longer manages a container group",
        );
    }
    if !group_exists {
        return Cond::new(
            SYNCED,
            false,
            "NoContainerGroup",
            "no container group exists yet",
        );
    }
    if !image_ready {
        return Cond::new(
            SYNCED,
            false,
            "ImageNotReady",
            "the container group runs an earlier image until the current one is built",
        );
    }
    if !plan.actions.is_empty() {
        return Cond::new(
            SYNCED,
            false,
            "Applying",
            format!("{} change(s) sent to SaladCloud", plan.actions.len()),
        );
    }
    Cond::new(
        SYNCED,
        true,
        "InSync",
        "the container group matches the spec",
    )
}

/// A condition before times are settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Type.
    pub type_: String,
    /// True / False / Unknown.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// For humans.
    pub message: String,
}

impl Cond {
    /// A condition.
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Conditions with `observedGeneration`, keeping `lastTransitionTime` of a condition whose status
/// did not change.
pub fn merge_conditions(
    previous: &[Condition],
    new: Vec<Cond>,
    generation: i64,
    now: Time,
) -> Vec<Condition> {
    new.into_iter()
        .map(|c| {
            let old = previous.iter().find(|p| p.type_ == c.type_);
            let last_transition_time = match old {
                Some(o) if o.status == c.status => o.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: c.type_,
                status: c.status,
                reason: c.reason,
                message: c.message,
                observed_generation: Some(generation),
                last_transition_time,
            }
        })
        .collect()
}

/// Two statuses equal but for condition times: no write needed.
pub fn same_ignoring_times(
    a: &StableDiffusionDeploymentStatus,
    b: &StableDiffusionDeploymentStatus,
) -> bool {
    let strip = |s: &StableDiffusionDeploymentStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

/// A group as status shows it.
pub fn group_status(g: &ObservedGroup) -> ContainerGroupStatus {
    let group: &ContainerGroup = &g.group;
    let counts = group.current_state.instance_status_counts;
    ContainerGroupStatus {
        name: group.name.clone(),
        id: Some(group.id.clone()).filter(|s| !s.is_empty()),
        version: Some(group.version as i32),
        state: Some(format!("{:?}", group.current_state.status).to_ascii_lowercase()),
        pending_change: group.pending_change,
        instances: InstanceCounts {
            allocating: counts.allocating_count as i32,
            creating: counts.creating_count as i32,
            running: counts.running_count as i32,
            ready: ready_instances(group, g.instances.as_deref()) as i32,
            stopping: counts.stopping_count as i32,
        },
        access_url: group
            .networking
            .as_ref()
            .filter(|n| !n.dns.is_empty())
            .map(|n| format!("https://{}", n.dns)),
    }
}

/// The image part of status.
pub fn image_status(
    image: Option<&salad_sd_image::BuiltImage>,
    building: Option<salad_sd_api::BuildStatus>,
) -> Option<ImageStatus> {
    if image.is_none() && building.is_none() {
        return None;
    }
    let mut s = ImageStatus {
        build: building,
        ..ImageStatus::default()
    };
    if let Some(img) = image {
        s.reference = Some(img.reference.clone());
        s.short_digest = Some(
            img.digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect(),
        );
        s.recipe_hash = Some(img.recipe_hash.clone());
        s.layers = img
            .layers
            .iter()
            .map(|l| salad_sd_api::LayerStatus {
                name: l.name.clone(),
                digest: l.digest.clone(),
                size: l.size as i64,
                sha256: Some(l.file_sha256.clone()),
            })
            .collect();
    }
    Some(s)
}

/// Phase and the three kstatus conditions from a plan outcome.
pub fn phase_and_conditions(
    outcome: &Outcome,
    image_ready: bool,
    created_yet: bool,
    rolling: bool,
    deleting: bool,
) -> (Phase, Vec<Cond>) {
    let (phase, ready, reconciling, stalled) = match outcome {
        Outcome::Converged => (
            Phase::Running,
            Cond::new(READY, true, "Serving", "serving the desired state"),
            None,
            None,
        ),
        Outcome::Stopped => (
            Phase::Stopped,
            // Stopped is the desired state: kstatus (Flux `wait: true`) sees it as Current.
            Cond::new(READY, true, "Stopped", "stopped on request (spec.stopped)"),
            None,
            None,
        ),
        Outcome::Released => (
            Phase::Deleting,
            Cond::new(READY, false, "Deleting", "deleted"),
            None,
            None,
        ),
        Outcome::Progressing { reason, message } => {
            let phase = if deleting {
                Phase::Deleting
            } else if !image_ready {
                Phase::Building
            } else if !created_yet {
                Phase::Deploying
            } else if rolling {
                Phase::Updating
            } else {
                Phase::Deploying
            };
            (
                phase,
                Cond::new(READY, false, reason, message.clone()),
                Some(Cond::new(RECONCILING, true, reason, message.clone())),
                None,
            )
        }
        Outcome::Stalled { reason, message } => (
            Phase::Failed,
            Cond::new(READY, false, reason, message.clone()),
            None,
            Some(Cond::new(STALLED, true, reason, message.clone())),
        ),
    };
    let mut conds = vec![ready];
    conds.extend(reconciling);
    conds.extend(stalled);
    (phase, conds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = merge_conditions(
            &[],
            vec![Cond::new(READY, false, "Building", "building")],
            1,
            t(100),
        );
        let same = merge_conditions(
            &first,
            vec![Cond::new(READY, false, "Deploying", "creating")],
            2,
            t(200),
        );
        assert_eq!(
            same[0].last_transition_time,
            t(100),
            "False → False keeps the time"
        );
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge_conditions(
            &same,
            vec![Cond::new(READY, true, "Serving", "ok")],
            2,
            t(300),
        );
        assert_eq!(flipped[0].last_transition_time, t(300));
    }

    #[test]
    fn statuses_differing_only_in_times_need_no_write() {
        let a = StableDiffusionDeploymentStatus {
            conditions: merge_conditions(
                &[],
                vec![Cond::new(READY, true, "Serving", "ok")],
                1,
                t(1),
            ),
            ..Default::default()
        };
        let mut b = a.clone();
        b.conditions[0].last_transition_time = t(2);
        assert!(same_ignoring_times(&a, &b));
        b.ready_replicas = 1;
        assert!(!same_ignoring_times(&a, &b));
    }

    #[test]
    fn stalled_is_failed_and_not_reconciling() {
        let (phase, conds) = phase_and_conditions(
            &Outcome::Stalled {
                reason: "InvalidSpec",
                message: "fix it".into(),
            },
            false,
            false,
            false,
            false,
        );
        assert_eq!(phase, Phase::Failed);
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == STALLED && c.status == "True")
        );
        assert!(!conds.iter().any(|c| c.type_ == RECONCILING));
    }
}
