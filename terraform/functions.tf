# The four gen2 functions, all built from one source archive (storage.tf) and all reading the same
# environment (local.function_environment). Each runs as its own service account (iam.tf).
# on_upload is fed by an Eventarc storage trigger; on_command and sweep by push subscriptions
# (pubsub.tf): their ingress is internal only (Eventarc and Pub/Sub push count as internal traffic).
# gateway is the HTTP front door, reachable from outside but behind IAM (run.invoker).

resource "google_cloudfunctions2_function" "on_upload" {
  name        = "modeldrop-on-upload"
  project     = var.project_id
  location    = var.region
  description = "Validates each object landing in the weights bucket and registers complete versions in the Vertex AI Model Registry."
  labels      = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = "on_upload"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.on_upload.email
    available_memory                 = var.functions.on_upload.memory
    available_cpu                    = var.functions.on_upload.cpu
    timeout_seconds                  = var.functions.on_upload.timeout_s
    min_instance_count               = 0
    max_instance_count               = var.functions.on_upload.max_instances
    max_instance_request_concurrency = var.functions.on_upload.concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_environment
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    service_account_email = google_service_account.invoker.email
    # Transient failures are raised and retried (Eventarc retries for up to a day); bad uploads
    # end in a failed result and return normally, so they are not retried.
    retry_policy = "RETRY_POLICY_RETRY"

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.weights.name
    }
  }

  depends_on = [
    google_project_service.this,
    # The trigger is refused until the storage agent may publish: wait for the grant to propagate.
    time_sleep.storage_agent_grant_propagation,
    google_project_iam_member.invoker_receives_events,
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

resource "google_cloudfunctions2_function" "on_command" {
  name        = "modeldrop-on-command"
  project     = var.project_id
  location    = var.region
  description = "Turns commands from the modeldrop-commands topic into Vertex AI endpoints and deployments; never waits on a deploy."
  labels      = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = "on_command"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.on_command.email
    available_memory                 = var.functions.on_command.memory
    available_cpu                    = var.functions.on_command.cpu
    timeout_seconds                  = var.functions.on_command.timeout_s
    min_instance_count               = 0
    max_instance_count               = var.functions.on_command.max_instances
    max_instance_request_concurrency = var.functions.on_command.concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_environment
  }

  # No event_trigger: the modeldrop-on-command push subscription delivers commands, with the
  # retry and dead-letter policy set there. functions-framework turns each push into the same
  # messagePublished CloudEvent Eventarc would send.

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

resource "google_cloudfunctions2_function" "sweep" {
  name        = "modeldrop-sweep"
  project     = var.project_id
  location    = var.region
  description = "On each scheduler tick: follows deploy operations, reports ready or failed, and undeploys what has been idle past its TTL."
  labels      = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = "sweep"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.sweep.email
    available_memory                 = var.functions.sweep.memory
    available_cpu                    = var.functions.sweep.cpu
    timeout_seconds                  = var.functions.sweep.timeout_s
    min_instance_count               = 0
    max_instance_count               = var.functions.sweep.max_instances
    max_instance_request_concurrency = var.functions.sweep.concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    environment_variables            = local.function_environment
  }

  # No event_trigger: the modeldrop-sweep push subscription delivers the scheduler's ticks.

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

resource "google_cloudfunctions2_function" "gateway" {
  #checkov:skip=CKV_GCP_124:Clients call the gateway from outside Google Cloud; IAM run.invoker (var.gateway.invokers, allUsers refused) guards it, not ingress.
  name        = "modeldrop-gateway"
  project     = var.project_id
  location    = var.region
  description = "The front door: routes OpenAI-compatible and Vertex predict requests to endpoints by name, wakes torn-down deployments and holds requests until they are ready."
  labels      = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = "gateway"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.gateway.email
    available_memory      = var.gateway.memory
    available_cpu         = var.gateway.cpu
    # A request is held through a wake (minutes on Vertex AI): HTTP functions may run up to 60
    # minutes, event-driven ones 9 (cloud.google.com/functions/docs/configuring/timeout).
    timeout_seconds                  = var.gateway.timeout_s
    min_instance_count               = 0
    max_instance_count               = var.gateway.max_instances
    max_instance_request_concurrency = var.gateway.concurrency
    # Callers are outside Google Cloud; IAM (run.invoker on the service) is the door, not ingress.
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    environment_variables          = local.gateway_environment
  }

  # No event_trigger: an HTTP function. Only var.gateway.invokers may call it (iam.tf).

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build_pushes_functions,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

resource "google_cloud_scheduler_job" "sweep" {
  name        = "modeldrop-sweep"
  project     = var.project_id
  region      = var.region
  description = "Publishes a tick to modeldrop-sweep; the sweep decides what to do from Vertex AI's state, not from the tick."
  schedule    = var.functions.sweep.schedule
  time_zone   = var.functions.sweep.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.sweep.id
    data       = base64encode(jsonencode({ source = "modeldrop-scheduler" }))
  }

  # A missed tick is harmless: the next one does the same work.
  retry_config {
    retry_count = 0
  }

  depends_on = [google_project_service.this]
}
