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

{{/* Labels of a pod template: the shared labels plus the component. The shared
labels already hold name and instance, so the selector labels are not repeated
(a YAML mapping must not hold a key twice). */}}
{{- define "ping.podLabels" -}}
{{- include "ping.labels" .root }}
app.kubernetes.io/component: {{ .component }}
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

{{/* The app runs as a SpinApp (spin-operator renders its Deployment and Service)
or as the chart's own Deployment. */}}
{{- define "ping.spinApp" -}}
{{- if eq .Values.workload "SpinApp" }}true{{ end }}
{{- end }}

{{/* The app runs as the plain container image (runtime=container: ping-host and the
component, no RuntimeClass) rather than the Wasm artifact on containerd-shim-spin. */}}
{{- define "ping.container" -}}
{{- if eq .Values.runtime "container" }}true{{ end }}
{{- end }}

{{/* Where ping-host serves its own metrics in runtime=container mode with
metrics.enabled (PING_HOST_METRICS_LISTEN): requests by route and status,
latency, instances; the recording rules prefer them to Spin's span metrics. */}}
{{- define "ping.hostMetricsPort" -}}9464{{- end }}

{{/* The port app pods listen on: spin-operator always uses 80 (port name http-app). */}}
{{- define "ping.appPort" -}}
{{- if include "ping.spinApp" . }}80{{ else }}{{ .Values.containerPort }}{{ end }}
{{- end }}

{{/* The app Service's port: spin-operator's Service listens on 80. */}}
{{- define "ping.servicePort" -}}
{{- if include "ping.spinApp" . }}80{{ else }}{{ .Values.service.port }}{{ end }}
{{- end }}

{{/* Which autoscaler owns the replica count: "", hpa, keda or keda-http. */}}
{{- define "ping.autoscaler" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.engine }}{{ end }}
{{- end }}

{{/* The Redis password Secret, when the chart does not generate it, hashed as the
cluster holds it: a `checksum/secret` pod annotation, so `helm upgrade` after a
password change restarts Redis and the app together. `lookup` needs cluster
access: under `helm template` (Argo CD) the value is constant, and a rotated
password needs a restart of its own (see the chart README). */}}
{{- define "ping.redis.secretChecksum" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "ping.redis.secretName" .) }}
{{- $data := "" }}
{{- if and $secret $secret.data }}{{ $data = index $secret.data (include "ping.redis.secretKey" .) | default "" }}{{ end }}
{{- $data | sha256sum }}
{{- end }}

{{/* Whether the password comes from a Secret the user manages. */}}
{{- define "ping.redis.userSecret" -}}
{{- if or (not .Values.redis.enabled) .Values.redis.auth.existingSecret }}true{{ end }}
{{- end }}

{{/* The Collector's OTLP/HTTP base URL. */}}
{{- define "ping.otelCollector.url" -}}
http://{{ include "ping.otelCollector.fullname" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:4318
{{- end }}

{{/* Checks of value combinations the schema cannot express. */}}
{{- define "ping.validate" -}}
{{- if and .Values.preStopSleepSeconds (le (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds)) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above preStopSleepSeconds (%v): the kubelet kills the pod when the grace period ends, sleep included" .Values.terminationGracePeriodSeconds .Values.preStopSleepSeconds) }}
{{- end }}
{{- range .Values.app.extraEnv }}
{{- if has (upper .name) (list "REDIS_HOST" "REDIS_PORT" "REDIS_PASSWORD" "REDIS_DB" "COUNTER_KEY") }}
{{- fail (printf "app.extraEnv: %s would override the Spin variable %s (containerd-shim-spin copies env vars named like app variables); set the chart's value instead" .name (lower .name)) }}
{{- end }}
{{- end }}
{{- if and (include "ping.container" .) (include "ping.spinApp" .) }}
{{- fail "runtime=container renders the chart's own Deployment of the container image: use it with workload=Deployment (a SpinApp runs the Wasm artifact through spin-operator's executor, so it needs runtime=shim)" }}
{{- end }}
{{- if and (eq (include "ping.autoscaler" .) "keda") (eq .Values.autoscaling.keda.trigger "prometheus") (not .Values.metrics.enabled) }}
{{- fail "autoscaling.keda.trigger=prometheus scales on Spin's request rate, which needs metrics.enabled=true" }}
{{- end }}
{{- if and (eq (include "ping.autoscaler" .) "keda-http") (not .Values.autoscaling.kedaHttp.hosts) (not .Values.ingress.enabled) }}
{{- fail "autoscaling.engine=keda-http routes by host name: set autoscaling.kedaHttp.hosts, or enable the Ingress (its hosts are used)" }}
{{- end }}
{{- end }}

{{/* The timing fields of a probe that a SpinApp check takes. */}}
{{- define "ping.spinAppCheck" -}}
{{- range $key := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $ $key }}
{{ $key }}: {{ index $ $key }}
{{- end }}
{{- end }}
{{- end }}

{{/* honorLabels and relabelings shared by every scrape endpoint. */}}
{{- define "ping.serviceMonitor.endpointExtras" -}}
honorLabels: {{ .Values.metrics.serviceMonitor.honorLabels }}
{{- with .Values.metrics.serviceMonitor.relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.metrics.serviceMonitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
