output "weights_bucket" {
  description = "Upload weights to gs://<this>/models/<model>/<version>/."
  value       = module.modeldrop.weights_bucket
}

output "commands_topic" {
  description = "The topic `modeldrop deploy` publishes to."
  value       = module.modeldrop.commands_topic
}

output "serving_image" {
  description = "Push the serving image here before the first deploy."
  value       = module.modeldrop.serving_image
}

output "function_environment" {
  description = "The MODELDROP_* environment of the functions, for the CLI."
  value       = module.modeldrop.function_environment
}

output "gateway_url" {
  description = "The front door (OpenAI-compatible and Vertex predict); callers need roles/run.invoker on it."
  value       = module.modeldrop.gateway_url
}
