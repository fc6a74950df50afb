{{/* Names, labels and the operator's RBAC rules, shared by the templates. */}}

{{- define "pgwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgwarden.fullname" -}}
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

{{- define "pgwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pgwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pgwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "pgwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgwarden.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pgwarden.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The chart refuses settings that would leave the operator unable to work. */}}
{{- define "pgwarden.validate" -}}
{{- if and (not .Values.rbac.clusterWide) (empty .Values.watchNamespaces) }}
{{- fail "rbac.clusterWide=false needs watchNamespaces: list the namespaces the operator may work in, or set rbac.clusterWide=true to watch all namespaces" }}
{{- end }}
{{- end }}

{{/*
What the operator does, and nothing more (see "RBAC" in README.md). It never reads Secrets: Jobs receive
credentials through secretKeyRef, resolved by the kubelet; with sets.selectSecrets it may list and watch
them, and asks only for their names (server-side tables without objects). kopf runs standalone (no peering
objects) with resource scanning off, so it needs no access to CRDs or Namespaces. Jobs are never deleted or
changed: owner references garbage-collect them with their resource.
*/}}
{{- define "pgwarden.rules" -}}
- apiGroups: ["pgwarden.io"]
  resources:
    - databasemigrations
    - databasebackups
    - databaserestores
    - databasemigrationsets
    - databasebackupsets
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["pgwarden.io"]
  resources:
    - databasemigrations/status
    - databasebackups/status
    - databaserestores/status
    - databasemigrationsets/status
    - databasebackupsets/status
  verbs: ["get", "patch"]
# A set's children: one DatabaseMigration or DatabaseBackup per target, deleted when its Secret is no target.
- apiGroups: ["pgwarden.io"]
  resources: ["databasemigrations", "databasebackups"]
  verbs: ["create", "delete"]
{{- if .Values.sets.selectSecrets }}
# Sets choosing their targets by selector: the names of the Secrets whose labels match (never get; the
# operator asks for table rows without objects, so no value or annotation reaches it).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
{{- end }}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
