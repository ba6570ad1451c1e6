//! The smoke test in each server's own API, end to end through the engine and the simulator's
//! gateway (in process, 127.0.0.1, no registry: the image is assumed built).

use std::time::{Duration, Instant};

use salad_sd_api::StableDiffusionDeployment;
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::secrets::MapSecretStore;
use salad_sd_controller::{Engine, Mode};
use saladcloud_sim::{SimConfig, Simulator};

const COMFY: &str = include_str!("../../../manifests/examples/comfyui-dreamshaper.yaml");
const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");

fn resource(yaml: &str) -> StableDiffusionDeployment {
    let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(yaml).unwrap();
    sdd.metadata.uid = Some("5d1c0b9e-2f3a-4b6c-8d7e-9f0a1b2c3d4e".into());
    sdd.metadata.generation = Some(1);
    sdd.metadata.namespace = Some("default".into());
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

async fn engine(
    sim_url: String,
    gateway: std::net::SocketAddr,
    sdd: &StableDiffusionDeployment,
) -> Engine {
    let engine = EngineBuilder::new()
        .simulator(sim_url)
        .gateway(gateway)
        .build();
    salad_sd_controller::harness::assume_image_built(&engine, sdd, &store(), '2').await;
    engine
}

/// Reconciles until the smoke test has a result (at most 30 s), and returns it.
async fn smoke_result(yaml: &str) -> (String, String) {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0")
        .await
        .unwrap();
    let mut sdd = resource(yaml);
    let engine = engine(sim.base_url(), sim.addr(), &sdd).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = engine.reconcile(&sdd, &store(), Mode::Apply).await;
        sdd.status = Some(r.status.clone());
        if let Some(s) = r
            .status
            .smoke_test
            .as_ref()
            .filter(|s| !s.result.is_empty())
        {
            let out = (s.result.clone(), s.message.clone().unwrap_or_default());
            sim.shutdown().await;
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no smoke test result within 30 s: {:?}",
            r.status.conditions
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_comfyui_group_passes_the_smoke_test_through_comfyui_apis_prompt_endpoint() {
    let (result, message) = smoke_result(COMFY).await;
    assert_eq!(result, "Passed", "{message}");
    assert!(message.starts_with("POST /prompt returned a"), "{message}");
}

#[tokio::test]
async fn an_sdnext_group_still_passes_with_txt2img() {
    let (result, message) = smoke_result(SEED).await;
    assert_eq!(result, "Passed", "{message}");
    assert!(message.starts_with("txt2img returned a"), "{message}");
}
