# Artifact Registry: `modeldrop` holds the vLLM serving image people build from serving/ and push
# (<region>-docker.pkg.dev/<project>/modeldrop/serving:<tag>); `modeldrop-functions` holds the
# images Cloud Build makes of the functions, so the build account can write there and nowhere else.

resource "google_artifact_registry_repository" "serving" {
  project       = var.project_id
  location      = var.region
  repository_id = "modeldrop"
  format        = "DOCKER"
  description   = "The modeldrop vLLM serving image that Vertex AI deployments run."
  labels        = local.labels
  kms_key_name  = var.kms_key_name

  # A registered model keeps pointing at its image tag: a tag must never move under it.
  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "modeldrop-functions"
  format        = "DOCKER"
  description   = "Images Cloud Build makes of the modeldrop functions."
  labels        = local.labels
  kms_key_name  = var.kms_key_name

  # Every source change builds new images; keep the recent ones for rollback, drop the rest.
  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days
    }
  }

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}
