{{/* The release's objects are named after inference.serviceName, as upstream does. */}}
{{- define "inference.name" -}}
{{- .Values.inference.serviceName | default .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "inference.namespace" -}}
{{- .Release.Namespace | default .Values.inference.serviceNamespace -}}
{{- end -}}

{{- define "inference.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inference.name" . }}
app.kubernetes.io/component: inference
{{- end -}}

{{- define "inference.labels" -}}
{{ include "inference.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: inference-charts
inference.framework: {{ .Values.inference.framework | quote }}
{{- end -}}

{{- define "inference.image" -}}
{{- $img := .Values.inference.modelServer.image -}}
{{- printf "%s:%s" $img.repository (toString $img.tag) -}}
{{- end -}}

{{/* modelParameters as engine flags: maxModelLen: 8192 -> --max-model-len=8192 */}}
{{- define "inference.engineArgs" -}}
{{- range $key, $value := (.Values.modelParameters | default dict) }}
{{- if and (ne $key "pipeline") (not (kindIs "invalid" $value)) }}
- {{ printf "--%s=%v" (kebabcase $key) $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "inference.resources" -}}
{{- $dep := .Values.inference.modelServer.deployment -}}
{{- index ($dep.resources | default dict) .Values.inference.accelerator | default dict | toYaml -}}
{{- end -}}

{{/* Placement: instanceType becomes the well-known instance-type node label (Karpenter honours it). */}}
{{- define "inference.placement" -}}
{{- $dep := .Values.inference.modelServer.deployment -}}
{{- $sel := deepCopy ($dep.nodeSelector | default dict) -}}
{{- if $dep.instanceType }}{{- $_ := set $sel "node.kubernetes.io/instance-type" $dep.instanceType -}}{{- end }}
{{- with $sel }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $dep.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ .Values.serviceAccountName | default "default" }}
{{- end -}}

{{/* The Hugging Face token for gated models: the `hf-token` Secret (`/infer secret hf-token` makes it). */}}
{{- define "inference.hfEnv" -}}
- name: HUGGING_FACE_HUB_TOKEN
  valueFrom:
    secretKeyRef:
      name: hf-token
      key: token
{{- end -}}

{{- define "inference.userEnv" -}}
{{- range $key, $value := (.Values.inference.modelServer.env | default dict) }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The model-server container of every Deployment-based framework. */}}
{{- define "inference.container" -}}
{{- $fw := .Values.inference.framework -}}
{{- $dep := .Values.inference.modelServer.deployment -}}
- name: {{ if eq $fw "nim-container" }}nim{{ else if eq $fw "diffusers" }}diffusers{{ else if eq $fw "triton-vllm" }}triton{{ else }}vllm{{ end }}
  image: {{ include "inference.image" . | quote }}
  imagePullPolicy: {{ .Values.global.image.pullPolicy }}
  {{- if eq $fw "triton-vllm" }}
  command: ["tritonserver"]
  args:
    - "--model-repository=/models"
    - "--http-port=8000"
  {{- else if eq $fw "diffusers" }}
  command: ["python3", "-m", "diffusers_server"]
  args:
    - {{ printf "--model=%s" .Values.model | quote }}
    - {{ printf "--pipeline=%s" ((.Values.modelParameters | default dict).pipeline | default "auto") | quote }}
    - "--port=8000"
  {{- else if ne $fw "nim-container" }}
  command: ["vllm", "serve"]
  args:
    - {{ .Values.model | quote }}
    - "--port=8000"
    - "--host=0.0.0.0"
    {{- include "inference.engineArgs" . | nindent 4 }}
  {{- end }}
  ports:
    - name: http
      containerPort: 8000
  env:
    {{- if eq $fw "nim-container" }}
    {{- $nim := $dep.nim | default dict }}
    {{- range $key, $value := ($nim.env | default dict) }}
    - name: {{ $key }}
      value: {{ $value | toString | quote }}
    {{- end }}
    - name: NGC_API_KEY
      valueFrom:
        secretKeyRef:
          name: {{ (($nim.secrets | default dict).ngcApiKey | default dict).name | default "ngc-api" }}
          key: {{ (($nim.secrets | default dict).ngcApiKey | default dict).key | default "NGC_API_KEY" }}
    {{- else }}
    {{- include "inference.hfEnv" . | nindent 4 }}
    {{- end }}
    {{- include "inference.userEnv" . | nindent 4 }}
  resources:
    {{- include "inference.resources" . | nindent 4 }}
  {{- if ne $fw "nim-container" }}
  {{- with $dep.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  readinessProbe:
    httpGet:
      path: {{ if eq $fw "triton-vllm" }}/v2/health/ready{{ else }}/health{{ end }}
      port: 8000
    periodSeconds: 10
  {{- else }}
  readinessProbe:
    {{- toYaml (($dep.nim | default dict).readinessProbe | default dict) | nindent 4 }}
  {{- end }}
{{- end -}}
