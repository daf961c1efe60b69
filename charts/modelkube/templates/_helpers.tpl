{{/*
The chart's name, or nameOverride.
*/}}
{{- define "modelkube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: "<release>-modelkube", or only the release name when it
already contains the chart's name; truncated to 63 characters for DNS names.
*/}}
{{- define "modelkube.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "modelkube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The labels that select the operator's pods: never change them, a Deployment's selector is
immutable.
*/}}
{{- define "modelkube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelkube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
The labels of the CRDs, and the part of every other resource's labels that names no component.
*/}}
{{- define "modelkube.crdLabels" -}}
app.kubernetes.io/name: {{ include "modelkube.name" . }}
helm.sh/chart: {{ include "modelkube.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelkube
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The labels of the operator's resources.
*/}}
{{- define "modelkube.labels" -}}
{{ include "modelkube.crdLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
The labels of the `helm test` pod: not the operator's, so its Service never selects it.
*/}}
{{- define "modelkube.testLabels" -}}
{{ include "modelkube.crdLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end -}}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "modelkube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelkube.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The operator image: repository@digest, or repository:tag with the tag defaulting to appVersion.
*/}}
{{- define "modelkube.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
`modelkube operator`'s arguments: the namespaces it serves, its health and metrics ports.
*/}}
{{- define "modelkube.operatorArgs" -}}
- operator
{{- range .Values.watch.namespaces }}
- --namespace
- {{ . | quote }}
{{- else }}
- --all-namespaces
{{- end }}
- --liveness
- {{ printf "http://0.0.0.0:%d/healthz" (int .Values.health.port) | quote }}
- --metrics-port
- {{ .Values.metrics.port | quote }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
The images the operator stamps into the pods it makes, as its environment: repository:tag, the
tag defaulting to appVersion (and <appVersion>-cuda for the CUDA runtime).
*/}}
{{- define "modelkube.workloadImagesEnv" -}}
{{- $runtime := printf "%s:%s" .Values.images.runtime.repository (default .Chart.AppVersion .Values.images.runtime.tag) -}}
- name: MODELKUBE_RUNTIME_IMAGE
  value: {{ $runtime | quote }}
- name: MODELKUBE_RUNTIME_CUDA_IMAGE
  value: {{ printf "%s:%s" .Values.images.runtimeCuda.repository (default (printf "%s-cuda" .Chart.AppVersion) .Values.images.runtimeCuda.tag) | quote }}
- name: MODELKUBE_TRAINER_IMAGE
  {{- if .Values.images.trainer.repository }}
  value: {{ printf "%s:%s" .Values.images.trainer.repository (default .Chart.AppVersion .Values.images.trainer.tag) | quote }}
  {{- else }}
  value: {{ $runtime | quote }}
  {{- end }}
{{- end -}}

{{/*
The labels that select the gateway's pods (not the operator's: a different component).
*/}}
{{- define "modelkube.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "modelkube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/*
The labels of the gateway's resources.
*/}}
{{- define "modelkube.gatewayLabels" -}}
{{ include "modelkube.crdLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}
