//! The engine's decisions end to end, against the in-memory SaladCloud behind the seam: no
//! simulator, no registry, no network. Each test says which behaviour it holds.

use std::collections::BTreeSet;

use salad_sd_api::condition::{READY, RECONCILING, STALLED};
use salad_sd_api::{Phase, StableDiffusionDeployment};
use salad_sd_controller::fake::FakeSalad;
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::reason::Reason;
use salad_sd_controller::secrets::{self, MapSecretStore};
use salad_sd_controller::{Engine, Mode, Reconciled, desired};
use salad_sd_image::BuiltImage;

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
    let resolved = secrets::resolve(&sdd.spec, &store()).await.unwrap();
    let recipe = desired::recipe(&sdd.spec, &resolved);
    engine.builds().assume_built(
        &sdd.spec.image.repository,
        &recipe,
        BuiltImage {
            reference: format!("{}@sha256:{}", sdd.spec.image.repository, "1".repeat(64)),
            digest: format!("sha256:{}", "1".repeat(64)),
            tag: "recipe".into(),
            recipe_hash: "recipe".into(),
            layers: Vec::new(),
            bytes_uploaded: 0,
            bytes_downloaded: 0,
        },
    );
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
