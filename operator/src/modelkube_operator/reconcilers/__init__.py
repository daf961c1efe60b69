"""Level-based reconcile: desired objects from the spec, applied idempotently.

Status comes from the children's real state, never from handler return values.
"""
