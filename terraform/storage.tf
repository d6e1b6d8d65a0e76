# Buckets: weights (what people upload), state (leases, in-flight operations, request ids seen) and
# source (the functions' source archives). All regional, private, uniformly controlled.

resource "google_storage_bucket" "weights" {
  #checkov:skip=CKV_GCP_62:Usage logs would need a further bucket; Cloud Audit Logs (data access) are the way to audit reads of the weights.
  name                        = "${var.prefix}-weights"
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.storage.force_destroy
  labels                      = local.labels

  # A version re-uploaded under the same folder keeps the bytes a registered model points at.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.storage.weights_noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_storage_bucket" "state" {
  #checkov:skip=CKV_GCP_62:Usage logs would need a further bucket; the state objects are small and rewritten constantly, Cloud Audit Logs cover access.
  name                        = "${var.prefix}-state"
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.storage.force_destroy
  labels                      = local.labels

  # Versioning keeps a few recent generations for debugging a lease race; every write carries
  # ifGenerationMatch, which versioning does not change.
  versioning {
    enabled = true
  }

  # Leases and operation records are rewritten on every sweep: drop old generations quickly.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.storage.state_noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # requests/<request_id>.json only has to outlive redeliveries (Pub/Sub and Eventarc stop within a
  # day, and older events are dropped by max_event_age). Leases, operations and teardowns stay.
  lifecycle_rule {
    condition {
      age            = var.storage.request_record_days
      matches_prefix = ["requests/"]
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Usage logs would need a further bucket; only Cloud Build reads this bucket, and Cloud Audit Logs cover it.
  name                        = "${var.prefix}-source"
  project                     = var.project_id
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # holds nothing but archives this module wrote
  labels                      = local.labels

  versioning {
    enabled = true
  }

  # Archives are named by content hash (a few KB each) and are never overwritten; versioning only
  # guards against a mistaken delete, so old generations go after a week.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.this, google_kms_crypto_key_iam_member.service_agents]
}

# One archive of functions/ for all three functions. Its object name carries the content hash, so a
# change to any source file uploads a new object and redeploys the functions; no change, no deploy.
data "archive_file" "functions" {
  type        = "zip"
  source_dir  = coalesce(var.functions_source_dir, "${path.module}/../functions")
  output_path = "${path.root}/.terraform/tmp/modeldrop-functions.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc", ".pytest_cache/**", ".mypy_cache/**"]
}

resource "google_storage_bucket_object" "functions_source" {
  name   = "functions/${data.archive_file.functions.output_sha256}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.functions.output_path
}
