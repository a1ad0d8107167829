{{/*
Chart name, truncated to 63 characters (the DNS label limit of resource names).
*/}}
{{- define "vpsie-autoscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release name, plus the chart name unless the release name already contains it.
*/}}
{{- define "vpsie-autoscaler.fullname" -}}
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
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "vpsie-autoscaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "vpsie-autoscaler.labels" -}}
helm.sh/chart: {{ include "vpsie-autoscaler.chart" . }}
{{ include "vpsie-autoscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: vpsie-autoscaler
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels. Never add to these: a Deployment's selector is immutable.
*/}}
{{- define "vpsie-autoscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpsie-autoscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "vpsie-autoscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vpsie-autoscaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the VPSie credentials (created by the chart or existing).
*/}}
{{- define "vpsie-autoscaler.credentialsSecretName" -}}
{{- if .Values.vpsie.existingSecret }}
{{- .Values.vpsie.existingSecret }}
{{- else }}
{{- printf "%s-vpsie" (include "vpsie-autoscaler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Name of the leader election Lease (the controller's default when unset).
*/}}
{{- define "vpsie-autoscaler.leaseName" -}}
{{- default "vpsie-autoscaler" .Values.leaderElection.id }}
{{- end }}

{{/*
Image reference: repository, tag (default appVersion) and optional digest.
*/}}
{{- define "vpsie-autoscaler.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Pod affinity: `.Values.affinity` where a pod (anti-)affinity term without a labelSelector selects
this release's pods (the selector labels), like the topology spread constraints. With one replica
the required anti-affinity is dropped: there is nothing to keep apart, and it would keep the surge
pod of a rolling update off the only eligible node.
*/}}
{{- define "vpsie-autoscaler.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- $selector := dict "matchLabels" (include "vpsie-autoscaler.selectorLabels" . | fromYaml) }}
{{- if and (le (int .Values.replicaCount) 1) (hasKey $affinity "podAntiAffinity") }}
{{- $_ := unset (get $affinity "podAntiAffinity") "requiredDuringSchedulingIgnoredDuringExecution" }}
{{- if not (get $affinity "podAntiAffinity") }}
{{- $_ := unset $affinity "podAntiAffinity" }}
{{- end }}
{{- end }}
{{- range $kind := list "podAffinity" "podAntiAffinity" }}
{{- with get $affinity $kind }}
{{- range (get . "requiredDuringSchedulingIgnoredDuringExecution" | default list) }}
{{- if not .labelSelector }}{{ $_ := set . "labelSelector" $selector }}{{ end }}
{{- end }}
{{- range (get . "preferredDuringSchedulingIgnoredDuringExecution" | default list) }}
{{- if and .podAffinityTerm (not .podAffinityTerm.labelSelector) }}{{ $_ := set .podAffinityTerm "labelSelector" $selector }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $affinity }}
{{- toYaml $affinity }}
{{- end }}
{{- end }}

{{/*
Proxy environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) when a proxy is set. The Kubernetes client
honours these variables too, so the API server always bypasses the proxy: its Service IP
(`$(KUBERNETES_SERVICE_HOST)`, expanded by the kubelet) and in-cluster names.
*/}}
{{- define "vpsie-autoscaler.proxyEnv" -}}
{{- with .Values.proxy }}
{{- if or .httpsProxy .httpProxy }}
{{- if .httpsProxy }}
- name: HTTPS_PROXY
  value: {{ .httpsProxy | quote }}
{{- end }}
{{- if .httpProxy }}
- name: HTTP_PROXY
  value: {{ .httpProxy | quote }}
{{- end }}
{{- $noProxy := list "$(KUBERNETES_SERVICE_HOST)" "kubernetes.default.svc" ".svc" ".cluster.local" "127.0.0.1" "localhost" }}
{{- if .noProxy }}
{{- $noProxy = concat $noProxy (splitList "," (.noProxy | nospace)) }}
{{- end }}
- name: NO_PROXY
  value: {{ join "," $noProxy | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Settings that cannot work together fail the render with a message instead of a broken install.
*/}}
{{- define "vpsie-autoscaler.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "leaderElection.enabled=false needs replicaCount: 1 (two active controllers would both create and delete nodes)" }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
{{- if not (gt (int .Values.leaderElection.leaseDuration) (int .Values.leaderElection.renewDeadline)) }}
{{- fail "leaderElection.leaseDuration must be greater than leaderElection.renewDeadline" }}
{{- end }}
{{- if not (gt (mul (int .Values.leaderElection.renewDeadline) 10) (mul (int .Values.leaderElection.retryPeriod) 12)) }}
{{- fail "leaderElection.renewDeadline must be greater than 1.2 x leaderElection.retryPeriod (client-go's rule)" }}
{{- end }}
{{- end }}
{{- with .Values.vpsie.credentials }}
{{- if and (not $.Values.vpsie.existingSecret) (or .clientId .clientSecret) (not (and .clientId .clientSecret)) }}
{{- fail "vpsie.credentials needs both clientId and clientSecret (or apiToken alone)" }}
{{- end }}
{{- if and (not $.Values.vpsie.existingSecret) .apiToken (or .clientId .clientSecret) }}
{{- fail "vpsie.credentials: set either clientId + clientSecret or apiToken, not both (the controller refuses a Secret holding both)" }}
{{- end }}
{{- end }}
{{- end }}
