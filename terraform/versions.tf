terraform {
  # optional() attribute defaults in object variable types need 1.3.
  required_version = ">= 1.3, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.5, < 3.0" # glob patterns in archive_file excludes
    }
  }
}
