//! From what happened to `status`: conditions (kstatus-compatible, with observedGeneration and
//! transition times kept when nothing changed), phase, summaries, Events and when to look
//! again. Pure: [`report`] takes the previous status, the generation, the time and the plan or
//! the failure, and returns the [`Reconciled`] result.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use rand::Rng;
use salad_sd_api::{
    ContainerGroupStatus, ImageStatus, InstanceCounts, Phase, SmokeTestStatus,
    StableDiffusionDeploymentStatus,
};
use saladcloud::model::ContainerGroup;

use crate::decide::Decision;
use crate::diff::ready_instances;
use crate::failure::{Backoff, Consequence, Failure, consequence};
use crate::plan::{ImageState, ObservedGroup, Outcome, Plan, ReplicasPolicy};
use crate::reason::Reason;

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
    /// The reason (for warnings: the failure's reason).
    pub reason: Reason,
    /// What happened, and for warnings what to do.
    pub message: String,
}

impl Event {
    /// A Normal event.
    pub fn normal(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            message: message.into(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason,
            message: message.into(),
        }
    }
}

/// The endpoint ConfigMap to write (server-side apply), when it must move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointWrite {
    /// `<name>-endpoint`.
    pub config_map: String,
    /// The access URL.
    pub url: String,
    /// The group behind it.
    pub container_group: String,
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
    /// The endpoint ConfigMap to write before the status (status already names it).
    pub endpoint: Option<EndpointWrite>,
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
    /// Events the decision and the actions produced.
    pub events: Vec<Event>,
    /// The resource's name when an endpoint ConfigMap is kept for it (the operator); `None`
    /// keeps none (the CLI).
    pub endpoint_for: Option<&'a str>,
}

/// What a reconcile found and did: the one input of [`report`].
pub struct Input<'a> {
    /// The decision; `None` when a failure came before anything could be decided.
    pub decision: Option<&'a Decision>,
    /// The failure of this reconcile (a failed build, a failed action, or one before deciding).
    pub failure: Option<Failure>,
    /// The smoke test's result.
    pub smoke: Option<SmokeTestStatus>,
    /// Desired replicas.
    pub replicas: u32,
    /// The resource is being deleted.
    pub deleting: bool,
}

fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms * 9 / 10..=ms * 11 / 10 + 1))
}

/// The conditions status carries, each slot named so that none is forgotten on some path.
struct Conditions {
    ready: Cond,
    reconciling: Option<Cond>,
    stalled: Option<Cond>,
    image_ready: Option<Cond>,
    synced: Cond,
}

impl Conditions {
    fn into_vec(self) -> Vec<Cond> {
        std::iter::once(self.ready)
            .chain(self.reconciling)
            .chain(self.stalled)
            .chain(self.image_ready)
            .chain(std::iter::once(self.synced))
            .collect()
    }

    /// `Ready=False` and `Stalled` or `Reconciling` for a failure's consequence.
    fn failed(&mut self, c: &Consequence) {
        self.ready = Cond::new(READY, false, c.reason, &c.message);
        let cond = |t| Some(Cond::new(t, true, c.reason, &c.message));
        (self.reconciling, self.stalled) = if c.stalled {
            (None, cond(STALLED))
        } else {
            (cond(RECONCILING), None)
        };
    }
}

/// All of status, the Events and the next look, from one reconcile's [`Input`]. A failure is
/// one more input: a stall the planner found, a failed build or action, or a failure before
/// anything was decided (then status keeps what it knew of the groups, and a resource that
/// served this generation is still reported as serving).
pub fn report(mut cx: Context<'_>, input: Input<'_>) -> Reconciled {
    let stall = input.decision.and_then(|d| match &d.plan.outcome {
        Outcome::Stalled { reason, message } => Some(Failure::stalled(*reason, message.clone())),
        _ => None,
    });
    // A stall the planner found is a failure like any other: same conditions, same backoff.
    let failure = input.failure.clone().or(stall);
    let consequence = failure
        .as_ref()
        .map(|f| consequence(f, cx.failures, cx.backoff));
    let (mut status, requeue_after, release) = match input.decision {
        None => {
            let c = consequence
                .as_ref()
                .expect("a report without a decision has a failure");
            (undecided(&cx, c), c.requeue_after, false)
        }
        Some(d) => decided(&mut cx, d, &input, failure.as_ref(), consequence.as_ref()),
    };
    if let Some(c) = &consequence {
        announce(&mut cx, c);
    }
    let endpoint = match cx.endpoint_for {
        Some(name) if !input.deleting => {
            let (write, reported) = endpoint(cx.prev, &status, name);
            status.endpoint_config_map = reported;
            write
        }
        _ => None,
    };
    Reconciled {
        status,
        events: cx.events,
        requeue_after,
        release_finalizer: release,
        plan: input.decision.map(|d| d.plan.clone()),
        failure,
        endpoint,
    }
}

/// Status after a failure before deciding: what was known, with the failure.
fn undecided(cx: &Context<'_>, c: &Consequence) -> StableDiffusionDeploymentStatus {
    let mut status = cx.prev.clone();
    let kept = |type_: &str| {
        cx.prev.condition(type_).map(|r| Cond {
            type_: type_.into(),
            status: r.status.clone(),
            reason: r.reason.clone(),
            message: r.message.clone(),
        })
    };
    let serving = cx.prev.is_ready_at(Some(cx.generation)) && !c.stalled;
    let mut conds = Conditions {
        ready: Cond::new(READY, false, c.reason, &c.message),
        reconciling: None,
        stalled: None,
        // What was known of this generation's image still holds.
        image_ready: kept(IMAGE_READY).filter(|_| {
            cx.prev
                .condition(IMAGE_READY)
                .is_some_and(|i| i.observed_generation == Some(cx.generation))
        }),
        synced: Cond::new(SYNCED, false, c.reason, &c.message),
    };
    conds.failed(c);
    if serving && let Some(ready) = kept(READY) {
        conds.ready = ready;
    }
    if c.stalled {
        status.phase = if cx.prev.ready_replicas > 0 {
            Phase::Degraded
        } else {
            Phase::Failed
        };
    }
    status.message = Some(c.message.clone());
    status.observed_generation = Some(cx.generation);
    status.conditions = merge_conditions(
        &cx.prev.conditions,
        conds.into_vec(),
        cx.generation,
        cx.now.clone(),
    );
    status
}

/// Status of a reconcile that decided (and acted, unless a dry run).
fn decided(
    cx: &mut Context<'_>,
    d: &Decision,
    input: &Input<'_>,
    failure: Option<&Failure>,
    c: Option<&Consequence>,
) -> (StableDiffusionDeploymentStatus, Duration, bool) {
    let plan = &d.plan;
    let find = |name: &String| d.observed.groups.iter().find(|g| &g.group.name == name);
    let target = plan.target.as_ref().and_then(find);
    let previous = plan.retiring.iter().find_map(find);
    let ready = target.map_or(0, |g| {
        ready_instances(&g.group, g.instances.as_deref()) as i32
    });
    let (mut phase, conds) = decided_conditions(d, input, target, ready, failure, c);
    announce_progress(cx, d);
    // Under a schedule or the autoscaler, what the owner set is the count to serve.
    let replicas = match (d.desired.replicas, target) {
        (ReplicasPolicy::LeaveToOwner, Some(g)) => g.group.replicas,
        _ => input.replicas,
    };
    let (scaling, queue) = crate::scaling::status(&d.scaling, cx.prev, replicas, failure.is_none());
    let idle = phase == Phase::Running && replicas == 0 && queue.is_some();
    if idle {
        phase = Phase::Idle;
    }
    let message = match (c, &plan.outcome) {
        (None, Outcome::Converged) if idle => format!(
            "idle at 0 instances (no GPU billing): serving through job queue `{}`; a job starts              an instance, after a cold start",
            queue.as_ref().map(|q| q.name.as_str()).unwrap_or_default()
        ),
        (Some(c), _) => c.message.clone(),
        (None, Outcome::Converged) => "serving the desired state".to_string(),
        (None, Outcome::Stopped) => "stopped on request".to_string(),
        (None, Outcome::Released) => "deleted".to_string(),
        (None, Outcome::Progressing { message, .. } | Outcome::Stalled { message, .. }) => {
            message.clone()
        }
    };
    let building = d.image.building.clone();
    // The IMAGE column shows what serves: a failed new build leaves the last built image.
    let image = match (
        d.image.built.as_ref(),
        cx.prev.image.clone().filter(|_| target.is_some()),
    ) {
        (None, Some(serving)) => Some(ImageStatus {
            build: building,
            ..serving
        }),
        (built, _) => image_status(built, building),
    };
    let hourly = match plan.outcome {
        Outcome::Stopped => Some(0.0),
        _ => d.hourly_price.map(|p| p * f64::from(replicas)),
    };
    let status = StableDiffusionDeploymentStatus {
        observed_generation: Some(cx.generation),
        phase,
        message: Some(message),
        conditions: merge_conditions(
            &cx.prev.conditions,
            conds.into_vec(),
            cx.generation,
            cx.now.clone(),
        ),
        image,
        container_group: target.map(group_status).or_else(|| {
            plan.target.as_ref().map(|n| ContainerGroupStatus {
                name: n.clone(),
                ..Default::default()
            })
        }),
        previous_container_group: previous.map(group_status),
        replicas: target.map_or(0, |g| g.group.replicas as i32),
        ready_replicas: ready,
        replica_summary: Some(format!("{ready}/{replicas}")),
        estimated_hourly_cost_usd: hourly.map(|cost| format!("{cost:.3}")),
        smoke_test: input.smoke.clone(),
        endpoint_config_map: cx.prev.endpoint_config_map.clone(),
        cold_start: d.cold_start.clone().filter(|_| !input.deleting),
        fleet: d.fleet.status.clone(),
        scaling,
        queue,
    };
    let requeue_after = match (c, &plan.outcome) {
        (Some(c), _) => c.requeue_after,
        // A smoke test pending in the queue is read again soon, not at the next drift check.
        (None, Outcome::Converged)
            if input.smoke.as_ref().is_some_and(|s| s.result == "Pending") =>
        {
            cx.progress
        }
        (None, Outcome::Converged | Outcome::Stopped) => jitter(cx.poll),
        _ => cx.progress,
    };
    (status, requeue_after, plan.outcome == Outcome::Released)
}

/// Phase and conditions of a decided reconcile: from the plan's outcome, then the failure.
fn decided_conditions(
    d: &Decision,
    input: &Input<'_>,
    target: Option<&ObservedGroup>,
    ready: i32,
    failure: Option<&Failure>,
    c: Option<&Consequence>,
) -> (Phase, Conditions) {
    let plan = &d.plan;
    let image = &d.observed.image;
    let image_ready = *image == ImageState::Ready;
    let (mut phase, ready_cond, reconciling, stalled) = phase_and_conditions(
        &plan.outcome,
        image_ready,
        target.is_some(),
        !plan.retiring.is_empty() || target.is_some_and(|g| g.group.pending_change),
        input.deleting,
    );
    let image_failed = matches!(image, ImageState::Failed { .. });
    let mut conds = Conditions {
        ready: ready_cond,
        reconciling,
        stalled,
        image_ready: Some(image_condition(image, failure.filter(|_| image_failed))),
        synced: synced(plan, target.is_some(), image_ready, failure),
    };
    if let Some(c) = c {
        conds.failed(c);
        // Degraded: the newest spec cannot be served (it stalled, or its image failed) while an
        // earlier group serves. A transient SaladCloud failure keeps the phase it interrupted.
        if input.deleting {
            phase = Phase::Deleting;
        } else if ready > 0 && (c.stalled || image_failed) {
            phase = Phase::Degraded;
        } else if c.stalled {
            phase = Phase::Failed;
        }
    }
    (phase, conds)
}

/// The Normal Events of progress, each when it first shows: the image is built, the rollout
/// completed.
fn announce_progress(cx: &mut Context<'_>, d: &Decision) {
    let was_true = |type_: &str| cx.prev.condition(type_).filter(|c| c.status == "True");
    if d.observed.image == ImageState::Ready
        && was_true(IMAGE_READY).is_none()
        && let Some(img) = &d.image.built
    {
        cx.events.push(Event::normal(
            Reason::ImageBuilt,
            format!(
                "image {} ready ({} layers, {} bytes uploaded)",
                img.reference,
                img.layers.len(),
                img.bytes_uploaded
            ),
        ));
    }
    let served = was_true(READY).is_some_and(|c| Reason::parse(&c.reason) == Some(Reason::Serving));
    if d.plan.outcome == Outcome::Converged && !served {
        cx.events.push(Event::normal(
            Reason::RolloutComplete,
            format!(
                "`{}` serves the desired state",
                d.plan.target.clone().unwrap_or_default()
            ),
        ));
    }
}

/// `ImageReady`, from the image's state (and the build's failure, when it failed).
fn image_condition(image: &ImageState, build_failure: Option<&Failure>) -> Cond {
    match (image, build_failure) {
        (ImageState::Ready, _) => Cond::new(
            IMAGE_READY,
            true,
            Reason::Built,
            "the image for the current spec is in the registry",
        ),
        (ImageState::Failed { .. }, Some(f)) => {
            Cond::new(IMAGE_READY, false, f.reason(), f.message())
        }
        (ImageState::Failed { message }, None) => {
            Cond::new(IMAGE_READY, false, Reason::BuildFailed, message.clone())
        }
        (ImageState::Missing, _) => Cond::new(
            IMAGE_READY,
            false,
            Reason::BuildQueued,
            "the image for the current spec is not built yet",
        ),
        (ImageState::Building, _) => Cond::new(
            IMAGE_READY,
            false,
            Reason::Building,
            "building the image for the current spec",
        ),
    }
}

/// The endpoint ConfigMap `<name>-endpoint`: whether to write it, and what status names. It
/// follows the group only once the group serves, so it never points at a cold group, and it is
/// written once per URL (the previous status says it was), not on every poll.
pub fn endpoint(
    prev: &StableDiffusionDeploymentStatus,
    status: &StableDiffusionDeploymentStatus,
    name: &str,
) -> (Option<EndpointWrite>, Option<String>) {
    let Some(group) = status.container_group.as_ref() else {
        return (None, status.endpoint_config_map.clone());
    };
    let Some(url) = group.access_url.clone() else {
        return (None, status.endpoint_config_map.clone());
    };
    let config_map = format!("{name}-endpoint");
    let ready = status.is_true(READY);
    if !ready && status.endpoint_config_map.is_some() {
        return (None, status.endpoint_config_map.clone());
    }
    let written_url = Some(prev)
        .filter(|p| p.endpoint_config_map.as_deref() == Some(config_map.as_str()))
        .and_then(|p| p.container_group.as_ref())
        .and_then(|g| g.access_url.as_deref());
    if ready && prev.is_true(READY) && written_url == Some(url.as_str()) {
        return (None, Some(config_map));
    }
    (
        Some(EndpointWrite {
            config_map: config_map.clone(),
            url,
            container_group: group.name.clone(),
        }),
        Some(config_map),
    )
}

/// The Warning Event of a failure: every retry, a stall when it first shows or changes.
fn announce(cx: &mut Context<'_>, c: &Consequence) {
    let shown = if c.stalled {
        cx.prev.condition(STALLED)
    } else {
        cx.prev.condition(RECONCILING)
    };
    let already = shown.is_some_and(|s| s.status == "True" && s.message == c.message);
    if c.repeat_event || !already {
        cx.events
            .push(Event::warning(c.event_reason, c.event_message.clone()));
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
            Reason::Released,
            "the resource no longer manages a container group",
        );
    }
    if !group_exists {
        return Cond::new(
            SYNCED,
            false,
            Reason::NoContainerGroup,
            "no container group exists yet",
        );
    }
    if !image_ready {
        return Cond::new(
            SYNCED,
            false,
            Reason::ImageNotReady,
            "the container group runs an earlier image until the current one is built",
        );
    }
    if !plan.actions.is_empty() {
        return Cond::new(
            SYNCED,
            false,
            Reason::Applying,
            format!("{} change(s) sent to SaladCloud", plan.actions.len()),
        );
    }
    Cond::new(
        SYNCED,
        true,
        Reason::InSync,
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
    pub fn new(type_: &str, status: bool, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.as_str().to_string(),
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

/// Phase and the three kstatus conditions (`Ready`, `Reconciling`, `Stalled`) from a plan
/// outcome.
pub fn phase_and_conditions(
    outcome: &Outcome,
    image_ready: bool,
    created_yet: bool,
    rolling: bool,
    deleting: bool,
) -> (Phase, Cond, Option<Cond>, Option<Cond>) {
    match outcome {
        Outcome::Converged => (
            Phase::Running,
            Cond::new(READY, true, Reason::Serving, "serving the desired state"),
            None,
            None,
        ),
        Outcome::Stopped => (
            Phase::Stopped,
            // Stopped is the desired state: kstatus (Flux `wait: true`) sees it as Current.
            Cond::new(
                READY,
                true,
                Reason::Stopped,
                "stopped on request (spec.stopped)",
            ),
            None,
            None,
        ),
        Outcome::Released => (
            Phase::Deleting,
            Cond::new(READY, false, Reason::Deleting, "deleted"),
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
                Cond::new(READY, false, *reason, message.clone()),
                Some(Cond::new(RECONCILING, true, *reason, message.clone())),
                None,
            )
        }
        Outcome::Stalled { reason, message } => (
            Phase::Failed,
            Cond::new(READY, false, *reason, message.clone()),
            None,
            Some(Cond::new(STALLED, true, *reason, message.clone())),
        ),
    }
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
            vec![Cond::new(READY, false, Reason::Building, "building")],
            1,
            t(100),
        );
        let same = merge_conditions(
            &first,
            vec![Cond::new(READY, false, Reason::Updating, "creating")],
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
            vec![Cond::new(READY, true, Reason::Serving, "ok")],
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
                vec![Cond::new(READY, true, Reason::Serving, "ok")],
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
        let (phase, _, reconciling, stalled) = phase_and_conditions(
            &Outcome::Stalled {
                reason: Reason::InvalidSpec,
                message: "fix it".into(),
            },
            false,
            false,
            false,
            false,
        );
        assert_eq!(phase, Phase::Failed);
        assert!(stalled.is_some_and(|c| c.type_ == STALLED && c.status == "True"));
        assert!(reconciling.is_none());
    }

    // -----------------------------------------------------------------------------------------
    // The one report, table-tested: each case says what it holds.
    // -----------------------------------------------------------------------------------------

    use crate::decide::{Decision, ImageFacts, Smoke};
    use crate::plan::{Desired, Observed};
    use salad_sd_api::{DeletionPolicy, RolloutStrategy};

    fn cond(type_: &str, status: bool, reason: Reason, generation: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.as_str().into(),
            message: "before".into(),
            observed_generation: Some(generation),
            last_transition_time: t(1),
        }
    }

    fn serving_before(generation: i64) -> StableDiffusionDeploymentStatus {
        StableDiffusionDeploymentStatus {
            phase: Phase::Running,
            ready_replicas: 2,
            conditions: vec![
                cond(READY, true, Reason::Serving, generation),
                cond(IMAGE_READY, true, Reason::Built, generation),
                cond(SYNCED, true, Reason::InSync, generation),
            ],
            ..Default::default()
        }
    }

    fn decision(outcome: Outcome, image: ImageState) -> Decision {
        Decision {
            desired: Desired {
                owner_uid: "u".into(),
                deleting: false,
                deletion_policy: DeletionPolicy::Delete,
                strategy: RolloutStrategy::BlueGreen,
                stopped: false,
                fixed_name: None,
                adopt: false,
                name_prefix: "p".into(),
                generation: 2,
                generation_observed: false,
                min_ready: 2,
                replicas: ReplicasPolicy::Enforce,
                queue: None,
                group: None,
            },
            observed: Observed {
                groups: Vec::new(),
                image,
                burned_names: Default::default(),
                queue: None,
            },
            plan: Plan {
                actions: Vec::new(),
                target: None,
                retiring: Vec::new(),
                outcome,
            },
            recipe: None,
            image: ImageFacts::default(),
            smoke: Smoke::Keep(None),
            hourly_price: Some(0.1),
            events: Vec::new(),
            cold_start: None,
            fleet: Default::default(),
            scaling: Default::default(),
        }
    }

    struct Case {
        reason: &'static str,
        prev: StableDiffusionDeploymentStatus,
        decision: Option<Decision>,
        failure: Option<Failure>,
        deleting: bool,
        /// (type, status, reason) of every condition, in order.
        conditions: Vec<(&'static str, &'static str, Reason)>,
        phase: Phase,
        release: bool,
        warning: Option<Reason>,
    }

    #[test]
    fn the_report_table() {
        let progressing = Outcome::Progressing {
            reason: Reason::RolloutInProgress,
            message: "waiting".into(),
        };
        let cases = vec![
            Case {
                reason: "a converged plan is Ready, Synced needs a group (none here)",
                prev: Default::default(),
                decision: Some(decision(Outcome::Converged, ImageState::Ready)),
                failure: None,
                deleting: false,
                conditions: vec![
                    (READY, "True", Reason::Serving),
                    (IMAGE_READY, "True", Reason::Built),
                    (SYNCED, "False", Reason::NoContainerGroup),
                ],
                phase: Phase::Running,
                release: false,
                warning: None,
            },
            Case {
                reason: "work in progress is Reconciling with the plan's reason",
                prev: Default::default(),
                decision: Some(decision(progressing.clone(), ImageState::Building)),
                failure: None,
                deleting: false,
                conditions: vec![
                    (READY, "False", Reason::RolloutInProgress),
                    (RECONCILING, "True", Reason::RolloutInProgress),
                    (IMAGE_READY, "False", Reason::Building),
                    (SYNCED, "False", Reason::NoContainerGroup),
                ],
                phase: Phase::Building,
                release: false,
                warning: None,
            },
            Case {
                reason: "a transient failure before deciding keeps a served generation Ready and \
                         its ImageReady",
                prev: serving_before(2),
                decision: None,
                failure: Some(Failure::retry(Reason::SaladUnavailable, "503")),
                deleting: false,
                conditions: vec![
                    (READY, "True", Reason::Serving),
                    (RECONCILING, "True", Reason::SaladUnavailable),
                    (IMAGE_READY, "True", Reason::Built),
                    (SYNCED, "False", Reason::SaladUnavailable),
                ],
                phase: Phase::Running,
                release: false,
                warning: Some(Reason::SaladUnavailable),
            },
            Case {
                reason: "a stall before deciding is not Ready; an earlier generation's ImageReady \
                         is dropped; serving replicas make it Degraded",
                prev: serving_before(1),
                decision: None,
                failure: Some(Failure::stalled(Reason::InvalidSpec, "fix it")),
                deleting: false,
                conditions: vec![
                    (READY, "False", Reason::InvalidSpec),
                    (STALLED, "True", Reason::InvalidSpec),
                    (SYNCED, "False", Reason::InvalidSpec),
                ],
                phase: Phase::Degraded,
                release: false,
                warning: Some(Reason::InvalidSpec),
            },
            Case {
                reason: "a stall the planner found is reported as a failure",
                prev: Default::default(),
                decision: Some(decision(
                    Outcome::Stalled {
                        reason: Reason::GroupNotOwned,
                        message: "adopt it".into(),
                    },
                    ImageState::Ready,
                )),
                failure: None,
                deleting: false,
                conditions: vec![
                    (READY, "False", Reason::GroupNotOwned),
                    (STALLED, "True", Reason::GroupNotOwned),
                    (IMAGE_READY, "True", Reason::Built),
                    (SYNCED, "False", Reason::GroupNotOwned),
                ],
                phase: Phase::Failed,
                release: false,
                warning: Some(Reason::GroupNotOwned),
            },
            Case {
                reason: "a failed build names its failure in ImageReady",
                prev: Default::default(),
                decision: Some(decision(
                    progressing.clone(),
                    ImageState::Failed {
                        message: "404".into(),
                    },
                )),
                failure: Some(Failure::stalled(
                    Reason::ModelSourceFailed,
                    "404 at the URL",
                )),
                deleting: false,
                conditions: vec![
                    (READY, "False", Reason::ModelSourceFailed),
                    (STALLED, "True", Reason::ModelSourceFailed),
                    (IMAGE_READY, "False", Reason::ModelSourceFailed),
                    (SYNCED, "False", Reason::ModelSourceFailed),
                ],
                phase: Phase::Failed,
                release: false,
                warning: Some(Reason::ModelSourceFailed),
            },
            Case {
                reason: "a released deletion lets the finalizer go",
                prev: Default::default(),
                decision: Some(decision(Outcome::Released, ImageState::Missing)),
                failure: None,
                deleting: true,
                conditions: vec![
                    (READY, "False", Reason::Deleting),
                    (IMAGE_READY, "False", Reason::BuildQueued),
                    (SYNCED, "False", Reason::Released),
                ],
                phase: Phase::Deleting,
                release: true,
                warning: None,
            },
        ];
        let backoff = Backoff::default();
        for c in cases {
            let cx = Context {
                prev: &c.prev,
                generation: 2,
                now: t(100),
                poll: Duration::from_secs(60),
                progress: Duration::from_secs(5),
                backoff: &backoff,
                failures: 1,
                events: Vec::new(),
                endpoint_for: None,
            };
            let out = report(
                cx,
                Input {
                    decision: c.decision.as_ref(),
                    failure: c.failure.clone(),
                    smoke: None,
                    replicas: 2,
                    deleting: c.deleting,
                },
            );
            let got: Vec<(String, String, String)> = out
                .status
                .conditions
                .iter()
                .map(|k| (k.type_.clone(), k.status.clone(), k.reason.clone()))
                .collect();
            let want: Vec<(String, String, String)> = c
                .conditions
                .iter()
                .map(|(t, s, r)| (t.to_string(), s.to_string(), r.as_str().to_string()))
                .collect();
            assert_eq!(got, want, "{}", c.reason);
            assert!(
                out.status
                    .conditions
                    .iter()
                    .all(|k| k.observed_generation == Some(2)),
                "{}: observedGeneration",
                c.reason
            );
            assert_eq!(out.status.phase, c.phase, "{}", c.reason);
            assert_eq!(out.release_finalizer, c.release, "{}", c.reason);
            let warning = out
                .events
                .iter()
                .find(|e| e.type_ == EventType::Warning)
                .map(|e| e.reason);
            assert_eq!(warning, c.warning, "{}", c.reason);
        }
    }

    #[test]
    fn status_fleet_is_the_decision_s_and_unchanged_fleet_needs_no_write() {
        let mut d = decision(
            Outcome::Progressing {
                reason: Reason::RolloutInProgress,
                message: "waiting".into(),
            },
            ImageState::Ready,
        );
        d.fleet.status = Some(salad_sd_api::FleetStatus {
            summary: "1/3 ready, 2 downloading 40%".into(),
            ..Default::default()
        });
        let backoff = Backoff::default();
        let run = |prev: &StableDiffusionDeploymentStatus, at: i64| {
            report(
                Context {
                    prev,
                    generation: 2,
                    now: t(at),
                    poll: Duration::from_secs(60),
                    progress: Duration::from_secs(5),
                    backoff: &backoff,
                    failures: 0,
                    events: Vec::new(),
                    endpoint_for: None,
                },
                Input {
                    decision: Some(&d),
                    failure: None,
                    smoke: None,
                    replicas: 3,
                    deleting: false,
                },
            )
            .status
        };
        let first = run(&StableDiffusionDeploymentStatus::default(), 100);
        assert_eq!(
            first.fleet.as_ref().map(|f| f.summary.as_str()),
            Some("1/3 ready, 2 downloading 40%")
        );
        let second = run(&first, 160);
        assert!(
            same_ignoring_times(&first, &second),
            "the same fleet a poll later: no write"
        );
    }

    #[test]
    fn the_endpoint_moves_once_per_url_and_only_to_a_serving_group() {
        let group = |url: &str| ContainerGroupStatus {
            name: "g".into(),
            access_url: Some(url.into()),
            ..Default::default()
        };
        let ready = |url: &str, cm: Option<&str>| StableDiffusionDeploymentStatus {
            container_group: Some(group(url)),
            conditions: vec![cond(READY, true, Reason::Serving, 1)],
            endpoint_config_map: cm.map(str::to_string),
            ..Default::default()
        };
        let cold = |url: &str, cm: Option<&str>| StableDiffusionDeploymentStatus {
            conditions: vec![cond(READY, false, Reason::RolloutInProgress, 1)],
            ..ready(url, cm)
        };
        let cases = [
            (
                "the first URL is written even before Ready",
                Default::default(),
                cold("https://a", None),
                true,
            ),
            (
                "a cold new group does not move a written endpoint",
                ready("https://a", Some("sd-endpoint")),
                cold("https://b", Some("sd-endpoint")),
                false,
            ),
            (
                "a serving new group moves it",
                ready("https://a", Some("sd-endpoint")),
                ready("https://b", Some("sd-endpoint")),
                true,
            ),
            (
                "the same URL again is not written again",
                ready("https://a", Some("sd-endpoint")),
                ready("https://a", Some("sd-endpoint")),
                false,
            ),
        ];
        for (reason, prev, status, write) in cases {
            let (w, named) = endpoint(&prev, &status, "sd");
            assert_eq!(w.is_some(), write, "{reason}");
            assert_eq!(named.as_deref(), Some("sd-endpoint"), "{reason}");
        }
    }
}
