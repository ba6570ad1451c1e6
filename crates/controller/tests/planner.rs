//! The planner, without I/O: table cases (each with the reason it exists) and property tests
//! that run plans against a small in-memory SaladCloud.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use salad_sd_api::names::OWNER_ENV;
use salad_sd_api::{DeletionPolicy, RolloutStrategy};
use salad_sd_controller::diff::{REVISION_ENV, revision};
use salad_sd_controller::plan::{
    Action, DeleteReason, Desired, ImageState, Observed, ObservedGroup, ObservedQueue, Outcome,
    PatchReason, Plan, ReplicasPolicy, owned_by, plan,
};
use saladcloud::model::{
    Container, ContainerGroup, ContainerGroupNetworking, ContainerGroupPatch,
    ContainerGroupPrototype, ContainerGroupState, ContainerGroupStatus, ContainerResources,
    CreateContainer, CreateNetworking, CreateResources, InstanceStatusCounts, LoadBalancer,
    NetworkingProtocol, Nullable, Priority, QueueAutoscaler, QueueConnection,
};

const UID: &str = "3f2a9c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b";
const OTHER_UID: &str = "99999999-0000-0000-0000-000000000000";
const PREFIX: &str = "dreamshaper-3f2a9c1e";
const FIXED: &str = "pinned-group";

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/// The knobs of a spec that matter to the planner.
#[derive(Clone, Debug)]
struct Spec {
    replicas: u32,
    strategy: RolloutStrategy,
    stopped: bool,
    env: BTreeMap<String, String>,
    image: String,
    auth: bool,
    fixed_name: Option<String>,
    adopt: bool,
    deleting: bool,
    policy: DeletionPolicy,
    generation: i64,
    generation_observed: bool,
    /// Queue mode: the connection (path) and the autoscaler's (min, max).
    queue: Option<&'static str>,
    autoscaler: Option<(u32, u32)>,
    replicas_policy: ReplicasPolicy,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            replicas: 2,
            strategy: RolloutStrategy::Recreate,
            stopped: false,
            env: BTreeMap::from([("SD_LOG".into(), "info".into())]),
            image: "127.0.0.1:5000/sd@sha256:aaaa".into(),
            auth: false,
            fixed_name: None,
            adopt: false,
            deleting: false,
            policy: DeletionPolicy::Delete,
            generation: 1,
            generation_observed: false,
            queue: None,
            autoscaler: None,
            replicas_policy: ReplicasPolicy::Enforce,
        }
    }
}

/// The definition the engine would derive (name unset, no revision env).
fn proto(s: &Spec) -> ContainerGroupPrototype {
    let mut container = CreateContainer::new(
        s.image.clone(),
        CreateResources {
            cpu: 4,
            memory: 12288,
            gpu_classes: vec!["cb6c1931-89b6-4f76-976f-54047320ccc6".into()],
            storage_amount: None,
            shm_size: None,
        },
    );
    container.environment_variables = s.env.clone();
    container
        .environment_variables
        .insert(OWNER_ENV.into(), UID.into());
    container.priority = Some(Priority::High);
    container.image_caching = Some(true);
    let mut p = ContainerGroupPrototype::new(String::new(), container, s.replicas);
    p.autostart_policy = !s.stopped;
    p.networking = Some(CreateNetworking {
        protocol: NetworkingProtocol::Http,
        port: 7860,
        auth: s.auth,
        load_balancer: Some(LoadBalancer::RoundRobin),
        single_connection_limit: Some(false),
        client_request_timeout: None,
        server_response_timeout: None,
    });
    p.queue_connection = s.queue.map(|path| QueueConnection {
        path: path.into(),
        port: 7860,
        // The planner's to fill, like the group's name.
        queue_name: String::new(),
    });
    p.queue_autoscaler = s.autoscaler.map(|(min, max)| QueueAutoscaler {
        desired_queue_length: 1,
        min_replicas: min,
        max_replicas: max,
        max_upscale_per_minute: None,
        max_downscale_per_minute: None,
        polling_period: Some(30),
    });
    p
}

fn desired(s: &Spec) -> Desired {
    Desired {
        owner_uid: UID.into(),
        deleting: s.deleting,
        deletion_policy: s.policy,
        strategy: s.strategy,
        stopped: s.stopped,
        fixed_name: s.fixed_name.clone(),
        adopt: s.adopt,
        name_prefix: PREFIX.into(),
        generation: s.generation,
        generation_observed: s.generation_observed,
        min_ready: s.replicas,
        replicas: s.replicas_policy,
        queue: s.queue.map(|_| PREFIX.to_string()),
        group: Some(proto(s)),
    }
}

/// What SaladCloud returns after creating `p` (as the engine sends it: with the revision env)
/// and letting it settle.
fn group_from(p: &ContainerGroupPrototype, name: &str) -> ContainerGroup {
    let c = &p.container;
    let status = if p.autostart_policy {
        ContainerGroupStatus::Running
    } else {
        ContainerGroupStatus::Stopped
    };
    let running = if p.autostart_policy { p.replicas } else { 0 };
    ContainerGroup {
        id: format!("id-{name}"),
        name: name.into(),
        display_name: p.display_name.clone().unwrap_or_else(|| name.into()),
        organization_name: "acme".into(),
        project_name: "image-gen".into(),
        container: Container {
            image: c.image.clone(),
            resources: ContainerResources {
                cpu: c.resources.cpu,
                memory: c.resources.memory,
                gpu_classes: c.resources.gpu_classes.clone(),
                storage_amount: c.resources.storage_amount,
                shm_size: c.resources.shm_size,
            },
            command: c.command.clone(),
            environment_variables: c.environment_variables.clone(),
            image_caching: c.image_caching,
            logging: None,
            hash: None,
            size: None,
        },
        autostart_policy: p.autostart_policy,
        restart_policy: p.restart_policy,
        replicas: p.replicas,
        country_codes: p.country_codes.clone(),
        priority: c.priority,
        networking: p.networking.as_ref().map(|n| ContainerGroupNetworking {
            auth: n.auth,
            dns: format!("{name}-abcdef.salad.cloud"),
            load_balancer: n.load_balancer.unwrap_or_default(),
            port: n.port,
            protocol: n.protocol,
            client_request_timeout: n.client_request_timeout,
            server_response_timeout: n.server_response_timeout,
            single_connection_limit: n.single_connection_limit,
        }),
        startup_probe: p.startup_probe.clone(),
        liveness_probe: p.liveness_probe.clone(),
        readiness_probe: p.readiness_probe.clone(),
        queue_connection: p.queue_connection.clone(),
        queue_autoscaler: p.queue_autoscaler.clone(),
        current_state: ContainerGroupState {
            status,
            description: None,
            start_time: None,
            finish_time: None,
            instance_status_counts: InstanceStatusCounts {
                running_count: running,
                ..Default::default()
            },
        },
        version: 1,
        pending_change: false,
        create_time: None,
        update_time: None,
        scaling_actions: Vec::new(),
        scheduled_scaling_enabled: false,
    }
}

/// The group this resource would have created for `s`, converged.
fn applied(s: &Spec, name: &str) -> ContainerGroup {
    let mut p = proto(s);
    if let Some(c) = p.queue_connection.as_mut() {
        c.queue_name = PREFIX.into();
    }
    let rev = revision(&p);
    p.container
        .environment_variables
        .insert(REVISION_ENV.into(), rev);
    group_from(&p, name)
}

/// A group someone else made (by hand, or another resource) from the same definition.
fn foreign(s: &Spec, name: &str) -> ContainerGroup {
    let mut g = applied(s, name);
    let env = &mut g.container.environment_variables;
    env.remove(REVISION_ENV);
    env.insert(OWNER_ENV.into(), OTHER_UID.into());
    g
}

fn observed(groups: Vec<ContainerGroup>) -> Observed {
    Observed {
        groups: groups
            .into_iter()
            .map(|group| ObservedGroup {
                group,
                instances: None,
            })
            .collect(),
        image: ImageState::Ready,
        burned_names: BTreeSet::new(),
        queue: None,
    }
}

fn name(generation: i64) -> String {
    format!("{PREFIX}-{generation}")
}

fn with_state(mut g: ContainerGroup, status: ContainerGroupStatus, ready: u32) -> ContainerGroup {
    g.current_state.status = status;
    g.current_state.instance_status_counts.running_count = ready;
    g
}

// ---------------------------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------------------------

/// An action reduced to what a case asserts.
#[derive(Clone, Debug, PartialEq)]
enum Want {
    Build,
    Create(String),
    Patch(String, Vec<&'static str>, PatchReason),
    Start(String),
    Stop(String),
    Delete(String, DeleteReason),
    CreateQueue(String),
    DeleteQueue(String),
}

fn summarize(p: &Plan) -> Vec<Want> {
    p.actions
        .iter()
        .map(|a| match a {
            Action::Build => Want::Build,
            Action::Create { group } => Want::Create(group.name.clone()),
            Action::Patch {
                name,
                fields,
                reason,
                ..
            } => Want::Patch(name.clone(), fields.clone(), *reason),
            Action::Start { name } => Want::Start(name.clone()),
            Action::Stop { name } => Want::Stop(name.clone()),
            Action::Delete { name, reason } => Want::Delete(name.clone(), *reason),
            Action::CreateQueue { name } => Want::CreateQueue(name.clone()),
            Action::DeleteQueue { name, .. } => Want::DeleteQueue(name.clone()),
        })
        .collect()
}

/// The outcome reduced to kind and reason.
fn outcome(p: &Plan) -> String {
    match &p.outcome {
        Outcome::Converged => "Converged".into(),
        Outcome::Stopped => "Stopped".into(),
        Outcome::Released => "Released".into(),
        Outcome::Progressing { reason, .. } => format!("Progressing/{reason}"),
        Outcome::Stalled { reason, .. } => format!("Stalled/{reason}"),
    }
}

struct Case {
    reason: &'static str,
    desired: Desired,
    observed: Observed,
    want: Vec<Want>,
    want_outcome: &'static str,
}

fn cases() -> Vec<Case> {
    let base = Spec::default();
    let env_changed = Spec {
        env: BTreeMap::from([("SD_LOG".into(), "debug".into())]),
        generation: 2,
        ..base.clone()
    };
    let blue_green = Spec {
        strategy: RolloutStrategy::BlueGreen,
        ..base.clone()
    };
    let blue_green_env = Spec {
        strategy: RolloutStrategy::BlueGreen,
        ..env_changed.clone()
    };
    let auth_on = Spec {
        auth: true,
        generation: 2,
        ..base.clone()
    };
    let fixed = Spec {
        fixed_name: Some(FIXED.into()),
        ..base.clone()
    };
    let mut cases = vec![
        Case {
            reason: "no group yet: create one with the derived name {prefix}-{generation}",
            desired: desired(&base),
            observed: observed(vec![]),
            want: vec![Want::Create(name(1))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "no image yet: build it and create nothing",
            desired: Desired {
                group: None,
                ..desired(&base)
            },
            observed: Observed {
                image: ImageState::Missing,
                ..observed(vec![])
            },
            want: vec![Want::Build],
            want_outcome: "Progressing/Building",
        },
        Case {
            reason: "a build is running: nothing to do but wait",
            desired: Desired {
                group: None,
                ..desired(&base)
            },
            observed: Observed {
                image: ImageState::Building,
                ..observed(vec![])
            },
            want: vec![],
            want_outcome: "Progressing/Building",
        },
        Case {
            reason: "the build failed: Stalled, the running group is left untouched",
            desired: Desired {
                group: None,
                ..desired(&env_changed)
            },
            observed: Observed {
                image: ImageState::Failed {
                    message: "model download answered 404".into(),
                },
                ..observed(vec![applied(&base, &name(1))])
            },
            want: vec![],
            want_outcome: "Stalled/BuildFailed",
        },
        Case {
            reason: "in sync: nothing to do",
            desired: desired(&base),
            observed: observed(vec![applied(&base, &name(1))]),
            want: vec![],
            want_outcome: "Converged",
        },
        Case {
            reason: "replicas changed in the spec: patch replicas only, a spec change",
            desired: desired(&Spec {
                replicas: 5,
                generation: 2,
                ..base.clone()
            }),
            observed: observed(vec![applied(&base, &name(1))]),
            want: vec![Want::Patch(
                name(1),
                vec!["replicas"],
                PatchReason::SpecChange,
            )],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "replicas changed in the portal while the spec did not: drift",
            desired: desired(&Spec {
                generation_observed: true,
                ..base.clone()
            }),
            observed: observed(vec![applied(
                &Spec {
                    replicas: 7,
                    ..base.clone()
                },
                &name(1),
            )]),
            want: vec![Want::Patch(name(1), vec!["replicas"], PatchReason::Drift)],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "env changed on Recreate: patch the group in place",
            desired: desired(&env_changed),
            observed: observed(vec![applied(&base, &name(1))]),
            want: vec![Want::Patch(
                name(1),
                vec!["container.environment_variables"],
                PatchReason::SpecChange,
            )],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "env changed on BlueGreen: create a new group, keep the serving old one",
            desired: desired(&blue_green_env),
            observed: observed(vec![applied(&blue_green, &name(1))]),
            want: vec![Want::Create(name(2))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "BlueGreen, new group not converged yet: keep the old one",
            desired: desired(&blue_green_env),
            observed: observed(vec![
                applied(&blue_green, &name(1)),
                with_state(
                    applied(&blue_green_env, &name(2)),
                    ContainerGroupStatus::Deploying,
                    0,
                ),
            ]),
            want: vec![],
            want_outcome: "Progressing/RolloutInProgress",
        },
        Case {
            reason: "BlueGreen, new group converged: retire the old one",
            desired: desired(&blue_green_env),
            observed: observed(vec![
                applied(&blue_green, &name(1)),
                applied(&blue_green_env, &name(2)),
            ]),
            want: vec![Want::Delete(name(1), DeleteReason::Retired)],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "BlueGreen: an instance of the new group still on an old version blocks the switch",
            desired: desired(&blue_green_env),
            observed: {
                let mut o = observed(vec![
                    applied(&blue_green, &name(1)),
                    applied(&blue_green_env, &name(2)),
                ]);
                let new_group = &mut o.groups[1];
                new_group.group.version = 2;
                let instance = |id: &str, version: u32| {
                    serde_json::from_value::<saladcloud::model::ContainerGroupInstance>(
                        serde_json::json!({
                            "id": id, "machine_id": id, "state": "running", "version": version,
                            "ready": true, "started": true
                        }),
                    )
                    .unwrap()
                };
                new_group.instances =
                    Some(vec![instance("a", 2), instance("b", 2), instance("c", 1)]);
                new_group.group.replicas = 2;
                o
            },
            want: vec![],
            want_outcome: "Progressing/RolloutInProgress",
        },
        Case {
            reason: "drift: the image was changed in the portal on the current revision",
            desired: desired(&Spec {
                generation_observed: true,
                ..base.clone()
            }),
            observed: observed(vec![{
                let mut g = applied(&base, &name(1));
                g.container.image = "docker.io/someone/else:latest".into();
                g
            }]),
            want: vec![Want::Patch(
                name(1),
                vec!["container.image"],
                PatchReason::Drift,
            )],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "drift on BlueGreen is corrected in place, no new group",
            desired: desired(&blue_green),
            observed: observed(vec![{
                let mut g = applied(&blue_green, &name(1));
                g.container.image = "docker.io/someone/else:latest".into();
                g
            }]),
            want: vec![Want::Patch(
                name(1),
                vec!["container.image"],
                PatchReason::Drift,
            )],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "gateway auth cannot change: Recreate creates a new group, old one serves meanwhile",
            desired: desired(&auth_on),
            observed: observed(vec![applied(&base, &name(1))]),
            want: vec![Want::Create(name(2))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "gateway auth replacement converged: the old group is retired",
            desired: desired(&auth_on),
            observed: observed(vec![applied(&base, &name(1)), applied(&auth_on, &name(2))]),
            want: vec![Want::Delete(name(1), DeleteReason::Retired)],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "immutable change with a fixed containerGroupName: Stalled, nothing touched",
            desired: desired(&Spec {
                auth: true,
                generation: 2,
                ..fixed.clone()
            }),
            observed: observed(vec![applied(&fixed, FIXED)]),
            want: vec![],
            want_outcome: "Stalled/ReplacementNeedsNewName",
        },
        Case {
            reason: "fixed name exists but is not ours and adopt is off: Stalled, no action at all",
            desired: desired(&fixed),
            observed: observed(vec![foreign(&fixed, FIXED)]),
            want: vec![],
            want_outcome: "Stalled/GroupNotOwned",
        },
        Case {
            reason: "fixed name exists, not ours, adopt on: patch it (owner env and revision)",
            desired: desired(&Spec {
                adopt: true,
                ..fixed.clone()
            }),
            observed: observed(vec![foreign(&fixed, FIXED)]),
            want: vec![Want::Patch(
                FIXED.into(),
                vec!["container.environment_variables"],
                PatchReason::SpecChange,
            )],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "fixed name free: create it under that name",
            desired: desired(&fixed),
            observed: observed(vec![]),
            want: vec![Want::Create(FIXED.into())],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "fixed name used before (burned): Stalled instead of a create loop",
            desired: desired(&fixed),
            observed: Observed {
                burned_names: BTreeSet::from([FIXED.to_string()]),
                queue: None,
                ..observed(vec![])
            },
            want: vec![],
            want_outcome: "Stalled/NameUnavailable",
        },
        Case {
            reason: "stopped: stop the running group",
            desired: desired(&Spec {
                stopped: true,
                ..base.clone()
            }),
            observed: observed(vec![applied(&base, &name(1))]),
            want: vec![Want::Stop(name(1))],
            want_outcome: "Progressing/Stopping",
        },
        Case {
            reason: "stopped and already stopped: Stopped, nothing to do",
            desired: desired(&Spec {
                stopped: true,
                ..base.clone()
            }),
            observed: observed(vec![with_state(
                applied(&base, &name(1)),
                ContainerGroupStatus::Stopped,
                0,
            )]),
            want: vec![],
            want_outcome: "Stopped",
        },
        Case {
            reason: "un-stopped: start the stopped group",
            desired: desired(&base),
            observed: observed(vec![with_state(
                applied(&base, &name(1)),
                ContainerGroupStatus::Stopped,
                0,
            )]),
            want: vec![Want::Start(name(1))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "deletion with Delete policy: delete every owned group, not the foreign one",
            desired: desired(&Spec {
                deleting: true,
                ..base.clone()
            }),
            observed: observed(vec![
                applied(&base, &name(1)),
                applied(&env_changed, &name(2)),
                foreign(&base, "someone-elses-group"),
            ]),
            want: vec![
                Want::Delete(name(1), DeleteReason::Cleanup),
                Want::Delete(name(2), DeleteReason::Cleanup),
            ],
            want_outcome: "Progressing/Deleting",
        },
        Case {
            reason: "deletion with Orphan policy: released, the group is left alone",
            desired: desired(&Spec {
                deleting: true,
                policy: DeletionPolicy::Orphan,
                ..base.clone()
            }),
            observed: observed(vec![applied(&base, &name(1))]),
            want: vec![],
            want_outcome: "Released",
        },
        Case {
            reason: "deletion when nothing is left: released",
            desired: desired(&Spec {
                deleting: true,
                ..base.clone()
            }),
            observed: observed(vec![foreign(&base, "someone-elses-group")]),
            want: vec![],
            want_outcome: "Released",
        },
        Case {
            reason: "derived name burned: take the next candidate `-1`",
            desired: desired(&base),
            observed: Observed {
                burned_names: BTreeSet::from([name(1)]),
                queue: None,
                ..observed(vec![])
            },
            want: vec![Want::Create(format!("{}-1", name(1)))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "derived name held by a foreign group: never reuse it, take `-1`",
            desired: desired(&base),
            observed: observed(vec![foreign(&base, &name(1))]),
            want: vec![Want::Create(format!("{}-1", name(1)))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "a foreign group in the same project is never acted on",
            desired: desired(&env_changed),
            observed: observed(vec![
                foreign(&base, "someone-elses-group"),
                applied(&base, &name(1)),
            ]),
            want: vec![Want::Patch(
                name(1),
                vec!["container.environment_variables"],
                PatchReason::SpecChange,
            )],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "the target group failed to pull: Stalled with a hint",
            desired: desired(&base),
            observed: observed(vec![with_state(
                applied(&base, &name(1)),
                ContainerGroupStatus::Failed,
                0,
            )]),
            want: vec![],
            want_outcome: "Stalled/ContainerGroupFailed",
        },
    ];
    // An idle leftover is removed right away when the target serves.
    cases.push(Case {
        reason: "an idle old group is retired even before the new one converged, when something serves",
        desired: desired(&blue_green_env),
        observed: observed(vec![
            with_state(
                applied(&blue_green, &name(1)),
                ContainerGroupStatus::Stopped,
                0,
            ),
            with_state(
                applied(&blue_green_env, &name(2)),
                ContainerGroupStatus::Running,
                1,
            ),
        ]),
        want: vec![Want::Delete(name(1), DeleteReason::Retired)],
        want_outcome: "Progressing/Updating",
    });
    cases.extend(queue_cases());
    cases
}

/// Queue mode, scheduled scaling and the queue autoscaler.
fn queue_cases() -> Vec<Case> {
    let base = Spec::default();
    let queued = Spec {
        queue: Some("/sdapi/v1/txt2img"),
        generation: 2,
        ..base.clone()
    };
    let queued_bg = Spec {
        strategy: RolloutStrategy::BlueGreen,
        ..queued.clone()
    };
    let scaled = Spec {
        autoscaler: Some((0, 4)),
        replicas: 0,
        replicas_policy: ReplicasPolicy::LeaveToOwner,
        ..queued.clone()
    };
    let with_queue = |mut o: Observed| {
        o.queue = Some(ObservedQueue {
            name: PREFIX.into(),
            length: Some(0),
            connected: Vec::new(),
        });
        o
    };
    let at = |mut g: ContainerGroup, replicas: u32| {
        g.replicas = replicas;
        g.current_state.instance_status_counts.running_count = replicas;
        g
    };
    vec![
        Case {
            reason: "queue mode: the queue is created before the group that connects to it",
            desired: desired(&Spec {
                generation: 1,
                ..queued.clone()
            }),
            observed: observed(vec![]),
            want: vec![Want::CreateQueue(PREFIX.into()), Want::Create(name(1))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "a queue on a group that exists without one is never patched: Recreate makes a new group",
            desired: desired(&queued),
            observed: with_queue(observed(vec![applied(&base, &name(1))])),
            want: vec![Want::Create(name(2))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "a queue on a group that exists without one goes the BlueGreen way",
            desired: desired(&queued_bg),
            observed: with_queue(observed(vec![applied(
                &Spec {
                    strategy: RolloutStrategy::BlueGreen,
                    ..base.clone()
                },
                &name(1),
            )])),
            want: vec![Want::Create(name(2))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "a pinned group name cannot take a queue connection",
            desired: desired(&Spec {
                fixed_name: Some(FIXED.into()),
                ..queued.clone()
            }),
            observed: with_queue(observed(vec![applied(&base, FIXED)])),
            want: vec![],
            want_outcome: "Stalled/ReplacementNeedsNewName",
        },
        Case {
            reason: "queue mode off: the queue goes once no group connects to it",
            desired: desired(&Spec {
                generation: 3,
                ..base.clone()
            }),
            observed: with_queue(observed(vec![applied(&base, &name(3))])),
            want: vec![Want::DeleteQueue(PREFIX.into())],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "queue mode off: the queue stays while the old group still connects",
            desired: desired(&Spec {
                generation: 3,
                strategy: RolloutStrategy::BlueGreen,
                ..base.clone()
            }),
            observed: with_queue(observed(vec![
                applied(&queued_bg, &name(2)),
                with_state(
                    applied(
                        &Spec {
                            generation: 3,
                            strategy: RolloutStrategy::BlueGreen,
                            ..base.clone()
                        },
                        &name(3),
                    ),
                    ContainerGroupStatus::Deploying,
                    0,
                ),
            ])),
            want: vec![],
            want_outcome: "Progressing/RolloutInProgress",
        },
        Case {
            reason: "deletion: the groups first, the queue after",
            desired: desired(&Spec {
                deleting: true,
                ..queued.clone()
            }),
            observed: with_queue(observed(vec![applied(&queued, &name(2))])),
            want: vec![Want::Delete(name(2), DeleteReason::Cleanup)],
            want_outcome: "Progressing/Deleting",
        },
        Case {
            reason: "deletion: the queue once the groups are gone",
            desired: desired(&Spec {
                deleting: true,
                ..queued.clone()
            }),
            observed: with_queue(observed(vec![])),
            want: vec![Want::DeleteQueue(PREFIX.into())],
            want_outcome: "Progressing/Deleting",
        },
        Case {
            reason: "deletion: a queue SaladCloud still lists a group on waits",
            desired: desired(&Spec {
                deleting: true,
                ..queued.clone()
            }),
            observed: {
                let mut o = with_queue(observed(vec![]));
                o.queue.as_mut().unwrap().connected = vec!["someone-elses-group".into()];
                o
            },
            want: vec![],
            want_outcome: "Released",
        },
        Case {
            reason: "Orphan leaves the queue with the group",
            desired: desired(&Spec {
                deleting: true,
                policy: DeletionPolicy::Orphan,
                ..queued.clone()
            }),
            observed: with_queue(observed(vec![applied(&queued, &name(2))])),
            want: vec![],
            want_outcome: "Released",
        },
        Case {
            reason: "the autoscaler at 0 is converged: serving through the queue",
            desired: desired(&scaled),
            observed: with_queue(observed(vec![at(applied(&scaled, &name(2)), 0)])),
            want: vec![],
            want_outcome: "Converged",
        },
        Case {
            reason: "what the autoscaler set is not drift",
            desired: desired(&scaled),
            observed: with_queue(observed(vec![at(applied(&scaled, &name(2)), 4)])),
            want: vec![],
            want_outcome: "Converged",
        },
        Case {
            reason: "autoscaler bounds are patched in place",
            desired: desired(&Spec {
                autoscaler: Some((1, 8)),
                generation: 3,
                ..scaled.clone()
            }),
            observed: with_queue(observed(vec![at(applied(&scaled, &name(2)), 2)])),
            want: vec![Want::Patch(
                name(2),
                vec!["queue_autoscaler settings"],
                PatchReason::SpecChange,
            )],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "removing the autoscaler makes a new group (SaladCloud cannot remove one)",
            desired: desired(&Spec {
                generation: 3,
                ..queued.clone()
            }),
            observed: with_queue(observed(vec![at(applied(&scaled, &name(2)), 2)])),
            want: vec![Want::Create(name(3))],
            want_outcome: "Progressing/Updating",
        },
        Case {
            reason: "a schedule's count is left alone once spec.replicas was applied",
            desired: desired(&Spec {
                replicas_policy: ReplicasPolicy::LeaveToOwner,
                generation_observed: true,
                ..base.clone()
            }),
            observed: observed(vec![at(applied(&base, &name(1)), 5)]),
            want: vec![],
            want_outcome: "Converged",
        },
        Case {
            reason: "a new spec.replicas under a schedule (kubectl scale) is applied once",
            desired: desired(&Spec {
                replicas: 3,
                generation: 2,
                ..base.clone()
            }),
            observed: observed(vec![at(applied(&base, &name(1)), 5)]),
            want: vec![Want::Patch(
                name(1),
                vec!["replicas"],
                PatchReason::SpecChange,
            )],
            want_outcome: "Progressing/Updating",
        },
    ]
}

#[test]
fn table() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 25);
    for c in &all {
        let p = plan(&c.desired, &c.observed);
        let got = summarize(&p);
        let got_outcome = outcome(&p);
        if got != c.want || got_outcome != c.want_outcome {
            failures.push(format!(
                "{}\n  want {:?} / {}\n  got  {:?} / {}",
                c.reason, c.want, c.want_outcome, got, got_outcome
            ));
        }
        for a in &p.actions {
            if let Some(n) = subject(a) {
                let g = c.observed.groups.iter().find(|g| g.group.name == n);
                assert!(
                    g.is_none_or(|g| owned_by(&g.group, UID)
                        || (c.desired.adopt && c.desired.fixed_name.as_deref() == Some(n))),
                    "{}: acted on a group that is not ours: {a:?}",
                    c.reason
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_create_carries_the_revision_owner_and_autostart() {
    let s = Spec {
        stopped: true,
        ..Spec::default()
    };
    let p = plan(&desired(&s), &observed(vec![]));
    let Some(Action::Create { group }) = p.actions.first() else {
        panic!("expected a create: {p:?}")
    };
    let env = &group.container.environment_variables;
    assert_eq!(env.get(OWNER_ENV).map(String::as_str), Some(UID));
    assert_eq!(
        env.get(REVISION_ENV).map(String::as_str),
        Some(revision(&proto(&s)).as_str())
    );
    assert!(
        !group.autostart_policy,
        "a stopped spec creates a stopped group"
    );
    assert_eq!(p.target.as_deref(), Some(name(1).as_str()));
}

#[test]
fn an_env_patch_sends_the_whole_map_with_the_new_revision() {
    let base = Spec::default();
    let mut changed = base.clone();
    changed.env.insert("NEW".into(), "1".into());
    changed.env.remove("SD_LOG");
    let p = plan(
        &desired(&changed),
        &observed(vec![applied(&base, &name(1))]),
    );
    let Some(Action::Patch { patch, .. }) = p.actions.first() else {
        panic!("expected a patch: {p:?}")
    };
    let env = patch
        .container
        .as_ref()
        .and_then(|c| c.environment_variables.as_ref())
        .expect("env in the patch");
    assert!(!env.contains_key("SD_LOG"), "removed keys are gone");
    assert_eq!(env.get("NEW").map(String::as_str), Some("1"));
    assert_eq!(env.get(OWNER_ENV).map(String::as_str), Some(UID));
    assert_eq!(
        env.get(REVISION_ENV).map(String::as_str),
        Some(revision(&proto(&changed)).as_str())
    );
    assert!(patch.replicas.is_none(), "only what differs is sent");
}

fn subject(a: &Action) -> Option<&str> {
    match a {
        Action::Build | Action::Create { .. } => None,
        Action::CreateQueue { name } | Action::DeleteQueue { name, .. } => Some(name),
        Action::Patch { name, .. }
        | Action::Start { name }
        | Action::Stop { name }
        | Action::Delete { name, .. } => Some(name),
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny SaladCloud
// ---------------------------------------------------------------------------------------------

/// Container groups of one project, applying actions the way SaladCloud does.
#[derive(Clone, Debug)]
struct World {
    groups: Vec<ContainerGroup>,
    /// Every name ever used (SaladCloud never reuses names).
    used: BTreeSet<String>,
    /// Names the engine learnt were used (from 409s).
    burned: BTreeSet<String>,
    /// Job queues.
    queues: BTreeSet<String>,
}

impl World {
    fn observed(&self) -> Observed {
        Observed {
            burned_names: self.burned.clone(),
            queue: self.queues.first().map(|name| ObservedQueue {
                name: name.clone(),
                length: Some(0),
                connected: Vec::new(),
            }),
            ..observed(self.groups.clone())
        }
    }

    fn get(&mut self, name: &str) -> &mut ContainerGroup {
        self.groups
            .iter_mut()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("no group `{name}`"))
    }

    fn apply(&mut self, a: &Action) {
        match a {
            Action::Build => {}
            Action::Create { group } => {
                if self.used.contains(&group.name) {
                    // 409: the engine remembers the name as burned.
                    self.burned.insert(group.name.clone());
                    return;
                }
                if let Some(c) = &group.queue_connection {
                    assert!(
                        self.queues.contains(&c.queue_name),
                        "a group connects to queue `{}` before it exists",
                        c.queue_name
                    );
                }
                self.used.insert(group.name.clone());
                let mut g = group_from(group, &group.name);
                if group.autostart_policy {
                    g.current_state.status = ContainerGroupStatus::Deploying;
                    g.current_state.instance_status_counts.running_count = 0;
                }
                self.groups.push(g);
            }
            Action::Patch { name, patch, .. } => apply_patch(self.get(name), patch),
            Action::Stop { name } => {
                let g = self.get(name);
                g.current_state.status = ContainerGroupStatus::Stopped;
                g.current_state.instance_status_counts.running_count = 0;
            }
            Action::Start { name } => {
                let g = self.get(name);
                g.current_state.status = ContainerGroupStatus::Deploying;
            }
            Action::Delete { name, .. } => self.groups.retain(|g| &g.name != name),
            Action::CreateQueue { name } => {
                self.queues.insert(name.clone());
            }
            Action::DeleteQueue { name, .. } => {
                assert!(
                    !self.groups.iter().any(|g| g
                        .queue_connection
                        .as_ref()
                        .is_some_and(|c| &c.queue_name == name)),
                    "queue `{name}` deleted while a group connects to it"
                );
                self.queues.remove(name);
            }
        }
    }

    /// Time passes: deploying groups run, pending changes land.
    fn settle(&mut self) {
        for g in &mut self.groups {
            match g.current_state.status {
                ContainerGroupStatus::Deploying | ContainerGroupStatus::Running => {
                    g.current_state.status = ContainerGroupStatus::Running;
                    g.current_state.instance_status_counts.running_count = g.replicas;
                    g.pending_change = false;
                }
                ContainerGroupStatus::Stopped => g.pending_change = false,
                _ => {}
            }
        }
    }
}

/// RFC 7396 merge of the fields our patches use; a versioned change bumps `version`.
fn apply_patch(g: &mut ContainerGroup, p: &ContainerGroupPatch) {
    let mut versioned = false;
    if let Some(r) = p.replicas {
        g.replicas = r;
        if g.current_state.status == ContainerGroupStatus::Running {
            g.current_state.instance_status_counts.running_count =
                g.current_state.instance_status_counts.running_count.min(r);
        }
    }
    match &p.country_codes {
        Nullable::Value(v) => g.country_codes = v.clone(),
        Nullable::Null => g.country_codes.clear(),
        Nullable::Absent => {}
    }
    if let Nullable::Value(n) = &p.display_name {
        g.display_name = n.clone();
    }
    if let Some(c) = &p.container {
        if let Some(image) = &c.image {
            g.container.image = image.clone();
            versioned = true;
            if g.current_state.status == ContainerGroupStatus::Failed {
                g.current_state.status = ContainerGroupStatus::Deploying;
            }
        }
        match &c.command {
            Nullable::Value(v) => {
                g.container.command = Some(v.clone());
                versioned = true;
            }
            Nullable::Null => {
                g.container.command = None;
                versioned = true;
            }
            Nullable::Absent => {}
        }
        if let Some(env) = &c.environment_variables {
            g.container.environment_variables = env.clone();
            versioned = true;
        }
        if let Some(pr) = c.priority {
            g.priority = Some(pr);
            versioned = true;
        }
        if let Some(ic) = c.image_caching {
            g.container.image_caching = Some(ic);
            versioned = true;
        }
        if let Some(r) = &c.resources {
            if let Some(cpu) = r.cpu {
                g.container.resources.cpu = cpu;
            }
            if let Some(m) = r.memory {
                g.container.resources.memory = m;
            }
            if let Some(gc) = &r.gpu_classes {
                g.container.resources.gpu_classes = gc.clone();
            }
            versioned = true;
        }
    }
    if let Some(n) = &p.networking
        && let (Some(port), Some(net)) = (n.port, g.networking.as_mut())
    {
        net.port = port;
        versioned = true;
    }
    for (patch, slot) in [
        (&p.startup_probe, &mut g.startup_probe),
        (&p.liveness_probe, &mut g.liveness_probe),
        (&p.readiness_probe, &mut g.readiness_probe),
    ] {
        match patch {
            Nullable::Value(v) => {
                *slot = Some(v.clone());
                versioned = true;
            }
            Nullable::Null => {
                *slot = None;
                versioned = true;
            }
            Nullable::Absent => {}
        }
    }
    if versioned {
        g.version += 1;
        if g.current_state.status == ContainerGroupStatus::Running
            || g.current_state.status == ContainerGroupStatus::Deploying
        {
            g.pending_change = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        (
            0u32..4,
            any::<bool>(),
            prop::bool::weighted(0.25),
            0usize..3,
        ),
        (0usize..3, any::<bool>(), 0usize..3, any::<bool>()),
        (
            prop::bool::weighted(0.2),
            any::<bool>(),
            1i64..5,
            any::<bool>(),
        ),
        (0usize..3, any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (replicas, blue_green, stopped, env),
                (image, auth, fixed, adopt),
                (deleting, orphan, generation, generation_observed),
                (queue, autoscaler, leave),
            )| Spec {
                queue: [None, Some("/prompt"), Some("/sdapi/v1/txt2img")][queue],
                autoscaler: (queue > 0 && autoscaler).then_some((0, 4)),
                replicas_policy: if leave {
                    ReplicasPolicy::LeaveToOwner
                } else {
                    ReplicasPolicy::Enforce
                },
                replicas,
                strategy: if blue_green {
                    RolloutStrategy::BlueGreen
                } else {
                    RolloutStrategy::Recreate
                },
                stopped,
                env: BTreeMap::from([("SD_LOG".into(), ["info", "debug", "warn"][env].into())]),
                image: format!(
                    "127.0.0.1:5000/sd@sha256:{}",
                    ["aaaa", "bbbb", "cccc"][image]
                ),
                auth,
                // Fixed names in a third of the cases.
                fixed_name: (fixed == 0).then(|| FIXED.to_string()),
                adopt,
                deleting,
                policy: if orphan {
                    DeletionPolicy::Orphan
                } else {
                    DeletionPolicy::Delete
                },
                generation,
                generation_observed,
            },
        )
}

/// One pre-existing group: a variation of the spec, under some name, in some state.
#[derive(Clone, Debug)]
struct Seed {
    owner: u8,
    name: usize,
    variant: (u32, usize, usize, bool),
    status: usize,
    ready: u32,
    pending: bool,
}

fn seed_strategy() -> impl Strategy<Value = Seed> {
    (
        0u8..3,
        0usize..5,
        (0u32..4, 0usize..3, 0usize..3, any::<bool>()),
        0usize..4,
        0u32..4,
        any::<bool>(),
    )
        .prop_map(|(owner, name, variant, status, ready, pending)| Seed {
            owner,
            name,
            variant,
            status,
            ready,
            pending,
        })
}

fn world_from(spec: &Spec, seeds: &[Seed], burn: &[usize]) -> World {
    let names = [
        FIXED.to_string(),
        name(1),
        name(2),
        name(spec.generation),
        "someone-elses-group".to_string(),
    ];
    let mut w = World {
        groups: Vec::new(),
        used: BTreeSet::new(),
        burned: BTreeSet::new(),
        queues: BTreeSet::new(),
    };
    for s in seeds {
        let n = &names[s.name];
        if w.used.contains(n) {
            continue;
        }
        let (replicas, env, image, auth) = s.variant;
        let variant = Spec {
            replicas,
            env: BTreeMap::from([("SD_LOG".into(), ["info", "debug", "warn"][env].into())]),
            image: format!(
                "127.0.0.1:5000/sd@sha256:{}",
                ["aaaa", "bbbb", "cccc"][image]
            ),
            auth,
            stopped: false,
            // Some groups predate queue mode (or outlived it).
            queue: if env == 2 { None } else { spec.queue },
            autoscaler: if env == 2 { None } else { spec.autoscaler },
            ..spec.clone()
        };
        let mut g = match s.owner {
            // Twice as likely ours as not.
            0 | 1 => applied(&variant, n),
            // Another resource's groups connect to their own queue, never to ours.
            _ => ContainerGroup {
                queue_connection: None,
                ..foreign(&variant, n)
            },
        };
        let status = [
            ContainerGroupStatus::Running,
            ContainerGroupStatus::Deploying,
            ContainerGroupStatus::Stopped,
            ContainerGroupStatus::Failed,
        ][s.status];
        g.current_state.status = status;
        g.current_state.instance_status_counts.running_count = match status {
            ContainerGroupStatus::Running => s.ready.min(replicas),
            _ => 0,
        };
        g.pending_change = s.pending && status == ContainerGroupStatus::Running;
        if let Some(c) = &mut g.queue_connection {
            w.queues.insert(c.queue_name.clone());
        }
        w.used.insert(n.clone());
        w.groups.push(g);
    }
    for &b in burn {
        // Names used by groups deleted long ago.
        let n = [name(spec.generation), FIXED.to_string(), name(1)][b].clone();
        if !w.groups.iter().any(|g| g.name == n) {
            w.used.insert(n.clone());
            w.burned.insert(n);
        }
    }
    w
}

fn is_ours(g: &ContainerGroup, d: &Desired) -> bool {
    owned_by(g, UID) || (d.adopt && d.fixed_name.as_deref() == Some(g.name.as_str()))
}

fn is_serving(g: &ContainerGroup) -> bool {
    g.current_state.status == ContainerGroupStatus::Running
        && !g.pending_change
        && g.current_state.instance_status_counts.running_count > 0
}

/// Checks one plan against the world it was made for (properties c, d, e).
fn check_plan(d: &Desired, w: &World, p: &Plan) -> Result<(), TestCaseError> {
    let before = w.observed();
    let mut deleted = BTreeSet::new();
    for a in &p.actions {
        match a {
            Action::Create { group } => {
                // (e) never a name that exists or is known to be burned.
                prop_assert!(
                    !w.groups.iter().any(|g| g.name == group.name),
                    "create of an existing name {}",
                    group.name
                );
                prop_assert!(
                    !before.burned_names.contains(&group.name),
                    "create of a burned name {}",
                    group.name
                );
                prop_assert!(!d.deleting, "create while deleting");
            }
            Action::Build => {}
            Action::CreateQueue { name } => {
                prop_assert!(!d.deleting, "queue created while deleting");
                prop_assert_eq!(Some(name), d.queue.as_ref(), "only the resource's queue");
                prop_assert!(!w.queues.contains(name), "queue created twice");
            }
            Action::DeleteQueue { name, .. } => {
                prop_assert!(w.queues.contains(name), "delete of a missing queue");
                prop_assert!(
                    d.deleting || d.queue.as_ref() != Some(name),
                    "the wanted queue deleted"
                );
            }
            other => {
                // (c) only our groups are ever touched.
                let n = subject(other).expect("named action");
                let g = w.groups.iter().find(|g| g.name == n);
                prop_assert!(g.is_some(), "action on a missing group: {other:?}");
                prop_assert!(
                    is_ours(g.expect("checked"), d),
                    "action on a group that is not ours: {other:?}"
                );
                if let Action::Delete { name, .. } = other {
                    deleted.insert(name.clone());
                    prop_assert_ne!(p.target.as_deref(), Some(name.as_str()));
                }
            }
        }
    }
    // (d) BlueGreen keeps something serving while it deletes.
    if d.strategy == RolloutStrategy::BlueGreen
        && !d.deleting
        && !d.stopped
        && d.fixed_name.is_none()
        && d.group.as_ref().is_some_and(|g| g.replicas > 0)
        && !deleted.is_empty()
    {
        let ours: Vec<&ContainerGroup> = w.groups.iter().filter(|g| is_ours(g, d)).collect();
        let serving_before = ours.iter().filter(|g| is_serving(g)).count();
        let serving_after = ours
            .iter()
            .filter(|g| !deleted.contains(&g.name) && is_serving(g))
            .count();
        prop_assert!(
            serving_before == 0 || serving_after > 0,
            "BlueGreen deleted the last serving group: {:?}",
            p.actions
        );
    }
    Ok(())
}

/// Plans, applies and settles until the plan is empty twice in a row.
fn converge(d: &Desired, w: &mut World) -> Result<Plan, TestCaseError> {
    let mut empty_in_a_row = 0;
    for _round in 0..10 {
        let p = plan(d, &w.observed());
        check_plan(d, w, &p)?;
        // An empty plan while waiting (a rollout in progress) may be followed by actions once
        // the world moves on; an empty plan at rest must stay empty.
        let at_rest = !matches!(p.outcome, Outcome::Progressing { .. });
        if p.actions.is_empty() && !at_rest {
            empty_in_a_row = 0;
        } else if p.actions.is_empty() {
            empty_in_a_row += 1;
            if empty_in_a_row == 2 {
                return Ok(p);
            }
        } else {
            prop_assert_eq!(empty_in_a_row, 0, "a plan came back after an empty one");
            for a in &p.actions {
                w.apply(a);
            }
        }
        w.settle();
    }
    Err(TestCaseError::fail(format!(
        "no convergence in 10 rounds: {:?}",
        plan(d, &w.observed())
    )))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// (a) idempotence, (b) one group per incarnation, (c)-(e) via `check_plan`.
    #[test]
    fn plans_converge_safely(
        spec in spec_strategy(),
        seeds in prop::collection::vec(seed_strategy(), 0..=3),
        burn in prop::collection::vec(0usize..3, 0..2),
    ) {
        let d = desired(&spec);
        let mut w = world_from(&spec, &seeds, &burn);
        // Their configuration; time may still move their state along.
        let config = |w: &World| -> Vec<ContainerGroup> {
            w.groups
                .iter()
                .filter(|g| !is_ours(g, &d))
                .map(|g| ContainerGroup {
                    current_state: ContainerGroupState::default(),
                    pending_change: false,
                    ..g.clone()
                })
                .collect()
        };
        let foreign_before = config(&w);
        let last = converge(&d, &mut w)?;

        // (c) foreign groups are exactly as they were.
        prop_assert_eq!(foreign_before, config(&w));

        // (b) one group per incarnation at the end.
        let ours: Vec<&ContainerGroup> = w.groups.iter().filter(|g| is_ours(g, &d)).collect();
        match &last.outcome {
            Outcome::Converged | Outcome::Stopped => {
                prop_assert_eq!(ours.len(), 1, "groups: {:?}", ours.iter().map(|g| &g.name).collect::<Vec<_>>());
                let g = ours[0];
                prop_assert_eq!(Some(g.name.as_str()), last.target.as_deref());
                if spec.replicas_policy == ReplicasPolicy::Enforce {
                    prop_assert_eq!(g.replicas, spec.replicas);
                }
                // (f) queue mode: the queue exists and the group is connected to it; otherwise
                // no queue is left behind.
                match spec.queue {
                    Some(path) => {
                        prop_assert_eq!(w.queues.iter().collect::<Vec<_>>(), vec![PREFIX]);
                        let c = g.queue_connection.as_ref();
                        prop_assert_eq!(c.map(|c| (c.path.as_str(), c.queue_name.as_str())), Some((path, PREFIX)));
                        prop_assert_eq!(g.queue_autoscaler.is_some(), spec.autoscaler.is_some());
                    }
                    None => {
                        prop_assert!(w.queues.is_empty(), "queue left behind: {:?}", w.queues);
                        prop_assert!(g.queue_connection.is_none());
                    }
                }
                prop_assert_eq!(&g.container.image, &spec.image);
                prop_assert_eq!(g.networking.as_ref().map(|n| n.auth), Some(spec.auth));
                if last.outcome == Outcome::Stopped {
                    prop_assert!(spec.stopped);
                    prop_assert_eq!(g.current_state.status, ContainerGroupStatus::Stopped);
                } else {
                    prop_assert!(!spec.stopped);
                    prop_assert!(g.replicas == 0 || is_serving(g));
                }
            }
            Outcome::Released => {
                prop_assert!(spec.deleting);
                if spec.policy == DeletionPolicy::Delete {
                    prop_assert!(ours.is_empty());
                    prop_assert!(w.queues.is_empty(), "queue left behind: {:?}", w.queues);
                }
            }
            Outcome::Stalled { .. } => {
                prop_assert!(!spec.deleting);
                prop_assert!(ours.len() <= 3);
            }
            Outcome::Progressing { reason, message } => {
                return Err(TestCaseError::fail(format!(
                    "empty plan but still progressing: {reason}: {message}"
                )));
            }
        }
        if spec.deleting {
            prop_assert_eq!(&last.outcome, &Outcome::Released);
        }
    }

    /// A plan is a pure function: the same inputs give the same plan.
    #[test]
    fn planning_is_deterministic(
        spec in spec_strategy(),
        seeds in prop::collection::vec(seed_strategy(), 0..=3),
    ) {
        let d = desired(&spec);
        let w = world_from(&spec, &seeds, &[]);
        prop_assert_eq!(plan(&d, &w.observed()), plan(&d, &w.observed()));
    }
}
