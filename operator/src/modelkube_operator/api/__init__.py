"""The custom resources' schemas: the one source of truth for the CRDs in crds/."""

GROUP = "modelkube.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
