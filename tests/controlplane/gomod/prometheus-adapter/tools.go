//go:build tools

// Package tools pins the command built from this module: prometheus-adapter, which serves the
// runtime's in-flight requests from Prometheus to the HPA as custom.metrics.k8s.io (tests/node).
package tools

import (
	_ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
)
