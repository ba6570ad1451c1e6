//! Integration tests of the simulator over HTTP on 127.0.0.1.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use reqwest::{Method, StatusCode};
use saladcloud_sim::{Faults, SimConfig, Timings};
use serde_json::{Value, json};

fn is_lower_hex(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

// ------------------------------------------------------------------ create / read model

#[tokio::test]
async fn create_returns_201_with_location_and_full_read_model() {
    bounded(10, async {
        let t = T::start().await;
        let mut b = body_with_gateway("sd-one", false);
        b["container"]["priority"] = json!("high");
        b["container"]["registry_authentication"] =
            json!({"basic": {"username": "u", "password": "secret-pw"}});
        b["display_name"] = json!("SD One");
        b["country_codes"] = json!(["us", "ca"]);
        let r = t.create(&b).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(
            r.headers()["location"],
            "/organizations/acme/projects/demo/containers/sd-one"
        );
        let g: Value = r.json().await.unwrap();
        assert!(uuid::Uuid::parse_str(g["id"].as_str().unwrap()).is_ok());
        assert_eq!(g["name"], "sd-one");
        assert_eq!(g["display_name"], "SD One");
        assert_eq!(g["organization_name"], ORG);
        assert_eq!(g["project_name"], PROJECT);
        assert_eq!(g["version"], 1);
        assert_eq!(g["pending_change"], false);
        assert_eq!(g["priority"], "high");
        assert_eq!(g["replicas"], 2);
        assert_eq!(g["restart_policy"], "always");
        assert_eq!(g["autostart_policy"], true);
        assert_eq!(g["country_codes"], json!(["us", "ca"]));
        assert_eq!(g["scheduled-scaling-enabled"], false);
        assert_eq!(g["scaling-actions"], json!([]));
        assert_eq!(g["current_state"]["status"], "pending");
        for k in ["start_time", "finish_time"] {
            assert!(
                g["current_state"][k]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .is_ok()
            );
        }
        for k in ["create_time", "update_time"] {
            assert!(g[k].as_str().unwrap().parse::<jiff::Timestamp>().is_ok());
        }
        let counts = &g["current_state"]["instance_status_counts"];
        for k in [
            "allocating_count",
            "creating_count",
            "running_count",
            "stopping_count",
        ] {
            assert_eq!(counts[k], 0, "{k}");
        }
        let hash = g["container"]["hash"].as_str().unwrap();
        let hex = hash.strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(is_lower_hex(hex));
        assert!(g["container"]["size"].as_u64().unwrap() > 0);
        assert_eq!(g["container"]["command"], Value::Null);
        assert_eq!(
            g["container"]["resources"]["gpu_classes"],
            json!([RTX_4090])
        );
        assert!(
            g["container"].get("registry_authentication").is_none(),
            "registry credentials must never be returned"
        );
        assert!(!g.to_string().contains("secret-pw"));
        let dns = g["networking"]["dns"].as_str().unwrap();
        let (label, suffix) = dns.split_once('.').unwrap();
        assert_eq!(suffix, "salad.cloud");
        let random = label.strip_prefix("sd-one-").unwrap();
        assert_eq!(random.len(), 16);
        assert!(
            random
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(g["networking"]["load_balancer"], "round_robin");
        assert_eq!(g["networking"]["client_request_timeout"], 100000);
        assert_eq!(g["readiness_probe"]["http"]["path"], "/internal/ping");

        // GET and list return the same group.
        assert_eq!(t.group("sd-one").await["id"], g["id"]);
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        let list: Value = r.json().await.unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        // Same image string → same hash.
        let b2 = body("sd-two");
        let g2 = t.create_ok(&b2).await;
        let g3 = t.create_ok(&body("sd-three")).await;
        assert_eq!(g2["container"]["hash"], g3["container"]["hash"]);
        assert_eq!(g2["display_name"], "sd-two");
        assert_eq!(g2["priority"], "high", "GPU groups default to high");
        assert!(g2.get("networking").is_none());
    })
    .await;
}

// ------------------------------------------------------------------ validation

async fn expect_400(t: &T, body: &Value, needles: &[&str]) {
    let r = t.create(body).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], 400);
    assert_eq!(p["title"], "Bad Request");
    let detail = p["detail"].as_str().unwrap();
    for n in needles {
        assert!(detail.contains(n), "detail lacks `{n}`: {detail}");
    }
}

/// A change to a valid body that makes it invalid.
type Edit = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn create_validation_errors_are_listed() {
    bounded(10, async {
        let t = T::start().await;
        // Several problems at once are all reported.
        let mut b = body("Bad_Name");
        b["replicas"] = json!(501);
        b["restart_policy"] = json!("sometimes");
        b["container"]["resources"]["cpu"] = json!(0);
        b["container"]["resources"]["memory"] = json!(512);
        expect_400(
            &t,
            &b,
            &[
                "name:",
                "replicas: must be between 0 and 500",
                "restart_policy: must be one of",
                "container.resources.cpu",
                "container.resources.memory",
            ],
        )
        .await;
        // Required fields.
        expect_400(
            &t,
            &json!({"name": "x1", "container": {"resources": {}}}),
            &[
                "autostart_policy: is required",
                "replicas: is required",
                "restart_policy: is required",
                "container.image: is required",
                "container.resources.cpu: is required",
                "container.resources.memory: is required",
            ],
        )
        .await;
        let cases: Vec<(&str, Edit, &str)> = vec![
            ("too short name", Box::new(|b| b["name"] = json!("a")), "name:"),
            (
                "name too long",
                Box::new(|b| b["name"] = json!("a".repeat(64))),
                "name:",
            ),
            (
                "display name charset",
                Box::new(|b| b["display_name"] = json!("SD_one!")),
                "display_name",
            ),
            (
                "gpu class not a uuid",
                Box::new(|b| b["container"]["resources"]["gpu_classes"] = json!(["RTX 4090"])),
                "not a uuid",
            ),
            (
                "unknown gpu class",
                Box::new(|b| {
                    b["container"]["resources"]["gpu_classes"] =
                        json!(["00000000-0000-4000-8000-000000000000"])
                }),
                "does not exist",
            ),
            (
                "uppercase country",
                Box::new(|b| b["country_codes"] = json!(["US"])),
                "country_codes[0]",
            ),
            (
                "empty country list",
                Box::new(|b| b["country_codes"] = json!([])),
                "country_codes",
            ),
            (
                "empty env value",
                Box::new(|b| b["container"]["environment_variables"] = json!({"A": ""})),
                "container.environment_variables.A",
            ),
            (
                "env value too long",
                Box::new(|b| b["container"]["environment_variables"] = json!({"A": "x".repeat(1001)})),
                "container.environment_variables.A",
            ),
            (
                "storage below 1 GiB",
                Box::new(|b| b["container"]["resources"]["storage_amount"] = json!(1000)),
                "storage_amount",
            ),
            (
                "shm too small",
                Box::new(|b| b["container"]["resources"]["shm_size"] = json!(10)),
                "shm_size",
            ),
            (
                "empty command item",
                Box::new(|b| b["container"]["command"] = json!(["python", ""])),
                "container.command[1]",
            ),
            (
                "priority enum",
                Box::new(|b| b["container"]["priority"] = json!("urgent")),
                "container.priority",
            ),
            (
                "protocol enum",
                Box::new(|b| b["networking"] = json!({"auth": false, "port": 80, "protocol": "https"})),
                "networking.protocol",
            ),
            (
                "networking port",
                Box::new(|b| b["networking"] = json!({"auth": false, "port": 70000, "protocol": "http"})),
                "networking.port",
            ),
            (
                "load balancer enum",
                Box::new(|b| {
                    b["networking"] = json!({"auth": false, "port": 80, "protocol": "http", "load_balancer": "random"})
                }),
                "networking.load_balancer",
            ),
            (
                "networking auth required",
                Box::new(|b| b["networking"] = json!({"port": 80, "protocol": "http"})),
                "networking.auth: is required",
            ),
            (
                "probe limits",
                Box::new(|b| {
                    b["startup_probe"] = json!({"tcp": {"port": 7860}, "initial_delay_seconds": 1201,
                        "period_seconds": 0, "timeout_seconds": 61, "success_threshold": 11,
                        "failure_threshold": 21})
                }),
                "startup_probe.failure_threshold",
            ),
            (
                "probe kind",
                Box::new(|b| {
                    b["liveness_probe"] = json!({"initial_delay_seconds": 0, "period_seconds": 1,
                        "timeout_seconds": 1, "success_threshold": 1, "failure_threshold": 1})
                }),
                "exactly one of http, tcp, grpc, exec",
            ),
            (
                "http probe scheme required",
                Box::new(|b| {
                    b["readiness_probe"] = json!({"http": {"path": "/", "port": 1, "headers": []},
                        "initial_delay_seconds": 0, "period_seconds": 1, "timeout_seconds": 1,
                        "success_threshold": 1, "failure_threshold": 1})
                }),
                "readiness_probe.http.scheme: is required",
            ),
            (
                "cron",
                Box::new(|b| b["scaling-actions"] = json!([{"schedule": "every day", "replicas": 1}])),
                "scaling-actions[0].schedule",
            ),
            (
                "two logging providers",
                Box::new(|b| {
                    b["container"]["logging"] = json!({"tcp": {"host": "h", "port": 1},
                        "splunk": {"host": "h", "token": "t"}})
                }),
                "exactly one logging provider",
            ),
            (
                "autostart type",
                Box::new(|b| b["autostart_policy"] = json!("yes")),
                "autostart_policy: must be a boolean",
            ),
        ];
        for (reason, edit, needle) in cases {
            let mut b = body("valid-name");
            edit(&mut b);
            let r = t.create(&b).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{reason}");
            let p: Value = r.json().await.unwrap();
            assert!(
                p["detail"].as_str().unwrap().contains(needle),
                "{reason}: detail lacks `{needle}`: {}",
                p["detail"]
            );
        }
        // Probe limits: every out-of-range field is reported.
        let mut b = body("valid-name");
        b["startup_probe"] = json!({"tcp": {"port": 7860}, "initial_delay_seconds": 1201,
            "period_seconds": 0, "timeout_seconds": 61, "success_threshold": 11, "failure_threshold": 21});
        expect_400(
            &t,
            &b,
            &[
                "initial_delay_seconds",
                "period_seconds",
                "timeout_seconds",
                "success_threshold",
                "failure_threshold",
            ],
        )
        .await;
        // Not JSON, wrong content type.
        let r = t
            .c
            .post(t.groups_url())
            .header("Salad-Api-Key", KEY)
            .header("Content-Type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = t
            .c
            .post(t.groups_url())
            .header("Salad-Api-Key", KEY)
            .header("Content-Type", "text/plain")
            .body(body("valid-name").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Nothing was created, so the name is still free.
        t.create_ok(&body("valid-name")).await;
    })
    .await;
}

#[tokio::test]
async fn name_conflict_even_after_delete() {
    bounded(10, async {
        let t = T::start().await;
        t.create_ok(&body("sd-a")).await;
        let r = t.create(&body("sd-a")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "name_conflict");
        // Another project may use the same name.
        let r = t
            .req(
                Method::POST,
                &t.url("/organizations/acme/projects/other/containers"),
                Some(&body("sd-a")),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        // Delete, wait until gone, the name is still burnt.
        let r = t.req(Method::DELETE, &t.group_url("sd-a"), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        loop {
            if t.get("sd-a").await.0 == StatusCode::NOT_FOUND {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let r = t.create(&body("sd-a")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "name_conflict");
        let stats = t.sim.admin().stats();
        assert!(stats.names_ever_used.contains(&"acme/demo/sd-a".to_owned()));
        assert!(
            stats
                .names_ever_used
                .contains(&"acme/other/sd-a".to_owned())
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_resources_are_404_problem_details() {
    bounded(10, async {
        let t = T::start().await;
        let (s, p) = t.get("nope").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(p["status"], 404);
        assert!(p["detail"].as_str().unwrap().contains("nope"));
        for (m, suffix) in [
            (Method::DELETE, ""),
            (Method::POST, "/start"),
            (Method::POST, "/stop"),
            (Method::GET, "/instances"),
        ] {
            let r = t
                .req(m.clone(), &format!("{}{suffix}", t.group_url("nope")), None)
                .await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{m} {suffix}");
        }
        let (s, _) = t.patch("nope", &json!({"replicas": 1})).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        t.create_ok(&body("sd-x")).await;
        let id = uuid::Uuid::new_v4();
        let r = t
            .req(
                Method::GET,
                &format!("{}/instances/{id}", t.group_url("sd-x")),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = t
            .req(
                Method::POST,
                &format!("{}/instances/{id}/reallocate", t.group_url("sd-x")),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // Invalid names in the path cannot exist.
        let (s, _) = t.get("Bad_Name").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn missing_or_wrong_api_key_is_401() {
    bounded(10, async {
        let t = T::start().await;
        let r = t.c.get(t.groups_url()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], 401);
        let r =
            t.c.get(t.groups_url())
                .header("Salad-Api-Key", "")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // Any non-empty key is fine without a configured key.
        let r =
            t.c.get(t.groups_url())
                .header("Salad-Api-Key", "whatever")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        let t = T::with(SimConfig {
            api_key: Some(KEY.to_owned()),
            rate_limit_per_minute: 0,
            ..SimConfig::default()
        })
        .await;
        let r =
            t.c.get(t.groups_url())
                .header("Salad-Api-Key", "wrong")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let p: Value = r.json().await.unwrap();
        assert!(!p.to_string().contains("wrong"), "keys are never echoed");
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn rate_limit_per_key_in_sliding_window() {
    bounded(10, async {
        let t = T::with(SimConfig {
            rate_limit_per_minute: 5,
            ..SimConfig::default()
        })
        .await;
        for i in 0..5 {
            let r = t.req(Method::GET, &t.groups_url(), None).await;
            assert_eq!(r.status(), StatusCode::OK, "request {i}");
        }
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], 429);
        // Another key has its own budget.
        let r =
            t.c.get(t.groups_url())
                .header("Salad-Api-Key", "other-key")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let stats = t.sim.admin().stats();
        assert_eq!(stats.rate_limited, 1);
        assert_eq!(stats.requests["list_container_groups"]["429"], 1);
        assert_eq!(stats.requests["list_container_groups"]["200"], 6);
    })
    .await;
}

#[tokio::test]
async fn gpu_classes_and_quotas() {
    bounded(10, async {
        let t = T::with(SimConfig {
            replicas_quota: 3,
            rate_limit_per_minute: 0,
            ..SimConfig::default()
        })
        .await;
        let r = t
            .req(Method::GET, &t.url("/organizations/acme/gpu-classes"), None)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        let items = v["items"].as_array().unwrap();
        let by_id = |id: &str| items.iter().find(|g| g["id"] == id).unwrap().clone();
        assert_eq!(by_id(RTX_4090)["name"], "RTX 4090 (24 GB)");
        assert_eq!(
            by_id("cb6c1931-89b6-4f76-976f-54047320ccc6")["name"],
            "RTX 3060 Ti (8 GB)"
        );
        assert_eq!(
            by_id("dec851b7-eba7-4457-a319-a01b611a810e")["name"],
            "Stable Diffusion Compatible"
        );
        let prices = by_id(RTX_4090)["prices"].as_array().unwrap().clone();
        assert_eq!(prices.len(), 4);
        assert_eq!(prices[0], json!({"priority": "high", "price": "0.300"}));
        let limits = |id: &str| {
            let g = by_id(id);
            [
                "min_vcpu",
                "max_vcpu",
                "min_ram",
                "max_ram",
                "min_storage",
                "max_storage",
            ]
            .map(|k| g[k].as_u64())
        };
        assert_eq!(
            limits(RTX_4090),
            [1, 16, 1024, 61440, 1 << 30, 250 << 30].map(Some),
            "consumer classes carry their resource limits"
        );
        assert_eq!(
            limits("851399fb-7329-4195-a042-d6514b28cf33"),
            [1, 32, 1024, 122880, 1 << 30, 500 << 30].map(Some),
            "the RTX 5090 class allows more"
        );

        assert_eq!(quota(&t).await["container_replicas_quota"], 3);
        assert_eq!(quota(&t).await["container_replicas_used"], 0);
        t.create_ok(&body("q-one")).await; // 2 replicas, autostart
        assert_eq!(quota(&t).await["container_replicas_used"], 2);
        // Over quota on create.
        let r = t.create(&body("q-two")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let p: Value = r.json().await.unwrap();
        assert!(p["detail"].as_str().unwrap().contains("quota"), "{p}");
        // A stopped group uses no quota; starting it over quota fails.
        let mut b = body("q-three");
        b["autostart_policy"] = json!(false);
        t.create_ok(&b).await;
        assert_eq!(t.action("q-three", "start").await, StatusCode::BAD_REQUEST);
        // Over quota on patch.
        let (s, p) = t.patch("q-one", &json!({"replicas": 4})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(p["detail"].as_str().unwrap().contains("quota"));
        let (s, _) = t.patch("q-one", &json!({"replicas": 3})).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(quota(&t).await["container_replicas_used"], 3);
        // Stopping frees the quota.
        assert_eq!(t.action("q-one", "stop").await, StatusCode::ACCEPTED);
        assert_eq!(quota(&t).await["container_replicas_used"], 0);
    })
    .await;
}

async fn quota(t: &T) -> Value {
    let r = t
        .req(Method::GET, &t.url("/organizations/acme/quotas"), None)
        .await;
    let v: Value = r.json().await.unwrap();
    v["container_groups_quotas"].clone()
}

// ------------------------------------------------------------------ lifecycle

#[tokio::test]
async fn lifecycle_reaches_running_and_ready() {
    bounded(15, async {
        let t = T::start().await;
        t.create_ok(&body_with_gateway("life", false)).await;
        let mut statuses = Vec::new();
        let mut inst_states = HashSet::new();
        let mut saw_progress = false;
        let start = Instant::now();
        let insts = loop {
            let g = t.group("life").await;
            let s = g["current_state"]["status"].as_str().unwrap().to_owned();
            if statuses.last() != Some(&s) {
                statuses.push(s.clone());
            }
            let insts = t.instances("life").await;
            for i in &insts {
                inst_states.insert(i["state"].as_str().unwrap().to_owned());
                if i["state"] == "downloading" {
                    let p = i["pulling_progress"].as_f64().unwrap();
                    assert!((0.0..=100.0).contains(&p));
                    saw_progress = true;
                }
                assert!(uuid::Uuid::parse_str(i["machine_id"].as_str().unwrap()).is_ok());
                assert_eq!(i["version"], 1);
            }
            if s == "running"
                && insts.len() == 2
                && insts
                    .iter()
                    .all(|i| i["ready"] == true && i["started"] == true)
            {
                break insts;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(statuses, ["pending", "deploying", "running"]);
        for s in ["allocating", "downloading", "creating", "running"] {
            assert!(inst_states.contains(s), "never saw {s}: {inst_states:?}");
        }
        assert!(saw_progress);
        let g = t.group("life").await;
        assert_eq!(
            g["current_state"]["instance_status_counts"]["running_count"],
            2
        );
        // GET one instance.
        let id = insts[0]["id"].as_str().unwrap();
        let r = t
            .req(
                Method::GET,
                &format!("{}/instances/{id}", t.group_url("life")),
                None,
            )
            .await;
        assert!(r.status().is_success());
        let i: Value = r.json().await.unwrap();
        assert_eq!(i["id"], id);
        assert!(i.get("pulling_progress").is_none());
    })
    .await;
}

#[tokio::test]
async fn image_change_bumps_version_and_restarts_all_instances_at_once() {
    bounded(25, async {
        let t = T::with_wide_steps().await;
        t.create_ok(&body("upd")).await;
        let before = t.wait_ready("upd", 2).await;
        let ids: HashSet<String> = before.iter().map(|i| i["id"].to_string()).collect();
        let (s, g) = t
            .patch(
                "upd",
                &json!({"container": {"image": "ghcr.io/acme/sdnext:v2"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{g}");
        assert_eq!(g["version"], 2);
        assert_eq!(g["pending_change"], true);
        assert_eq!(g["container"]["image"], "ghcr.io/acme/sdnext:v2");
        assert_ne!(g["container"]["hash"], before[0]["hash"]);
        // While the new image is prepared, instances keep running version 1.
        let insts = t.instances("upd").await;
        assert!(
            insts
                .iter()
                .all(|i| i["version"] == 1 && i["state"] == "running")
        );
        // The first time any instance carries version 2, all of them do and none is ready.
        loop {
            let insts = t.instances("upd").await;
            if insts.iter().any(|i| i["version"] == 2) {
                assert!(insts.iter().all(|i| i["version"] == 2), "{insts:?}");
                assert!(insts.iter().all(|i| i["ready"] == false), "{insts:?}");
                break;
            }
            assert_eq!(t.group("upd").await["pending_change"], true);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = t.wait_ready("upd", 2).await;
        let g = t.group("upd").await;
        assert_eq!(g["pending_change"], false);
        assert_eq!(g["version"], 2);
        // Restarted in place: same instance ids.
        let ids_after: HashSet<String> = after.iter().map(|i| i["id"].to_string()).collect();
        assert_eq!(ids, ids_after);
    })
    .await;
}

#[tokio::test]
async fn env_change_restarts_without_image_prep_and_merge_patch_semantics() {
    bounded(25, async {
        let t = T::with_wide_steps().await;
        let mut b = body("envs");
        b["container"]["environment_variables"] = json!({"A": "1", "B": "2"});
        t.create_ok(&b).await;
        t.wait_ready("envs", 2).await;
        // Merge: C added, A removed with null, B kept.
        let (s, g) = t
            .patch(
                "envs",
                &json!({"container": {"environment_variables": {"A": null, "C": "3"}}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{g}");
        assert_eq!(
            g["container"]["environment_variables"],
            json!({"B": "2", "C": "3"})
        );
        assert_eq!(g["version"], 2);
        assert_eq!(g["pending_change"], true);
        let insts = t.instances("envs").await;
        assert!(
            insts
                .iter()
                .all(|i| i["version"] == 2 && i["state"] == "creating"),
            "{insts:?}"
        );
        t.wait_ready("envs", 2).await;
        // Sending the same values again is not a change.
        let (_, g) = t
            .patch(
                "envs",
                &json!({"container": {"environment_variables": {"B": "2"}}}),
            )
            .await;
        assert_eq!(g["version"], 2);
        assert_eq!(g["pending_change"], false);
        // Probes and port are versioned; a probe can be removed with null.
        let (_, g) = t
            .patch(
                "envs",
                &json!({"liveness_probe": {"tcp": {"port": 1}, "initial_delay_seconds": 0,
                    "period_seconds": 10, "timeout_seconds": 30, "success_threshold": 1,
                    "failure_threshold": 3}}),
            )
            .await;
        assert_eq!(g["version"], 3);
        assert_eq!(g["liveness_probe"]["tcp"]["port"], 1);
        let (_, g) = t.patch("envs", &json!({"liveness_probe": null})).await;
        assert_eq!(g["version"], 4);
        assert!(g.get("liveness_probe").is_none());
        // Registry credentials are versioned too but never shown.
        let (_, g) = t
            .patch(
                "envs",
                &json!({"container": {"registry_authentication": {"basic": {"username": "u", "password": "p2"}}}}),
            )
            .await;
        assert_eq!(g["version"], 5);
        assert!(!g.to_string().contains("p2"));
    })
    .await;
}

#[tokio::test]
async fn replicas_and_display_name_change_without_version_bump() {
    bounded(15, async {
        let t = T::start().await;
        t.create_ok(&body("scale")).await;
        let before = t.wait_ready("scale", 2).await;
        let (s, g) = t
            .patch(
                "scale",
                &json!({"replicas": 4, "display_name": "Scaled SD", "country_codes": ["de"]}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{g}");
        assert_eq!(g["version"], 1);
        assert_eq!(g["pending_change"], false);
        assert_eq!(g["replicas"], 4);
        assert_eq!(g["display_name"], "Scaled SD");
        assert_eq!(g["country_codes"], json!(["de"]));
        let insts = t.instances("scale").await;
        assert_eq!(insts.len(), 4);
        // The two old instances were not touched.
        for old in &before {
            let same = insts.iter().find(|i| i["id"] == old["id"]).unwrap();
            assert_eq!(same["state"], "running");
            assert_eq!(same["machine_id"], old["machine_id"]);
        }
        t.wait_ready("scale", 4).await;
        // Scale down: extra instances stop and disappear.
        let (_, g) = t
            .patch("scale", &json!({"replicas": 1, "display_name": null}))
            .await;
        assert_eq!(g["display_name"], "scale");
        assert_eq!(g["version"], 1);
        let insts = t.wait_ready("scale", 1).await;
        assert_eq!(insts.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn patch_rejects_non_updatable_changes_and_bad_values() {
    bounded(10, async {
        let t = T::start().await;
        t.create_ok(&body_with_gateway("imm", true)).await;
        for (patch, needle) in [
            (json!({"networking": {"auth": false}}), "networking.auth"),
            (
                json!({"networking": {"load_balancer": "least_number_of_connections"}}),
                "networking.load_balancer",
            ),
            (json!({"restart_policy": "never"}), "restart_policy"),
            (json!({"autostart_policy": false}), "autostart_policy"),
            (json!({"name": "other"}), "name"),
            (json!({"replicas": 600}), "replicas"),
            (
                json!({"container": {"image": "x".repeat(1025)}}),
                "container.image",
            ),
            (
                json!({"container": {"environment_variables": {"A": ""}}}),
                "container.environment_variables.A",
            ),
            (
                json!({"container": {"resources": {"gpu_classes": ["nope"]}}}),
                "gpu_classes",
            ),
            (json!({"country_codes": []}), "country_codes"),
            (
                json!({"readiness_probe": {"period_seconds": 500}}),
                "readiness_probe.period_seconds",
            ),
        ] {
            let (s, p) = t.patch("imm", &patch).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{patch}");
            assert!(
                p["detail"].as_str().unwrap().contains(needle),
                "{patch}: {p}"
            );
        }
        // Same value for an immutable field is accepted; port is updatable.
        let (s, g) = t
            .patch(
                "imm",
                &json!({"name": "imm", "networking": {"auth": true, "port": 8080}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{g}");
        assert_eq!(g["networking"]["port"], 8080);
        assert_eq!(g["version"], 2);
        // Echoing the read model's defaults for fixed networking fields is not a change.
        let (s, g) = t
            .patch(
                "imm",
                &json!({"networking": {"load_balancer": "round_robin",
                    "client_request_timeout": 100000, "single_connection_limit": false,
                    "dns": g["networking"]["dns"]}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{g}");
        assert_eq!(g["version"], 2);
        // Networking cannot be added to a group created without it.
        t.create_ok(&body("nonet")).await;
        let (s, _) = t.patch("nonet", &json!({"networking": {"port": 80}})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // PATCH needs a JSON media type.
        let r =
            t.c.patch(t.group_url("imm"))
                .header("Salad-Api-Key", KEY)
                .header("Content-Type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let r =
            t.c.patch(t.group_url("imm"))
                .header("Salad-Api-Key", KEY)
                .header("Content-Type", "application/json")
                .body(r#"{"replicas": 1}"#)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn stop_start_and_autostart_false() {
    bounded(15, async {
        let t = T::start().await;
        let mut b = body("manual");
        b["autostart_policy"] = json!(false);
        t.create_ok(&b).await;
        let g = t
            .wait_group("manual", |g| g["current_state"]["status"] != "pending")
            .await;
        assert_eq!(g["current_state"]["status"], "stopped");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(t.instances("manual").await.is_empty());
        assert_eq!(t.action("manual", "start").await, StatusCode::ACCEPTED);
        let g = t.group("manual").await;
        assert_eq!(g["current_state"]["status"], "deploying");
        let first = t.wait_ready("manual", 2).await;
        assert_eq!(t.action("manual", "stop").await, StatusCode::ACCEPTED);
        let g = t.group("manual").await;
        assert_eq!(g["current_state"]["status"], "stopped");
        assert_eq!(
            g["current_state"]["instance_status_counts"]["stopping_count"],
            2
        );
        assert!(
            t.instances("manual")
                .await
                .iter()
                .all(|i| i["state"] == "stopping")
        );
        loop {
            if t.instances("manual").await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        // Start again: new instances.
        assert_eq!(t.action("manual", "start").await, StatusCode::ACCEPTED);
        let second = t.wait_ready("manual", 2).await;
        assert!(
            second
                .iter()
                .all(|i| first.iter().all(|f| f["id"] != i["id"]))
        );
    })
    .await;
}

#[tokio::test]
async fn delete_goes_away() {
    bounded(10, async {
        let t = T::start().await;
        t.create_ok(&body("gone")).await;
        t.wait_ready("gone", 2).await;
        let r = t.req(Method::DELETE, &t.group_url("gone"), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(r.bytes().await.unwrap().is_empty());
        let g = t.group("gone").await;
        assert_eq!(g["current_state"]["status"], "stopped");
        assert!(
            t.instances("gone")
                .await
                .iter()
                .all(|i| i["state"] == "stopping")
        );
        assert_eq!(t.sim.admin().stats().live_groups, 1);
        loop {
            if t.get("gone").await.0 == StatusCode::NOT_FOUND {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        let v: Value = r.json().await.unwrap();
        assert!(v["items"].as_array().unwrap().is_empty());
        assert_eq!(t.sim.admin().stats().live_groups, 0);
        let r = t.req(Method::DELETE, &t.group_url("gone"), None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn instance_actions_and_deletion_cost() {
    bounded(25, async {
        let t = T::with_wide_steps().await;
        t.create_ok(&body("acts")).await;
        let insts = t.wait_ready("acts", 2).await;
        let id = insts[0]["id"].as_str().unwrap().to_owned();
        let url = format!("{}/instances/{id}", t.group_url("acts"));
        let r = t
            .req(Method::POST, &format!("{url}/reallocate"), None)
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let i: Value = t.req(Method::GET, &url, None).await.json().await.unwrap();
        assert_eq!(i["state"], "allocating");
        assert_ne!(i["machine_id"], insts[0]["machine_id"]);
        t.wait_ready("acts", 2).await;
        for action in ["restart", "recreate"] {
            let r = t.req(Method::POST, &format!("{url}/{action}"), None).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let i: Value = t.req(Method::GET, &url, None).await.json().await.unwrap();
            assert_eq!(i["state"], "creating", "{action}");
            t.wait_ready("acts", 2).await;
        }
        let r = t
            .req(Method::PATCH, &url, Some(&json!({"deletion_cost": 500})))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let i: Value = r.json().await.unwrap();
        assert_eq!(i["deletion_cost"], 500);
        let r = t
            .req(Method::PATCH, &url, Some(&json!({"deletion_cost": 100001})))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        // Scale down keeps the expensive instance.
        t.patch("acts", &json!({"replicas": 1})).await;
        let left = t.wait_ready("acts", 1).await;
        assert_eq!(left[0]["id"], id.as_str());
    })
    .await;
}

// ------------------------------------------------------------------ faults

#[tokio::test]
async fn fault_error_rate_answers_500() {
    bounded(10, async {
        let t = T::start().await;
        t.sim.admin().set_error_rate(1.0);
        for _ in 0..3 {
            let r = t.req(Method::GET, &t.groups_url(), None).await;
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let p: Value = r.json().await.unwrap();
            assert_eq!(p["status"], 500);
        }
        t.sim.admin().set_error_rate(0.0);
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        // A 50% rate gives a mix over many requests.
        t.sim.admin().set_error_rate(0.5);
        let mut codes = HashSet::new();
        for _ in 0..60 {
            codes.insert(t.req(Method::GET, &t.groups_url(), None).await.status());
        }
        assert!(
            codes.contains(&StatusCode::OK) && codes.contains(&StatusCode::INTERNAL_SERVER_ERROR)
        );
        let stats = t.sim.admin().stats();
        assert!(stats.requests["list_container_groups"]["500"] >= 3);
    })
    .await;
}

#[tokio::test]
async fn fault_forced_429_burst() {
    bounded(10, async {
        let t = T::start().await;
        t.sim.admin().force_429(2);
        for _ in 0..2 {
            let r = t.req(Method::GET, &t.groups_url(), None).await;
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(t.sim.admin().stats().rate_limited, 2);
        // Through the HTTP admin API too.
        let r =
            t.c.post(format!("http://{}/_admin/burst-429", t.sim.addr()))
                .body(r#"{"count": 1}"#)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn fault_latency_delays_requests() {
    bounded(10, async {
        let t = T::start().await;
        t.sim.admin().set_latency(Duration::from_millis(300));
        let start = Instant::now();
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(start.elapsed() >= Duration::from_millis(300));
        t.sim.admin().set_latency(Duration::ZERO);
        let start = Instant::now();
        t.req(Method::GET, &t.groups_url(), None).await;
        assert!(start.elapsed() < Duration::from_millis(300));
    })
    .await;
}

#[tokio::test]
async fn fault_drop_closes_connection_without_response() {
    bounded(10, async {
        let t = T::start().await;
        t.sim.admin().set_drop_rate(1.0);
        let err =
            t.c.get(t.groups_url())
                .header("Salad-Api-Key", KEY)
                .send()
                .await
                .expect_err("the connection must be dropped");
        assert!(!err.is_status());
        t.sim.admin().set_drop_rate(0.0);
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            t.sim.admin().stats().requests["list_container_groups"]["0"],
            1
        );
    })
    .await;
}

#[tokio::test]
async fn fault_node_interruption_recovers() {
    bounded(25, async {
        let t = T::with_wide_steps().await;
        t.create_ok(&body("intr")).await;
        let before = t.wait_ready("intr", 2).await;
        let id = t.sim.admin().interrupt(ORG, PROJECT, "intr", None).unwrap();
        let insts = t.instances("intr").await;
        let hit = insts.iter().find(|i| i["id"] == id.as_str()).unwrap();
        assert_eq!(hit["state"], "allocating");
        assert_eq!(hit["ready"], false);
        let old = before.iter().find(|i| i["id"] == id.as_str()).unwrap();
        assert_ne!(hit["machine_id"], old["machine_id"]);
        // The group keeps running on the other instance.
        assert_eq!(t.group("intr").await["current_state"]["status"], "running");
        let after = t.wait_ready("intr", 2).await;
        assert!(after.iter().any(|i| i["id"] == id.as_str()));
        // Through the HTTP admin API.
        let r =
            t.c.post(format!("http://{}/_admin/interrupt", t.sim.addr()))
                .json(&json!({"organization": ORG, "project": PROJECT, "name": "intr"}))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert!(v["instance_id"].is_string());
        assert!(
            t.sim
                .admin()
                .interrupt(ORG, PROJECT, "missing", None)
                .is_err()
        );
    })
    .await;
}

#[tokio::test]
async fn fault_unpullable_image_fails_the_group() {
    bounded(15, async {
        let t = T::with(SimConfig {
            faults: Faults {
                failing_images: vec!["does-not-exist".to_owned()],
                ..Faults::default()
            },
            rate_limit_per_minute: 0,
            ..SimConfig::default()
        })
        .await;
        let mut b = body("broken");
        b["container"]["image"] = json!("ghcr.io/acme/does-not-exist:v1");
        t.create_ok(&b).await;
        let g = t
            .wait_group("broken", |g| g["current_state"]["status"] != "pending")
            .await;
        assert_eq!(g["current_state"]["status"], "failed");
        assert!(
            g["current_state"]["description"]
                .as_str()
                .unwrap()
                .contains("does-not-exist")
        );
        assert!(t.instances("broken").await.is_empty());
        assert_eq!(t.action("broken", "start").await, StatusCode::BAD_REQUEST);
        // Fixing the image retries preparation.
        let (s, _) = t
            .patch(
                "broken",
                &json!({"container": {"image": "ghcr.io/acme/sdnext:v1"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        t.wait_ready("broken", 2).await;
        // An image change to a failing image on a running group fails it too (set via admin).
        t.sim.admin().fail_images_matching("bad-tag");
        t.patch(
            "broken",
            &json!({"container": {"image": "ghcr.io/acme/sdnext:bad-tag"}}),
        )
        .await;
        let g = t
            .wait_group("broken", |g| g["current_state"]["status"] == "failed")
            .await;
        assert_eq!(g["pending_change"], false);
    })
    .await;
}

#[tokio::test]
async fn admin_http_faults_and_stats() {
    bounded(10, async {
        let t = T::start().await;
        let admin = format!("http://{}/_admin", t.sim.addr());
        let r =
            t.c.put(format!("{admin}/faults"))
                .json(&json!({"error_rate": 1.0}))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(t.sim.admin().faults().error_rate, 1.0);
        let r = t.req(Method::GET, &t.groups_url(), None).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let f: Value =
            t.c.get(format!("{admin}/faults"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(f["error_rate"], 1.0);
        t.sim.admin().set_faults(Faults::default());
        t.create_ok(&body("st")).await;
        let r =
            t.c.post(format!("{admin}/failing-images"))
                .json(&json!({"pattern": "nope"}))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(t.sim.admin().faults().failing_images, ["nope"]);
        let s: Value =
            t.c.get(format!("{admin}/stats"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(s["requests"]["create_container_group"]["201"], 1);
        assert_eq!(s["requests"]["list_container_groups"]["500"], 1);
        assert_eq!(s["live_groups"], 1);
        assert_eq!(s["names_ever_used"], json!(["acme/demo/st"]));
        let r = t.c.delete(format!("{admin}/stats")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(t.sim.admin().stats().total_requests, 0);
    })
    .await;
}

// ------------------------------------------------------------------ gateway

fn check_png(b64: &str, w: u32, h: u32) {
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), w);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), h);
    assert_eq!(png[24], 8, "bit depth");
    assert_eq!(png[25], 2, "RGB");
    assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
}

#[tokio::test]
async fn gateway_txt2img_returns_valid_png_only_when_ready() {
    bounded(15, async {
        let t = T::start().await;
        let g = t.create_ok(&body_with_gateway("gw", false)).await;
        let dns = g["networking"]["dns"].as_str().unwrap().to_owned();
        let url = t.sim.gateway_url(&dns);
        let req = json!({"prompt": "a salad", "width": 32, "height": 24, "seed": 7, "steps": 4});
        // Not ready yet → 503.
        let r =
            t.c.post(format!("{url}/sdapi/v1/txt2img"))
                .json(&req)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        t.wait_ready("gw", 2).await;
        let r =
            t.c.post(format!("{url}/sdapi/v1/txt2img"))
                .json(&req)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["parameters"]["prompt"], "a salad");
        assert_eq!(v["parameters"]["steps"], 4);
        let info: Value = serde_json::from_str(v["info"].as_str().unwrap()).unwrap();
        assert_eq!(info["seed"], 7);
        assert_eq!(info["width"], 32);
        assert!(info["sd_model_name"].is_string());
        check_png(v["images"][0].as_str().unwrap(), 32, 24);
        // Large sizes are capped at 64×64.
        let v: Value =
            t.c.post(format!("{url}/sdapi/v1/txt2img"))
                .json(&json!({"prompt": "big", "width": 1024, "height": 768}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        check_png(v["images"][0].as_str().unwrap(), 64, 64);
        // Routing by Host header.
        let r =
            t.c.get(format!("http://{}/sdapi/v1/sd-models", t.sim.addr()))
                .header("Host", format!("{dns}:443"))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let models: Value = r.json().await.unwrap();
        assert!(models[0]["model_name"].is_string());
        for p in ["/internal/ping", "/sdapi/v1/progress"] {
            let r = t.c.get(format!("{url}{p}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{p}");
        }
        let r =
            t.c.get(t.sim.gateway_url("unknown-aaaaaaaaaaaaaaaa.salad.cloud") + "/internal/ping")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // Stopped → 503 again.
        t.action("gw", "stop").await;
        let r =
            t.c.get(format!("{url}/internal/ping"))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    })
    .await;
}

#[tokio::test]
async fn a_comfyui_api_group_answers_prompt_health_and_ready_like_comfyui_api() {
    bounded(15, async {
        let t = T::start().await;
        let mut body = body_with_gateway("comfy", false);
        body["readiness_probe"]["http"]["path"] = json!("/ready");
        let g = t.create_ok(&body).await;
        let dns = g["networking"]["dns"].as_str().unwrap().to_owned();
        let url = t.sim.gateway_url(&dns);
        t.wait_ready("comfy", 2).await;
        for p in ["/health", "/ready"] {
            let r = t.c.get(format!("{url}{p}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{p}");
        }
        let workflow = json!({
            "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 48, "height": 40, "batch_size": 2}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
        });
        let r =
            t.c.post(format!("{url}/prompt"))
                .json(&json!({"prompt": workflow, "id": "job-1"}))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], "job-1");
        assert_eq!(v["prompt"], workflow, "the request comes back with the outputs");
        assert_eq!(v["images"].as_array().unwrap().len(), 2, "one per batch item");
        assert_eq!(v["filenames"].as_array().unwrap().len(), 2);
        check_png(v["images"][0].as_str().unwrap(), 48, 40);
        // Without a node that saves an output, comfyui-api refuses the prompt.
        let r =
            t.c.post(format!("{url}/prompt"))
                .json(&json!({"prompt": {"4": workflow["4"].clone()}}))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["location"], "prompt");
        // SD.Next's API is not there.
        let r =
            t.c.post(format!("{url}/sdapi/v1/txt2img"))
                .json(&json!({"prompt": "x"}))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn gateway_auth_is_enforced() {
    bounded(15, async {
        let t = T::with(SimConfig {
            api_key: Some(KEY.to_owned()),
            rate_limit_per_minute: 0,
            ..SimConfig::default()
        })
        .await;
        let g = t.create_ok(&body_with_gateway("gwa", true)).await;
        let dns = g["networking"]["dns"].as_str().unwrap().to_owned();
        let url = format!("{}/internal/ping", t.sim.gateway_url(&dns));
        t.wait_ready("gwa", 2).await;
        let r = t.c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r =
            t.c.get(&url)
                .header("Salad-Api-Key", "wrong")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r =
            t.c.get(&url)
                .header("Salad-Api-Key", KEY)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn demo_timings_are_slower_but_bounded() {
    let fast = Timings::default();
    let demo = Timings::realistic_demo();
    let total = |t: &Timings| {
        t.image_prepare + t.allocate + t.download + t.create + t.startup + t.readiness
    };
    assert!(total(&fast) <= Duration::from_secs(3));
    assert!((Duration::from_secs(10)..=Duration::from_secs(20)).contains(&total(&demo)));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    bounded(10, async {
        let t = T::start().await;
        let url = t.groups_url();
        let T { sim, c } = t;
        sim.shutdown().await;
        let r = c.get(&url).header("Salad-Api-Key", KEY).send().await;
        assert!(r.is_err());
    })
    .await;
}
