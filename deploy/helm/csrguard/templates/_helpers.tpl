{{/*
csrguard.name is the chart name, or nameOverride.
*/}}
{{- define "csrguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
csrguard.fullname names every object: fullnameOverride, else the release name
if it already holds the chart name, else <release>-<chart>.
*/}}
{{- define "csrguard.fullname" -}}
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

{{/*
csrguard.labels are the labels of every object.
*/}}
{{- define "csrguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "csrguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: csrguard
{{- end }}

{{/*
csrguard.selectorLabels select the controller's pods; they never change
between chart versions (a Deployment's selector is immutable).
*/}}
{{- define "csrguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csrguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
csrguard.serviceAccountName is the ServiceAccount the controller runs as.
*/}}
{{- define "csrguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "csrguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
csrguard.leaseName is the leader-election Lease in the release namespace.
*/}}
{{- define "csrguard.leaseName" -}}
{{- default (include "csrguard.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
csrguard.image is repository:tag (the chart's appVersion unless image.tag is
set), or repository@digest when image.digest is set.
*/}}
{{- define "csrguard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
csrguard.eventsNamespace is where the controller records Events about
cluster-scoped objects (CSRs, Nodes): Kubernetes puts them in "default".
*/}}
{{- define "csrguard.eventsNamespace" -}}
default
{{- end }}
