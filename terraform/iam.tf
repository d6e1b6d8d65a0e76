# Identities: one service account per function, one for the serving containers, one that Eventarc
# and Pub/Sub push present (OIDC) to invoke the functions, one that builds the functions. Each is
# granted only what its code calls, on the narrowest resource that takes a grant. Every grant is an
# additive *_iam_member, so nothing here rewrites a policy someone else manages.

resource "google_service_account" "on_upload" {
  project      = var.project_id
  account_id   = "modeldrop-on-upload"
  display_name = "modeldrop on_upload function"
  description  = "Reads the weights bucket, registers models in Vertex AI, publishes results and deploy commands."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "on_command" {
  project      = var.project_id
  account_id   = "modeldrop-on-command"
  display_name = "modeldrop on_command function"
  description  = "Creates endpoints and starts deployments in Vertex AI as the serving account, registers folders on register commands; publishes results."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "sweep" {
  project      = var.project_id
  account_id   = "modeldrop-sweep"
  display_name = "modeldrop sweep function"
  description  = "Reads prediction counts, follows deploy operations and undeploys idle models; publishes results."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = "modeldrop-gateway"
  display_name = "modeldrop gateway function"
  description  = "The front door: reads endpoints, calls predict on them, publishes wake commands, keeps wake and activity records."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "serving" {
  project      = var.project_id
  account_id   = "modeldrop-serving"
  display_name = "modeldrop serving containers"
  description  = "What the vLLM containers on Vertex AI run as: reads the weights bucket, writes activity records, reads deployment configs and adapter records."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "modeldrop-invoker"
  display_name = "modeldrop function invoker"
  description  = "The OIDC identity of the Eventarc storage trigger and the Pub/Sub push subscriptions."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "modeldrop-build"
  display_name = "modeldrop function builds"
  description  = "Cloud Build runs the functions' builds as this account instead of a project-wide default."

  depends_on = [google_project_service.this]
}

# roles/aiplatform.user would also let the functions run training jobs, read datasets, call
# Gemini and much more. Each function gets a role with just the calls its code makes; every
# permission below is checked against Google's published permission list in `make test`
# (tests/terraform/test_permissions.py), and README.md in this folder maps each one to its call.
# Reading a Vertex long-running operation (operations.get, also what `.result()` polls) takes
# aiplatform.operations.list: Vertex has no aiplatform.operations.get permission; its IAM
# permissions reference lists operations.list as the "other permission" of every call that
# starts an operation (cloud.google.com/vertex-ai/docs/general/iam-permissions).
resource "google_project_iam_custom_role" "registrar" {
  project     = var.project_id
  role_id     = "modeldropRegistrar"
  title       = "modeldrop registrar"
  description = "on_upload and `register` commands: register uploaded weights as versions in the Vertex AI Model Registry."
  permissions = [
    "aiplatform.models.get",      # models.get: does the model exist, the version an alias names, the registered version
    "aiplatform.models.upload",   # models.upload: a new model or a new version (aliases ride on the upload)
    "aiplatform.operations.list", # operations.get: follow the upload operation
  ]
}

resource "google_project_iam_custom_role" "deployer" {
  project     = var.project_id
  role_id     = "modeldropDeployer"
  title       = "modeldrop deployer"
  description = "on_command: creates endpoints, deploys, scales, re-splits traffic, undeploys and deletes endpoints."
  permissions = [
    "aiplatform.endpoints.create",   # endpoints.create
    "aiplatform.endpoints.delete",   # endpoints.delete (delete-endpoint)
    "aiplatform.endpoints.deploy",   # endpoints.deployModel (v1 and v1beta1); mutateDeployedModel for `scale`
    "aiplatform.endpoints.get",      # endpoints.get
    "aiplatform.endpoints.undeploy", # endpoints.undeployModel
    "aiplatform.endpoints.update",   # endpoints.patch: labels, the traffic split; mutateDeployedModel (undocumented: either)
    "aiplatform.models.get",         # models.get: resolve the model version to deploy
    "aiplatform.operations.list",    # operations.get: wait for endpoints.create
  ]
}

resource "google_project_iam_custom_role" "sweeper" {
  project     = var.project_id
  role_id     = "modeldropSweeper"
  title       = "modeldrop sweeper"
  description = "sweep: lists managed endpoints, follows operations, undeploys idle models and deletes empty endpoints."
  permissions = [
    "aiplatform.endpoints.delete",   # endpoints.delete, only with delete_empty_endpoints
    "aiplatform.endpoints.get",      # endpoints.get
    "aiplatform.endpoints.list",     # endpoints.list: managed endpoints, by label
    "aiplatform.endpoints.undeploy", # endpoints.undeployModel: carries the new traffic split itself
    "aiplatform.operations.list",    # operations.get: follow deploy, undeploy and delete operations
  ]
}

# roles/monitoring.viewer holds 35 permissions (dashboards, alert policies, uptime checks...); the
# sweep makes one Monitoring call, projects.timeSeries.list, which needs monitoring.timeSeries.list.
resource "google_project_iam_custom_role" "metrics_reader" {
  project     = var.project_id
  role_id     = "modeldropMetricsReader"
  title       = "modeldrop metrics reader"
  description = "sweep: reads Vertex AI prediction_count time series (timeSeries.list), nothing else in Monitoring."
  permissions = [
    "monitoring.timeSeries.list", # projects.timeSeries.list
  ]
}

# The gateway finds an endpoint, calls it, and nothing else on Vertex AI.
resource "google_project_iam_custom_role" "gateway" {
  project     = var.project_id
  role_id     = "modeldropGateway"
  title       = "modeldrop gateway"
  description = "gateway: reads endpoints and calls predict, rawPredict and streamRawPredict on them."
  permissions = [
    "aiplatform.endpoints.get",     # endpoints.get: is it deployed, which deployed model serves
    "aiplatform.endpoints.list",    # endpoints.list: /v1/models, managed endpoints by label
    "aiplatform.endpoints.predict", # endpoints.predict, rawPredict, streamRawPredict
  ]
}

# Vertex AI endpoints and models take no resource-level grants here, and Monitoring reads are
# project-wide: these are the only project-level grants to the functions' accounts.
resource "google_project_iam_member" "functions" {
  for_each = {
    "on_upload/registrar" = { role = google_project_iam_custom_role.registrar.id, member = google_service_account.on_upload.member }
    "on_command/deployer" = { role = google_project_iam_custom_role.deployer.id, member = google_service_account.on_command.member }
    # A `register` command re-registers a folder already in the weights bucket, as on_upload would.
    "on_command/registrar" = { role = google_project_iam_custom_role.registrar.id, member = google_service_account.on_command.member }
    "sweep/sweeper"        = { role = google_project_iam_custom_role.sweeper.id, member = google_service_account.sweep.member }
    "sweep/metrics"        = { role = google_project_iam_custom_role.metrics_reader.id, member = google_service_account.sweep.member }
    "gateway/gateway"      = { role = google_project_iam_custom_role.gateway.id, member = google_service_account.gateway.member }
  }

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

# Deploying a model that runs as the serving account needs actAs on it: only on_command deploys.
resource "google_service_account_iam_member" "on_command_acts_as_serving" {
  for_each = toset(["roles/iam.serviceAccountUser"])

  service_account_id = google_service_account.serving.name
  role               = each.value
  member             = google_service_account.on_command.member
}

# on_upload and on_command (for `register` commands) read uploads; the containers read the weights.
resource "google_storage_bucket_iam_member" "weights" {
  for_each = {
    on_upload  = google_service_account.on_upload.member
    on_command = google_service_account.on_command.member
    serving    = google_service_account.serving.member
  }

  bucket = google_storage_bucket.weights.name
  role   = "roles/storage.objectViewer"
  member = each.value
}

# Leases, in-flight operation names and request ids seen: every function but the gateway reads and
# writes them (and lists them by prefix, which needs the whole bucket).
resource "google_storage_bucket_iam_member" "state" {
  for_each = {
    on_upload  = google_service_account.on_upload.member
    on_command = google_service_account.on_command.member
    sweep      = google_service_account.sweep.member
  }

  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = each.value
}

# The serving containers and the gateway get only their prefixes of the state bucket, by IAM
# Conditions on the object name: for Cloud Storage objects resource.name is
# projects/_/buckets/BUCKET/objects/OBJECT (cloud.google.com/storage/docs/access-control/iam#conditions).
# Writing an object that exists (an activity record rewritten each minute) is a create plus a
# delete of the old generation, so writers get roles/storage.objectUser, not objectCreator
# (cloud.google.com/storage/docs/access-control/iam-permissions: "storage.objects.delete ...
# also needed to overwrite"). storage.objects.list is checked against the bucket, not an object,
# so no conditioned grant lists: these holders read and write objects whose names they know.
resource "google_storage_bucket_iam_member" "state_prefixes" {
  for_each = {
    for grant in [
      { holder = "serving", member = google_service_account.serving.member, role = "roles/storage.objectUser", prefixes = ["activity/", "compile-cache/"] },
      { holder = "serving", member = google_service_account.serving.member, role = "roles/storage.objectViewer", prefixes = ["serving-args/", "adapters/"] },
      { holder = "gateway", member = google_service_account.gateway.member, role = "roles/storage.objectUser", prefixes = ["wakes/", "activity/"] },
      # The sweep's teardown record says an endpoint sleeps (and names the sleep: the wake's request
      # id); the gateway's own wakes' request records say how each ended; deploys/<endpoint>.json
      # says a deploy or wake anyone sent is under way (one object per endpoint: no listing of
      # operations/ or queue/ needed, and none granted); adapter-index/<model>.json names a model's
      # registered adapters for /v1/models (not adapters/: the gateway needs their names only).
      { holder = "gateway", member = google_service_account.gateway.member, role = "roles/storage.objectViewer", prefixes = ["teardowns/", "requests/gateway-wake-", "deploys/", "adapter-index/"] },
    ] : "${grant.holder}/${grant.role}" => grant
  }

  bucket = google_storage_bucket.state.name
  role   = each.value.role
  member = each.value.member

  condition {
    title       = "${each.value.holder}-${replace(join("-", each.value.prefixes), "/", "")}"
    description = "Only objects under ${join(", ", each.value.prefixes)} of the state bucket."
    expression = join(" || ", [
      for prefix in each.value.prefixes :
      "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/${prefix}\")"
    ])
  }
}

resource "google_pubsub_topic_iam_member" "results_publisher" {
  for_each = {
    on_upload  = google_service_account.on_upload.member
    on_command = google_service_account.on_command.member
    sweep      = google_service_account.sweep.member
  }

  project = var.project_id
  topic   = google_pubsub_topic.results.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# A version folder may carry a deploy policy: registering it (on_upload, or on_command for a
# `register` command) publishes that deploy command; the gateway publishes `wake`.
resource "google_pubsub_topic_iam_member" "commands_publisher" {
  for_each = {
    on_upload  = google_service_account.on_upload.member
    on_command = google_service_account.on_command.member
    gateway    = google_service_account.gateway.member
  }

  project = var.project_id
  topic   = google_pubsub_topic.commands.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# Only the invoker account may call the functions (ingress is internal as well).
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  # A gen2 function runs as the Cloud Run service of the same name; Cloud Run checks run.invoker.
  for_each = {
    on_upload  = google_cloudfunctions2_function.on_upload.name
    on_command = google_cloudfunctions2_function.on_command.name
    sweep      = google_cloudfunctions2_function.sweep.name
  }

  project  = var.project_id
  location = var.region
  name     = each.value
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# Who may call the gateway: Cloud Run checks run.invoker on the function's service. None by default.
resource "google_cloud_run_v2_service_iam_member" "gateway_invokers" {
  for_each = toset(var.gateway.invokers)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.gateway.name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_project_iam_member" "invoker_receives_events" {
  for_each = toset(["roles/eventarc.eventReceiver"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.invoker.member
}

# Eventarc's storage trigger needs the Cloud Storage service agent to publish to the Pub/Sub topic
# Eventarc creates for it; that topic does not exist yet, so the grant is on the project.
resource "google_project_iam_member" "storage_agent_publishes_events" {
  for_each = toset(["roles/pubsub.publisher"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${local.storage_service_agent}"
}

# IAM grants take effect after a delay: "typically within 2 minutes, ... in some cases 7 minutes or
# more" (cloud.google.com/iam/docs/access-change-propagation). On a fresh project the Eventarc
# storage trigger is refused until the storage agent's publisher grant has propagated, so the
# function waits. A trigger still refused later is simply retried by the next apply.
resource "time_sleep" "storage_agent_grant_propagation" {
  create_duration = "120s"

  triggers = {
    grant = google_project_iam_member.storage_agent_publishes_events["roles/pubsub.publisher"].id
  }
}

# The Pub/Sub service agent mints the OIDC tokens of the push subscriptions (projects created
# before April 2021 lack this by default) and moves undeliverable commands to the dead-letter topic.
resource "google_service_account_iam_member" "pubsub_agent_signs_as_invoker" {
  for_each = toset(["roles/iam.serviceAccountTokenCreator"])

  service_account_id = google_service_account.invoker.name
  role               = each.value
  member             = "serviceAccount:${local.pubsub_service_agent}"
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = toset(["roles/pubsub.publisher"])

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = each.value
  member  = "serviceAccount:${local.pubsub_service_agent}"
}

# The sweep pulls and acknowledges the dead-letter answers subscription, and nothing else.
resource "google_pubsub_subscription_iam_member" "sweep_dead_letters" {
  for_each = toset(["roles/pubsub.subscriber"])

  project      = var.project_id
  subscription = google_pubsub_subscription.dead_letter_answers.name
  role         = each.value
  member       = google_service_account.sweep.member
}

resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  for_each = toset([google_pubsub_subscription.on_command.name])

  project      = var.project_id
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"
}

# The build account writes build logs and function images, and reads the function sources: ours,
# and the copy Cloud Functions keeps in its own gcf-v2-sources-<project number>-<region> bucket.
resource "google_project_iam_member" "build" {
  for_each = {
    logs    = { role = "roles/logging.logWriter", condition = null }
    sources = { role = "roles/storage.objectViewer", condition = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${local.project_number}-\")" }
  }

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.build.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title       = "cloud-functions-sources-only"
      description = "Only the bucket where Cloud Functions keeps copies of function sources."
      expression  = condition.value
    }
  }
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  for_each = toset(["roles/storage.objectViewer"])

  bucket = google_storage_bucket.source.name
  role   = each.value
  member = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_functions" {
  for_each = toset(["roles/artifactregistry.writer"])

  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = each.value
  member     = google_service_account.build.member
}

# With a customer-managed key, the service agents that encrypt modeldrop's data must use it.
resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = {
    for agent, member in {
      storage          = "serviceAccount:${local.storage_service_agent}"
      pubsub           = "serviceAccount:${local.pubsub_service_agent}"
      artifactregistry = "serviceAccount:${local.registry_service_agent}"
    } : agent => member if var.kms_key_name != null
  }

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
