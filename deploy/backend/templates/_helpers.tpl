{{/* Labels on every object; selector labels are fixed (a Deployment's selector cannot change). */}}
{{- define "gl-backend.selectorLabels" -}}
app.kubernetes.io/name: execution-backend
app.kubernetes.io/instance: gl-backend
{{- end }}

{{- define "gl-backend.labels" -}}
{{ include "gl-backend.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.version | quote }}
app.kubernetes.io/part-of: gl-native
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}

{{/* Labels of objects that are not the backend itself (namespace, policies). */}}
{{- define "gl-backend.commonLabels" -}}
app.kubernetes.io/part-of: gl-native
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}
