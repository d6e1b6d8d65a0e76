"""The real Pub/Sub emulator and fake-gcs-server start here and speak to the real SDKs."""

from __future__ import annotations

import json

from support.names import GCS_TOPIC, PROJECT


def test_an_object_written_to_fake_gcs_is_announced_on_pubsub(
    gcs_host: str, pubsub_host: str
) -> None:
    """Finalizing an object publishes an OBJECT_FINALIZE notification with its generation."""
    from google.cloud import pubsub_v1, storage

    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(PROJECT, "emulator-smoke")
    subscriber.create_subscription(
        name=subscription, topic=f"projects/{PROJECT}/topics/{GCS_TOPIC}"
    )
    client = storage.Client(project=PROJECT)
    bucket = client.create_bucket("emulator-smoke")
    blob = bucket.blob("models/m/v1/config.json")
    blob.upload_from_string(b"{}")

    response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
    finalized = [
        m.message
        for m in response.received_messages
        if m.message.attributes.get("eventType") == "OBJECT_FINALIZE"
        and m.message.attributes.get("objectId") == "models/m/v1/config.json"
    ]
    assert finalized, [m.message.attributes for m in response.received_messages]
    assert json.loads(finalized[0].data)["bucket"] == "emulator-smoke"
    assert finalized[0].attributes["objectGeneration"] == str(blob.generation)
