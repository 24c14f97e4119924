{{/* Names, labels, images and the shared pod settings of the chart. */}}

{{- define "memgpt.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A component's name: <fullname>-<component>. */}}
{{- define "memgpt.component" -}}
{{- printf "%s-%s" (include "memgpt.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "memgpt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "memgpt.selector" . }}
{{- end -}}

{{- define "memgpt.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "memgpt.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .root.Values.image.repository $tag -}}
{{- end -}}

{{/* The generator's image: the CUDA image when GPUs are on. */}}
{{- define "memgpt.generatorImage" -}}
{{- if .Values.generator.gpu.enabled -}}
{{- printf "%s:%s" .Values.image.cudaRepository (.Values.image.cudaTag | default (printf "%s-cuda" .Chart.AppVersion)) -}}
{{- else -}}
{{- include "memgpt.image" (dict "root" .) -}}
{{- end -}}
{{- end -}}

{{/* The Qdrant gRPC URL: memory.qdrant.url, else the bundled chart's service, else the
     documented fallback service name `qdrant`. */}}
{{- define "memgpt.qdrantUrl" -}}
{{- if .Values.memory.qdrant.url -}}
{{- .Values.memory.qdrant.url -}}
{{- else if .Values.qdrant.enabled -}}
{{- printf "http://%s-qdrant:6334" .Release.Name -}}
{{- else -}}
http://qdrant:6334
{{- end -}}
{{- end -}}

{{- define "memgpt.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "memgpt.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Environment shared by the three services. */}}
{{- define "memgpt.commonEnv" -}}
- name: MEMGPT_LOG
  value: {{ .Values.telemetry.logLevel | quote }}
- name: MEMGPT_LOG_FORMAT
  value: {{ .Values.telemetry.logFormat | quote }}
{{- if .Values.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.telemetry.otlpEndpoint | quote }}
{{- end }}
{{- end -}}

{{/* gRPC probes on grpc.health.v1 at `port`: startup and readiness ask `service` (SERVING
     once models are loaded and dependencies healthy), liveness asks `liveness` (SERVING while
     the process runs, so a backend outage does not restart it). */}}
{{- define "memgpt.probes" -}}
startupProbe:
  grpc: {port: {{ .port }}, service: {{ .service | quote }}}
  periodSeconds: 5
  failureThreshold: {{ .startupFailures | default 60 }}
readinessProbe:
  grpc: {port: {{ .port }}, service: {{ .service | quote }}}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  grpc: {port: {{ .port }}, service: liveness}
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}
