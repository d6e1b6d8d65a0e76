"""Names the test emulators share."""

PROJECT = "modeldrop-test"
GCS_TOPIC = "gcs-notifications"
