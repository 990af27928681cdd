{{- define "infer-bot.labels" -}}
app.kubernetes.io/name: infer-bot
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- define "infer-bot.selector" -}}
app.kubernetes.io/name: infer-bot
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- /* Worker pods carry a name of their own, so the serve Deployment, its Service and PDB never select them. */}}
{{- define "infer-bot.workerSelector" -}}
app.kubernetes.io/name: infer-bot-worker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
