//! Job queues on the virtual clock: jobs reach running instances' fake servers through the
//! connection's path, interruptions count as failed attempts (three at most), the queue
//! autoscaler follows the queue down to 0, and scheduled scaling fires on its minute.

use std::time::Duration;

use saladcloud_sim::{SimConfig, VirtualCloud};
use serde_json::{Value, json};

const ORG: &str = "acme";
const PROJECT: &str = "image-gen";
const RTX_4090: &str = "ed563892-aacd-40f5-80b7-90c9be6c759b";

fn cloud() -> VirtualCloud {
    VirtualCloud::new(SimConfig {
        job_time: Duration::from_secs(20),
        rate_limit_per_minute: 0,
        ..SimConfig::default()
    })
}

fn group(name: &str, replicas: u32) -> Value {
    json!({
        "name": name,
        "container": {
            "image": "ghcr.io/acme/sdnext:v1",
            "resources": {"cpu": 4, "memory": 12288, "gpu_classes": [RTX_4090]},
        },
        "autostart_policy": true,
        "replicas": replicas,
        "restart_policy": "always",
    })
}

fn queued(name: &str, replicas: u32, autoscaler: Option<Value>) -> Value {
    let mut g = group(name, replicas);
    g["queue_connection"] =
        json!({"path": "/sdapi/v1/txt2img", "port": 7860, "queue_name": "jobs"});
    if let Some(a) = autoscaler {
        g["queue_autoscaler"] = a;
    }
    g
}

fn replicas(c: &VirtualCloud, name: &str) -> u64 {
    c.get(ORG, PROJECT, name).unwrap()["replicas"]
        .as_u64()
        .unwrap()
}

fn job(c: &VirtualCloud, id: &str) -> Value {
    c.get_job(ORG, PROJECT, "jobs", id).unwrap()
}

/// Advances in steps of `step` until `done` or `limit` passes; answers the time it took.
fn until(
    c: &mut VirtualCloud,
    step: Duration,
    limit: Duration,
    done: impl Fn(&VirtualCloud) -> bool,
) -> Duration {
    let start = c.elapsed();
    while !done(c) {
        assert!(c.elapsed() - start < limit, "not within {limit:?}");
        c.advance(step);
    }
    c.elapsed() - start
}

#[test]
fn a_group_connects_only_to_a_queue_that_exists_and_never_by_patch() {
    let mut c = cloud();
    let e = c.create(ORG, PROJECT, &queued("grp", 1, None)).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.body().to_string().contains("does not exist"),
        "{}",
        e.body()
    );
    c.create_queue(ORG, PROJECT, &json!({"name": "jobs"}))
        .unwrap();
    c.create(ORG, PROJECT, &queued("grp", 1, None)).unwrap();
    let e = c
        .update(
            ORG,
            PROJECT,
            "grp",
            &json!({"queue_connection": {"path": "/x", "port": 1, "queue_name": "jobs"}}),
        )
        .unwrap_err();
    assert_eq!(e.status, 400, "queue_connection is set only at creation");
    let q = c.get_queue(ORG, PROJECT, "jobs").unwrap();
    assert_eq!(q["container_groups"][0]["name"], "grp");
    let e = c
        .create_queue(ORG, PROJECT, &json!({"name": "Jobs!"}))
        .unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn a_job_is_answered_by_an_instance_through_the_connection_path() {
    let mut c = cloud();
    c.create_queue(ORG, PROJECT, &json!({"name": "jobs"}))
        .unwrap();
    c.create(ORG, PROJECT, &queued("grp", 1, None)).unwrap();
    let j = c
        .create_job(
            ORG,
            PROJECT,
            "jobs",
            &json!({"input": {"prompt": "a red apple", "steps": 4, "width": 64, "height": 64}}),
        )
        .unwrap();
    assert_eq!(j["status"], "pending");
    let id = j["id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.get_queue(ORG, PROJECT, "jobs").unwrap()["current_queue_length"],
        1
    );
    until(
        &mut c,
        Duration::from_secs(5),
        Duration::from_secs(3600),
        |c| job(c, &id)["status"] == "succeeded",
    );
    let j = job(&c, &id);
    let png = j["output"]["images"][0].as_str().unwrap();
    assert!(
        png.starts_with("iVBOR"),
        "a base64 PNG from the fake SD.Next"
    );
    let actions: Vec<&str> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "started", "succeeded"]);
    let listed = c.list_jobs(ORG, PROJECT, "jobs", 1, 10).unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());
}

#[test]
fn a_wrong_job_path_fails_after_three_attempts_with_the_servers_error() {
    let mut c = cloud();
    c.create_queue(ORG, PROJECT, &json!({"name": "jobs"}))
        .unwrap();
    let mut g = queued("grp", 1, None);
    g["queue_connection"]["path"] = json!("/nope");
    c.create(ORG, PROJECT, &g).unwrap();
    let id = c
        .create_job(ORG, PROJECT, "jobs", &json!({"input": {}}))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    until(
        &mut c,
        Duration::from_secs(5),
        Duration::from_secs(3600),
        |c| job(c, &id)["status"] == "failed",
    );
    let j = job(&c, &id);
    assert!(
        j["output"]["error"].as_str().unwrap().contains("404"),
        "{j}"
    );
    let starts = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "started")
        .count();
    assert_eq!(starts, 3);
}

#[test]
fn an_interruption_fails_the_attempt_and_the_job_is_retried() {
    let mut c = VirtualCloud::new(SimConfig {
        job_time: Duration::from_secs(600),
        rate_limit_per_minute: 0,
        ..SimConfig::default()
    });
    c.create_queue(ORG, PROJECT, &json!({"name": "jobs"}))
        .unwrap();
    c.create(ORG, PROJECT, &queued("grp", 1, None)).unwrap();
    let id = c
        .create_job(ORG, PROJECT, "jobs", &json!({"input": {"prompt": "x"}}))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let starts = |j: &Value| {
        j["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "started")
            .count()
    };
    for attempt in 1..=3 {
        until(
            &mut c,
            Duration::from_secs(1),
            Duration::from_secs(7200),
            |c| {
                let j = job(c, &id);
                j["status"] == "running" && starts(&j) == attempt
            },
        );
        c.interrupt(ORG, PROJECT, "grp", None).unwrap();
        c.advance(Duration::from_millis(100));
        let j = job(&c, &id);
        if attempt < 3 {
            assert_ne!(j["status"], "failed", "attempt {attempt}: {j}");
            assert_ne!(j["status"], "succeeded", "attempt {attempt}: {j}");
        } else {
            assert_eq!(j["status"], "failed", "{j}");
        }
    }
    let j = job(&c, &id);
    assert!(
        j["output"]["error"]
            .as_str()
            .unwrap()
            .contains("attempt 3 of 3"),
        "{j}"
    );
}

#[test]
fn the_queue_autoscaler_follows_the_queue_down_to_zero_within_its_rates() {
    let mut c = cloud();
    c.create_queue(ORG, PROJECT, &json!({"name": "jobs"}))
        .unwrap();
    let autoscaler = json!({"min_replicas": 0, "max_replicas": 4, "desired_queue_length": 2,
                            "polling_period": 30, "max_upscale_per_minute": 2});
    c.create(ORG, PROJECT, &queued("grp", 0, Some(autoscaler)))
        .unwrap();
    c.advance(Duration::from_secs(60));
    assert_eq!(replicas(&c, "grp"), 0, "an empty queue needs nothing");
    let ids: Vec<String> = (0..10)
        .map(|i| {
            c.create_job(ORG, PROJECT, "jobs", &json!({"input": {"seed": i}}))
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    c.advance(Duration::from_secs(30));
    assert!(
        replicas(&c, "grp") <= 2,
        "at most 2 a minute: {}",
        replicas(&c, "grp")
    );
    until(
        &mut c,
        Duration::from_secs(15),
        Duration::from_secs(600),
        |c| replicas(c, "grp") == 4,
    );
    until(
        &mut c,
        Duration::from_secs(15),
        Duration::from_secs(7200),
        |c| ids.iter().all(|id| job(c, id)["status"] == "succeeded"),
    );
    until(
        &mut c,
        Duration::from_secs(15),
        Duration::from_secs(600),
        |c| replicas(c, "grp") == 0,
    );
    let list = c.instances(ORG, PROJECT, "grp").unwrap();
    assert!(
        list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "stopping"),
        "at 0 replicas every instance stops: {list}"
    );
}

#[test]
fn scheduled_scaling_fires_on_its_minute_in_utc() {
    let mut c = cloud();
    let mut g = group("grp", 1);
    // The virtual clock starts at 1970-01-01T00:00:00Z.
    g["scheduled-scaling-enabled"] = json!(true);
    g["scaling-actions"] = json!([{"schedule": "5 0 * * *", "replicas": 3}, {"schedule": "10 0 * * *", "replicas": 0}]);
    c.create(ORG, PROJECT, &g).unwrap();
    c.advance(Duration::from_secs(4 * 60 + 30));
    assert_eq!(replicas(&c, "grp"), 1);
    c.advance(Duration::from_secs(60));
    assert_eq!(replicas(&c, "grp"), 3, "00:05 fired");
    c.advance(Duration::from_secs(5 * 60));
    assert_eq!(replicas(&c, "grp"), 0, "00:10 fired");
    // Switched off, nothing fires.
    c.update(
        ORG,
        PROJECT,
        "grp",
        &json!({"scheduled-scaling-enabled": false, "replicas": 2}),
    )
    .unwrap();
    c.advance(Duration::from_secs(24 * 3600));
    assert_eq!(replicas(&c, "grp"), 2);
}
