//! Every string the cluster sees: group, labels, annotations, condition types and reasons.

/// API group of the three kinds.
pub const GROUP: &str = "lmcache.lmcache.ai";
/// The only served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the three kinds.
pub const API_VERSION: &str = "lmcache.lmcache.ai/v1alpha1";

/// Kind names.
pub const KIND_ENGINE: &str = "LMCacheEngine";
/// Kind name of the CacheBlend engine.
pub const KIND_BLEND_ENGINE: &str = "CacheBlendEngine";
/// Kind name of the coordinator.
pub const KIND_COORDINATOR: &str = "LMCacheCoordinator";

/// Standard label keys (the first three are the selector labels).
pub mod labels {
    /// `app.kubernetes.io/name`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the custom resource's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// `app.kubernetes.io/component`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// The selector labels: what the workloads and Services select and (`managed-by`) what the
    /// operator's caches of its children select. A user's labels never override them.
    pub const SELECTOR: [&str; 3] = [NAME, INSTANCE, MANAGED_BY];

    /// Value of `managed-by` on every object the operator creates.
    pub const MANAGED_BY_VALUE: &str = "lmcache-operator";
    /// Value of `name` on engine children.
    pub const ENGINE_NAME_VALUE: &str = "lmcache";
    /// Value of `name` on coordinator children.
    pub const COORDINATOR_NAME_VALUE: &str = "lmcache-coordinator";
    /// Value of `component` on engine children.
    pub const ENGINE_COMPONENT_VALUE: &str = "cache-engine";
    /// Value of `component` on coordinator children.
    pub const COORDINATOR_COMPONENT_VALUE: &str = "coordinator";

    /// Pod label that opts a vLLM pod into CacheBlend injection.
    pub const CACHEBLEND_INJECT: &str = "lmcache.ai/cacheblend-inject";
    /// Pod label that opts a vLLM pod into the LMCache connection (KServe's documented key).
    pub const LMCACHE_INJECT: &str = "lmcache.ai/lmcache-inject";
}

/// Pod annotation keys read or written by the two webhooks.
pub mod annotations {
    /// Names the LMCacheEngine (same namespace) a pod binds to.
    pub const LMCACHE_ENGINE: &str = "lmcache.ai/lmcache-engine";
    /// Overrides the engine's `injection.targetContainer`.
    pub const LMCACHE_CONTAINER: &str = "lmcache.ai/lmcache-container";
    /// Set to `"true"` on wired pods; also the idempotency guard.
    pub const LMCACHE_INJECTED: &str = "lmcache.ai/lmcache-injected";
    /// Why a pod was not wired (one of [`super::skip_reasons`]).
    pub const LMCACHE_SKIP_REASON: &str = "lmcache.ai/lmcache-skip-reason";
    /// Names the CacheBlendEngine (same namespace) a pod binds to.
    pub const CACHEBLEND_ENGINE: &str = "lmcache.ai/cacheblend-engine";
    /// Overrides the engine's `injection.targetContainer`.
    pub const CACHEBLEND_CONTAINER: &str = "lmcache.ai/cacheblend-container";
    /// Set to `"true"` on injected pods; also the idempotency guard.
    pub const CACHEBLEND_INJECTED: &str = "lmcache.ai/cacheblend-injected";
    /// Why a pod was not injected (one of [`super::skip_reasons`]).
    pub const CACHEBLEND_SKIP_REASON: &str = "lmcache.ai/cacheblend-skip-reason";
}

/// Values of the `lmcache.ai/cacheblend-skip-reason` and `lmcache.ai/lmcache-skip-reason`
/// annotations, in precedence order (`payload-image-unset` is the CacheBlend webhook's only).
pub mod skip_reasons {
    /// No engine of that name (and kind) in the pod's namespace.
    pub const ENGINE_NOT_FOUND: &str = "engine-not-found";
    /// The engine has no payload image repository.
    pub const PAYLOAD_IMAGE_UNSET: &str = "payload-image-unset";
    /// The target container does not exist.
    pub const TARGET_CONTAINER_NOT_FOUND: &str = "target-container-not-found";
    /// The target container overrides `command`.
    pub const COMMAND_OVERRIDE: &str = "command-override";
    /// The target container already passes `--kv-transfer-config`.
    pub const KV_TRANSFER_CONFIG_PRESENT: &str = "kv-transfer-config-present";
}

/// Condition types.
pub mod conditions {
    /// At least one instance is ready.
    pub const AVAILABLE: &str = "Available";
    /// Every desired instance is ready.
    pub const ALL_INSTANCES_READY: &str = "AllInstancesReady";
    /// Every desired engine instance runs the DaemonSet's current pod template (engines only,
    /// after `AllInstancesReady`).
    pub const UP_TO_DATE: &str = "UpToDate";
    /// The spec passed validation and is usable.
    pub const CONFIG_VALID: &str = "ConfigValid";
    /// Summary, last in the list: `True` exactly when the phase is `Running`
    /// (`kubectl wait --for=condition=Ready`).
    pub const READY: &str = "Ready";
}

/// Condition reasons (also used as Event reasons where they match).
pub mod reasons {
    /// `Available=True`.
    pub const AT_LEAST_ONE_READY: &str = "AtLeastOneReady";
    /// `Available=False` for engines.
    pub const NO_READY_INSTANCES: &str = "NoReadyInstances";
    /// `Available=False` for coordinators.
    pub const NO_READY_REPLICAS: &str = "NoReadyReplicas";
    /// `AllInstancesReady=True`.
    pub const ALL_READY: &str = "AllReady";
    /// `AllInstancesReady=False`.
    pub const NOT_ALL_READY: &str = "NotAllReady";
    /// `ConfigValid=True`.
    pub const VALID: &str = "Valid";
    /// `ConfigValid=False`: a validation rule failed.
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// `ConfigValid=False`: `coordinator.ref` names a missing coordinator.
    pub const COORDINATOR_NOT_FOUND: &str = "CoordinatorNotFound";
    /// `ConfigValid=False`: a child name is taken by an object this CR does not control.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// Event: ServiceMonitor wanted but the API is not served.
    pub const SERVICE_MONITOR_UNAVAILABLE: &str = "ServiceMonitorUnavailable";
    /// `Ready=True`.
    pub const RUNNING: &str = "Running";
    /// `Ready=False`: nothing is desired yet (no matching node, or 0 replicas).
    pub const PENDING: &str = "Pending";
    /// `Ready=False` and Warning Event: the API server rejected a child.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Event: `extraArgs` move a listener the probes and Services are rendered for.
    pub const EXTRA_ARGS_OVERRIDE: &str = "ExtraArgsOverride";
    /// Event: a coordinator sets blend-directory tunables while `blendLookup` is false.
    pub const BLEND_LOOKUP_DISABLED: &str = "BlendLookupDisabled";
    /// Event: `serviceMonitor.labels` sets a selector label, which the operator's value wins.
    pub const SELECTOR_LABELS_IGNORED: &str = "SelectorLabelsIgnored";
    /// `ConfigValid=True` message.
    pub const VALID_MESSAGE: &str = "Spec validation passed";
    /// `UpToDate=True`.
    pub const CURRENT: &str = "Current";
    /// `UpToDate=False` with `RollingUpdate`: the DaemonSet is replacing outdated pods.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// `UpToDate=False` with `OnDelete`: outdated pods wait to be deleted.
    pub const ROLLOUT_PENDING: &str = "RolloutPending";
    /// Event: applying the DaemonSet changed its pod template.
    pub const ROLLOUT_STARTED: &str = "RolloutStarted";
    /// Event: `UpToDate` turned `True` after a rollout.
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    /// Event: client pods on a node were evicted after its engine pod was replaced
    /// (`updateStrategy.restartClients`).
    pub const CLIENTS_RESTARTED: &str = "ClientsRestarted";
    /// Warning Event: the Eviction API refused to evict a client pod (a PodDisruptionBudget);
    /// retried with a backoff.
    pub const CLIENT_RESTART_BLOCKED: &str = "ClientRestartBlocked";
    /// Warning Event (on the pod and its engine): a pod opted into a webhook was admitted
    /// without it.
    pub const INJECTION_MISSED: &str = "InjectionMissed";
    /// Event: a missed pod was evicted so its controller recreates it through the webhook
    /// (`injection.repairMissed`).
    pub const MISSED_INJECTION_REPAIRED: &str = "MissedInjectionRepaired";
    /// Warning Event: the Eviction API refused to evict a missed pod; retried.
    pub const MISSED_INJECTION_REPAIR_BLOCKED: &str = "MissedInjectionRepairBlocked";
}

/// Phase values.
pub mod phases {
    /// Valid spec; no ready instance yet.
    pub const PENDING: &str = "Pending";
    /// All desired instances ready.
    pub const RUNNING: &str = "Running";
    /// Some, not all, desired instances ready.
    pub const DEGRADED: &str = "Degraded";
    /// The spec is not usable.
    pub const FAILED: &str = "Failed";
}

/// Name of the data key of the connection ConfigMap.
pub const CONNECTION_CONFIG_KEY: &str = "kv-transfer-config.json";
/// Suffix of the connection ConfigMap's name.
pub const CONNECTION_SUFFIX: &str = "-connection";
/// Suffix of the headless metrics Service's name.
pub const METRICS_SUFFIX: &str = "-metrics";
/// Default cluster DNS domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
