{{/* Names and labels. Keep release names short: the full name is "<release>-federa-coordinator" (63 max), and
     with the in-chart PostgreSQL its StatefulSet is "<release>-federa-coordinator-postgresql" (52 max, for the
     pods' controller-revision-hash label), so 22 characters at most. */}}
{{- define "federa-coordinator.fullname" -}}
{{ .Release.Name }}-{{ .Chart.Name }}
{{- end }}

{{- define "federa-coordinator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "federa-coordinator.labels" -}}
{{ include "federa-coordinator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The in-chart PostgreSQL: "true" only when postgresql.enabled and no database.existingSecret (an existing
     database always wins), else empty. Every PostgreSQL template and the coordinator's DATABASE_URL test this
     one rule. */}}
{{- define "federa-coordinator.postgresql.enabled" -}}
{{- if .Values.postgresql.enabled }}{{ if not .Values.database.existingSecret }}true{{ end }}{{ end }}
{{- end }}

{{- define "federa-coordinator.postgresql.fullname" -}}
{{ .Release.Name }}-{{ .Chart.Name }}-postgresql
{{- end }}

{{/* Its own app.kubernetes.io/name, so the coordinator's selectors (name + instance) never match the database
     pod, and the database's never match the coordinator. */}}
{{- define "federa-coordinator.postgresql.selectorLabels" -}}
app.kubernetes.io/name: postgresql
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: database
{{- end }}

{{- define "federa-coordinator.postgresql.labels" -}}
{{ include "federa-coordinator.postgresql.selectorLabels" . }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/version: {{ .Values.postgresql.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
