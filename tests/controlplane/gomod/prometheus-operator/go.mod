// The Prometheus Operator's CRDs, copied out of its module (no build): the chart's
// ServiceMonitor and PrometheusRule are checked against their real schemas.
module modelkube.io/testing/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
