//! Serialization of the API model against the JSON the spec expects.

use std::collections::BTreeMap;

use saladcloud::*;
use serde_json::{Value, json};

fn probe_http(headers: Vec<HttpHeader>) -> Probe {
    Probe {
        http: Some(HttpProbe {
            path: "/health".into(),
            port: 7860,
            scheme: HttpScheme::Http,
            headers,
        }),
        tcp: None,
        grpc: None,
        exec: None,
        initial_delay_seconds: 0,
        period_seconds: 3,
        timeout_seconds: 10,
        success_threshold: 2,
        failure_threshold: 15,
    }
}

#[test]
fn minimal_prototype_omits_every_absent_optional() {
    let proto = ContainerGroupPrototype::new(
        "sd-web",
        CreateContainer::new(
            "ghcr.io/acme/sd:1",
            CreateResources {
                cpu: 4,
                memory: 8192,
                ..Default::default()
            },
        ),
        1,
    );
    let v = serde_json::to_value(&proto).unwrap();
    assert_eq!(
        v,
        json!({
            "name": "sd-web",
            "container": {
                "image": "ghcr.io/acme/sd:1",
                "resources": {"cpu": 4, "memory": 8192, "gpu_classes": []}
            },
            "autostart_policy": true,
            "restart_policy": "always",
            "replicas": 1
        }),
        "reason: absent optionals must be omitted, never null; empty country_codes omitted (minItems 1)"
    );
}

#[test]
fn maximal_prototype_uses_spec_field_names() {
    let mut env = BTreeMap::new();
    env.insert("HF_TOKEN".to_owned(), "hf_secret_value".to_owned());
    let mut container = CreateContainer::new(
        "ghcr.io/acme/sd:1",
        CreateResources {
            cpu: 8,
            memory: 30720,
            gpu_classes: vec!["ed563892-aacd-40f5-80b7-90c9be6c759b".into()],
            storage_amount: Some(53_687_091_200),
            shm_size: Some(2048),
        },
    );
    container.command = Some(vec!["python".into(), "serve.py".into()]);
    container.environment_variables = env;
    container.priority = Some(Priority::High);
    container.image_caching = Some(true);
    container.registry_authentication = Some(RegistryAuthentication::Basic {
        username: "bot".into(),
        password: Secret::new("registry-pass"),
    });
    let mut proto = ContainerGroupPrototype::new("sd-web", container, 3);
    proto.display_name = Some("SD Web".into());
    proto.restart_policy = RestartPolicy::OnFailure;
    proto.country_codes = vec!["us".into(), "ca".into()];
    proto.networking = Some(CreateNetworking {
        protocol: NetworkingProtocol::Http,
        port: 7860,
        auth: true,
        load_balancer: Some(LoadBalancer::LeastNumberOfConnections),
        single_connection_limit: Some(true),
        client_request_timeout: Some(100_000),
        server_response_timeout: Some(90_000),
    });
    proto.startup_probe = Some(probe_http(vec![]));
    proto.scaling_actions = vec![ScalingAction {
        schedule: "0 8 * * 1-5".into(),
        replicas: 2,
    }];
    proto.scheduled_scaling_enabled = Some(false);
    let v = serde_json::to_value(&proto).unwrap();
    assert_eq!(v["container"]["priority"], "high");
    assert!(
        v.get("priority").is_none(),
        "priority is not top-level on create"
    );
    assert_eq!(v["restart_policy"], "on_failure");
    assert_eq!(
        v["networking"]["load_balancer"],
        "least_number_of_connections"
    );
    assert_eq!(
        v["container"]["registry_authentication"],
        json!({"basic": {"username": "bot", "password": "registry-pass"}})
    );
    assert_eq!(v["scaling-actions"][0]["schedule"], "0 8 * * 1-5");
    assert_eq!(v["scheduled-scaling-enabled"], false);
    assert_eq!(
        v["startup_probe"]["http"],
        json!({"path": "/health", "port": 7860, "scheme": "http",
               "headers": [{"name": "Accept", "value": "*/*"}]}),
        "empty probe headers are sent as the placeholder (spec: required, minItems 1)"
    );
    assert!(v["startup_probe"].get("tcp").is_none());
    // Secrets never show in Debug.
    let dbg = format!("{proto:?}");
    assert!(!dbg.contains("registry-pass"), "{dbg}");
    assert!(!dbg.contains("hf_secret_value"), "{dbg}");
    assert!(dbg.contains("HF_TOKEN"));
}

#[test]
fn probe_placeholder_header_round_trips_to_empty() {
    let p = probe_http(vec![]);
    let back: Probe = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    let with = probe_http(vec![HttpHeader::new("X-Probe", "1")]);
    let v = serde_json::to_value(&with).unwrap();
    assert_eq!(
        v["http"]["headers"],
        json!([{"name": "X-Probe", "value": "1"}])
    );
}

#[test]
fn patch_sends_nulls_only_when_asked() {
    let patch = ContainerGroupPatch {
        replicas: Some(2),
        country_codes: Nullable::Null,
        liveness_probe: Nullable::Null,
        readiness_probe: Nullable::Value(probe_http(vec![])),
        display_name: Nullable::Absent,
        networking: Some(UpdateNetworking { port: Some(8080) }),
        container: Some(UpdateContainer {
            image: Some("ghcr.io/acme/sd:2".into()),
            command: Nullable::Null,
            priority: Some(Priority::Batch),
            resources: Some(UpdateResources {
                gpu_classes: Some(vec![]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        scaling_actions: Some(vec![]),
        ..Default::default()
    };
    let v = serde_json::to_value(&patch).unwrap();
    let expected = json!({
        "replicas": 2,
        "country_codes": null,
        "liveness_probe": null,
        "readiness_probe": {
            "http": {"path": "/health", "port": 7860, "scheme": "http",
                     "headers": [{"name": "Accept", "value": "*/*"}]},
            "initial_delay_seconds": 0, "period_seconds": 3, "timeout_seconds": 10,
            "success_threshold": 2, "failure_threshold": 15
        },
        "networking": {"port": 8080},
        "container": {
            "image": "ghcr.io/acme/sd:2",
            "command": null,
            "priority": "batch",
            "resources": {"gpu_classes": []}
        },
        "scaling-actions": []
    });
    assert_eq!(v, expected);
    assert!(ContainerGroupPatch::default().is_empty());
    assert!(!patch.is_empty());
    assert_eq!(
        serde_json::to_string(&ContainerGroupPatch::default()).unwrap(),
        "{}"
    );
}

#[test]
fn nullable_deserializes_three_states() {
    let p: ContainerGroupPatch =
        serde_json::from_value(json!({"display_name": null, "country_codes": ["us"]})).unwrap();
    assert_eq!(p.display_name, Nullable::Null);
    assert_eq!(p.country_codes, Nullable::Value(vec!["us".to_owned()]));
    assert_eq!(p.startup_probe, Nullable::Absent);
}

#[test]
fn read_model_is_lenient_and_maps_hyphenated_fields() {
    let v = json!({
        "id": "ab3a4591-efc3-46c0-b06a-3d820c0ec100",
        "name": "sd-web",
        "display_name": "sd-web",
        "organization_name": "acme",
        "project_name": "dev-env",
        "container": {
            "image": "ghcr.io/acme/sd:1",
            "resources": {"cpu": 4, "memory": 8192, "gpu_classes": ["g1"]},
            "command": null,
            "hash": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "size": 123456,
            "brand_new_field": {"x": 1}
        },
        "autostart_policy": true,
        "country_codes": [],
        "create_time": "2026-01-02T03:04:05Z",
        "update_time": "not a timestamp",
        "current_state": {
            "status": "hibernating",
            "description": null,
            "start_time": "2026-01-02T03:04:05Z",
            "finish_time": "2026-01-02T03:04:05Z",
            "instance_status_counts": {"allocating_count": 1, "creating_count": 2,
                                        "running_count": 3, "stopping_count": 0}
        },
        "pending_change": true,
        "priority": "medium",
        "replicas": 3,
        "restart_policy": "always",
        "version": 7,
        "networking": {"auth": false, "dns": "abc-123.salad.cloud", "load_balancer": "round_robin",
                       "port": 7860, "protocol": "http", "client_request_timeout": 100000},
        "scheduled-scaling-enabled": true,
        "scaling-actions": [{"schedule": "0 0 * * *", "replicas": 0}],
        "readiness_probe": null
    });
    let g: ContainerGroup = serde_json::from_value(v).unwrap();
    assert_eq!(g.current_state.status, ContainerGroupStatus::Unknown);
    assert_eq!(g.current_state.instance_status_counts.running_count, 3);
    assert_eq!(g.priority, Some(Priority::Medium));
    assert!(g.create_time.is_some());
    assert!(g.update_time.is_none(), "unparsable timestamps become None");
    assert!(g.scheduled_scaling_enabled);
    assert_eq!(g.scaling_actions.len(), 1);
    assert_eq!(g.container.size, Some(123456));
    assert_eq!(g.networking.unwrap().dns, "abc-123.salad.cloud");
    assert!(g.readiness_probe.is_none());
    assert_eq!(g.version, 7);

    let min: ContainerGroup =
        serde_json::from_value(json!({"name": "x1", "container": {"image": "i"}})).unwrap();
    assert_eq!(min.current_state.status, ContainerGroupStatus::Unknown);
}

#[test]
fn instances_gpu_classes_quotas_decode() {
    let inst: ContainerGroupInstanceCollection = serde_json::from_value(json!({"instances": [
        {"id": "i1", "machine_id": "m1", "state": "downloading", "update_time": "2026-01-02T03:04:05Z",
         "version": 2, "pulling_progress": 42.5, "ready": false, "started": false},
        {"id": "i2", "machine_id": "m2", "state": "teleporting", "update_time": "x", "version": 2}
    ]}))
    .unwrap();
    assert_eq!(inst.instances[0].state, InstanceState::Downloading);
    assert_eq!(inst.instances[1].state, InstanceState::Unknown);
    let gpus: GpuClassesList = serde_json::from_value(json!({"items": [
        {"id": "g1", "name": "RTX 4090 (24 GB)", "prices": [{"priority": "high", "price": "0.30"}],
         "gpu_class_type": "community", "is_high_demand": true}
    ]}))
    .unwrap();
    assert_eq!(gpus.items[0].prices[0].priority, Priority::High);
    let q: Quotas = serde_json::from_value(json!({"container_groups_quotas":
        {"container_replicas_quota": 100, "container_replicas_used": 5}}))
    .unwrap();
    assert_eq!(q.container_groups_quotas.container_replicas_quota, 100);
}

#[test]
fn registry_auth_variants_and_redaction() {
    let cases = [
        (
            RegistryAuthentication::DockerHub {
                username: "u".into(),
                personal_access_token: Secret::new("pat-SECRET"),
            },
            json!({"docker_hub": {"username": "u", "personal_access_token": "pat-SECRET"}}),
        ),
        (
            RegistryAuthentication::AwsEcr {
                access_key_id: "AKIA".into(),
                secret_access_key: Secret::new("aws-SECRET"),
            },
            json!({"aws_ecr": {"access_key_id": "AKIA", "secret_access_key": "aws-SECRET"}}),
        ),
        (
            RegistryAuthentication::GcpGar {
                service_key: Secret::new("{gar-SECRET}"),
            },
            json!({"gcp_gar": {"service_key": "{gar-SECRET}"}}),
        ),
        (
            RegistryAuthentication::GcpGcr {
                service_key: Secret::new("{gcr-SECRET}"),
            },
            json!({"gcp_gcr": {"service_key": "{gcr-SECRET}"}}),
        ),
    ];
    for (auth, expected) in cases {
        assert_eq!(serde_json::to_value(&auth).unwrap(), expected);
        let dbg = format!("{auth:?}");
        assert!(!dbg.contains("SECRET"), "Debug leaked a secret: {dbg}");
    }
}

#[test]
fn enums_serialize_snake_case() {
    let v: Vec<Value> = [
        Priority::High,
        Priority::Medium,
        Priority::Low,
        Priority::Batch,
    ]
    .iter()
    .map(|p| serde_json::to_value(p).unwrap())
    .collect();
    assert_eq!(
        v,
        vec![json!("high"), json!("medium"), json!("low"), json!("batch")]
    );
    assert_eq!(
        serde_json::to_value(RestartPolicy::Never).unwrap(),
        json!("never")
    );
    assert_eq!(
        serde_json::to_value(HttpScheme::Https).unwrap(),
        json!("https")
    );
}
