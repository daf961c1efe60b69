"""Pure functions from a custom resource to the Kubernetes objects it owns."""
