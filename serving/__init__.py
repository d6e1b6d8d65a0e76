"""The vLLM serving container: Vertex AI's container contract and the OpenAI API on vLLM's async engine."""
