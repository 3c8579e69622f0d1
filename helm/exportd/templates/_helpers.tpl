{{/*
Expand the name of the chart.
*/}}
{{- define "exportd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "exportd.fullname" -}}
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
Create chart name and version as used by the chart label.
*/}}
{{- define "exportd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "exportd.labels" -}}
helm.sh/chart: {{ include "exportd.chart" . }}
{{ include "exportd.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: exportd
{{- end }}

{{/*
Selector labels
*/}}
{{- define "exportd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "exportd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one role: call with (dict "root" $ "component" "api").
*/}}
{{- define "exportd.componentLabels" -}}
{{ include "exportd.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "exportd.componentSelectorLabels" -}}
{{ include "exportd.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "exportd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "exportd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---- names of the parts ------------------------------------------------------------------ */}}

{{- define "exportd.apiName" -}}
{{- printf "%s-api" (include "exportd.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Call with (dict "root" $ "queue" "exports"). */}}
{{- define "exportd.workerName" -}}
{{- printf "%s-worker-%s" (include "exportd.fullname" .root) .queue | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "exportd.cleanupName" -}}
{{- printf "%s-cleanup" (include "exportd.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "exportd.redisName" -}}
{{- printf "%s-redis" (include "exportd.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "exportd.secretName" -}}
{{- default (include "exportd.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "exportd.dataClaimName" -}}
{{- default (printf "%s-data" (include "exportd.fullname" .) | trunc 63 | trimSuffix "-") .Values.storage.local.existingClaim }}
{{- end }}

{{- define "exportd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "exportd.redisImage" -}}
{{- $image := .Values.redis.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository $image.tag }}
{{- end }}
{{- end }}

{{/* ServiceAccounts of the bundled Redis and of the `helm test` pod: their own, never the app's. */}}
{{- define "exportd.redisServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ include "exportd.redisName" . }}{{ else }}default{{ end }}
{{- end }}

{{- define "exportd.testServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ printf "%s-test" (include "exportd.fullname" .) | trunc 63 | trimSuffix "-" }}{{ else }}default{{ end }}
{{- end }}

{{/*
A probe: the chart's defaults with the values' overrides merged over them.
Call with (dict "probe" <map of the handler and defaults> "overrides" <map>); prints YAML.
*/}}
{{- define "exportd.probe" -}}
{{- toYaml (mergeOverwrite (deepCopy .probe) (deepCopy (.overrides | default dict))) }}
{{- end }}

{{/*
topologySpreadConstraints with an empty labelSelector filled with the pod's own selector labels.
Call with (dict "constraints" <list> "labels" <map>); prints YAML (possibly "[]").
*/}}
{{- define "exportd.topologySpread" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $.labels) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The ingress-nginx body-size limit that lets an upload of config.maxUploadBytes pass, with its options part. */}}
{{- define "exportd.proxyBodySize" -}}
{{- $mib := 1048576 }}
{{- $bytes := add (int64 .Values.config.maxUploadBytes) (int64 .Values.config.maxJsonBytes) $mib }}
{{- printf "%dm" (div (add $bytes (sub $mib 1)) $mib) }}
{{- end }}

{{/* ---- settings ------------------------------------------------------------------------------ */}}

{{/* The Service URL inside the cluster. */}}
{{- define "exportd.serviceUrl" -}}
{{- $port := int .Values.service.port }}
{{- if eq $port 80 }}
{{- printf "http://%s.%s.svc" (include "exportd.fullname" .) .Release.Namespace }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "exportd.fullname" .) .Release.Namespace $port }}
{{- end }}
{{- end }}

{{/* EXPORTD_PUBLIC_URL: the value, else the first ingress host, else the in-cluster Service URL. */}}
{{- define "exportd.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $scheme := "http" }}
{{- range .Values.ingress.tls }}
{{- if has $host (.hosts | default list) }}
{{- $scheme = "https" }}
{{- end }}
{{- end }}
{{- printf "%s://%s" $scheme $host }}
{{- else }}
{{- include "exportd.serviceUrl" . }}
{{- end }}
{{- end }}

{{- define "exportd.dataDir" -}}
{{- if eq .Values.storage.type "local" }}/data{{ else }}/tmp/exportd{{ end }}
{{- end }}

{{/* True ("true") when local storage on a ReadWriteOnce claim pins every pod that mounts it to one node. */}}
{{- define "exportd.nodePinned" -}}
{{- if and (eq .Values.storage.type "local") (eq .Values.storage.local.accessMode "ReadWriteOnce") }}true{{ end }}
{{- end }}

{{/* host:port of the bundled Redis Service. */}}
{{- define "exportd.redisAddress" -}}
{{- printf "%s.%s.svc:6379" (include "exportd.redisName" .) .Release.Namespace }}
{{- end }}

{{- define "exportd.redisPasswordSecret" -}}
{{- default (include "exportd.redisName" .) .Values.redis.auth.existingSecret }}
{{- end }}

{{/*
Worker settings of one queue: the entry merged over workerDefaults.
Call with (dict "root" $ "queue" "exports"); returns YAML, read it with fromYaml.
*/}}
{{- define "exportd.workerValues" -}}
{{- $entry := index .root.Values.workers .queue | default dict }}
{{- $merged := mergeOverwrite (deepCopy .root.Values.workerDefaults) (deepCopy $entry) }}
{{- toYaml $merged }}
{{- end }}

{{/* ---- pod parts shared by the API, the workers and the cleanup job ----------------------------- */}}

{{/* envFrom of every exportd container: the settings ConfigMap, then the Secret (chart's or existing). */}}
{{- define "exportd.envFrom" -}}
- configMapRef:
    name: {{ include "exportd.fullname" . }}
- secretRef:
    name: {{ include "exportd.secretName" . }}
{{- end }}

{{/* Explicit env of every exportd container: the Redis URL when it is not in the Secret, S3 keys from their Secret, extraEnv. */}}
{{- define "exportd.env" -}}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "exportd.redisPasswordSecret" . }}
      key: {{ .Values.redis.auth.existingSecretKey }}
- name: EXPORTD_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s/0" (include "exportd.redisAddress" .) | quote }}
{{- else }}
- name: EXPORTD_REDIS_URL
  value: {{ printf "redis://%s/0" (include "exportd.redisAddress" .) | quote }}
{{- end }}
{{- else if .Values.externalRedis.existingSecret }}
- name: EXPORTD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretKey }}
{{- end }}
{{- if and (eq .Values.storage.type "s3") .Values.storage.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.storage.s3.existingSecret }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.storage.s3.existingSecret }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* volumeMounts of every exportd container. */}}
{{- define "exportd.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if eq .Values.storage.type "local" }}
- name: data
  mountPath: /data
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* volumes of every exportd pod. */}}
{{- define "exportd.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpDir.sizeLimit }}
{{- if eq .Values.storage.type "local" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "exportd.dataClaimName" . }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every exportd pod. */}}
{{- define "exportd.podCommon" -}}
serviceAccountName: {{ include "exportd.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/*
Affinity of a pod that mounts the local-storage volume: the given affinity, plus, when the volume is
ReadWriteOnce, a required pod affinity to every other pod of this release that mounts it (API,
workers, cleanup), so they all land on the node the volume is attached to. The first of them is
free to go anywhere (the scheduler lets a pod that matches its own affinity term start alone).
Call with (dict "root" $ "affinity" <map>); prints YAML (possibly "{}").
*/}}
{{- define "exportd.affinity" -}}
{{- $aff := deepCopy (.affinity | default dict) }}
{{- if include "exportd.nodePinned" .root }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (fromYaml (include "exportd.selectorLabels" .root)) "matchExpressions" (list (dict "key" "app.kubernetes.io/component" "operator" "In" "values" (list "api" "worker" "cleanup")))) }}
{{- $podAffinity := get $aff "podAffinity" | default dict }}
{{- $required := get $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" | default list }}
{{- $_ := set $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" (append $required $term) }}
{{- $_ := set $aff "podAffinity" $podAffinity }}
{{- end }}
{{- toYaml $aff }}
{{- end }}

{{/* Checksums that roll the pods when the settings or the Secret change. */}}
{{- define "exportd.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- /* Not the rendered Secret: a generated key differs on every render until lookup finds it. */}}
checksum/secret: {{ list .Values.existingSecret .Values.signingKeys .Values.externalRedis .Values.storage.s3.accessKeyId .Values.storage.s3.secretAccessKey .Values.storage.s3.existingSecret | toJson | sha256sum }}
{{- end }}

{{/* Egress rules of every exportd pod (API, workers, cleanup): DNS, Redis, the object store, extras. */}}
{{- define "exportd.egressRules" -}}
{{- $np := .Values.networkPolicy }}
# DNS.
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- if .Values.redis.enabled }}
# The bundled Redis.
- to:
    - podSelector:
        matchLabels:
          {{- include "exportd.componentSelectorLabels" (dict "root" . "component" "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
# The external Redis.
- to:
    {{- range $np.egress.externalRedis.ipBlocks }}
    - ipBlock:
        {{- toYaml . | nindent 8 }}
    {{- end }}
  ports:
    {{- range $np.egress.externalRedis.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- if eq .Values.storage.type "s3" }}
# The object store.
- to:
    {{- range $np.egress.storage.ipBlocks }}
    - ipBlock:
        {{- toYaml . | nindent 8 }}
    {{- end }}
  ports:
    {{- range $np.egress.storage.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- with $np.egress.extra }}
{{ toYaml . }}
{{- end }}
{{- end }}
