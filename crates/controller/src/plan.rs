//! The planner: `(desired, observed) → actions`. Pure, deterministic, and where every decision
//! about SaladCloud lives. The engine fetches, calls [`plan`], performs the actions and reports.

use std::collections::BTreeSet;

use salad_sd_api::names::OWNER_ENV;
use salad_sd_api::{DeletionPolicy, RolloutStrategy};
use saladcloud::model::{
    ContainerGroup, ContainerGroupInstance, ContainerGroupPatch, ContainerGroupPrototype,
    ContainerGroupStatus,
};

use crate::diff::{GroupDiff, REVISION_ENV, diff, observed_revision, ready_instances, revision};
use crate::reason::Reason;

/// What the spec asks for, reduced to what the planner needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The resource's uid: every group we create carries it in [`OWNER_ENV`].
    pub owner_uid: String,
    /// The resource is being deleted.
    pub deleting: bool,
    /// What deletion does to the groups.
    pub deletion_policy: DeletionPolicy,
    /// How versioned changes roll out.
    pub strategy: RolloutStrategy,
    /// Stop billing, keep configuration.
    pub stopped: bool,
    /// A name the user fixed (`spec.saladcloud.containerGroupName`).
    pub fixed_name: Option<String>,
    /// Take over the fixed-name group even if we did not create it.
    pub adopt: bool,
    /// Derived names: `{prefix}-{generation}` (and `-{k}` when that name is burnt).
    pub name_prefix: String,
    /// metadata.generation.
    pub generation: i64,
    /// The previous reconcile already saw this generation (`status.observedGeneration`): a
    /// difference in fields the revision does not cover (replicas, countries, display name) is
    /// then drift rather than a spec change.
    pub generation_observed: bool,
    /// Ready instances a group needs to count as serving the desired state (capped by the
    /// group's replica count).
    pub min_ready: u32,
    /// Whether the definition's replica count is applied, or left to its owner.
    pub replicas: ReplicasPolicy,
    /// The job queue the groups connect to (its name), in queue mode.
    pub queue: Option<String>,
    /// The full definition (name unset), once the image exists; `None` while it does not.
    pub group: Option<ContainerGroupPrototype>,
}

/// Whether the replica count of the definition is applied to the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicasPolicy {
    /// Applied, and drift corrected.
    Enforce,
    /// Left to the schedule or the queue autoscaler that owns it: what the group holds is
    /// neither drift nor a change to make (a new group still starts from the definition's).
    LeaveToOwner,
}

/// The job queue, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedQueue {
    /// Its name.
    pub name: String,
    /// Jobs waiting, when SaladCloud says.
    pub length: Option<u32>,
    /// Container groups connected to it, as SaladCloud lists them.
    pub connected: Vec<String>,
}

impl ObservedQueue {
    /// No group, ours or anyone's, is connected to the queue: deleting it strands no worker.
    fn unused(&self, o: &Observed) -> bool {
        self.connected.is_empty()
            && !o.groups.iter().any(|g| {
                g.group
                    .queue_connection
                    .as_ref()
                    .is_some_and(|c| c.queue_name == self.name)
            })
    }
}

/// The image for the current recipe.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageState {
    /// Built and pushed.
    Ready,
    /// Not in the registry and no build running.
    Missing,
    /// A build is running.
    Building,
    /// The last build of this recipe failed.
    Failed {
        /// Why.
        message: String,
    },
}

/// A container group as observed, with its instances when they were listed.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedGroup {
    /// The group.
    pub group: ContainerGroup,
    /// Its instances, if listed this reconcile.
    pub instances: Option<Vec<ContainerGroupInstance>>,
}

/// What exists.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Groups of this incarnation (owner env matches) and the fixed-name group whoever owns it.
    pub groups: Vec<ObservedGroup>,
    /// State of the image for the current recipe.
    pub image: ImageState,
    /// Names SaladCloud refused as used before (never reusable).
    pub burned_names: BTreeSet<String>,
    /// The resource's job queue, when it exists (read in queue mode, or when status records
    /// one).
    pub queue: Option<ObservedQueue>,
}

/// Why a group is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchReason {
    /// The spec changed.
    SpecChange,
    /// Someone changed the group outside the operator.
    Drift,
}

/// Why a group is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// A newer group took over.
    Retired,
    /// The resource is being deleted.
    Cleanup,
}

/// One step against the outside world.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start building the image of the current recipe.
    Build,
    /// Create a container group.
    Create {
        /// Its definition, name included.
        group: Box<ContainerGroupPrototype>,
    },
    /// Patch a container group.
    Patch {
        /// Group name.
        name: String,
        /// The merge patch.
        patch: Box<ContainerGroupPatch>,
        /// Fields that differ.
        fields: Vec<&'static str>,
        /// Why.
        reason: PatchReason,
    },
    /// Start a stopped group.
    Start {
        /// Group name.
        name: String,
    },
    /// Stop a running group.
    Stop {
        /// Group name.
        name: String,
    },
    /// Delete a group.
    Delete {
        /// Group name.
        name: String,
        /// Why.
        reason: DeleteReason,
    },
    /// Create the job queue (before a group that connects to it).
    CreateQueue {
        /// Queue name.
        name: String,
    },
    /// Delete the job queue, once no group of ours connects to it.
    DeleteQueue {
        /// Queue name.
        name: String,
        /// Why.
        reason: DeleteReason,
    },
}

impl Action {
    /// The action in a few words: the planner's messages, the engine's failures and
    /// `salad-sd diff` say it the same way.
    pub fn describe(&self) -> String {
        match self {
            Action::Build => "build the image".into(),
            Action::Create { group } => format!("create container group `{}`", group.name),
            Action::Patch { name, fields, .. } => {
                format!("update container group `{name}` ({})", fields.join(", "))
            }
            Action::Start { name } => format!("start container group `{name}`"),
            Action::Stop { name } => format!("stop container group `{name}`"),
            Action::Delete { name, .. } => format!("delete container group `{name}`"),
            Action::CreateQueue { name } => format!("create job queue `{name}`"),
            Action::DeleteQueue { name, .. } => format!("delete job queue `{name}`"),
        }
    }
}

/// Where things stand after the actions.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Serving the desired state; nothing left to do.
    Converged,
    /// Stopped on request, as desired.
    Stopped,
    /// Work in progress; look again soon.
    Progressing {
        /// Why.
        reason: Reason,
        /// For humans.
        message: String,
    },
    /// Only a spec change (or outside help) moves it on.
    Stalled {
        /// Why.
        reason: Reason,
        /// What to do.
        message: String,
    },
    /// Deletion finished: the finalizer can go.
    Released,
}

/// The plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Steps, in order.
    pub actions: Vec<Action>,
    /// The group that serves (or will serve) the desired state.
    pub target: Option<String>,
    /// Groups being retired.
    pub retiring: Vec<String>,
    /// Where things stand.
    pub outcome: Outcome,
}

impl Plan {
    /// Nothing left to do for a resource being deleted: the finalizer can go.
    pub fn released() -> Self {
        Self::new(Outcome::Released)
    }

    fn new(outcome: Outcome) -> Self {
        Self {
            actions: Vec::new(),
            target: None,
            retiring: Vec::new(),
            outcome,
        }
    }
}

fn progressing(reason: Reason, message: impl Into<String>) -> Outcome {
    Outcome::Progressing {
        reason,
        message: message.into(),
    }
}

fn stalled(reason: Reason, message: impl Into<String>) -> Outcome {
    Outcome::Stalled {
        reason,
        message: message.into(),
    }
}

/// Is the group ours (created by this incarnation, or adopted by name)?
pub fn owned_by(group: &ContainerGroup, uid: &str) -> bool {
    group
        .container
        .environment_variables
        .get(OWNER_ENV)
        .map(String::as_str)
        == Some(uid)
}

/// Generation (and retry suffix) encoded in a derived name, for ordering.
fn name_order(name: &str, prefix: &str) -> (i64, i64) {
    let rest = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or("");
    let mut parts = rest.split('-').map(|p| p.parse::<i64>().unwrap_or(-1));
    (parts.next().unwrap_or(-1), parts.next().unwrap_or(0))
}

/// Is the group serving traffic: running with ready instances?
fn serving(g: &ObservedGroup) -> bool {
    g.group.current_state.status == ContainerGroupStatus::Running
        && ready_instances(&g.group, g.instances.as_deref()) > 0
}

/// Has the group converged on its definition with enough ready instances?
fn converged(g: &ObservedGroup, min_ready: u32, replicas: u32) -> bool {
    if g.group.pending_change {
        return false;
    }
    if replicas == 0 {
        return g.group.current_state.status != ContainerGroupStatus::Failed
            && g.group.current_state.status != ContainerGroupStatus::Pending;
    }
    // Every instance runs the group's version (those being stopped aside), and enough are ready.
    let all_current = g.instances.as_deref().is_none_or(|list| {
        list.iter().all(|i| {
            i.version == g.group.version || i.state == saladcloud::model::InstanceState::Stopping
        })
    });
    g.group.current_state.status == ContainerGroupStatus::Running
        && all_current
        && ready_instances(&g.group, g.instances.as_deref()) >= min_ready.min(replicas).max(1)
}

/// Plans the next steps.
pub fn plan(d: &Desired, o: &Observed) -> Plan {
    let ours: Vec<&ObservedGroup> = o
        .groups
        .iter()
        .filter(|g| {
            owned_by(&g.group, &d.owner_uid)
                || (d.adopt && d.fixed_name.as_deref() == Some(g.group.name.as_str()))
        })
        .collect();

    if d.deleting {
        return plan_deletion(d, o, &ours);
    }

    if let Some(fixed) = &d.fixed_name
        && let Some(g) = o.groups.iter().find(|g| &g.group.name == fixed)
        && !owned_by(&g.group, &d.owner_uid)
        && !d.adopt
    {
        return Plan::new(stalled(
            Reason::GroupNotOwned,
            format!(
                "container group `{fixed}` already exists and was not created by this resource; it is left untouched. \
                 Set spec.saladcloud.adopt: true to manage it, or choose another containerGroupName"
            ),
        ));
    }

    let Some(proto) = &d.group else {
        return plan_without_image(d, o, &ours);
    };
    let mut proto = proto.clone();
    if let (Some(connection), Some(queue)) = (proto.queue_connection.as_mut(), &d.queue) {
        connection.queue_name = queue.clone();
    }
    let rev = revision(&proto);
    proto
        .container
        .environment_variables
        .insert(REVISION_ENV.into(), rev.clone());

    let mut sorted = ours.clone();
    sorted.sort_by_key(|g| name_order(&g.group.name, &d.name_prefix));
    sorted.reverse(); // newest first
    let diffs: Vec<(&ObservedGroup, GroupDiff)> = sorted
        .iter()
        .map(|g| {
            let mut want = proto.clone();
            want.name = g.group.name.clone();
            if d.replicas == ReplicasPolicy::LeaveToOwner {
                want.replicas = g.group.replicas;
            }
            (*g, diff(&want, &g.group))
        })
        .collect();

    let blue_green = d.strategy == RolloutStrategy::BlueGreen && d.fixed_name.is_none();
    let target = diffs.iter().find(|(g, df)| {
        if blue_green {
            observed_revision(&g.group) == Some(rev.as_str())
        } else {
            df.immutable.is_empty()
        }
    });

    let mut plan = Plan::new(Outcome::Converged);
    // The queue exists before any group connects to it.
    if let Some(queue) = &d.queue
        && o.queue.is_none()
    {
        plan.actions.push(Action::CreateQueue {
            name: queue.clone(),
        });
    }

    let target_name = match target {
        Some((g, df)) => {
            let name = g.group.name.clone();
            if !df.versioned.is_empty() || !df.unversioned.is_empty() {
                // Same revision: the versioned fields were applied before, so a difference there
                // was made behind our back. Unversioned fields are outside the revision: they
                // drifted only if the spec did not change since the last reconcile.
                let same_revision = observed_revision(&g.group) == Some(rev.as_str());
                let reason = if same_revision && (!df.versioned.is_empty() || d.generation_observed)
                {
                    PatchReason::Drift
                } else {
                    PatchReason::SpecChange
                };
                plan.actions.push(Action::Patch {
                    name: name.clone(),
                    patch: Box::new(df.patch.clone()),
                    fields: df.fields(),
                    reason,
                });
            }
            name
        }
        None => {
            if let Some(fixed) = &d.fixed_name
                && let Some((_, df)) = diffs.iter().find(|(g, _)| &g.group.name == fixed)
            {
                return Plan::new(stalled(
                    Reason::ReplacementNeedsNewName,
                    format!(
                        "{} cannot change on an existing SaladCloud container group, so it must be replaced by a new one, \
                         but spec.saladcloud.containerGroupName pins the name `{fixed}`; revert the change or create a new resource without containerGroupName",
                        df.immutable.join(", ")
                    ),
                ));
            }
            let name = match &d.fixed_name {
                Some(fixed) if o.burned_names.contains(fixed) => {
                    return Plan::new(stalled(
                        Reason::NameUnavailable,
                        format!(
                            "container group name `{fixed}` was used before and SaladCloud never reuses names; \
                             choose another spec.saladcloud.containerGroupName or remove it to get a derived name"
                        ),
                    ));
                }
                Some(fixed) => fixed.clone(),
                None => next_name(d, o),
            };
            let mut group = proto.clone();
            group.name = name.clone();
            group.autostart_policy = !d.stopped;
            plan.actions.push(Action::Create {
                group: Box::new(group),
            });
            name
        }
    };
    plan.target = Some(target_name.clone());

    let target_group = ours.iter().find(|g| g.group.name == target_name).copied();
    let replicas = match (d.replicas, target_group) {
        (ReplicasPolicy::LeaveToOwner, Some(g)) => g.group.replicas,
        _ => proto.replicas,
    };
    let target_converged = target_group.is_some_and(|g| converged(g, d.min_ready, replicas))
        && plan.actions.is_empty();

    // Stop and start.
    if let Some(action) = target_group.and_then(|g| stop_or_start(d, g)) {
        plan.actions.push(action);
    }

    // Retire the others: once the target serves the desired state, or right away when they
    // serve nothing while something else does.
    let anyone_serving = ours.iter().any(|g| serving(g));
    for g in &ours {
        if g.group.name == target_name {
            continue;
        }
        plan.retiring.push(g.group.name.clone());
        let idle = !serving(g);
        let other_serving = ours
            .iter()
            .any(|x| x.group.name != g.group.name && serving(x));
        if target_converged || d.stopped || (idle && other_serving) || (idle && !anyone_serving) {
            plan.actions.push(Action::Delete {
                name: g.group.name.clone(),
                reason: DeleteReason::Retired,
            });
        }
    }

    if let Some(q) = &o.queue
        && d.queue.as_ref() != Some(&q.name)
        && q.unused(o)
    {
        plan.actions.push(Action::DeleteQueue {
            name: q.name.clone(),
            reason: DeleteReason::Retired,
        });
    }

    plan.outcome = if let Some(g) =
        target_group.filter(|g| g.group.current_state.status == ContainerGroupStatus::Failed)
    {
        stalled(
            Reason::ContainerGroupFailed,
            format!(
                "SaladCloud could not prepare the image for `{}`: {}; check the image and spec.image.registryAuth",
                g.group.name,
                g.group
                    .current_state
                    .description
                    .clone()
                    .unwrap_or_else(|| "no description".into())
            ),
        )
    } else if d.stopped {
        if plan.actions.is_empty() {
            Outcome::Stopped
        } else {
            progressing(Reason::Stopping, "stopping the container group")
        }
    } else if !plan.actions.is_empty() {
        let message = match &plan.actions[0] {
            Action::Create { .. } => format!("creating container group `{target_name}`"),
            Action::CreateQueue { name } => {
                format!("creating job queue `{name}` for container group `{target_name}`")
            }
            Action::DeleteQueue { name, .. } => {
                format!("deleting job queue `{name}`: no container group uses it")
            }
            Action::Patch {
                reason: PatchReason::Drift,
                ..
            } => format!("correcting drift on container group `{target_name}`"),
            Action::Patch { .. } => format!("updating container group `{target_name}`"),
            Action::Start { .. } => format!("starting container group `{target_name}`"),
            Action::Delete { name, .. } => {
                format!("retiring container group `{name}`; `{target_name}` serves")
            }
            _ => format!("working on container group `{target_name}`"),
        };
        progressing(Reason::Updating, message)
    } else if !target_converged {
        let ready = target_group
            .map(|g| ready_instances(&g.group, g.instances.as_deref()))
            .unwrap_or(0);
        progressing(
            Reason::RolloutInProgress,
            format!(
                "waiting for `{target_name}`: {ready}/{} instances ready at the current version",
                d.min_ready.min(replicas)
            ),
        )
    } else if !plan.retiring.is_empty() {
        progressing(
            Reason::Retiring,
            "waiting for old container groups to go away",
        )
    } else {
        Outcome::Converged
    };
    plan
}

/// Stop or start a group to match `spec.stopped`.
fn stop_or_start(d: &Desired, g: &ObservedGroup) -> Option<Action> {
    let name = g.group.name.clone();
    match g.group.current_state.status {
        ContainerGroupStatus::Running | ContainerGroupStatus::Deploying if d.stopped => {
            Some(Action::Stop { name })
        }
        ContainerGroupStatus::Stopped if !d.stopped => Some(Action::Start { name }),
        _ => None,
    }
}

fn next_name(d: &Desired, o: &Observed) -> String {
    let taken: BTreeSet<&str> = o.groups.iter().map(|g| g.group.name.as_str()).collect();
    let base = format!("{}-{}", d.name_prefix, d.generation.max(0));
    std::iter::once(base.clone())
        .chain((1..).map(|k| format!("{base}-{k}")))
        .find(|n| !taken.contains(n.as_str()) && !o.burned_names.contains(n))
        .expect("an unused name exists")
}

fn plan_without_image(d: &Desired, o: &Observed, ours: &[&ObservedGroup]) -> Plan {
    let mut plan = Plan::new(match &o.image {
        ImageState::Failed { message } => stalled(
            Reason::BuildFailed,
            format!("{message}; the running container group (if any) keeps serving"),
        ),
        ImageState::Missing => progressing(Reason::Building, "image build queued"),
        ImageState::Building | ImageState::Ready => {
            progressing(Reason::Building, "building the image")
        }
    });
    if o.image == ImageState::Missing {
        plan.actions.push(Action::Build);
    }
    // Stop and start do not need the new image.
    plan.actions
        .extend(ours.iter().filter_map(|g| stop_or_start(d, g)));
    plan.target = ours.first().map(|g| g.group.name.clone());
    plan
}

fn plan_deletion(d: &Desired, o: &Observed, ours: &[&ObservedGroup]) -> Plan {
    if d.deletion_policy == DeletionPolicy::Orphan {
        return Plan::new(Outcome::Released);
    }
    if ours.is_empty() {
        // The queue goes last: deleting it first would strand the groups' workers.
        return match &o.queue {
            // A queue someone else's group still uses is left to them.
            Some(q) if q.unused(o) => {
                let mut plan = Plan::new(progressing(
                    Reason::Deleting,
                    format!("deleting job queue `{}`", q.name),
                ));
                plan.actions.push(Action::DeleteQueue {
                    name: q.name.clone(),
                    reason: DeleteReason::Cleanup,
                });
                plan
            }
            _ => Plan::new(Outcome::Released),
        };
    }
    let mut plan = Plan::new(progressing(
        Reason::Deleting,
        format!("deleting {} container group(s)", ours.len()),
    ));
    for g in ours {
        plan.actions.push(Action::Delete {
            name: g.group.name.clone(),
            reason: DeleteReason::Cleanup,
        });
    }
    plan
}
