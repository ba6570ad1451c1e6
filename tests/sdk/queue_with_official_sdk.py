"""The simulator's job queues through SaladCloud's official Python SDK (PyPI salad-cloud-sdk,
generated from the same OpenAPI spec): a client nobody here wrote. It creates a queue, a
container group connected to it with a queue autoscaler at minimum 0, submits a txt2img job,
waits for the simulator's worker to answer it, lists the jobs and deletes what it made. Every
answer is parsed by the SDK's own models, so a response shape the SDK cannot read fails here.

Usage: python queue_with_official_sdk.py BASE_URL API_KEY GPU_CLASS_ID
"""

import sys
import time

from salad_cloud_sdk import SaladCloudSdk
from salad_cloud_sdk.models import (
    ContainerConfiguration,
    ContainerGroupCreationRequest,
    ContainerGroupQueueConnection,
    ContainerRestartPolicy,
    CreateContainerResourceRequirements,
    QueueBasedAutoscalerConfiguration,
    QueueJobPrototype,
    QueuePrototype,
)

ORG, PROJECT, QUEUE, GROUP = "acme", "image-gen", "sdk-jobs", "sdk-queued"


def main(base_url: str, api_key: str, gpu: str) -> None:
    sdk = SaladCloudSdk(api_key=api_key, base_url=base_url, timeout=10000)
    q = sdk.queues.create_queue(
        QueuePrototype(name=QUEUE, display_name="SDK jobs", description="official SDK test"),
        ORG,
        PROJECT,
    )
    assert q.name == QUEUE, q
    assert QUEUE in [x.name for x in sdk.queues.list_queues(ORG, PROJECT).items]

    group = ContainerGroupCreationRequest(
        autostart_policy=True,
        container=ContainerConfiguration(
            image="ghcr.io/acme/sdnext:v1",
            resources=CreateContainerResourceRequirements(cpu=4, memory=12288, gpu_classes=[gpu]),
        ),
        name=GROUP,
        replicas=0,
        restart_policy=ContainerRestartPolicy.ALWAYS,
        queue_connection=ContainerGroupQueueConnection(
            path="/sdapi/v1/txt2img", port=7860, queue_name=QUEUE
        ),
        queue_autoscaler=QueueBasedAutoscalerConfiguration(
            desired_queue_length=1, max_replicas=2, min_replicas=0, polling_period=15
        ),
    )
    g = sdk.container_groups.create_container_group(group, ORG, PROJECT)
    assert g.queue_connection.queue_name == QUEUE, g
    assert g.queue_autoscaler.min_replicas == 0, g

    job = sdk.queues.create_queue_job(
        QueueJobPrototype(input={"prompt": "a red apple", "steps": 4, "width": 64, "height": 64},
                          metadata={"by": "official-sdk"}),
        ORG,
        PROJECT,
        QUEUE,
    )
    status = lambda j: getattr(j.status, "value", j.status)
    assert status(job) == "pending", job
    deadline = time.time() + 90
    while True:
        job = sdk.queues.get_queue_job(ORG, PROJECT, QUEUE, job.id_)
        if status(job) in ("succeeded", "failed", "cancelled"):
            break
        assert time.time() < deadline, f"job still {status(job)} after 90 s"
        time.sleep(0.5)
    assert status(job) == "succeeded", job
    out = job.output if isinstance(job.output, dict) else job.output.__dict__
    assert out["images"][0].startswith("iVBOR"), "a base64 PNG"
    actions = [getattr(e.action, "value", e.action) for e in job.events]
    assert actions == ["created", "started", "succeeded"], actions
    listed = sdk.queues.list_queue_jobs(ORG, PROJECT, QUEUE, page=1, page_size=10)
    assert [j.id_ for j in listed.items] == [job.id_]

    sdk.container_groups.delete_container_group(ORG, PROJECT, GROUP)
    sdk.queues.delete_queue(ORG, PROJECT, QUEUE)
    print("official SDK: queue, connected group, job answered in", round(time.time() - deadline + 90, 1), "s")


if __name__ == "__main__":
    main(*sys.argv[1:4])
