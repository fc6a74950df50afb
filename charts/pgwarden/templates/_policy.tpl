{{/*
What a resource may ask the operator to run (pgwarden.operator.policy): one set of `policy:` values, enforced
twice, by the operator before it builds a Job (the flags below) and by the API server at `kubectl apply`
(validatingadmissionpolicy.yaml, whose CEL follows pgwarden.operator.policy.image_allowed).
*/}}

{{/* The image of the Jobs, always allowed: the operator's own unless `jobImage` is set. */}}
{{- define "pgwarden.jobImage" -}}
{{- default (include "pgwarden.image" .) .Values.jobImage }}
{{- end }}

{{/* The ServiceAccount the chart creates for Jobs in each watched namespace; empty when it creates none. */}}
{{- define "pgwarden.jobServiceAccountName" -}}
{{- if and .Values.policy.jobServiceAccount.create .Values.watchNamespaces }}
{{- default (printf "%s-job" (include "pgwarden.fullname" . | trunc 59 | trimSuffix "-")) .Values.policy.jobServiceAccount.name }}
{{- end }}
{{- end }}

{{/* An image allowlist entry the operator can enforce: a repository, prefix/*, repository@digest or *. */}}
{{- define "pgwarden.checkImageEntries" -}}
{{- range $entry := .entries }}
{{- $name := splitList "@" $entry | first }}
{{- $afterSlash := splitList "/" $name | last }}
{{- if and (contains ":" $afterSlash) (not (hasSuffix "/*" $entry)) }}
{{- fail (printf "%s: %q names a tag, which can be moved to another image; list the repository (any tag) or pin a digest (repository@sha256:...)" $.value $entry) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Arguments of `pgwarden operator` for the policy, one `- --flag=value` line each (nothing when all are
defaults). deployment.yaml includes them after its own arguments:
  {{- with include "pgwarden.policyArgs" . }}{{ nindent 12 . }}{{- end }}
*/}}
{{- define "pgwarden.policyArgs" -}}
{{- include "pgwarden.policyArgLines" . | trim }}
{{- end }}

{{- define "pgwarden.policyArgLines" -}}
{{- include "pgwarden.checkImageEntries" (dict "value" "policy.jobImages" "entries" .Values.policy.jobImages) }}
{{- include "pgwarden.checkImageEntries" (dict "value" "policy.migrationImages" "entries" .Values.policy.migrationImages) }}
{{- if .Values.policy.allowImageOverride }}
- --allow-job-image-override
{{- end }}
{{- range .Values.policy.jobImages }}
- --allowed-job-image={{ . }}
{{- end }}
{{- range .Values.policy.migrationImages }}
- --allowed-migration-image={{ . }}
{{- end }}
{{- range .Values.policy.serviceAccounts }}
- --allowed-service-account={{ . }}
{{- end }}
{{- with include "pgwarden.jobServiceAccountName" . }}
- --job-service-account={{ . }}
{{- end }}
{{- end }}

{{/*
CEL: whether the image in variable `var` (with its `<var>Repo` and `<var>Digest` variables) matches one of
`entries`, exactly as pgwarden.operator.policy.image_allowed decides.
*/}}
{{- define "pgwarden.celImageAllowed" -}}
{{ .entries | toJson }}.exists(e, e == '*' || (e.endsWith('/*') ? variables.{{ .var }}Repo.startsWith(e.substring(0, size(e) - 1)) : (e.split('@')[0] == variables.{{ .var }}Repo && (!e.contains('@') || e.split('@')[1] == variables.{{ .var }}Digest))))
{{- end }}

{{/* CEL variables splitting the image in variable `var` into <var>Name (no digest), <var>Repo and <var>Digest. */}}
{{- define "pgwarden.celImageParts" -}}
- name: {{ . }}Name
  expression: "variables.{{ . }}.split('@')[0]"
- name: {{ . }}Digest
  expression: "variables.{{ . }}.contains('@') ? variables.{{ . }}.split('@')[1] : ''"
- name: {{ . }}Repo
  expression: >-
    variables.{{ . }}Name.lastIndexOf(':') > variables.{{ . }}Name.lastIndexOf('/')
    ? variables.{{ . }}Name.substring(0, variables.{{ . }}Name.lastIndexOf(':')) : variables.{{ . }}Name
{{- end }}
