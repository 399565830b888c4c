{{/* The text of NOTES.txt, as a named template so tests can render it (helm template skips NOTES). */}}
{{- define "granite-batch.notes" -}}
granite-batch {{ .Chart.AppVersion }}: {{ .Values.job.input.uri }} -> {{ .Values.job.output.uri }}
{{- $mode := include "granite-batch.schedule" . }}
{{- $name := include "granite-batch.fullname" . }}
{{ if eq $mode "once" }}
A one-off RayJob `{{ $name }}` was created. Follow it:

  kubectl -n {{ .Release.Namespace }} get rayjob {{ $name }} -w
  kubectl -n {{ .Release.Namespace }} logs -f job/{{ $name }}        # the run's progress lines
  granite-batch status {{ .Release.Name }} --namespace {{ .Release.Namespace }}
{{- else if eq $mode "raycronjob" }}
A RayCronJob `{{ $name }}` runs on "{{ .Values.job.schedule.cron }}" ({{ default "Etc/UTC" .Values.job.schedule.time_zone }}).
It needs KubeRay >= 1.6 with the feature gate RayCronJob=true; otherwise use job.schedule.mode=cronjob.

  kubectl -n {{ .Release.Namespace }} get raycronjob {{ $name }}
  kubectl -n {{ .Release.Namespace }} get rayjobs -l app.kubernetes.io/instance={{ .Release.Name }}
  granite-batch status {{ .Release.Name }} --namespace {{ .Release.Namespace }}
{{- else }}
A CronJob `{{ $name }}` creates a RayJob on "{{ .Values.job.schedule.cron }}" ({{ default "Etc/UTC" .Values.job.schedule.time_zone }}).

  kubectl -n {{ .Release.Namespace }} get cronjob {{ $name }}
  kubectl -n {{ .Release.Namespace }} get rayjobs -l app.kubernetes.io/instance={{ .Release.Name }}
  granite-batch status {{ .Release.Name }} --namespace {{ .Release.Namespace }}
{{- end }}

Results: {{ .Values.job.output.uri }}segments/ (Parquet, partitioned by date=YYYY-MM-DD), one row per
recording per run in recordings/, and a manifest per run in runs/.
{{- end }}
