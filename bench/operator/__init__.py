"""Operator benchmark: N ModelServices applied at once on a real control plane.

Measures time to all Deployments (and all children), time to all Ready, per-object reconcile
latency, and the operator's peak RSS and CPU. Run with `python -m bench.operator`
(`--counts 100,300,500`, or `--quick` for 20,50).
"""
