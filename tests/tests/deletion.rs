//! Deleting a resource whose other Secrets are already gone (`kubectl delete -f` of a file with
//! the Secrets and the resource): Delete needs only the API key, Orphan needs nothing, and a
//! missing API key says how to get unstuck. The real engine against the simulator.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salad_sd_api::{DeletionPolicy, StableDiffusionDeployment};
use salad_sd_controller::Mode;
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::secrets::MapSecretStore;
use saladcloud::model::{ContainerGroupPrototype, CreateContainer, CreateResources};
use saladcloud::{ApiKey, Client, ClientConfig};
use saladcloud_sim::{SimConfig, Simulator};

const KEY: &str = "deletion-test-key";

fn deleting(policy: DeletionPolicy) -> StableDiffusionDeployment {
    let text = include_str!("../../manifests/examples/sdxl-lora.yaml");
    let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(text).unwrap();
    sdd.metadata.uid = Some("5e0c2a7b-1f3d-4e8a-9b6c-0d1e2f3a4b5c".into());
    sdd.metadata.generation = Some(1);
    sdd.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    sdd.spec.deletion_policy = policy;
    sdd
}

fn only_the_api_key() -> MapSecretStore {
    MapSecretStore::default().with("salad-api-key", "apiKey", KEY)
}

#[tokio::test]
async fn deletion_survives_missing_secrets_and_says_what_to_do_without_the_key() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0")
            .await
            .unwrap();
        let engine = EngineBuilder::new().simulator(sim.base_url()).build();

        // A group this resource created earlier (owner env = its uid).
        let sdd = deleting(DeletionPolicy::Delete);
        let uid = sdd.metadata.uid.clone().unwrap();
        let client =
            Client::new(ClientConfig::new(ApiKey::new(KEY)).with_base_url(sim.base_url())).unwrap();
        let mut container = CreateContainer::new(
            "registry.example/sd@sha256:0000",
            CreateResources {
                cpu: 4,
                memory: 12288,
                gpu_classes: vec![],
                storage_amount: None,
                shm_size: None,
            },
        );
        container
            .environment_variables
            .insert(salad_sd_api::names::OWNER_ENV.into(), uid.clone());
        let name = salad_sd_api::names::derived_group_name("sdxl", &uid, 1);
        client
            .create_container_group(
                "acme",
                "image-gen",
                &ContainerGroupPrototype::new(name.clone(), container, 1),
            )
            .await
            .unwrap();

        // Delete: the push, pull and model-token Secrets are gone; the API key is enough.
        let mut released = false;
        for _ in 0..60 {
            let r = engine
                .reconcile(&sdd, &only_the_api_key(), Mode::Apply)
                .await;
            assert!(
                r.failure.is_none(),
                "{:?}: {:?}",
                r.failure,
                r.status.message
            );
            if r.release_finalizer {
                released = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(released, "the finalizer is released once the group is gone");
        assert!(
            client
                .find_container_group("acme", "image-gen", &name)
                .await
                .unwrap()
                .is_none()
        );

        // Delete without the API key while status records a group: stalled, and the message
        // says how out.
        let mut recorded = sdd.clone();
        recorded.status = Some(salad_sd_api::StableDiffusionDeploymentStatus {
            container_group: Some(salad_sd_api::ContainerGroupStatus {
                name: name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let r = engine
            .reconcile(&recorded, &MapSecretStore::default(), Mode::Apply)
            .await;
        assert!(!r.release_finalizer);
        let message = r.status.message.clone().unwrap_or_default();
        assert!(
            message.contains("salad-api-key") && message.contains("deletionPolicy: Orphan"),
            "{message}"
        );

        // Without the API key and with no group ever recorded, there is nothing to delete:
        // released at once, without a SaladCloud call, and the Event says why.
        sim.admin().reset_stats();
        let r = engine
            .reconcile(&sdd, &MapSecretStore::default(), Mode::Apply)
            .await;
        assert!(r.release_finalizer, "{:?}", r.status.message);
        assert!(
            r.events
                .iter()
                .any(|e| e.reason.as_str() == "ReleasedWithoutApiKey"),
            "{:?}",
            r.events
        );
        assert_eq!(sim.admin().stats().total_requests, 0);

        // Orphan needs no Secret and no SaladCloud call.
        sim.admin().reset_stats();
        let r = engine
            .reconcile(
                &deleting(DeletionPolicy::Orphan),
                &MapSecretStore::default(),
                Mode::Apply,
            )
            .await;
        assert!(r.release_finalizer, "{:?}", r.status.message);
        assert_eq!(sim.admin().stats().total_requests, 0);
    })
    .await
    .expect("bounded");
}
