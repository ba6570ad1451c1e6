//! The engine's decisions end to end, against the in-memory SaladCloud behind the seam: no
//! simulator, no registry, no network. Each test says which behaviour it holds.

use std::collections::BTreeSet;
use std::time::Duration;

use salad_sd_api::condition::{READY, RECONCILING, STALLED};
use salad_sd_api::{Phase, StableDiffusionDeployment};
use salad_sd_controller::fake::FakeSalad;
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::reason::Reason;
use salad_sd_controller::secrets::MapSecretStore;
use salad_sd_controller::{Engine, EventType, Mode, Reconciled};
use saladcloud::model::{ContainerGroupInstance, InstanceState, SystemLog};

const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");
const UID: &str = "3f2a9c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b";

fn seed() -> StableDiffusionDeployment {
    let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(SEED).unwrap();
    sdd.metadata.uid = Some(UID.into());
    sdd.metadata.generation = Some(1);
    sdd.metadata.namespace = Some("default".into());
    sdd.spec.smoke_test = None;
    sdd
}

fn store() -> MapSecretStore {
    MapSecretStore::default()
        .with("salad-api-key", "apiKey", "key")
        .with(
            "registry-push",
            ".dockerconfigjson",
            r#"{"auths":{"ghcr.io":{"username":"u","password":"p"}}}"#,
        )
        .with("ghcr-pull", "username", "u")
        .with("ghcr-pull", "password", "p")
}

/// An engine on `fake` that already has the spec's image.
async fn engine(fake: &FakeSalad, sdd: &StableDiffusionDeployment) -> Engine {
    let engine = EngineBuilder::new().fake(fake).build();
    salad_sd_controller::harness::assume_image_built(&engine, sdd, &store(), '1').await;
    engine
}

async fn reconcile(engine: &Engine, sdd: &mut StableDiffusionDeployment) -> Reconciled {
    let r = engine.reconcile(sdd, &store(), Mode::Apply).await;
    sdd.status = Some(r.status.clone());
    r
}

fn mutating(calls: &[String]) -> Vec<String> {
    let reads: BTreeSet<&str> = [
        "list_gpu_classes",
        "list_container_groups",
        "get_container_group",
        "list_container_group_instances",
        "get_system_logs",
        "get_quotas",
        "get_queue",
    ]
    .into();
    calls
        .iter()
        .filter(|c| !reads.contains(c.as_str()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_new_resource_is_created_once_and_is_ready_when_its_instances_are() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    let engine = engine(&fake, &sdd).await;
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.events.iter().any(|e| e.reason == Reason::Created));
    assert!(r.status.is_true(RECONCILING), "{:?}", r.status.conditions);
    assert_eq!(mutating(&fake.calls()), ["create_container_group"]);
    fake.settle();
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.status.is_ready_at(Some(1)), "{:?}", r.status.conditions);
    assert_eq!(r.status.phase, Phase::Running);
    assert_eq!(r.status.replica_summary.as_deref(), Some("3/3"));
    assert_eq!(r.status.estimated_hourly_cost_usd.as_deref(), Some("0.300"));
    let before = fake.calls().len();
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.plan.unwrap().actions.is_empty());
    let steady = &fake.calls()[before..];
    assert_eq!(
        steady,
        ["list_gpu_classes", "get_container_group"],
        "one GET at steady state"
    );
}

#[tokio::test]
async fn a_used_name_is_burned_and_the_next_one_chosen() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    let prefix = salad_sd_api::names::group_name_prefix("dreamshaper", UID);
    fake.burn(&format!("{prefix}-1"));
    let engine = engine(&fake, &sdd).await;
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.events.iter().any(|e| e.reason == Reason::NameTaken));
    reconcile(&engine, &mut sdd).await;
    let names: Vec<String> = fake.groups().into_iter().map(|g| g.name).collect();
    assert_eq!(names, [format!("{prefix}-1-1")]);
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_the_next_reconcile_creates() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    let engine = engine(&fake, &sdd).await;
    fake.fail_once("create_container_group", 503);
    let r = reconcile(&engine, &mut sdd).await;
    let failure = r.failure.as_ref().expect("a failure");
    assert_eq!(failure.reason(), Reason::SaladUnavailable);
    assert!(!failure.is_stalled());
    assert!(r.status.is_true(RECONCILING));
    assert!(fake.groups().is_empty());
    reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.groups().len(), 1);
}

#[tokio::test]
async fn resources_a_gpu_class_cannot_run_stall_before_anything_is_created() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    sdd.spec.resources.cpu = 32;
    let engine = engine(&fake, &sdd).await;
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.status.is_true(STALLED), "{:?}", r.status.conditions);
    let stalled = r.status.condition(STALLED).unwrap();
    assert_eq!(stalled.reason, "GpuClassLimits");
    assert!(
        stalled.message.contains("RTX 3060 Ti") && stalled.message.contains("1-16"),
        "names the class and its limits: {}",
        stalled.message
    );
    assert!(mutating(&fake.calls()).is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn deletion_deletes_the_group_then_releases() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    fake.settle();
    reconcile(&engine, &mut sdd).await;
    sdd.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.events.iter().any(|e| e.reason == Reason::Deleted));
    assert!(!r.release_finalizer, "released only once the group is gone");
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.release_finalizer);
    assert!(fake.groups().is_empty());
    assert!(!r.status.is_true(READY));
}

#[tokio::test]
async fn status_says_what_a_cold_start_costs_when_the_checkpoint_is_fetched() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    let m = &mut sdd.spec.models[0];
    m.delivery = salad_sd_api::ModelDelivery::FetchedAtStart;
    m.source.sha256 =
        Some("879db523c30d3b9017143d56705015e15a2cb5628762c11d086fed9538abd7fd".into());
    m.source.size_bytes = Some(2_132_625_894);
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    fake.settle();
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.status.is_ready_at(Some(1)), "{:?}", r.status.conditions);
    let cold = r.status.cold_start.expect("status.coldStart");
    assert_eq!(cold.fetched_bytes, 2_132_625_894);
    assert_eq!(cold.fetch_seconds, 256, "2.13 GB at ~2 min/GB");
    assert_eq!(
        cold.image_bytes,
        Some(0),
        "nothing baked: the image is the base"
    );
    // $0.100/h per instance (the seed's $0.300/h for 3): 256 s billed per start.
    assert_eq!(cold.fetch_cost_usd_per_start.as_deref(), Some("0.0071"));
    assert_eq!(cold.fetch_cost_usd_per_rollout.as_deref(), Some("0.0213"));
    let group = &fake.groups()[0];
    let startup = group.startup_probe.as_ref().expect("the warm-up probe");
    assert!(
        startup.initial_delay_seconds + startup.failure_threshold * startup.period_seconds
            >= 630 + 256,
        "the startup window covers the download: {startup:?}"
    );
}

fn downloading(id: &str, progress: f64, minutes_ago: i64) -> ContainerGroupInstance {
    ContainerGroupInstance {
        id: id.into(),
        machine_id: format!("node-{id}"),
        state: InstanceState::Downloading,
        update_time: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago)),
        version: 1,
        ready: Some(false),
        started: Some(false),
        pulling_progress: Some(progress),
        deletion_cost: None,
        cpu_percent: None,
        memory_usage_mb: None,
        memory_usage_percent: None,
    }
}

/// A created group whose image is 5 GB and whose instances are the ones given.
async fn downloading_fleet(
    fake: &FakeSalad,
    list: Vec<ContainerGroupInstance>,
) -> (Engine, StableDiffusionDeployment, String) {
    let mut sdd = seed();
    let engine = engine(fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    let name = fake.groups()[0].name.clone();
    fake.edit(&name, |g| g.container.size = Some(5_000_000_000));
    fake.set_instances(&name, list);
    (engine, sdd, name)
}

#[tokio::test]
async fn a_slow_node_is_reallocated_once_with_an_event_and_status_says_so() {
    let fake = FakeSalad::new();
    fake.set_reallocations_per_minute(Some(10));
    // 5 GB at 240 s/GB may take 20 minutes: 5 % after 10 minutes projects to 200.
    let (engine, mut sdd, name) = downloading_fleet(
        &fake,
        vec![
            downloading("fast", 60.0, 10),
            downloading("slow", 5.0, 10),
            downloading("young", 1.0, 1),
        ],
    )
    .await;
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.reallocated(), [(name.clone(), "slow".to_string())]);
    let event = r
        .events
        .iter()
        .find(|e| e.reason == Reason::SlowNodeReallocated)
        .expect("an Event names the instance");
    assert!(
        event.message.contains("slow") && event.message.contains("node-slow"),
        "{}",
        event.message
    );
    let fleet = r.status.fleet.clone().expect("status.fleet");
    assert!(
        fleet.summary.starts_with("0/3 ready, 3 downloading"),
        "{}",
        fleet.summary
    );
    assert_eq!(fleet.image_bytes, Some(5_000_000_000));
    assert!(fleet.estimated_minutes_to_ready.is_some());
    // The next poll: the reallocated instance is allocating again and is not moved twice.
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.reallocated().len(), 1);
    assert!(
        !r.events
            .iter()
            .any(|e| e.reason == Reason::SlowNodeReallocated)
    );
}

#[tokio::test]
async fn reallocation_switched_off_or_without_quota_is_reported_never_attempted() {
    for (enabled, quota, says) in [
        (false, Some(10), "reallocation is off"),
        (true, Some(0), "quota is 0 per minute"),
    ] {
        let fake = FakeSalad::new();
        fake.set_reallocations_per_minute(quota);
        let (engine, mut sdd, _) =
            downloading_fleet(&fake, vec![downloading("slow", 2.0, 10)]).await;
        sdd.spec.fleet.slow_node_reallocation.enabled = enabled;
        let r = reconcile(&engine, &mut sdd).await;
        assert!(fake.reallocated().is_empty(), "{says}");
        let said = r.status.fleet.unwrap().reallocation.unwrap_or_default();
        assert!(said.contains(says), "{says}: {said}");
        assert!(r.failure.is_none(), "the group itself is fine: {says}");
    }
}

#[tokio::test]
async fn a_refused_reallocation_is_announced_once_and_retried_after_a_minute_not_every_poll() {
    let fake = FakeSalad::new();
    fake.set_reallocations_per_minute(Some(10));
    let (engine, mut sdd, _) = downloading_fleet(&fake, vec![downloading("slow", 2.0, 10)]).await;
    fake.fail_once("reallocate_container_group_instance", 429);
    let r = reconcile(&engine, &mut sdd).await;
    assert!(
        r.events
            .iter()
            .any(|e| e.reason == Reason::ReallocationDeferred)
    );
    assert!(r.failure.is_none());
    let before = fake.calls().len();
    let r = reconcile(&engine, &mut sdd).await;
    let tried = fake.calls()[before..]
        .iter()
        .filter(|c| c.as_str() == "reallocate_container_group_instance")
        .count();
    assert_eq!(tried, 0, "not hammered within the minute");
    assert!(
        !r.events
            .iter()
            .any(|e| e.reason == Reason::ReallocationDeferred)
    );
    let said = r.status.fleet.unwrap().reallocation.unwrap_or_default();
    assert!(said.contains("next try after"), "{said}");
}

#[tokio::test]
async fn system_events_become_events_once_across_polls_and_restarts() {
    let fake = FakeSalad::new();
    let (engine, mut sdd, name) = downloading_fleet(&fake, vec![downloading("a", 50.0, 1)]).await;
    let log = |event: &str, secs: i64| SystemLog {
        event_name: event.into(),
        event_time: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)),
        instance_id: Some("a".into()),
        machine_id: Some("node-a".into()),
        version: Some("1".into()),
        resource_gpu_class: None,
    };
    fake.push_system_logs(
        &name,
        vec![
            log("Instance Interrupted (Priority)", 30),
            log("Instance Reallocated by Platform", 29),
        ],
    );
    let r = reconcile(&engine, &mut sdd).await;
    let fleet_events: Vec<_> = r
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.reason,
                Reason::InstanceInterrupted | Reason::InstanceReallocated
            )
        })
        .collect();
    assert_eq!(fleet_events.len(), 2);
    assert_eq!(
        fleet_events[0].type_,
        EventType::Warning,
        "an interruption costs the user"
    );
    let metrics = engine.metrics().encode();
    assert!(
        metrics.contains("salad_sd_fleet_interruptions_total 1"),
        "{metrics}"
    );
    // Another poll, and a new operator (no memory) reading the same status: nothing again.
    let r = reconcile(&engine, &mut sdd).await;
    assert!(
        !r.events
            .iter()
            .any(|e| e.reason == Reason::InstanceInterrupted)
    );
    let restarted = EngineBuilder::new().fake(&fake).build();
    let r = restarted.reconcile(&sdd, &store(), Mode::Apply).await;
    assert!(
        !r.events
            .iter()
            .any(|e| e.reason == Reason::InstanceInterrupted)
    );
}

#[tokio::test]
async fn a_replica_change_is_patched_in_place() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    fake.settle();
    reconcile(&engine, &mut sdd).await;
    sdd.spec.replicas = 2;
    sdd.metadata.generation = Some(2);
    let r = reconcile(&engine, &mut sdd).await;
    assert!(
        mutating(&fake.calls()).contains(&"update_container_group".to_string()),
        "{:?} {:?}",
        r.plan,
        r.status.conditions
    );
    assert_eq!(fake.groups()[0].replicas, 2);
}

#[tokio::test]
async fn a_spent_rate_budget_defers_the_reconcile_instead_of_waiting_in_it() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    fake.settle();
    let ready = reconcile(&engine, &mut sdd).await;
    let calls_before = fake.calls().len();
    fake.spend_budget_for(Duration::from_secs(40));
    let deferred = reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.calls().len(), calls_before, "no SaladCloud request");
    assert_eq!(
        deferred.status, ready.status,
        "the status is kept as it was"
    );
    assert!(deferred.events.is_empty());
    assert!(
        (Duration::from_secs(40)..Duration::from_secs(41)).contains(&deferred.requeue_after),
        "looks again when the budget frees: {:?}",
        deferred.requeue_after
    );
    // A budget that frees within the wait allowed inside a reconcile is waited for.
    fake.spend_budget_for(Duration::from_secs(1));
    reconcile(&engine, &mut sdd).await;
    assert!(fake.calls().len() > calls_before, "read SaladCloud again");
    // A resource never reconciled before is not deferred: it has no status to keep.
    let mut fresh = seed();
    fresh.metadata.name = Some("fresh".into());
    fresh.metadata.uid = Some("0b3a9a54-1f2e-4c3d-9e8f-7a6b5c4d3e2f".into());
    fake.spend_budget_for(Duration::from_secs(40));
    let calls = fake.calls().len();
    reconcile(&engine, &mut fresh).await;
    assert!(
        fake.calls().len() > calls,
        "a first reconcile reads SaladCloud"
    );
}

fn queued(min_replicas: i32) -> StableDiffusionDeployment {
    let mut sdd = seed();
    sdd.spec.queue = salad_sd_api::QueueSpec {
        enabled: true,
        autoscaler: Some(salad_sd_api::QueueAutoscalerSpec {
            min_replicas,
            max_replicas: 4,
            desired_queue_length: 1,
            polling_period_seconds: 30,
            max_upscale_per_minute: None,
            max_downscale_per_minute: None,
        }),
        // No sha256 of the default worker release is published where we can read it.
        worker: salad_sd_api::QueueWorkerSpec {
            url: None,
            sha256: Some("5e".repeat(32)),
        },
        ..Default::default()
    };
    sdd
}

#[tokio::test]
async fn queue_mode_creates_the_queue_first_and_idles_at_zero_for_nothing() {
    let fake = FakeSalad::new();
    let mut sdd = queued(0);
    let engine = engine(&fake, &sdd).await;
    let prefix = salad_sd_api::names::group_name_prefix("dreamshaper", UID);
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(
        mutating(&fake.calls()),
        ["create_queue", "create_container_group"],
        "{:?}",
        r.failure
    );
    assert!(r.events.iter().any(|e| e.reason == Reason::QueueCreated));
    let g = &fake.groups()[0];
    let c = g.queue_connection.as_ref().expect("connected at creation");
    assert_eq!(
        (c.queue_name.as_str(), c.path.as_str(), c.port),
        (prefix.as_str(), "/sdapi/v1/txt2img", 7860)
    );
    assert_eq!(g.replicas, 0, "created at the autoscaler's minimum");
    assert_eq!(g.queue_autoscaler.as_ref().map(|a| a.max_replicas), Some(4));

    fake.settle();
    let r = reconcile(&engine, &mut sdd).await;
    assert!(r.status.is_ready_at(Some(1)), "{:?}", r.status.conditions);
    assert_eq!(r.status.phase, Phase::Idle, "{:?}", r.status.message);
    assert_eq!(r.status.estimated_hourly_cost_usd.as_deref(), Some("0.000"));
    let scaling = r
        .status
        .scaling
        .as_ref()
        .expect("status says who owns replicas");
    assert_eq!(scaling.owner, salad_sd_api::ReplicasOwner::QueueAutoscaler);
    assert!(scaling.message.contains("spec.replicas (3) is not applied"));
    let queue = r.status.queue.as_ref().expect("status names the queue");
    assert_eq!(queue.name, prefix);
    assert_eq!(queue.length, Some(0));
    assert!(queue.submit.contains("salad-sd submit dreamshaper"));

    // The autoscaler scales up: not drift, no PATCH; status follows.
    fake.set_queue_length(&prefix, 23);
    fake.edit(&fake.groups()[0].name, |g| g.replicas = 3);
    fake.settle();
    let before = mutating(&fake.calls()).len();
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(mutating(&fake.calls()).len(), before, "{:?}", r.plan);
    assert_eq!(r.status.phase, Phase::Running);
    assert_eq!(r.status.replica_summary.as_deref(), Some("3/3"));
    assert_eq!(r.status.queue.as_ref().unwrap().length, Some(20), "rounded");
    assert_eq!(r.status.estimated_hourly_cost_usd.as_deref(), Some("0.300"));

    // kubectl scale does nothing while the autoscaler owns replicas.
    sdd.spec.replicas = 1;
    sdd.metadata.generation = Some(2);
    reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.groups()[0].replicas, 3);
}

#[tokio::test]
async fn deletion_deletes_the_groups_then_the_queue_then_releases() {
    let fake = FakeSalad::new();
    let mut sdd = queued(1);
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    fake.settle();
    reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.queues().len(), 1);
    sdd.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    // A `kubectl delete -f` may remove queue mode's settings first: status still names the queue.
    sdd.spec.queue = Default::default();
    let mut released = false;
    for _ in 0..4 {
        let r = reconcile(&engine, &mut sdd).await;
        assert!(r.failure.is_none(), "{:?}", r.failure);
        if r.release_finalizer {
            released = true;
            break;
        }
    }
    assert!(released);
    assert!(fake.groups().is_empty());
    assert!(fake.queues().is_empty(), "no queue left behind");
    let deletes: Vec<String> = mutating(&fake.calls())
        .into_iter()
        .filter(|c| c.starts_with("delete"))
        .collect();
    assert_eq!(deletes, ["delete_container_group", "delete_queue"]);
}

#[tokio::test]
async fn a_schedule_owns_replicas_and_kubectl_scale_applies_once() {
    let fake = FakeSalad::new();
    let mut sdd = seed();
    sdd.spec.scaling.schedule = vec![
        salad_sd_api::ScheduledReplicas {
            cron: "0 8 * * 1-5".into(),
            replicas: 3,
        },
        salad_sd_api::ScheduledReplicas {
            cron: "0 20 * * *".into(),
            replicas: 0,
        },
    ];
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    let g = &fake.groups()[0];
    assert!(g.scheduled_scaling_enabled);
    assert_eq!(g.scaling_actions.len(), 2);
    assert_eq!(g.scaling_actions[1].schedule, "0 20 * * *");
    fake.settle();
    let r = reconcile(&engine, &mut sdd).await;
    let scaling = r.status.scaling.clone().unwrap();
    assert_eq!(scaling.owner, salad_sd_api::ReplicasOwner::Schedule);
    assert_eq!(scaling.spec_replicas_applied, Some(3));

    // 20:00: the schedule scales to 0. Not drift.
    let name = fake.groups()[0].name.clone();
    fake.edit(&name, |g| g.replicas = 0);
    fake.settle();
    let before = mutating(&fake.calls()).len();
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(mutating(&fake.calls()).len(), before, "{:?}", r.plan);
    assert_eq!(r.status.scaling.as_ref().unwrap().replicas, 0);

    // kubectl scale --replicas=2: applied once, at once.
    sdd.spec.replicas = 2;
    sdd.metadata.generation = Some(2);
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.groups()[0].replicas, 2, "{:?}", r.plan);
    assert_eq!(
        r.status.scaling.as_ref().unwrap().spec_replicas_applied,
        Some(2)
    );
    // The next action (say 08:00 → 3) holds until spec.replicas changes again.
    fake.edit(&name, |g| g.replicas = 3);
    fake.settle();
    reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.groups()[0].replicas, 3);

    // Changing the schedule is a PATCH in place.
    sdd.spec.scaling.schedule.pop();
    sdd.metadata.generation = Some(3);
    let r = reconcile(&engine, &mut sdd).await;
    assert!(
        r.events
            .iter()
            .any(|e| e.message.contains("scaling-actions")),
        "{:?}",
        r.events
    );
    assert_eq!(fake.groups()[0].scaling_actions.len(), 1);
    assert_eq!(fake.groups().len(), 1, "no new group for a schedule change");
}

#[tokio::test]
async fn in_queue_mode_the_smoke_test_goes_through_the_queue_and_records_its_latency() {
    use base64::Engine as _;
    let fake = FakeSalad::new();
    let mut sdd = queued(0);
    sdd.spec.smoke_test = Some(Default::default());
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    fake.settle();
    let r = reconcile(&engine, &mut sdd).await;
    let smoke = r.status.smoke_test.clone().expect("submitted");
    assert_eq!(smoke.result, "Pending", "{smoke:?}");
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 1);
    let (id, queue, input) = &jobs[0];
    assert_eq!(Some(id), smoke.job_id.as_ref());
    assert_eq!(
        queue,
        &salad_sd_api::names::group_name_prefix("dreamshaper", UID)
    );
    assert_eq!(input["prompt"], "a photo of a red apple on a wooden table");
    assert!(
        r.requeue_after < std::time::Duration::from_secs(60),
        "read again soon"
    );
    assert!(
        r.status.is_ready_at(Some(1)),
        "readiness does not wait for the smoke test"
    );

    // Still waiting (a cold start from 0): pending, no second job.
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(r.status.smoke_test.as_ref().unwrap().result, "Pending");
    assert_eq!(fake.jobs().len(), 1);

    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n0000");
    fake.finish_job(
        id,
        saladcloud::model::QueueJobStatus::Succeeded,
        serde_json::json!({"images": [png]}),
        184_000,
    );
    let r = reconcile(&engine, &mut sdd).await;
    let smoke = r.status.smoke_test.clone().unwrap();
    assert_eq!(
        (
            smoke.result.as_str(),
            smoke.latency_ms,
            smoke.job_id.as_deref()
        ),
        ("Passed", Some(184_000), None)
    );
    assert!(r.events.iter().any(|e| e.reason == Reason::SmokeTestPassed));
    let r = reconcile(&engine, &mut sdd).await;
    assert_eq!(fake.jobs().len(), 1, "once per group version");
    assert_eq!(r.status.smoke_test.unwrap().result, "Passed");
}

#[tokio::test]
async fn a_failed_queue_smoke_test_says_the_jobs_last_error() {
    let fake = FakeSalad::new();
    let mut sdd = queued(1);
    sdd.spec.smoke_test = Some(Default::default());
    let engine = engine(&fake, &sdd).await;
    reconcile(&engine, &mut sdd).await;
    fake.settle();
    reconcile(&engine, &mut sdd).await;
    let (id, _, _) = fake.jobs()[0].clone();
    fake.finish_job(
        &id,
        saladcloud::model::QueueJobStatus::Failed,
        serde_json::json!({"error": "POST /sdapi/v1/txt2img: 500 out of memory"}),
        90_000,
    );
    let r = reconcile(&engine, &mut sdd).await;
    let smoke = r.status.smoke_test.unwrap();
    assert_eq!(smoke.result, "Failed");
    assert!(smoke.message.unwrap().contains("500 out of memory"));
    assert!(
        r.events
            .iter()
            .any(|e| e.reason == Reason::SmokeTestFailed && e.type_ == EventType::Warning)
    );
}
