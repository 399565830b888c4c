{{- define "granite-batch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "granite-batch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "granite-batch.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "granite-batch.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "granite-batch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "granite-batch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "granite-batch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "granite-batch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: granite-batch
{{- end }}

{{- define "granite-batch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "granite-batch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "granite-batch.schedule" -}}
{{- $s := default dict .Values.job.schedule }}
{{- if $s.cron }}{{ default "raycronjob" $s.mode }}{{ else }}once{{ end }}
{{- end }}

{{/* The job config the run reads: `.Values.job`, with what the chart knows filled in where unset. */}}
{{- define "granite-batch.jobConfig" -}}
{{- $job := deepCopy .Values.job }}
{{- $_ := unset $job "schedule" }}
{{- /* Pool settings come from the config model (pool-defaults.json, generated); the chart sets only what its worker groups decide. */}}
{{- $defaults := .Files.Get "pool-defaults.json" | fromJson }}
{{- $pools := list }}
{{- if .Values.workers.gpu.enabled }}
{{- $pools = append $pools (merge (dict "name" "gpu" "replicas" (mul .Values.workers.gpu.maxReplicas .Values.workers.gpu.gpusPerWorker)) (deepCopy $defaults.gpu)) }}
{{- end }}
{{- if .Values.workers.cpu.enabled }}
{{- $pools = append $pools (merge (dict "name" "cpu" "replicas" .Values.workers.cpu.maxReplicas "cpus" .Values.workers.cpu.engineCpus "resources" (dict "vllm_cpu" 1)) (deepCopy $defaults.cpu)) }}
{{- end }}
{{- $model := dict "cache_dir" "/cache/models" }}
{{- if eq .Values.model.source "hub" }}
{{- $_ := set $model "id" .Values.model.hub.id }}
{{- with .Values.model.hub.revision }}{{ $_ := set $model "revision" . }}{{ end }}
{{- else if eq .Values.model.source "s3" }}
{{- $_ := set $model "id" .Values.model.s3.uri }}
{{- else }}
{{- $_ := set $model "id" (printf "/models/%s" .Values.model.pvc.path) }}
{{- end }}
{{- /* This release's runs are one group in the Pushgateway: what its alert rules and dashboard select. */}}
{{- $metrics := dict "grouping" (dict "job_file" (include "granite-batch.fullname" .)) }}
{{- with .Values.metrics.pushgatewayUrl }}{{ $_ := set $metrics "pushgateway_url" . }}{{ end }}
{{- $derived := dict "run" (dict "address" "auto") "engine" (dict "pools" $pools) "model" $model "metrics" $metrics }}
{{- toYaml (merge $job $derived) }}
{{- end }}

{{- define "granite-batch.image" -}}
{{ printf "%s:%s" .repository .tag | quote }}
{{- end }}

{{- define "granite-batch.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Writable places on a read-only root: Ray's session dir, its object store, HOME (Ray's auth token, caches). */}}
{{- define "granite-batch.volumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir:
    sizeLimit: {{ .Values.model.cacheSizeLimit }}
- name: cache
  emptyDir:
    sizeLimit: {{ .Values.model.cacheSizeLimit }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shmSizeLimit }}
- name: job
  configMap:
    name: {{ include "granite-batch.fullname" . }}
{{- if eq .Values.model.source "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ required "model.pvc.claimName is required when model.source=pvc" .Values.model.pvc.claimName }}
    readOnly: true
{{- end }}
{{- end }}

{{- define "granite-batch.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: home, mountPath: /home/ray}
- {name: cache, mountPath: /cache}
- {name: dshm, mountPath: /dev/shm}
- {name: job, mountPath: /etc/granite-batch, readOnly: true}
{{- if eq .Values.model.source "pvc" }}
- {name: model, mountPath: /models, readOnly: true}
{{- end }}
{{- end }}

{{/* Credentials by reference only: no secret value is ever rendered. */}}
{{- define "granite-batch.env" -}}
- {name: HOME, value: /home/ray}
- {name: HF_HOME, value: /cache/hf}
- {name: RAY_USAGE_STATS_ENABLED, value: "0"}
- {name: AWS_REQUEST_CHECKSUM_CALCULATION, value: WHEN_REQUIRED}
{{- with .Values.s3.region }}
- {name: AWS_REGION, value: {{ . | quote }}}
{{- end }}
{{- with .Values.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ . }}, key: {{ $.Values.s3.accessKeyIdKey }}}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ . }}, key: {{ $.Values.s3.secretAccessKeyKey }}}}
{{- end }}
{{- if and (eq .Values.model.source "hub") .Values.model.hub.tokenSecret.name }}
- name: HF_TOKEN
  valueFrom: {secretKeyRef: {name: {{ .Values.model.hub.tokenSecret.name }}, key: {{ .Values.model.hub.tokenSecret.key }}}}
{{- end }}
{{- end }}

{{/* One container of a Ray pod. Args: root context, image values, resources, ports (optional). */}}
{{- define "granite-batch.rayContainer" -}}
- name: ray
  image: {{ include "granite-batch.image" .image }}
  imagePullPolicy: {{ .image.pullPolicy }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  env:
    {{- include "granite-batch.env" .root | nindent 4 }}
  volumeMounts:
    {{- include "granite-batch.volumeMounts" .root | nindent 4 }}
  {{- with .ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "granite-batch.podSpecCommon" -}}
serviceAccountName: {{ include "granite-batch.serviceAccountName" . }}
automountServiceAccountToken: false
{{- include "granite-batch.podSecurityContext" . | nindent 0 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "granite-batch.volumes" . | nindent 2 }}
{{- end }}

{{/* The RayJob spec: used as is by the RayJob, as the RayCronJob's jobTemplate, and in the launcher's manifest. */}}
{{- define "granite-batch.rayJobSpec" -}}
{{- $root := . -}}
entrypoint: granite-batch {{ (default dict .Values.job.schedule).command | default "run" }} --config /etc/granite-batch/job.yaml
shutdownAfterJobFinishes: {{ .Values.rayJob.shutdownAfterJobFinishes }}
ttlSecondsAfterFinished: {{ .Values.rayJob.ttlSecondsAfterFinished }}
activeDeadlineSeconds: {{ .Values.rayJob.activeDeadlineSeconds }}
backoffLimit: {{ .Values.rayJob.backoffLimit }}
submissionMode: K8sJobMode
submitterPodTemplate:
  metadata:
    labels:
      {{- include "granite-batch.labels" . | nindent 6 }}
      app.kubernetes.io/component: submitter
  spec:
    restartPolicy: Never
    {{- include "granite-batch.podSpecCommon" . | nindent 4 }}
    containers:
      - name: submitter
        image: {{ include "granite-batch.image" .Values.image.cpu }}
        imagePullPolicy: {{ .Values.image.cpu.pullPolicy }}
        securityContext:
          {{- toYaml .Values.securityContext | nindent 10 }}
        resources:
          {{- toYaml .Values.launcher.resources | nindent 10 }}
        env:
          {{- include "granite-batch.env" . | nindent 10 }}
        volumeMounts:
          {{- include "granite-batch.volumeMounts" . | nindent 10 }}
rayClusterSpec:
  rayVersion: {{ .Values.rayVersion | quote }}
  {{- if .Values.rayAuth.enabled }}
  # Ray token authentication (KubeRay 1.5.1+, Ray 2.52+): KubeRay sets the token on every Ray
  # container and the job submitter, from this Secret or from one it generates.
  authOptions:
    mode: token
    {{- with .Values.rayAuth.secretName }}
    secretName: {{ . }}
    {{- end }}
  {{- end }}
  enableInTreeAutoscaling: true
  autoscalerOptions:
    upscalingMode: {{ .Values.autoscaler.upscalingMode }}
    idleTimeoutSeconds: {{ .Values.autoscaler.idleTimeoutSeconds }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    resources:
      requests: {cpu: 200m, memory: 512Mi}
      limits: {cpu: 500m, memory: 512Mi}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: home, mountPath: /home/ray}
  headGroupSpec:
    rayStartParams:
      num-cpus: {{ .Values.head.rayCpus | quote }}
      dashboard-host: "0.0.0.0"
    template:
      metadata:
        labels:
          {{- include "granite-batch.labels" . | nindent 10 }}
          app.kubernetes.io/component: head
      spec:
        {{- include "granite-batch.podSpecCommon" . | replace "automountServiceAccountToken: false" "automountServiceAccountToken: true  # the autoscaler sidecar talks to the API" | nindent 8 }}
        {{- with .Values.head.nodeSelector }}
        nodeSelector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.head.tolerations }}
        tolerations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        containers:
          {{- $ports := list (dict "name" "gcs" "containerPort" 6379) (dict "name" "dashboard" "containerPort" 8265) (dict "name" "client" "containerPort" 10001) }}
          {{- include "granite-batch.rayContainer" (dict "root" $root "image" .Values.image.cpu "resources" .Values.head.resources "ports" $ports) | nindent 10 }}
  workerGroupSpecs:
    {{- if .Values.workers.gpu.enabled }}
    - groupName: gpu
      replicas: {{ .Values.workers.gpu.minReplicas }}
      minReplicas: {{ .Values.workers.gpu.minReplicas }}
      maxReplicas: {{ .Values.workers.gpu.maxReplicas }}
      rayStartParams:
        num-gpus: {{ .Values.workers.gpu.gpusPerWorker | quote }}
      template:
        metadata:
          labels:
            {{- include "granite-batch.labels" . | nindent 12 }}
            app.kubernetes.io/component: gpu-worker
        spec:
          {{- include "granite-batch.podSpecCommon" . | nindent 10 }}
          {{- with .Values.workers.gpu.nodeSelector }}
          nodeSelector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .Values.workers.gpu.tolerations }}
          tolerations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          containers:
            {{- include "granite-batch.rayContainer" (dict "root" $root "image" .Values.image.gpu "resources" .Values.workers.gpu.resources) | nindent 12 }}
    {{- end }}
    {{- if .Values.workers.cpu.enabled }}
    - groupName: cpu
      replicas: {{ .Values.workers.cpu.minReplicas }}
      minReplicas: {{ .Values.workers.cpu.minReplicas }}
      maxReplicas: {{ .Values.workers.cpu.maxReplicas }}
      rayStartParams:
        # CPU engines ask for this resource, so they never land on a CUDA-only image.
        resources: '"{\"vllm_cpu\": 1}"'
      template:
        metadata:
          labels:
            {{- include "granite-batch.labels" . | nindent 12 }}
            app.kubernetes.io/component: cpu-worker
        spec:
          {{- include "granite-batch.podSpecCommon" . | nindent 10 }}
          {{- with .Values.workers.cpu.nodeSelector }}
          nodeSelector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .Values.workers.cpu.tolerations }}
          tolerations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          containers:
            {{- include "granite-batch.rayContainer" (dict "root" $root "image" .Values.image.cpu "resources" .Values.workers.cpu.resources) | nindent 12 }}
    {{- end }}
{{- end }}

{{/* The PromQL label matchers of this release's metrics: the Pushgateway group its runs push to. */}}
{{- define "granite-batch.metricsSelector" -}}
{{- $m := default dict .Values.job.metrics }}
{{- $g := default dict $m.grouping -}}
job="{{ default "granite-batch" $m.job }}", job_file="{{ default (include "granite-batch.fullname" .) $g.job_file }}"
{{- end }}
