{{/* Names and labels. */}}
{{- define "iotmon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iotmon.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "iotmon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "iotmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: iotmon
{{- end -}}

{{- define "iotmon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iotmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iotmon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret the pods read their IOTMON_* secrets from. */}}
{{- define "iotmon.secretName" -}}
{{- default (include "iotmon.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* Is a role deployed? The MQTT roles need mqtt.enabled too. */}}
{{- define "iotmon.roleEnabled" -}}
{{- $role := index .root.Values.roles .name -}}
{{- if and $role.enabled (or (not (hasPrefix "mqtt-" .name)) .root.Values.mqtt.enabled) -}}true{{- end -}}
{{- end -}}

{{/* The Redis host: the chart's own Redis when it runs one, else redis.host. */}}
{{- define "iotmon.redisHost" -}}
{{- if .Values.redis.host -}}
{{- .Values.redis.host -}}
{{- else if .Values.redis.server.enabled -}}
{{- printf "%s-redis" (include "iotmon.fullname" .) -}}
{{- else -}}
{{- fail "redis.host (or redis.url, or existingSecret) is needed when redis.server.enabled is false" -}}
{{- end -}}
{{- end -}}

{{/* The Secret's data (base64), shared by the release's Secret and the setup hook's copy. */}}
{{- define "iotmon.secretData" -}}
{{- $pg := .Values.postgresql -}}
{{- $db := $pg.url -}}
{{- if not $db -}}
{{- $auth := $pg.user -}}
{{- if $pg.password -}}{{- $auth = printf "%s:%s" $pg.user (urlquery $pg.password) -}}{{- end -}}
{{- $db = printf "postgresql://%s@%s:%v/%s" $auth $pg.host $pg.port $pg.database -}}
{{- if $pg.sslmode -}}{{- $db = printf "%s?sslmode=%s" $db $pg.sslmode -}}{{- end -}}
{{- end -}}
{{- $r := .Values.redis -}}
{{- $redis := $r.url -}}
{{- if not $redis -}}
{{- $auth := "" -}}
{{- if $r.password -}}{{- $auth = printf ":%s@" (urlquery $r.password) -}}{{- end -}}
{{- $redis = printf "%s://%s%s:%v/%v" (ternary "rediss" "redis" $r.tls) $auth (include "iotmon.redisHost" .) $r.port $r.db -}}
{{- end -}}
IOTMON_DATABASE_URL: {{ $db | b64enc | quote }}
IOTMON_REDIS_URL: {{ $redis | b64enc | quote }}
{{- if .Values.jwtSecret }}
IOTMON_JWT_SECRET: {{ .Values.jwtSecret | b64enc | quote }}
{{- end }}
{{- if .Values.mqtt.enabled }}
IOTMON_MQTT_URL: {{ required "mqtt.url is needed when mqtt.enabled (or use existingSecret)" .Values.mqtt.url | b64enc | quote }}
{{- if .Values.mqtt.adminUrl }}
IOTMON_MQTT_ADMIN_URL: {{ .Values.mqtt.adminUrl | b64enc | quote }}
{{- end }}
{{- end }}
{{- if .Values.notifyWebhookUrls }}
IOTMON_NOTIFY_WEBHOOK_URLS: {{ toJson .Values.notifyWebhookUrls | b64enc | quote }}
{{- end }}
{{- if .Values.smtpPassword }}
IOTMON_SMTP_PASSWORD: {{ .Values.smtpPassword | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* The ConfigMap's data: settings that are not secret. */}}
{{- define "iotmon.configData" -}}
{{- range $key, $value := .Values.config }}
{{- if not (hasPrefix "IOTMON_" $key) }}
{{- fail (printf "config.%s: only IOTMON_* settings belong in config" $key) }}
{{- end }}
{{- if regexMatch "(?i)(PASSWORD|SECRET|TOKEN$|_URL$|_URLS$)" $key }}
{{- fail (printf "config.%s looks secret: it belongs in the Secret (the chart's secret values or existingSecret), never in the ConfigMap" $key) }}
{{- end }}
{{- if regexMatch "://[^/@\\s]*:[^/@\\s]*@" (toString $value) }}
{{- fail (printf "config.%s holds a URL with a password: it belongs in the Secret" $key) }}
{{- end }}
{{- end }}
IOTMON_KAFKA_BOOTSTRAP: {{ required "kafka.bootstrap is needed" .Values.kafka.bootstrap | quote }}
IOTMON_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
IOTMON_HTTP_HOST: "0.0.0.0"
IOTMON_MQTT_PROTOCOL: {{ .Values.mqtt.protocol | quote }}
{{- range $key, $value := .Values.config }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every workload. */}}
{{- define "iotmon.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.serviceAccountName }}
serviceAccountName: {{ .Values.serviceAccountName }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Roles run as StatefulSets: their hostname is their identity (see deployments.yaml). */}}
{{- define "iotmon.stableRoles" -}}
["mqtt-bridge", "mqtt-decoder"]
{{- end -}}
