{{/* Name of the chart, overridable by nameOverride. */}}
{{- define "runnel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: <release>-runnel, or the release name when it
already contains the chart name. */}}
{{- define "runnel.fullname" -}}
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

{{- define "runnel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels selecting the operator pods; stable across upgrades. */}}
{{- define "runnel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runnel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every object of the chart. */}}
{{- define "runnel.labels" -}}
helm.sh/chart: {{ include "runnel.chart" . }}
{{ include "runnel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: runnel
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "runnel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runnel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest, else repository:tag (tag = appVersion). */}}
{{- define "runnel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "runnel.leaseName" -}}
{{- default (include "runnel.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
What the operator does to the API, and nothing more. Each rule names the code that
needs it (operator/src/...). Server-side apply of an object that does not exist yet is
authorized as `create`, so applied children need both `create` and `patch`.
*/}}
{{- define "runnel.rules" -}}
# Controllers watch the three kinds (controller/*.rs); Topic and ConsumerGroup read
# their KafkaCluster (context.rs).
- apiGroups: ["runnel.dev"]
  resources: ["kafkaclusters", "topics", "consumergroups"]
  verbs: ["get", "list", "watch"]
# Status by server-side apply (controller/mod.rs apply_status, kafkacluster.rs).
- apiGroups: ["runnel.dev"]
  resources: ["kafkaclusters/status", "topics/status", "consumergroups/status"]
  verbs: ["patch"]
# The Topic finalizer is added and removed by patching the Topic (controller/topic.rs).
- apiGroups: ["runnel.dev"]
  resources: ["topics"]
  verbs: ["patch"]
# Children carry a controller ownerReference with blockOwnerDeletion, which needs
# `update` on the owner's finalizers subresource where OwnerReferencesPermissionEnforcement
# is on (e.g. OpenShift).
- apiGroups: ["runnel.dev"]
  resources: ["kafkaclusters/finalizers"]
  verbs: ["update"]
# The children of a KafkaCluster: applied, and watched through Controller::owns
# (controller/kafkacluster.rs); the StatefulSet is also read before a scale-down.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch"]
# The optional per-cluster ServiceMonitor: applied only (resources/servicemonitor.rs).
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["create", "patch"]
# Broker pods are listed to derive the status (controller/kafkacluster.rs) and deleted,
# one at a time, by the gated rolling restart of the OnDelete StatefulSet
# (controller/kafkacluster/restart.rs).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "delete"]
# Events: an error only a spec edit can fix becomes a Warning Event on the object
# (context.rs publish_warning): kube's Recorder creates an events.k8s.io/v1 Event and
# patches its series count on repeats.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
