variable "project_id" {
  description = "The Google Cloud project to deploy modeldrop into (its APIs are enabled by the module)."
  type        = string
}

variable "region" {
  description = "Region of the functions, buckets and Vertex AI endpoints; pick one with the GPUs you deploy on."
  type        = string
  default     = "us-central1"
}

variable "prefix" {
  description = "Start of the globally unique bucket names, e.g. the project ID."
  type        = string
}
