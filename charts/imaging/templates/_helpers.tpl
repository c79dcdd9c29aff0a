{{/* Names, labels and the pieces every workload shares. */}}

{{- define "imaging.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imaging.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "imaging.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "imaging.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Workload name of one stage; called with (dict "root" $ "stage" "convert"). */}}
{{- define "imaging.stageName" -}}
{{- printf "%s-%s" (include "imaging.fullname" .root) .stage | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imaging.labels" -}}
app.kubernetes.io/name: {{ include "imaging.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "imaging.stageSelectorLabels" -}}
app.kubernetes.io/name: {{ include "imaging.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{- define "imaging.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The pipeline stages: every workload of .Values.stages but the gateway, which is the pipeline's
entry and consumes nothing. Each stage's entry names the event type it consumes.
*/}}
{{- define "imaging.pipelineStages" -}}
{{- without (keys .Values.stages | sortAlpha) "gateway" | join " " -}}
{{- end -}}

{{- define "imaging.secretName" -}}
{{- include "imaging.fullname" . }}-credentials
{{- end -}}

{{/* Whether the gateway's account key pair is given inline, so the chart's Secret holds it. */}}
{{- define "imaging.accountInline" -}}
{{- $acct := .Values.stages.gateway.account -}}
{{- if and .Values.stages.gateway.enabled (not $acct.existingSecret) $acct.accessKeyId -}}
true
{{- end -}}
{{- end -}}

{{/* Whether the chart itself renders a Secret (only when some credential is given inline). */}}
{{- define "imaging.ownsSecret" -}}
{{- if or (not .Values.config.mongodb.existingSecret) (and (not .Values.config.s3.existingSecret) .Values.config.s3.accessKeyId) (include "imaging.accountInline" .) -}}
true
{{- end -}}
{{- end -}}

{{/*
The bootstrap account's id as a string, whatever YAML or --set made of it: a number parsed from
a values file is a float64, which would otherwise print as 1.23456789012e+11.
*/}}
{{- define "imaging.accountId" -}}
{{- $id := .Values.stages.gateway.account.accountId | default "" -}}
{{- if kindIs "float64" $id -}}
{{- printf "%.0f" $id -}}
{{- else -}}
{{- $id | toString -}}
{{- end -}}
{{- end -}}

{{/*
The gateway cannot start without its bootstrap account (cli/gateway-process.ts), so refuse to
render one that would crash-loop.
*/}}
{{- define "imaging.checkAccount" -}}
{{- if .Values.stages.gateway.enabled -}}
{{- $acct := .Values.stages.gateway.account -}}
{{- $how := "set stages.gateway.account.accountId and either stages.gateway.account.existingSecret or stages.gateway.account.accessKeyId/secretAccessKey, or disable the gateway with stages.gateway.enabled=false" -}}
{{- $id := required (printf "stages.gateway.account.accountId is required: the gateway needs its bootstrap account; %s" $how) (include "imaging.accountId" .) -}}
{{- if not (regexMatch "^[0-9]{12}$" $id) -}}
{{- fail (printf "stages.gateway.account.accountId must be 12 digits (quote it in YAML), not %q" $id) -}}
{{- end -}}
{{- if not $acct.existingSecret -}}
{{- $_ := required (printf "stages.gateway.account.existingSecret or stages.gateway.account.accessKeyId is required: the gateway needs its bootstrap account's key pair; %s" $how) $acct.accessKeyId -}}
{{- $_ = required "stages.gateway.account.secretAccessKey is required with stages.gateway.account.accessKeyId" $acct.secretAccessKey -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether the gateway serves HTTPS (stages.gateway.tls: an existing Secret, or the PEM inline). */}}
{{- define "imaging.gatewayTls" -}}
{{- $tls := .Values.stages.gateway.tls | default dict -}}
{{- if and .Values.stages.gateway.enabled (or $tls.existingSecret $tls.cert) -}}
true
{{- end -}}
{{- end -}}

{{/*
The stages that read the cloud key (IMAGING_CLOUD_KEY_FILE): decrypt opens EC2 bundles with it,
export signs and encrypts BundleInstance's bundles with it, and manifest verifies such a bundle's
signature with its certificate when the bundle is registered.
*/}}
{{- define "imaging.cloudKeyStages" -}}
manifest decrypt export
{{- end -}}

{{/*
The files one workload mounts from Secrets, as a JSON list; called like imaging.env. Each entry:
the volume's name, the Secret and which of its keys land under which file name, where it is
mounted, and the setting that names the file. Only the workloads that read a setting get it:
the S3 CA bundle every workload (each talks to S3), the TLS pair the gateway, the cloud key the
stages of imaging.cloudKeyStages.
*/}}
{{- define "imaging.secretFiles" -}}
{{- $root := .root -}}
{{- $cfg := $root.Values.config -}}
{{- $files := list -}}
{{- $ca := $cfg.s3.caBundle | default dict -}}
{{- if or $ca.existingSecret $ca.pem -}}
{{- $files = append $files (dict "name" "s3-ca" "secretName" ($ca.existingSecret | default (printf "%s-s3-ca" (include "imaging.fullname" $root))) "items" (list (dict "key" (ternary ($ca.key | default "ca.crt") "ca.crt" (not (empty $ca.existingSecret))) "path" "ca.crt")) "mountPath" "/etc/imaging/s3-ca" "env" (dict "IMAGING_S3_CA_BUNDLE" "/etc/imaging/s3-ca/ca.crt") "private" false) -}}
{{- end -}}
{{- if and (eq .stage "gateway") (include "imaging.gatewayTls" $root) -}}
{{- $tls := $root.Values.stages.gateway.tls -}}
{{- $files = append $files (dict "name" "tls" "secretName" ($tls.existingSecret | default (printf "%s-gateway-tls" (include "imaging.fullname" $root))) "items" (list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key")) "mountPath" "/etc/imaging/tls" "env" (dict "IMAGING_TLS_CERT" "/etc/imaging/tls/tls.crt" "IMAGING_TLS_KEY" "/etc/imaging/tls/tls.key") "private" true) -}}
{{- end -}}
{{- $cloud := $cfg.cloudKey | default dict -}}
{{- if and (or $cloud.existingSecret $cloud.pem) (has .stage (splitList " " (include "imaging.cloudKeyStages" $root))) -}}
{{- $files = append $files (dict "name" "cloud-key" "secretName" ($cloud.existingSecret | default (printf "%s-cloud-key" (include "imaging.fullname" $root))) "items" (list (dict "key" (ternary ($cloud.key | default "cloud-key.pem") "cloud-key.pem" (not (empty $cloud.existingSecret))) "path" "cloud-key.pem")) "mountPath" "/etc/imaging/cloud-key" "env" (dict "IMAGING_CLOUD_KEY_FILE" "/etc/imaging/cloud-key/cloud-key.pem") "private" true) -}}
{{- end -}}
{{- $files | toJson -}}
{{- end -}}

{{/*
File mode of a mounted Secret: private keys 0440 where the pod has an fsGroup (the files are then
the group's), else 0444, since the container runs as a user that owns nothing in the volume.
*/}}
{{- define "imaging.fileMode" -}}
{{- $podGroup := and (ne .root.Values.mode "knative") .root.Values.podSecurityContext.fsGroup -}}
{{- ternary 288 292 (and .private (not (empty $podGroup))) -}}
{{- end -}}

{{/* Command of a workload: the gateway through the CLI, a stage through the function host. */}}
{{- define "imaging.command" -}}
{{- if eq . "gateway" -}}
["node", "dist/cli/main.js", "gateway"]
{{- else -}}
["node", "dist/functions/host/main.js"]
{{- end -}}
{{- end -}}

{{/*
Environment of one workload; called with (dict "root" $ "stage" NAME "hostMode" "jetstream|http").
Shared settings come from the ConfigMap (envFrom); entries here win over it, and the stage's own
`env` is last so it can override anything.
*/}}
{{- define "imaging.env" -}}
{{- $root := .root -}}
{{- $cfg := $root.Values.config -}}
{{- $stageValues := index $root.Values.stages .stage -}}
- name: IMAGING_ADMIN_PORT
  value: {{ include "imaging.adminPort" . | quote }}
{{- if ne .stage "gateway" }}
- name: IMAGING_STAGE
  value: {{ .stage | quote }}
- name: IMAGING_HOST_MODE
  value: {{ .hostMode | quote }}
{{- if eq .hostMode "http" }}
{{- /* The stage refuses (429) what Knative should not have sent it. */}}
- name: IMAGING_CONCURRENCY
  value: {{ $stageValues.knative.containerConcurrency | toString | quote }}
{{- end }}
{{- end }}
- name: IMAGING_MONGODB_URI
  valueFrom:
    secretKeyRef:
      {{- if $cfg.mongodb.existingSecret }}
      name: {{ $cfg.mongodb.existingSecret }}
      key: {{ $cfg.mongodb.existingSecretKey }}
      {{- else }}
      name: {{ include "imaging.secretName" $root }}
      key: mongodb-uri
      {{- end }}
{{- if and (ne .stage "gateway") (or $cfg.s3.existingSecret $cfg.s3.accessKeyId) }}
{{- $s3Secret := $cfg.s3.existingSecret | default (include "imaging.secretName" $root) }}
- name: IMAGING_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: {{ $cfg.s3.accessKeyIdKey }}
- name: IMAGING_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: {{ $cfg.s3.secretAccessKeyKey }}
{{- end }}
{{- if eq .stage "gateway" }}
{{- $acct := $stageValues.account }}
{{- $accountSecret := $acct.existingSecret | default (include "imaging.secretName" $root) }}
{{- /* Bind every interface: the default, 127.0.0.1, is unreachable from outside the pod. */}}
- name: IMAGING_HOST
  value: "0.0.0.0"
- name: IMAGING_PORT
  value: {{ $cfg.httpPort | toString | quote }}
- name: IMAGING_REGION
  value: {{ $cfg.region | default "us-east-1" | quote }}
- name: IMAGING_ACCOUNT_ID
  value: {{ include "imaging.accountId" $root | quote }}
{{- if not (hasKey ($stageValues.env | default dict) "IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT") }}
- name: IMAGING_MAX_OPEN_TASKS_PER_ACCOUNT
  value: {{ $cfg.limits.maxOpenTasksPerAccount | default 20 | int64 | toString | quote }}
{{- end }}
- name: IMAGING_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $accountSecret }}
      key: {{ ternary $acct.accessKeyIdKey "account-access-key-id" (not (empty $acct.existingSecret)) }}
- name: IMAGING_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $accountSecret }}
      key: {{ ternary $acct.secretAccessKeyKey "account-secret-access-key" (not (empty $acct.existingSecret)) }}
{{- end }}
{{- if ne .stage "gateway" }}
{{- $graceMs := mul ($stageValues.terminationGracePeriodSeconds | default 60) 1000 }}
{{- if hasKey ($stageValues.env | default dict) "IMAGING_DRAIN_DEADLINE_MS" }}
{{- /* A drain deadline at or past the grace period would have the pod killed mid-clean-up. */}}
{{- if ge (int (index $stageValues.env "IMAGING_DRAIN_DEADLINE_MS")) (int $graceMs) }}
{{- fail (printf "stages.%s.env.IMAGING_DRAIN_DEADLINE_MS (%v) must be under the stage's terminationGracePeriodSeconds (%v s)" .stage (index $stageValues.env "IMAGING_DRAIN_DEADLINE_MS") ($stageValues.terminationGracePeriodSeconds | default 60)) }}
{{- end }}
{{- else }}
- name: IMAGING_DRAIN_DEADLINE_MS
  value: {{ include "imaging.drainDeadlineMs" . | quote }}
{{- end }}
{{- end }}
{{- /* The storage quota is enforced where image-store bytes are written: the convert stage. */}}
{{- if and (eq .stage "convert") (not (hasKey ($stageValues.env | default dict) "IMAGING_ACCOUNT_STORAGE_QUOTA_GIB")) }}
- name: IMAGING_ACCOUNT_STORAGE_QUOTA_GIB
  value: {{ $cfg.limits.accountStorageQuotaGib | default 1024 | toString | quote }}
{{- end }}
{{- range $file := include "imaging.secretFiles" . | fromJsonArray }}
{{- range $name, $path := $file.env }}
- name: {{ $name }}
  value: {{ $path | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := $stageValues.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/*
A stage's drain deadline: its grace period less 15 s for handing work back, cleaning up and
closing connections (at least 1 s); called like imaging.env.
*/}}
{{- define "imaging.drainDeadlineMs" -}}
{{- $stageValues := index .root.Values.stages .stage -}}
{{- $grace := int ($stageValues.terminationGracePeriodSeconds | default 60) -}}
{{- max 1000 (mul (sub $grace 15) 1000) | toString -}}
{{- end -}}

{{/* The admin port of one workload (its adminPort, else admin.port); called like imaging.env. */}}
{{- define "imaging.adminPort" -}}
{{- $stageValues := index .root.Values.stages .stage -}}
{{- $stageValues.adminPort | default .root.Values.admin.port | default 8775 | toString -}}
{{- end -}}

{{/*
Replicas a workload keeps at least in deployment mode: KEDA's minReplicas where KEDA scales it,
else its replica count. A PodDisruptionBudget is rendered only above one.
*/}}
{{- define "imaging.minReplicas" -}}
{{- $stageValues := index .root.Values.stages .stage -}}
{{- if and .root.Values.keda.enabled (ne .stage "gateway") -}}
{{- $stageValues.keda.minReplicas | toString -}}
{{- else -}}
{{- $stageValues.replicas | toString -}}
{{- end -}}
{{- end -}}

{{/* The container every workload runs; called like imaging.env. */}}
{{- define "imaging.container" -}}
{{- $root := .root -}}
{{- $stageValues := index $root.Values.stages .stage -}}
name: {{ .stage }}
{{- /* A stage may run its own image (boot-check needs one with qemu); its tag defaults to the chart's. */}}
{{- $image := $root.Values.image }}
{{- with $stageValues.image }}{{ $image = merge (deepCopy .) $root.Values.image }}{{ end }}
image: {{ printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
imagePullPolicy: {{ $image.pullPolicy }}
command: {{ include "imaging.command" .stage }}
envFrom:
  - configMapRef:
      name: {{ include "imaging.fullname" $root }}-config
  {{- if ne .stage "gateway" }}
  - configMapRef:
      name: {{ include "imaging.fullname" $root }}-stage-config
  {{- end }}
env:
  {{- include "imaging.env" . | trim | nindent 2 }}
{{- $serves := or (eq .stage "gateway") (eq .hostMode "http") }}
{{- /* Knative allows one port per container: the admin port is exposed in deployment mode only. */}}
{{- $admin := eq $root.Values.mode "deployment" }}
{{- if or $serves $admin }}
ports:
  {{- if $serves }}
  {{- /* Knative accepts only http1 or h2c as a port name. */}}
  - name: {{ ternary "http1" (ternary "https" "http" (and (eq .stage "gateway") (not (empty (include "imaging.gatewayTls" $root))))) (eq $root.Values.mode "knative") }}
    containerPort: {{ $root.Values.config.httpPort }}
    protocol: TCP
  {{- end }}
  {{- if $admin }}
  - name: admin
    containerPort: {{ include "imaging.adminPort" . }}
    protocol: TCP
  {{- end }}
{{- end }}
resources:
  {{- toYaml $stageValues.resources | nindent 2 }}
securityContext:
  {{- if eq $root.Values.mode "knative" }}
  {{- /* Knative refuses most pod-level securityContext fields; the user moves to the container. */}}
  {{- $pod := $root.Values.podSecurityContext }}
  {{- toYaml (merge (pick $pod "runAsNonRoot" "runAsUser" "runAsGroup") (deepCopy $root.Values.securityContext)) | nindent 2 }}
  {{- else }}
  {{- toYaml $root.Values.securityContext | nindent 2 }}
  {{- end }}
volumeMounts:
  # Scratch space: the root filesystem is read-only.
  - name: tmp
    mountPath: /tmp
  {{- range $file := include "imaging.secretFiles" . | fromJsonArray }}
  - name: {{ $file.name }}
    mountPath: {{ $file.mountPath }}
    readOnly: true
  {{- end }}
{{- end -}}

{{/* Pod settings every workload shares, and its volumes; called like imaging.env. */}}
{{- define "imaging.podSpecCommon" -}}
{{- $call := . -}}
{{- with .root -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if ne .Values.mode "knative" }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}
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
volumes:
  # /tmp is also the scratch space (IMAGING_SCRATCH_DIR): sized to the scratch limit plus 1 GiB
  # for other temporary files, so a runaway writer is evicted rather than filling the node.
  - name: tmp
    emptyDir:
      sizeLimit: {{ add .Values.config.limits.scratchLimitMb 1024 }}Mi
  {{- range $file := include "imaging.secretFiles" $call | fromJsonArray }}
  - name: {{ $file.name }}
    secret:
      secretName: {{ $file.secretName }}
      defaultMode: {{ include "imaging.fileMode" (dict "root" $call.root "private" $file.private) }}
      items:
        {{- toYaml $file.items | nindent 8 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/*
Private keys given inline must be PEM private keys; checked here rather than by the values
schema, whose error would print the value.
*/}}
{{- define "imaging.checkPrivateKeys" -}}
{{- $tls := .Values.stages.gateway.tls | default dict -}}
{{- if and $tls.key (not (regexMatch "-----BEGIN [A-Z ]*PRIVATE KEY-----" $tls.key)) -}}
{{- fail "stages.gateway.tls.key holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)" -}}
{{- end -}}
{{- $cloud := .Values.config.cloudKey | default dict -}}
{{- if and $cloud.pem (not (regexMatch "-----BEGIN (RSA )?PRIVATE KEY-----" $cloud.pem)) -}}
{{- fail "config.cloudKey.pem holds no PEM RSA private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)" -}}
{{- end -}}
{{- end -}}

{{- define "imaging.checkMode" -}}
{{- if not (has .Values.mode (list "deployment" "knative")) -}}
{{- fail (printf "mode must be deployment or knative, not %q" .Values.mode) -}}
{{- end -}}
{{- if and (eq .Values.mode "knative") (include "imaging.gatewayTls" .) -}}
{{- fail "stages.gateway.tls is for deployment mode: in knative mode Knative terminates TLS (external-domain-tls) and its queue-proxy speaks plain HTTP to the container; leave stages.gateway.tls empty" -}}
{{- end -}}
{{- end -}}
