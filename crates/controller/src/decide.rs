//! The decision step: `(resource, facts, mode) → everything decided`, pure. Observe gathers the
//! facts ([`Facts`]) and asks only [`reads`], [`group_lookup`] and [`needs_instances`] what to
//! read; then [`decide`] derives the desired group, the plan (through [`crate::plan`]), whether
//! to build, whether to smoke-test, and what status will say of the image. The engine acts on
//! the decision and [`crate::report`] turns it into status. Every behaviour of a reconcile but
//! the I/O is here or in the planner, and is tested without I/O.

use std::collections::BTreeSet;

use salad_sd_api::names::group_name_prefix;
use salad_sd_api::validate::validate;
use salad_sd_api::{
    BuildStatus, DeletionPolicy, LayerProgress, SmokeTestStatus, StableDiffusionDeployment,
    StableDiffusionDeploymentStatus,
};
use saladcloud::ResolvedGpuClass;
use saladcloud::model::ContainerGroup;

use crate::builds::BuildState;
use crate::desired::{self, GpuChoice};
use crate::engine::Mode;
use crate::failure::Failure;
use crate::fleet::{self, FleetDecision, FleetFacts};
use crate::gpu_limits;
use crate::plan::{
    self, Action, Desired, ImageState, Observed, ObservedGroup, ObservedQueue, Outcome, Plan,
};
use crate::reason::Reason;
use crate::report::Event;
use crate::secrets::{ResolvedSecrets, SecretError};

/// What a reconcile has to read, by the resource alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing: the spec is invalid, or the resource is deleted with `deletionPolicy: Orphan`.
    Nothing,
    /// The API key and the groups: deleting needs nothing else, so a `kubectl delete -f` that
    /// removed the other Secrets first does not keep the resource from going away.
    ForDeletion,
    /// Secrets, GPU classes, groups, instances and the image.
    Everything,
}

/// What to read for `sdd`.
pub fn reads(sdd: &StableDiffusionDeployment) -> Reads {
    let deleting = sdd.metadata.deletion_timestamp.is_some();
    match (deleting, sdd.spec.deletion_policy) {
        (true, DeletionPolicy::Orphan) => Reads::Nothing,
        (true, DeletionPolicy::Delete) => Reads::ForDeletion,
        (false, _) if !validate(&sdd.spec).is_empty() => Reads::Nothing,
        (false, _) => Reads::Everything,
    }
}

/// How the groups are looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupLookup {
    /// Steady state: one GET per known name (a name not found falls back to a list).
    ByName(Vec<String>),
    /// List the project and keep ours.
    List,
}

/// Steady state costs one GET; anything else lists the project.
pub fn group_lookup(sdd: &StableDiffusionDeployment) -> GroupLookup {
    let prev = previous(sdd);
    let known: BTreeSet<String> = prev
        .container_group
        .iter()
        .map(|g| g.name.clone())
        .chain(sdd.spec.saladcloud.container_group_name.clone())
        .collect();
    let steady = prev.is_ready_at(sdd.metadata.generation)
        && sdd.metadata.deletion_timestamp.is_none()
        && !known.is_empty()
        && prev.previous_container_group.is_none();
    if steady {
        GroupLookup::ByName(known.into_iter().collect())
    } else {
        GroupLookup::List
    }
}

/// Is a listed group the resource's (or the one it names)?
pub fn is_candidate(sdd: &StableDiffusionDeployment, group: &ContainerGroup) -> bool {
    let uid = uid(sdd);
    plan::owned_by(group, &uid)
        || group.name.starts_with(&prefix(sdd))
        || sdd.spec.saladcloud.container_group_name.as_deref() == Some(group.name.as_str())
}

/// Instances are listed only where readiness is in question, and only for our groups.
pub fn needs_instances(sdd: &StableDiffusionDeployment, group: &ContainerGroup) -> bool {
    let replicas = match sdd.spec.replicas_owner() {
        salad_sd_api::ReplicasOwner::Spec => sdd.spec.desired_replicas(),
        _ => group.replicas,
    };
    let in_question = group.pending_change
        || group.current_state.instance_status_counts.running_count < replicas
        || !previous(sdd).is_ready_at(sdd.metadata.generation);
    in_question && plan::owned_by(group, &uid(sdd))
}

/// The job queue to read: the spec's in queue mode, or the one status records (so that one
/// left behind by queue mode turned off, or by the resource's deletion, is deleted).
pub fn queue_lookup(sdd: &StableDiffusionDeployment) -> Option<String> {
    let deleting = sdd.metadata.deletion_timestamp.is_some();
    if deleting && sdd.spec.deletion_policy == DeletionPolicy::Orphan {
        return None;
    }
    previous(sdd)
        .queue
        .map(|q| q.name)
        .or_else(|| (sdd.spec.queue.enabled && !deleting).then(|| prefix(sdd)))
}

/// What observe found. Facts only: nothing here is decided.
#[derive(Debug)]
pub struct Facts {
    /// Secrets, read once.
    pub secrets: ResolvedSecrets,
    /// The spec's GPU classes, resolved (none when deleting).
    pub gpu: Vec<ResolvedGpuClass>,
    /// The resource's groups, with their instances where listed.
    pub groups: Vec<ObservedGroup>,
    /// The image recipe of the spec (when building is in question).
    pub recipe: Option<salad_sd_image::Recipe>,
    /// The image of that recipe.
    pub build: BuildState,
    /// Names SaladCloud refused as used before.
    pub burned: BTreeSet<String>,
    /// System logs, quota and the operator's own reallocations (see [`crate::fleet`]).
    pub fleet: FleetFacts,
    /// The job queue ([`queue_lookup`]), when it exists.
    pub queue: Option<crate::salad::QueueFacts>,
}

/// What observing produced.
#[derive(Debug)]
pub enum Observation {
    /// Nothing was read ([`Reads::Nothing`]).
    Nothing,
    /// Deleting, and the API key is gone.
    ApiKeyMissing(SecretError),
    /// The facts.
    Facts(Box<Facts>),
}

/// The image as the decision sees it.
#[derive(Clone, Debug, Default)]
pub struct ImageFacts {
    /// The image of the current recipe, when built.
    pub built: Option<salad_sd_image::BuiltImage>,
    /// Build progress, while building.
    pub building: Option<BuildStatus>,
    /// The build of the current recipe failed (planning goes on: a serving group keeps serving).
    pub failure: Option<Failure>,
}

/// Whether to smoke-test after acting.
#[derive(Clone, Debug, PartialEq)]
pub enum Smoke {
    /// Run it on this group.
    Run(Box<ContainerGroup>),
    /// Queue mode: enqueue the test's job on the queue for this group version.
    Submit {
        /// The queue.
        queue: String,
        /// The group version the test is for.
        group_version: i32,
    },
    /// Queue mode: read the pending test's job.
    Poll {
        /// The queue.
        queue: String,
        /// The pending result (with its job id).
        pending: SmokeTestStatus,
    },
    /// Keep this result.
    Keep(Option<SmokeTestStatus>),
}

/// Everything one reconcile decided.
#[derive(Debug)]
pub struct Decision {
    /// What should exist.
    pub desired: Desired,
    /// What exists.
    pub observed: Observed,
    /// What to do, and where that leaves things.
    pub plan: Plan,
    /// The image to build for the spec ([`Action::Build`] builds it).
    pub recipe: Option<salad_sd_image::Recipe>,
    /// The image.
    pub image: ImageFacts,
    /// The smoke test.
    pub smoke: Smoke,
    /// Hourly price of one instance at the spec's priority.
    pub hourly_price: Option<f64>,
    /// Events the decision itself produced.
    pub events: Vec<Event>,
    /// What a cold start of one new instance costs (none when deleting).
    pub cold_start: Option<salad_sd_api::ColdStartStatus>,
    /// The instances: status, slow nodes to reallocate, system events (see [`crate::fleet`]).
    pub fleet: FleetDecision,
    /// Who owns the replica count, and the job queue (see [`crate::scaling`]).
    pub scaling: crate::scaling::ScalingFacts,
}

/// Decides. `Err` is a failure found before anything could be planned (an invalid spec, a
/// missing Secret at deletion, a spec the chosen GPU classes cannot run): status says it and
/// nothing is changed.
pub fn decide(
    sdd: &StableDiffusionDeployment,
    observation: &Observation,
    mode: Mode,
) -> Result<Decision, Failure> {
    let deleting = sdd.metadata.deletion_timestamp.is_some();
    let facts = match observation {
        Observation::Nothing if deleting => return Ok(released(sdd, Vec::new())),
        Observation::Nothing => return Err(invalid(sdd)),
        Observation::ApiKeyMissing(e) => return without_api_key(sdd, e),
        Observation::Facts(f) => f,
    };
    let spec = &sdd.spec;
    if !deleting {
        check_gpu_limits(spec, &facts.gpu)?;
    }
    let prev = previous(sdd);
    let generation = sdd.metadata.generation.unwrap_or(1);
    let uid = uid(sdd);
    let mut desired = desired::desired(sdd, &prefix(sdd), generation, &prev);
    let mut observed = Observed {
        groups: facts.groups.clone(),
        image: ImageState::Missing,
        burned_names: facts.burned.clone(),
        queue: facts.queue.as_ref().map(|q| ObservedQueue {
            name: q.name.clone(),
            length: q.length,
            connected: q.container_groups.clone(),
        }),
    };
    let priority = desired::priority(spec.priority);
    let hourly_price = facts
        .gpu
        .iter()
        .filter_map(|g| g.price(priority))
        .reduce(f64::max);
    let choice = GpuChoice {
        ids: facts.gpu.iter().map(|g| g.id.clone()).collect(),
        hourly_price,
    };
    let mut image = ImageFacts::default();
    let mut recipe = None;
    if !deleting {
        recipe = facts.recipe.clone();
        let (state, facts_of_image) = image_state(facts.build.clone());
        observed.image = state;
        image = facts_of_image;
        let reference = match (&image.built, mode) {
            (Some(img), _) => Some(img.reference.clone()),
            // A dry run (`salad-sd diff`) also says what would happen to the group once the
            // image exists: plan against a placeholder digest in the target repository.
            (None, Mode::DryRun) => Some(format!(
                "{}@sha256:{}",
                spec.image.repository,
                "0".repeat(64)
            )),
            (None, Mode::Apply) => None,
        };
        desired.group =
            reference.map(|r| desired::group_definition(spec, &uid, &r, &choice, &facts.secrets));
    }
    let mut plan = plan::plan(&desired, &observed);
    if mode == Mode::DryRun && observed.image == ImageState::Missing && !deleting {
        plan.actions.insert(0, Action::Build);
    }
    let smoke = smoke(sdd, &prev, &plan, &observed, mode);
    let cold_start = (!deleting).then(|| {
        let running: Vec<&str> = observed
            .groups
            .iter()
            .map(|g| g.group.container.image.as_str())
            .collect();
        let serving =
            crate::cold_start::serving_layers(image.built.as_ref(), &running, prev.image.as_ref());
        crate::cold_start::compute(&crate::cold_start::input_for(
            spec,
            image.built.as_ref(),
            serving,
            hourly_price,
        ))
    });
    let fleet = if deleting {
        FleetDecision::default()
    } else {
        decide_fleet(sdd, &prev, &plan, &observed, &image, facts)
    };
    let scaling = crate::scaling::facts(
        spec,
        sdd.metadata.name.as_deref().unwrap_or_default(),
        queue_lookup(sdd).as_deref(),
        observed.queue.as_ref(),
    );
    Ok(Decision {
        desired,
        observed,
        plan,
        recipe,
        image,
        smoke,
        hourly_price,
        cold_start,
        events: fleet.events.clone(),
        fleet,
        scaling,
    })
}

/// The fleet part: the plan's target and the group it replaces, the image's size from the
/// build, and [`fleet::decide`].
fn decide_fleet(
    sdd: &StableDiffusionDeployment,
    prev: &StableDiffusionDeploymentStatus,
    plan: &Plan,
    observed: &Observed,
    image: &ImageFacts,
    facts: &Facts,
) -> FleetDecision {
    let find = |name: &String| observed.groups.iter().find(|g| &g.group.name == name);
    let target = plan.target.as_ref().and_then(find);
    let previous = plan.retiring.iter().find_map(find);
    let layer_bytes = image
        .built
        .as_ref()
        .map(|b| b.layers.iter().map(|l| l.size).sum::<u64>())
        .or_else(|| {
            prev.image
                .as_ref()
                .map(|i| i.layers.iter().map(|l| l.size.max(0) as u64).sum())
        });
    let min_ready = sdd
        .spec
        .rollout
        .min_ready_replicas
        .unwrap_or(sdd.spec.replicas)
        .max(0) as u32;
    fleet::decide(
        &sdd.spec.fleet,
        prev.fleet.as_ref(),
        &fleet::Groups {
            target,
            previous,
            min_ready,
        },
        layer_bytes,
        &facts.fleet,
    )
}

/// The container's resources against the limits of every GPU class it may run on (SaladCloud
/// allocates any of them), with the numbers the group definition sends.
fn check_gpu_limits(
    spec: &salad_sd_api::StableDiffusionDeploymentSpec,
    classes: &[ResolvedGpuClass],
) -> Result<(), Failure> {
    let r = desired::resources(spec, Vec::new());
    gpu_limits::check(r.cpu, r.memory, r.storage_amount, classes)
        .map_err(|message| Failure::stalled(Reason::GpuClassLimits, message))
}

fn invalid(sdd: &StableDiffusionDeployment) -> Failure {
    let message = validate(&sdd.spec)
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Failure::stalled(
        Reason::InvalidSpec,
        format!("the spec is invalid: {message}"),
    )
}

/// Deleting without the API key: release at once when no group was ever recorded, else stall
/// until the key is back (or the user orphans the group).
fn without_api_key(sdd: &StableDiffusionDeployment, e: &SecretError) -> Result<Decision, Failure> {
    let prev = previous(sdd);
    if !e.is_terminal() {
        return Err(e.clone().into());
    }
    if prev.container_group.is_none() && prev.previous_container_group.is_none() {
        return Ok(released(
            sdd,
            vec![Event::warning(
                Reason::ReleasedWithoutApiKey,
                format!(
                    "{e}; no container group was ever recorded for this resource, so it is \
                     released without asking SaladCloud"
                ),
            )],
        ));
    }
    Err(Failure::stalled(
        Reason::SecretMissing,
        format!(
            "{e}; the container group cannot be deleted without it. Restore the Secret, or set \
             spec.deletionPolicy: Orphan to leave the group running and release the resource"
        ),
    ))
}

/// Deletion with nothing on SaladCloud to delete: the finalizer can go.
fn released(sdd: &StableDiffusionDeployment, events: Vec<Event>) -> Decision {
    let prev = previous(sdd);
    let generation = sdd.metadata.generation.unwrap_or(1);
    Decision {
        desired: desired::desired(sdd, &prefix(sdd), generation, &prev),
        observed: Observed {
            groups: Vec::new(),
            image: ImageState::Missing,
            burned_names: BTreeSet::new(),
            queue: None,
        },
        plan: Plan::released(),
        recipe: None,
        image: ImageFacts::default(),
        smoke: Smoke::Keep(prev.smoke_test.clone()),
        hourly_price: None,
        events,
        cold_start: None,
        fleet: FleetDecision::default(),
        scaling: Default::default(),
    }
}

/// The image of the current recipe, from the build's state.
fn image_state(build: BuildState) -> (ImageState, ImageFacts) {
    match build {
        BuildState::Ready(img) => (
            ImageState::Ready,
            ImageFacts {
                built: Some(img),
                ..Default::default()
            },
        ),
        BuildState::Running(progress) => (
            ImageState::Building,
            ImageFacts {
                building: Some(BuildStatus {
                    layers: progress
                        .into_iter()
                        .map(|(name, (done, total))| LayerProgress {
                            name,
                            bytes_done: done as i64,
                            bytes_total: total.map(|t| t as i64),
                        })
                        .collect(),
                }),
                ..Default::default()
            },
        ),
        BuildState::Unknown => (ImageState::Missing, ImageFacts::default()),
        BuildState::Failed(failure) => (
            ImageState::Failed {
                message: format!(
                    "{}; the running container group (if any) keeps serving",
                    failure.message()
                ),
            },
            ImageFacts {
                failure: Some(failure),
                ..Default::default()
            },
        ),
    }
}

/// A txt2img on the target group once a rollout converged, once per group version. A result
/// belongs to the group it ran on: a BlueGreen switch starts over.
pub fn smoke(
    sdd: &StableDiffusionDeployment,
    prev: &StableDiffusionDeploymentStatus,
    plan: &Plan,
    observed: &Observed,
    mode: Mode,
) -> Smoke {
    let target = plan
        .target
        .as_ref()
        .and_then(|t| observed.groups.iter().find(|g| &g.group.name == t));
    let previous = prev
        .smoke_test
        .clone()
        .filter(|_| prev.container_group.as_ref().map(|g| &g.name) == plan.target.as_ref());
    let queue = t_queue(target);
    let due = |t: &ObservedGroup| {
        mode == Mode::Apply
            && plan.outcome == Outcome::Converged
            && previous.as_ref().and_then(|s| s.group_version) != Some(t.group.version as i32)
    };
    match (&sdd.spec.smoke_test, target, queue) {
        // Through the queue: submitted once per group version, then read until it ends.
        (Some(_), Some(_), Some(queue))
            if mode == Mode::Apply
                && previous
                    .as_ref()
                    .is_some_and(|s| s.result == "Pending" && s.job_id.is_some()) =>
        {
            Smoke::Poll {
                queue,
                pending: previous.expect("checked"),
            }
        }
        (Some(_), Some(t), Some(queue)) if due(t) => Smoke::Submit {
            queue,
            group_version: t.group.version as i32,
        },
        (Some(_), Some(t), None) if due(t) => Smoke::Run(Box::new(t.group.clone())),
        _ => Smoke::Keep(previous),
    }
}

/// The queue the target group takes jobs from, if it is connected to one.
fn t_queue(target: Option<&ObservedGroup>) -> Option<String> {
    target
        .and_then(|t| t.group.queue_connection.as_ref())
        .map(|c| c.queue_name.clone())
}

fn previous(sdd: &StableDiffusionDeployment) -> StableDiffusionDeploymentStatus {
    sdd.status.clone().unwrap_or_default()
}

fn uid(sdd: &StableDiffusionDeployment) -> String {
    sdd.metadata.uid.clone().unwrap_or_default()
}

fn prefix(sdd: &StableDiffusionDeployment) -> String {
    group_name_prefix(sdd.metadata.name.as_deref().unwrap_or_default(), &uid(sdd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{resolved_secrets, spec_from_yaml};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use salad_sd_api::ContainerGroupStatus as GroupStatus;
    use salad_sd_api::condition::READY;

    const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");

    fn deleting(mut sdd: StableDiffusionDeployment) -> StableDiffusionDeployment {
        sdd.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        sdd
    }

    fn ready_at(sdd: &mut StableDiffusionDeployment, generation: i64, group: &str) {
        sdd.status = Some(StableDiffusionDeploymentStatus {
            conditions: vec![Condition {
                type_: READY.into(),
                status: "True".into(),
                reason: "Serving".into(),
                message: String::new(),
                observed_generation: Some(generation),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            }],
            container_group: Some(GroupStatus {
                name: group.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    fn facts(sdd: &StableDiffusionDeployment, build: BuildState) -> Observation {
        let secrets = resolved_secrets();
        Observation::Facts(Box::new(Facts {
            recipe: Some(desired::recipe(&sdd.spec, &secrets)),
            secrets,
            gpu: Vec::new(),
            groups: Vec::new(),
            build,
            burned: BTreeSet::new(),
            fleet: FleetFacts::default(),
            queue: None,
        }))
    }

    #[test]
    fn what_to_read() {
        let seed = spec_from_yaml(SEED);
        let mut invalid = seed.clone();
        invalid.spec.models.clear();
        let mut orphan = deleting(seed.clone());
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        let cases = [
            (
                "a valid spec reads everything",
                seed.clone(),
                Reads::Everything,
            ),
            (
                "an invalid spec reads nothing",
                invalid.clone(),
                Reads::Nothing,
            ),
            (
                "Orphan deletion asks SaladCloud nothing",
                orphan,
                Reads::Nothing,
            ),
            (
                "deletion reads only the key",
                deleting(seed),
                Reads::ForDeletion,
            ),
            (
                "an invalid spec is still deleted",
                deleting(invalid),
                Reads::ForDeletion,
            ),
        ];
        for (reason, sdd, want) in cases {
            assert_eq!(reads(&sdd), want, "{reason}");
        }
    }

    #[test]
    fn steady_state_looks_groups_up_by_name() {
        let mut sdd = spec_from_yaml(SEED);
        assert_eq!(group_lookup(&sdd), GroupLookup::List, "nothing known yet");
        ready_at(&mut sdd, 1, "g-1");
        assert_eq!(group_lookup(&sdd), GroupLookup::ByName(vec!["g-1".into()]));
        sdd.metadata.generation = Some(2);
        assert_eq!(
            group_lookup(&sdd),
            GroupLookup::List,
            "a new generation lists"
        );
    }

    #[test]
    fn an_invalid_spec_stalls_with_every_problem() {
        let mut sdd = spec_from_yaml(SEED);
        sdd.spec.models.clear();
        let f = decide(&sdd, &Observation::Nothing, Mode::Apply).unwrap_err();
        assert_eq!(f.reason(), Reason::InvalidSpec);
        assert!(f.is_stalled());
        assert!(
            f.message().starts_with("the spec is invalid: "),
            "{}",
            f.message()
        );
    }

    #[test]
    fn a_dry_run_plans_the_build_and_the_group_against_a_placeholder() {
        let sdd = spec_from_yaml(SEED);
        let d = decide(&sdd, &facts(&sdd, BuildState::Unknown), Mode::DryRun).unwrap();
        assert_eq!(d.plan.actions.first(), Some(&Action::Build));
        assert!(
            d.plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Create { group } if group.container.image.ends_with(&"0".repeat(64)))),
            "{:?}",
            d.plan.actions
        );
        let d = decide(&sdd, &facts(&sdd, BuildState::Unknown), Mode::Apply).unwrap();
        assert_eq!(
            d.plan.actions,
            vec![Action::Build],
            "no group before the image"
        );
    }

    #[test]
    fn deleting_without_the_key_releases_only_what_never_had_a_group() {
        let sdd = deleting(spec_from_yaml(SEED));
        let missing = SecretError::Missing {
            name: "salad-api-key".into(),
            purpose: "the SaladCloud API key".into(),
        };
        let d = decide(
            &sdd,
            &Observation::ApiKeyMissing(missing.clone()),
            Mode::Apply,
        )
        .unwrap();
        assert_eq!(d.plan.outcome, Outcome::Released);
        assert_eq!(d.events[0].reason, Reason::ReleasedWithoutApiKey);
        let mut had = sdd.clone();
        ready_at(&mut had, 1, "g-1");
        let f = decide(&had, &Observation::ApiKeyMissing(missing), Mode::Apply).unwrap_err();
        assert_eq!(f.reason(), Reason::SecretMissing);
        assert!(
            f.message().contains("deletionPolicy: Orphan"),
            "{}",
            f.message()
        );
    }

    #[test]
    fn the_smoke_test_runs_once_per_group_version_and_only_when_converged() {
        let mut sdd = spec_from_yaml(SEED);
        ready_at(&mut sdd, 1, "g-1");
        let group = crate::fake::group_from(&saladcloud::model::ContainerGroupPrototype::new(
            "g-1",
            saladcloud::model::CreateContainer::new("i", Default::default()),
            1,
        ));
        let observed = Observed {
            groups: vec![ObservedGroup {
                group: group.clone(),
                instances: None,
            }],
            image: ImageState::Ready,
            burned_names: BTreeSet::new(),
            queue: None,
        };
        let plan = |outcome| Plan {
            actions: Vec::new(),
            target: Some("g-1".into()),
            retiring: Vec::new(),
            outcome,
        };
        let prev = sdd.status.clone().unwrap();
        assert_eq!(
            smoke(
                &sdd,
                &prev,
                &plan(Outcome::Converged),
                &observed,
                Mode::Apply
            ),
            Smoke::Run(Box::new(group.clone()))
        );
        assert_eq!(
            smoke(
                &sdd,
                &prev,
                &plan(Outcome::Converged),
                &observed,
                Mode::DryRun
            ),
            Smoke::Keep(None),
            "a dry run never sends a request"
        );
        let progressing = Outcome::Progressing {
            reason: Reason::RolloutInProgress,
            message: String::new(),
        };
        assert_eq!(
            smoke(&sdd, &prev, &plan(progressing), &observed, Mode::Apply),
            Smoke::Keep(None)
        );
        let mut done = prev.clone();
        done.smoke_test = Some(SmokeTestStatus {
            result: "Passed".into(),
            group_version: Some(group.version as i32),
            latency_ms: Some(5),
            message: None,
            job_id: None,
        });
        assert_eq!(
            smoke(
                &sdd,
                &done,
                &plan(Outcome::Converged),
                &observed,
                Mode::Apply
            ),
            Smoke::Keep(done.smoke_test.clone()),
            "once per version"
        );
    }
}
