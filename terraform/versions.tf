terraform {
  # optional() attribute defaults in object variable types need 1.3.
  required_version = ">= 1.3, < 2.0"

  # One major each. make test checks this module against the schema of exactly the versions pinned
  # in scripts/provider-schemas.txt (google and google-beta 8.7.0, time 0.14.2, archive 2.8.1): raise
  # a lower bound here when a newer attribute is used, and move both together to a new major.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 8.7"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 8.7" # google_project_service_identity
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.14" # time_sleep while IAM grants propagate
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.8" # glob patterns in archive_file excludes
    }
  }
}
