{{/* Labels of every object's metadata: install.yaml's three and Helm's own. */}}
{{- define "lmcache-operator.labels" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/name: lmcache-operator
app.kubernetes.io/part-of: lmcache-operator
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{/* Pod selector of a component; never changes across upgrades (selectors are immutable). */}}
{{- define "lmcache-operator.selector" -}}
app.kubernetes.io/component: {{ . }}
app.kubernetes.io/name: lmcache-operator
{{- end }}

{{/* Pod template labels: install.yaml's, without Helm's (a chart upgrade does not roll pods). */}}
{{- define "lmcache-operator.podLabels" -}}
app.kubernetes.io/component: {{ . }}
app.kubernetes.io/name: lmcache-operator
app.kubernetes.io/part-of: lmcache-operator
{{- end }}

{{/* repository@digest, else repository:tag (default: the chart's appVersion). */}}
{{- define "lmcache-operator.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* Container settings both programs share: namespace from the downward API, probes, a
     read-only non-root container without capabilities. */}}
{{- /* POD_NAMESPACE and the allocator settings measured in docs/benchmarks.md ("Heap
profile"): one malloc arena per runtime thread, and glibc's mmap threshold pinned at 128 KiB so
large transient buffers are returned to the system when freed. */ -}}
{{- define "lmcache-operator.env" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: MALLOC_ARENA_MAX
  value: "2"
- name: MALLOC_MMAP_THRESHOLD_
  value: "131072"
{{- end }}

{{- define "lmcache-operator.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  initialDelaySeconds: 15
  periodSeconds: 20
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  initialDelaySeconds: 5
  periodSeconds: 10
{{- end }}

{{- define "lmcache-operator.adminPorts" -}}
- containerPort: 8080
  name: metrics
  protocol: TCP
- containerPort: 8081
  name: health
  protocol: TCP
{{- end }}

{{- define "lmcache-operator.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop:
      - ALL
  readOnlyRootFilesystem: true
  runAsGroup: 65532
  runAsNonRoot: true
  runAsUser: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "lmcache-operator.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* nodeSelector, tolerations, affinity and pull secrets of a component's pods, when set. */}}
{{- define "lmcache-operator.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Settings that cannot work together fail the render with a reason. */}}
{{- define "lmcache-operator.validate" -}}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection) -}}
{{- fail "controller.replicas > 1 needs controller.leaderElection: without it every replica reconciles" -}}
{{- end -}}
{{- if and .Values.webhook.enabled (eq .Values.webhook.tls.mode "files") -}}
{{- if or (not .Values.webhook.tls.secretName) (not .Values.webhook.tls.caBundle) -}}
{{- fail "webhook.tls.mode=files needs webhook.tls.secretName (tls.crt, tls.key) and webhook.tls.caBundle (base64 PEM of the CA)" -}}
{{- end -}}
{{- end -}}
{{- end }}
