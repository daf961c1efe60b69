"""modelkube's operator: ModelService and FineTuneJob turned into Kubernetes objects."""
