// The Gateway API Inference Extension's CRDs, copied out of its module (no build): the e2e
// tests install the real InferencePool CRD, so the API server checks the pools the operator
// renders.
module modelkube.io/testing/inference-extension

go 1.26.0

require sigs.k8s.io/gateway-api-inference-extension v1.3.0
