"""Talking to the Kubernetes API from inside a pod: the trainer's progress, the fine-tuning API."""
