// KEDA's CRDs, copied out of its module (no build): the e2e tests install the real
// ScaledObject CRD, so the API server checks the ScaledObjects the operator renders.
module modelkube.io/testing/keda

go 1.26.0

require github.com/kedacore/keda/v2 v2.21.0
