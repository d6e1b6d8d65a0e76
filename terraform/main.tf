# modeldrop on Google Cloud: one apply stands up the buckets, topics, functions, scheduler, registry
# and identities, wired with the names and variables the code in functions/ expects.
# Resources live in role-named files: storage.tf, pubsub.tf, functions.tf, registry.tf, iam.tf.

data "google_project" "this" {
  project_id = var.project_id
}

# The Cloud Storage service agent publishes object events for the Eventarc storage trigger.
data "google_storage_project_service_account" "this" {
  project = var.project_id

  depends_on = [google_project_service.this]
}

locals {
  labels = merge(var.labels, { "managed-by" = "modeldrop" })

  # Names the code shares with the local stack (local/stack_state.py, docs/architecture.md).
  topic_names = {
    commands    = "modeldrop-commands"
    results     = "modeldrop-results"
    sweep       = "modeldrop-sweep"
    dead_letter = "modeldrop-dead-letter"
  }

  # An image path ending in /serving is what the local Vertex emulator maps to `python -m serving`.
  serving_image = coalesce(
    var.serving.image,
    "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.serving.repository_id}/serving:${var.serving.tag}",
  )

  # Every function reads the same Settings (functions/modeldrop/config.py): each gets every
  # variable it requires plus the optional ones that matter on Google Cloud. The *_API_ENDPOINT
  # variables stay unset so the real regional Vertex AI and Monitoring endpoints are used.
  function_environment = {
    MODELDROP_PROJECT                  = var.project_id
    MODELDROP_REGION                   = var.region
    MODELDROP_WEIGHTS_BUCKET           = google_storage_bucket.weights.name
    MODELDROP_STATE_BUCKET             = google_storage_bucket.state.name
    MODELDROP_COMMANDS_TOPIC           = google_pubsub_topic.commands.name
    MODELDROP_RESULTS_TOPIC            = google_pubsub_topic.results.name
    MODELDROP_SERVING_IMAGE            = local.serving_image
    MODELDROP_SERVING_SERVICE_ACCOUNT  = google_service_account.serving.email
    MODELDROP_DEFAULT_IDLE_TTL         = var.settings.default_idle_ttl
    MODELDROP_DEPLOY_GRACE             = var.settings.deploy_grace
    MODELDROP_MAX_EVENT_AGE            = var.settings.max_event_age
    MODELDROP_UPLOAD_WAIT              = var.settings.upload_wait
    MODELDROP_METRICS_DELAY            = var.settings.metrics_delay
    MODELDROP_ALLOW_PICKLE             = tostring(var.settings.allow_pickle)
    MODELDROP_ALLOW_REMOTE_CODE        = tostring(var.settings.allow_remote_code)
    MODELDROP_DELETE_EMPTY_ENDPOINTS   = tostring(var.settings.delete_empty_endpoints)
    MODELDROP_DEAD_LETTER_SUBSCRIPTION = google_pubsub_subscription.dead_letter_answers.name
  }
  # The gateway reads what the others do, plus how long it holds a request through a wake.
  gateway_environment = merge(local.function_environment, {
    MODELDROP_WAKE_TIMEOUT = var.gateway.wake_timeout
  })

  project_number = data.google_project.this.number
  # Google-managed service agents that act for modeldrop's resources. Each is read from the
  # resource that makes sure it exists, so every grant to it waits for its API and its creation.
  pubsub_service_agent   = google_project_service_identity.this["pubsub.googleapis.com"].email
  storage_service_agent  = data.google_storage_project_service_account.this.email_address
  registry_service_agent = google_project_service_identity.this["artifactregistry.googleapis.com"].email
}

# Some service agents exist only once something asks for them (Artifact Registry's, before a CMEK
# grant can name it: cloud.google.com/artifact-registry/docs/cmek); the Pub/Sub agent signs push
# tokens and moves dead letters. services.generateServiceIdentity creates the agent if it is missing
# and returns it; in the google provider only google-beta has this resource.
resource "google_project_service_identity" "this" {
  provider = google-beta
  for_each = toset(["pubsub.googleapis.com", "artifactregistry.googleapis.com"])

  project = var.project_id
  service = each.value

  depends_on = [google_project_service.this]
}

resource "google_project_service" "this" {
  for_each = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])

  project = var.project_id
  service = each.value
  # Other workloads in the project may use the same APIs: destroying modeldrop must not turn them off.
  disable_on_destroy = false
}
