# The smallest complete modeldrop on Google Cloud: everything in one project and region.
#   terraform init
#   terraform apply -var project_id=my-project -var prefix=my-project-modeldrop

provider "google" {
  project = var.project_id
  region  = var.region
}

# The module creates service agents through google-beta (google_project_service_identity).
provider "google-beta" {
  project = var.project_id
  region  = var.region
}

module "modeldrop" {
  source = "../.."

  project_id = var.project_id
  region     = var.region
  prefix     = var.prefix

  settings = {
    default_idle_ttl = "30m"
  }

  functions = {
    sweep = {
      schedule = "*/5 * * * *"
    }
  }
}
