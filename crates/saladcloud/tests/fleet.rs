//! The client's fleet calls against the simulator on 127.0.0.1: download progress at each
//! node's own speed, system logs of each transition, reallocation within the per-minute quota,
//! the log-entries query and its validation.

use std::time::{Duration, Instant};

use saladcloud::model::{ContainerGroupPrototype, InstanceState, LogEntryQuery, SortOrder};
use saladcloud::{ApiKey, Client, ClientConfig};
use saladcloud_sim::{FleetModel, SimConfig, Simulator, system_events};

const ORG: &str = "acme";
const PROJECT: &str = "fleet";

#[tokio::test]
async fn downloads_system_logs_reallocation_quota_and_log_queries() {
    let sim = Simulator::start(
        SimConfig {
            fleet: FleetModel::calibrated(Duration::from_millis(400), 11),
            reallocations_per_minute: 1,
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    sim.admin().set_image_size("fleet-image", 2_000_000_000);
    let client =
        Client::new(ClientConfig::new(ApiKey::new("k")).with_base_url(sim.base_url())).unwrap();
    let prototype: ContainerGroupPrototype = serde_json::from_value(serde_json::json!({
        "name": "g-fleet",
        "container": {"image": "r.example/fleet-image@sha256:1", "resources": {"cpu": 4, "memory": 8192}},
        "autostart_policy": true,
        "replicas": 3,
        "restart_policy": "always",
    }))
    .unwrap();
    let g = client
        .create_container_group(ORG, PROJECT, &prototype)
        .await
        .unwrap();
    assert_eq!(g.container.size, Some(2_000_000_000));

    // Progress is seen while downloading, and everything runs within the bound.
    let started = Instant::now();
    let mut saw_progress = false;
    loop {
        let list = client
            .list_container_group_instances(ORG, PROJECT, "g-fleet")
            .await
            .unwrap();
        saw_progress |= list.iter().any(|i| {
            i.state == InstanceState::Downloading
                && i.pulling_progress.is_some_and(|p| p > 0.0 && p < 100.0)
        });
        if list.len() == 3 && list.iter().all(|i| i.state == InstanceState::Running) {
            let usage = &list[0];
            assert!(usage.cpu_percent.is_some() && usage.memory_usage_mb.is_some());
            assert!(usage.memory_usage_mb.unwrap() <= 8192.0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not running: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_progress, "pulling_progress advanced between 0 and 100");

    let logs = client
        .get_system_logs(ORG, PROJECT, "g-fleet")
        .await
        .unwrap();
    let names: Vec<&str> = logs.iter().map(|l| l.event_name.as_str()).collect();
    for want in [
        system_events::ALLOCATED,
        system_events::DOWNLOADING,
        system_events::STARTED,
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == want).count(),
            3,
            "{want}: {names:?}"
        );
    }

    // One reallocation a minute: the second answers 429.
    let list = client
        .list_container_group_instances(ORG, PROJECT, "g-fleet")
        .await
        .unwrap();
    let (a, b) = (list[0].id.clone(), list[1].id.clone());
    client
        .reallocate_instance(ORG, PROJECT, "g-fleet", &a)
        .await
        .unwrap();
    let moved = client
        .list_container_group_instances(ORG, PROJECT, "g-fleet")
        .await
        .unwrap();
    let moved = moved.iter().find(|i| i.id == a).unwrap();
    assert_eq!(moved.state, InstanceState::Allocating);
    assert_ne!(moved.machine_id, list[0].machine_id, "a new node");
    let err = client
        .reallocate_instance(ORG, PROJECT, "g-fleet", &b)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    let tried = sim.admin().stats().requests["reallocate_container_group_instance"]["429"];
    assert_eq!(tried, 1, "a quota refusal is not retried by the client");
    let logs = client
        .get_system_logs(ORG, PROJECT, "g-fleet")
        .await
        .unwrap();
    assert!(
        logs.iter()
            .any(|l| l.event_name == system_events::REALLOCATED)
    );

    // The log query: lines of the group, newest first, cut to the page.
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5);
    let q = |query: &str, page: Option<u32>| LogEntryQuery {
        start_time: end - jiff::SignedDuration::from_hours(1),
        end_time: end,
        query: query.into(),
        page_size: page,
        sort_order: Some(SortOrder::Desc),
    };
    let page = client
        .query_log_entries(
            ORG,
            &q(
                r#"resource.labels.container_group_name = "g-fleet""#,
                Some(2),
            ),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.items[0].time >= page.items[1].time, "desc");
    let none = client
        .query_log_entries(
            ORG,
            &q(r#"resource.labels.container_group_name = "other""#, None),
        )
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let refused = client
        .query_log_entries(ORG, &q("resource.labels.x ~ \"y\"", None))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
    assert!(refused.to_string().contains("operator"), "{refused}");
    let too_big = client
        .query_log_entries(ORG, &q("", Some(500)))
        .await
        .unwrap_err();
    assert!(too_big.to_string().contains("page_size"), "{too_big}");
    sim.shutdown().await;
}
