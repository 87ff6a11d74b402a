{{/* Chart name, overridable. */}}
{{- define "ping.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, unless the release name already contains the chart name. */}}
{{- define "ping.fullname" -}}
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

{{- define "ping.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object. */}}
{{- define "ping.labels" -}}
helm.sh/chart: {{ include "ping.chart" . }}
app.kubernetes.io/name: {{ include "ping.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ping
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the app pods. */}}
{{- define "ping.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ping.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: app
{{- end }}

{{/* Selector labels of the Redis pods. */}}
{{- define "ping.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ping.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "ping.redis.fullname" -}}
{{- printf "%s-redis" (include "ping.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the Redis password, and its key. */}}
{{- define "ping.redis.secretName" -}}
{{- if .Values.redis.enabled }}
{{- default (include "ping.redis.fullname" .) .Values.redis.auth.existingSecret }}
{{- else }}
{{- required "externalRedis.existingSecret is required when redis.enabled=false: create a Secret with the Redis password and name it here" .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{- define "ping.redis.secretKey" -}}
{{- if .Values.redis.enabled }}{{ .Values.redis.auth.existingSecretPasswordKey }}{{ else }}{{ .Values.externalRedis.existingSecretPasswordKey }}{{ end }}
{{- end }}

{{/* Where the app finds Redis. */}}
{{- define "ping.redis.host" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s.%s.svc.%s" (include "ping.redis.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- required "externalRedis.host is required when redis.enabled=false" .Values.externalRedis.host }}
{{- end }}
{{- end }}

{{- define "ping.redis.port" -}}
{{- if .Values.redis.enabled }}6379{{ else }}{{ .Values.externalRedis.port }}{{ end }}
{{- end }}

{{/* repository@digest when a digest is set, else repository:tag. */}}
{{- define "ping.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (required "an image needs a tag or a digest" .tag) }}
{{- end }}
{{- end }}

{{- define "ping.otelCollector.fullname" -}}
{{- printf "%s-otel-collector" (include "ping.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of the OpenTelemetry Collector pods. */}}
{{- define "ping.otelCollector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ping.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: otel-collector
{{- end }}

{{/* prometheus.io/* annotations for annotation-based scraping. */}}
{{- define "ping.scrapeAnnotations" -}}
{{- if and .root.Values.metrics.enabled .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
