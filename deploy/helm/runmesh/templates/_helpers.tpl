{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "runmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; every object's name starts with it. */}}
{{- define "runmesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "runmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass the root context. */}}
{{- define "runmesh.labels" -}}
helm.sh/chart: {{ include "runmesh.chart" . }}
app.kubernetes.io/name: {{ include "runmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: runmesh
{{- end }}

{{/* Selector labels of one component; pass (dict "root" $ "component" "gateway"). */}}
{{- define "runmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object name of one service (to_task → <fullname>-to-task); pass (dict "root" $ "service" S). */}}
{{- define "runmesh.componentName" -}}
{{- printf "%s-%s" (include "runmesh.fullname" .root) (.service | replace "_" "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Image of one service: <repository>-<service, _ as ->:<tag or appVersion>. */}}
{{- define "runmesh.image" -}}
{{- printf "%s-%s:%s" .root.Values.image.repository (.service | replace "_" "-") (.root.Values.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{- define "runmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runmesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding secretEnv: the chart's, or existingSecret. */}}
{{- define "runmesh.secretName" -}}
{{- default (printf "%s-secrets" (include "runmesh.fullname" .)) .Values.existingSecret }}
{{- end }}

{{/*
Topic and consumer-group names, as runmesh.core.topics.Topics and the worker's group_id make
them (tests/test_deploy.py renders these and compares). Pass (dict "prefix" P "category" C) or,
for runmesh.topic, (dict "prefix" P "name" "events").
*/}}
{{- define "runmesh.topicPrefix" -}}{{ .Values.config.RUNMESH_TOPIC_PREFIX | default "runmesh" }}{{- end }}
{{- define "runmesh.requestTopic" -}}{{ .prefix }}.requests.{{ .category }}{{- end }}
{{- define "runmesh.dlqTopic" -}}{{ include "runmesh.requestTopic" . }}.dlq{{- end }}
{{- define "runmesh.consumerGroup" -}}{{ .prefix }}-{{ .category }}{{- end }}
{{- define "runmesh.topic" -}}{{ .prefix }}.{{ .name }}{{- end }}

{{/* Pod annotations that restart pods when the settings change. */}}
{{- define "runmesh.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
