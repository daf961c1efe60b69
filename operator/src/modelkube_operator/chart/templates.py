"""The chart's templates that come from the operator's code: the CRDs and the ClusterRole."""

import re
from typing import Any

from modelkube_operator.api import GROUP
from modelkube_operator.api.crd import KINDS, build_crd
from modelkube_operator.rbac import RULES
from modelkube_operator.yaml_dump import to_yaml

COMMAND = "modelkube chart --write charts/modelkube"
_BRACES = re.compile(r"\{\{|\}\}")


def crd_templates() -> dict[str, str]:
    """templates/crds/<file>: the same CRDs as crds/, behind crds.enabled and kept on uninstall."""
    return {
        f"templates/crds/{GROUP}_{info.plural}.yaml": _crd_template(build_crd(info))
        for info in KINDS
    }


def _crd_template(crd: dict[str, Any]) -> str:
    body = {
        key: value for key, value in crd.items() if key not in ("apiVersion", "kind", "metadata")
    }
    return (
        f"# Generated from operator/src/modelkube_operator/api by `{COMMAND}`.\n"
        "{{- if .Values.crds.enabled }}\n"
        f"apiVersion: {crd['apiVersion']}\n"
        f"kind: {crd['kind']}\n"
        "metadata:\n"
        f"  name: {crd['metadata']['name']}\n"
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
        "  labels:\n"
        '    {{- include "modelkube.crdLabels" . | nindent 4 }}\n'
        f"{literal(to_yaml(body))}"
        "{{- end }}\n"
    )


def clusterrole_template() -> dict[str, str]:
    """templates/clusterrole.yaml: the operator's permissions, from rbac.RULES."""
    text = (
        f"# Generated from operator/src/modelkube_operator/rbac.py by `{COMMAND}`.\n"
        "{{- if .Values.rbac.create }}\n"
        "apiVersion: rbac.authorization.k8s.io/v1\n"
        "kind: ClusterRole\n"
        "metadata:\n"
        '  name: {{ include "modelkube.fullname" . }}\n'
        "  labels:\n"
        '    {{- include "modelkube.labels" . | nindent 4 }}\n'
        f"{to_yaml({'rules': RULES})}"
        "{{- end }}\n"
    )
    return {"templates/clusterrole.yaml": text}


def literal(text: str) -> str:
    """Text Helm must print as it is: `{{` and `}}` become template actions printing them."""
    return _BRACES.sub(lambda match: f'{{{{ "{match.group(0)}" }}}}', text)
