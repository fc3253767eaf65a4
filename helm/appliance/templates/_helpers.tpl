{{/* Names ---------------------------------------------------------------------------- */}}
{{- define "appliance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "appliance.fullname" -}}
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

{{- define "appliance.postgresqlName" -}}
{{- printf "%s-postgresql" (include "appliance.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "appliance.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "appliance.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "appliance.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels: selectors use only name, instance and component, which never change. ---- */}}
{{- define "appliance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "appliance.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "appliance.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "appliance.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: appliance
{{- end -}}

{{/* Secrets --------------------------------------------------------------------------- */}}
{{- define "appliance.secretKeySecret" -}}
{{- default (printf "%s-secret-key" (include "appliance.fullname" .)) .Values.secretKey.existingSecret -}}
{{- end -}}

{{- define "appliance.postgresqlSecret" -}}
{{- default (include "appliance.postgresqlName" .) .Values.database.bundled.existingSecret -}}
{{- end -}}

{{/* Checks: refuse values that cannot work, with a message that says why. ------------- */}}
{{- define "appliance.validate" -}}
{{- if and (eq .Values.database.mode "sqlite") (gt (int .Values.replicaCount) 1) -}}
{{- fail "database.mode=sqlite supports exactly one replica (one writer on one volume): set replicaCount=1, or use database.mode=external or bundled for several replicas" -}}
{{- end -}}
{{- if and (eq .Values.database.mode "external") (not .Values.database.external.existingSecret) -}}
{{- fail "database.mode=external needs database.external.existingSecret: a Secret whose key database.external.urlKey holds postgresql://user:pass@host:5432/db" -}}
{{- end -}}
{{- if and .Values.migrationJob.enabled (eq .Values.database.mode "sqlite") -}}
{{- fail "migrationJob needs PostgreSQL: with SQLite the single pod migrates its own volume on boot" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.auth.existingSecret (not .Values.metrics.serviceMonitor.basicAuthSecret) -}}
{{- fail "metrics.serviceMonitor with auth.existingSecret needs metrics.serviceMonitor.basicAuthSecret: a Secret with keys username and password matching the auth string (/api/metrics is behind basic auth)" -}}
{{- end -}}
{{- end -}}

{{/* "true" when the notifier sidecar serves its own /metrics (empty otherwise). */}}
{{- define "appliance.notifierMetrics" -}}
{{- if and .Values.metrics.enabled .Values.notifier.enabled (gt (int .Values.metrics.notifierPort) 0) -}}
true
{{- end -}}
{{- end -}}

{{/* The environment both containers share. ------------------------------------------ */}}
{{- define "appliance.env" -}}
{{- if eq .Values.database.mode "sqlite" }}
- name: APPLIANCE_DATABASE_URL
  value: sqlite:////data/appliance.db
{{- else if eq .Values.database.mode "external" }}
- name: APPLIANCE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.external.existingSecret }}
      key: {{ .Values.database.external.urlKey }}
{{- else }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "appliance.postgresqlSecret" . }}
      key: password
- name: APPLIANCE_DATABASE_URL
  value: {{ printf "postgresql://%s:$(POSTGRES_PASSWORD)@%s:5432/%s" .Values.database.bundled.username (include "appliance.postgresqlName" .) .Values.database.bundled.database | quote }}
{{- end }}
- name: APPLIANCE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "appliance.secretKeySecret" . }}
      key: {{ .Values.secretKey.key }}
{{- if .Values.auth.existingSecret }}
- name: APPLIANCE_AUTH_STRING
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.key }}
{{- end }}
{{- end -}}

{{- define "appliance.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "appliance.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
