# Topics and the subscriptions that feed the functions. on_command and sweep are fed by push
# subscriptions that modeldrop owns (rather than ones Eventarc creates), so the dead-letter policy,
# backoff and ack deadline are ours to set. Pushes carry an OIDC token of the invoker account.

resource "google_pubsub_topic" "commands" {
  name         = local.topic_names.commands
  project      = var.project_id
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "results" {
  name         = local.topic_names.results
  project      = var.project_id
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "sweep" {
  name         = local.topic_names.sweep
  project      = var.project_id
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "dead_letter" {
  name         = local.topic_names.dead_letter
  project      = var.project_id
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_subscription" "on_command" {
  name    = "modeldrop-on-command"
  project = var.project_id
  topic   = google_pubsub_topic.commands.id
  labels  = local.labels

  # Pub/Sub waits this long for on_command to answer before it redelivers: longer than the
  # function's own timeout, so a slow command is not delivered twice while it still runs.
  ack_deadline_seconds = var.functions.on_command.timeout_s + 60
  # A command nobody could handle in a day is stale: the user has long since given up on it.
  message_retention_duration = "86400s"

  push_config {
    # The path names the topic, so functions-framework's CloudEvent says which topic it came from
    # (the local stack pushes to the same path).
    push_endpoint = "${google_cloudfunctions2_function.on_command.service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.commands.name}"

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.on_command.service_config[0].uri
    }
  }

  # Transient errors (429, 503, timeouts) are raised by the function and retried with backoff;
  # what still fails after max_delivery_attempts lands on the dead-letter topic, never lost.
  retry_policy {
    minimum_backoff = "${var.delivery.minimum_backoff_s}s"
    maximum_backoff = "${var.delivery.maximum_backoff_s}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.delivery.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire, however quiet the project is
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher]
}

resource "google_pubsub_subscription" "sweep" {
  name    = "modeldrop-sweep"
  project = var.project_id
  topic   = google_pubsub_topic.sweep.id
  labels  = local.labels

  ack_deadline_seconds = var.functions.sweep.timeout_s + 60
  # Ticks are level-triggered: the sweep decides from Vertex's state, so a tick that could not be
  # delivered is worthless once the next one is due. Keep them the minimum ten minutes, no
  # dead-letter topic.
  message_retention_duration = "600s"

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.sweep.service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.sweep.name}"

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.sweep.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "30s"
    maximum_backoff = "300s"
  }

  expiration_policy {
    ttl = ""
  }
}

# The sweep drains this one: each dead-lettered command gets its `failed` result, so no command
# ends without one. The subscription below keeps a copy of every dead letter for people.
resource "google_pubsub_subscription" "dead_letter_answers" {
  name    = "modeldrop-dead-letter-answers"
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "${var.delivery.dead_letter_retention_days * 86400}s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# Dead letters wait here for a person (or `gcloud pubsub subscriptions pull`) to look at them.
resource "google_pubsub_subscription" "dead_letter" {
  name    = "modeldrop-dead-letter"
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "${var.delivery.dead_letter_retention_days * 86400}s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}
