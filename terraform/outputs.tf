output "weights_bucket" {
  description = "Upload weights to gs://<this>/models/<model>/<version>/ (the CLI's `modeldrop upload` does it)."
  value       = google_storage_bucket.weights.name
}

output "state_bucket" {
  description = "Where the functions keep leases, in-flight operation names and request ids seen."
  value       = google_storage_bucket.state.name
}

output "commands_topic" {
  description = "Full name of the topic the CLI publishes commands to."
  value       = google_pubsub_topic.commands.id
}

output "results_topic" {
  description = "Full name of the topic every command and upload ends on, keyed by request_id."
  value       = google_pubsub_topic.results.id
}

output "dead_letter_subscription" {
  description = "Pull subscription holding commands that failed every delivery attempt."
  value       = google_pubsub_subscription.dead_letter.id
}

output "serving_image" {
  description = "The image deployments run; build serving/ and push it here before the first deploy."
  value       = local.serving_image
}

output "serving_repository" {
  description = "The Artifact Registry host and path to `docker push` the serving image to."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.serving.repository_id}"
}

output "function_names" {
  description = "The four functions by entry point, for `gcloud functions logs read`."
  value = {
    on_upload  = google_cloudfunctions2_function.on_upload.name
    on_command = google_cloudfunctions2_function.on_command.name
    sweep      = google_cloudfunctions2_function.sweep.name
    gateway    = google_cloudfunctions2_function.gateway.name
  }
}

output "gateway_url" {
  description = "URL of the gateway (OpenAI-compatible /v1/... and the Vertex predict shape); callers need roles/run.invoker (var.gateway.invokers) and an ID token for this audience."
  value       = google_cloudfunctions2_function.gateway.service_config[0].uri
}

output "service_accounts" {
  description = "Email of each modeldrop identity: one per function (gateway included), the serving containers, the invoker and the build."
  value = {
    on_upload  = google_service_account.on_upload.email
    on_command = google_service_account.on_command.email
    sweep      = google_service_account.sweep.email
    gateway    = google_service_account.gateway.email
    serving    = google_service_account.serving.email
    invoker    = google_service_account.invoker.email
    build      = google_service_account.build.email
  }
}

output "function_environment" {
  description = "The MODELDROP_* environment every function runs with; export it to point the CLI at this deployment."
  value       = local.function_environment
}
