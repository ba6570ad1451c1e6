//! The simulator's job queues through SaladCloud's official Python SDK (tests/sdk/
//! queue_with_official_sdk.py): requests the SDK makes and answers its models must parse.
//! Runs when SALAD_SDK_PYTHON names a Python with `salad-cloud-sdk` installed (`make sdk-check`
//! sets it up in .scratch/ and CI runs it); without it the test says so and passes.

use std::time::Duration;

use saladcloud_sim::{SimConfig, Simulator, Timings};

const RTX_4090: &str = "ed563892-aacd-40f5-80b7-90c9be6c759b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_drives_a_queue_a_connected_group_and_a_job() {
    let Ok(python) = std::env::var("SALAD_SDK_PYTHON") else {
        eprintln!("SALAD_SDK_PYTHON is not set: skipped (run `make sdk-check`)");
        return;
    };
    let sim = Simulator::start(
        SimConfig {
            timings: Timings::fast(),
            rate_limit_per_minute: 0,
            api_key: Some("sdk-key".into()),
            job_time: Duration::from_millis(200),
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .expect("simulator");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/sdk/queue_with_official_sdk.py"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(script)
            .arg(sim.base_url())
            .arg("sdk-key")
            .arg(RTX_4090)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the SDK script finishes within 120 s")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the official SDK failed against the simulator:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("job answered"), "{stdout}");
    let stats = sim.admin().stats();
    for op in [
        "create_queue",
        "create_queue_job",
        "get_queue_job",
        "list_queue_jobs",
        "delete_queue",
    ] {
        assert!(
            stats.requests.contains_key(op),
            "the SDK called {op}: {:?}",
            stats.requests.keys()
        );
    }
    sim.shutdown().await;
}
