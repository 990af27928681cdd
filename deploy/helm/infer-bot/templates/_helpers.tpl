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
