"""A Vertex AI (and Cloud Monitoring subset) emulator that really deploys models as local processes."""
