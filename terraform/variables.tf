variable "project_id" {
  description = "The Google Cloud project that holds everything modeldrop manages."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 characters of a-z, 0-9 and '-', starting with a letter), not a project number."
  }
}

variable "region" {
  description = "The region of the functions, the buckets, the Artifact Registry repositories and the Vertex AI endpoints. Pick one with the accelerators you deploy on."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+(-[a-z]+)+[0-9]+$", var.region))
    error_message = "region must be a single Google Cloud region such as us-central1 (buckets are regional so the storage trigger, the functions and Vertex AI share one location)."
  }
}

variable "prefix" {
  description = "Start of the bucket names (bucket names are global): the buckets are <prefix>-weights, <prefix>-state and <prefix>-source. The project ID is a good choice."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,53}[a-z0-9]$", var.prefix)) && !can(regex("goog", var.prefix))
    error_message = "prefix must be 3-55 characters of a-z, 0-9 and '-', start and end with a letter or digit, and not contain \"goog\"."
  }
}

variable "labels" {
  description = "Extra labels on every resource that takes labels. managed-by=modeldrop is always added."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for key, value in var.labels :
      can(regex("^[a-z][a-z0-9_-]{0,62}$", key)) && can(regex("^[a-z0-9_-]{0,63}$", value)) && key != "managed-by"
    ])
    error_message = "Label keys must match [a-z][a-z0-9_-]{0,62}, values [a-z0-9_-]{0,63}; managed-by is reserved for modeldrop."
  }
}

variable "kms_key_name" {
  description = "Optional customer-managed encryption key (projects/P/locations/REGION/keyRings/R/cryptoKeys/K, in var.region) for the buckets, the topics and the Artifact Registry repositories. null uses Google-managed keys."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be null or projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "storage" {
  description = "Bucket settings: force_destroy lets `terraform destroy` delete non-empty buckets; noncurrent versions are deleted after the given number of days; request records (idempotency keys) in the state bucket after request_record_days."
  type = object({
    force_destroy                   = optional(bool, false)
    weights_noncurrent_version_days = optional(number, 30)
    state_noncurrent_version_days   = optional(number, 7)
    request_record_days             = optional(number, 30)
  })
  default = {}

  validation {
    condition = (
      var.storage.weights_noncurrent_version_days >= 1 && var.storage.state_noncurrent_version_days >= 1 &&
      var.storage.request_record_days >= 2
    )
    error_message = "Noncurrent versions must be kept at least 1 day, request records at least 2 (they must outlive redeliveries)."
  }
}

variable "settings" {
  description = "What the functions read beyond names (MODELDROP_* in functions/modeldrop/config.py): the default idle TTL, the grace period after a deploy, the oldest event still acted on, how long an incomplete upload may sit idle before it is rejected, how late Monitoring's metrics arrive (that window is never read as idle), and the safety switches. Durations read like 90s, 30m, 2h, 1d."
  type = object({
    default_idle_ttl       = optional(string, "30m")
    deploy_grace           = optional(string, "15m")
    max_event_age          = optional(string, "24h")
    upload_wait            = optional(string, "15m")
    metrics_delay          = optional(string, "5m")
    allow_pickle           = optional(bool, false)
    allow_remote_code      = optional(bool, false)
    delete_empty_endpoints = optional(bool, false)
  })
  default = {}

  validation {
    condition = alltrue([
      for duration in [var.settings.default_idle_ttl, var.settings.deploy_grace, var.settings.max_event_age, var.settings.upload_wait, var.settings.metrics_delay] :
      can(regex("^[0-9]+[smhd]?$", duration))
    ])
    error_message = "default_idle_ttl, deploy_grace, max_event_age, upload_wait and metrics_delay must be a number of seconds or a duration like 90s, 30m, 2h, 1d."
  }
}

variable "serving" {
  description = "The vLLM serving image that deployments run: by default <region>-docker.pkg.dev/<project>/modeldrop/serving:<tag>, built from serving/ and pushed to the repository this module creates; `image` overrides the whole URI."
  type = object({
    image = optional(string)
    tag   = optional(string, "0.1.0")
  })
  default = {}

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.serving.tag))
    error_message = "serving.tag must be a Docker tag (up to 128 characters of letters, digits, '_', '.', '-')."
  }

  validation {
    condition     = var.serving.image == null || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^ ]+$", var.serving.image))
    error_message = "serving.image must be a full image URI such as us-docker.pkg.dev/P/REPO/serving:TAG."
  }
}

variable "functions" {
  description = "Sizing of the three functions. timeout_s bounds one event (Pub/Sub waits timeout_s + 60 s for an answer); concurrency is requests per instance (above 1 needs cpu >= 1); sweep.schedule is the Cloud Scheduler cron for the sweep ticks."
  type = object({
    on_upload = optional(object({
      memory        = optional(string, "1Gi")
      cpu           = optional(string, "1")
      timeout_s     = optional(number, 540)
      max_instances = optional(number, 10)
      concurrency   = optional(number, 8)
    }), {})
    on_command = optional(object({
      memory        = optional(string, "512Mi")
      cpu           = optional(string, "1")
      timeout_s     = optional(number, 300)
      max_instances = optional(number, 5)
      concurrency   = optional(number, 8)
    }), {})
    sweep = optional(object({
      memory        = optional(string, "512Mi")
      cpu           = optional(string, "1")
      timeout_s     = optional(number, 540)
      max_instances = optional(number, 1)
      concurrency   = optional(number, 1)
      schedule      = optional(string, "*/5 * * * *")
      time_zone     = optional(string, "Etc/UTC")
    }), {})
  })
  default = {}

  validation {
    condition = alltrue([
      for f in [var.functions.on_upload, var.functions.on_command, var.functions.sweep] :
      f.timeout_s >= 10 && f.timeout_s <= 540 && f.max_instances >= 1 && f.concurrency >= 1 && f.concurrency <= 1000
    ])
    error_message = "Each function needs 10 <= timeout_s <= 540 (the event-driven limit), max_instances >= 1 and 1 <= concurrency <= 1000."
  }

  validation {
    condition = alltrue([
      for f in [var.functions.on_upload, var.functions.on_command, var.functions.sweep] :
      can(regex("^[0-9]+(Mi|Gi)$", f.memory)) && can(tonumber(f.cpu)) && (f.concurrency == 1 || try(tonumber(f.cpu), 0) >= 1)
    ])
    error_message = "memory is like 512Mi or 2Gi, cpu a number like 0.5, 1 or 2; a concurrency above 1 needs cpu >= 1."
  }

  validation {
    condition     = length(split(" ", trimspace(var.functions.sweep.schedule))) == 5
    error_message = "functions.sweep.schedule must be a five-field cron expression such as \"*/5 * * * *\"."
  }
}

variable "delivery" {
  description = "Pub/Sub delivery of commands to on_command: redelivery backoff, and how many attempts before a command goes to the dead-letter topic (kept there for dead_letter_retention_days)."
  type = object({
    max_delivery_attempts      = optional(number, 5)
    minimum_backoff_s          = optional(number, 10)
    maximum_backoff_s          = optional(number, 600)
    dead_letter_retention_days = optional(number, 7)
  })
  default = {}

  validation {
    condition     = var.delivery.max_delivery_attempts >= 5 && var.delivery.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts before dead-lettering."
  }

  validation {
    condition = (
      var.delivery.minimum_backoff_s >= 0 && var.delivery.maximum_backoff_s <= 600 &&
      var.delivery.minimum_backoff_s <= var.delivery.maximum_backoff_s
    )
    error_message = "Backoffs must satisfy 0 <= minimum_backoff_s <= maximum_backoff_s <= 600."
  }

  validation {
    condition     = var.delivery.dead_letter_retention_days >= 1 && var.delivery.dead_letter_retention_days <= 7
    error_message = "A subscription keeps messages 1 to 7 days."
  }
}

variable "functions_source_dir" {
  description = "The folder zipped into the functions' source archive: main.py, requirements.txt and the modeldrop package. null means the repository's functions/ folder."
  type        = string
  default     = null
}

variable "gateway" {
  description = "The gateway function (the front door that wakes torn-down deployments and holds requests meanwhile): who may call it (IAM members given roles/run.invoker on its service, e.g. user:a@example.com or serviceAccount:...), its sizing, and wake_timeout: how long a request is held while its endpoint wakes or deploys before it is answered 503 with Retry-After (MODELDROP_WAKE_TIMEOUT; seconds or 90s, 30m, 1h; 20m by default: Vertex deploys take 15-60 min). timeout_s bounds one request, held through a wake: gen2 HTTP functions allow up to 3600 s, and wake_timeout must stay under it so the 503 is sent before the platform cuts the request."
  type = object({
    invokers      = optional(list(string), [])
    memory        = optional(string, "512Mi")
    cpu           = optional(string, "1")
    timeout_s     = optional(number, 3600)
    max_instances = optional(number, 10)
    concurrency   = optional(number, 80)
    wake_timeout  = optional(string, "20m")
  })
  default = {}

  validation {
    condition     = alltrue([for member in var.gateway.invokers : can(regex("^(user|serviceAccount|group|domain|principal|principalSet):.+$", member))])
    error_message = "gateway.invokers are IAM members such as user:a@example.com, group:g@example.com or serviceAccount:sa@p.iam.gserviceaccount.com (allUsers is refused: the gateway spends GPU time)."
  }

  validation {
    condition = (
      var.gateway.timeout_s >= 60 && var.gateway.timeout_s <= 3600 && var.gateway.max_instances >= 1 &&
      var.gateway.concurrency >= 1 && var.gateway.concurrency <= 1000 && can(regex("^[0-9]+(Mi|Gi)$", var.gateway.memory)) &&
      (var.gateway.concurrency == 1 || try(tonumber(var.gateway.cpu), 0) >= 1)
    )
    error_message = "gateway needs 60 <= timeout_s <= 3600 (the gen2 HTTP limit), max_instances >= 1, 1 <= concurrency <= 1000 (above 1 needs cpu >= 1), memory like 512Mi."
  }

  validation {
    condition = can(regex("^[0-9]+[smh]?$", var.gateway.wake_timeout)) && try(
      tonumber(trimsuffix(trimsuffix(trimsuffix(var.gateway.wake_timeout, "s"), "m"), "h")) *
      lookup({ s = 1, m = 60, h = 3600 }, substr(var.gateway.wake_timeout, -1, 1), 1) < var.gateway.timeout_s &&
      tonumber(trimsuffix(trimsuffix(trimsuffix(var.gateway.wake_timeout, "s"), "m"), "h")) > 0,
      false
    )
    error_message = "gateway.wake_timeout is a duration like 90s, 20m or 1h (seconds if bare), above 0 and below gateway.timeout_s (the 503 must be sent before the platform ends the request)."
  }
}
