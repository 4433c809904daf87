{{- define "kaipo.labels" -}}
app.kubernetes.io/name: kaipo
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "kaipo.selector" -}}
app.kubernetes.io/name: kaipo
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
