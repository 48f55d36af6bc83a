//! How the client watch holds a vLLM pod wired to an engine (rollouts.md §4): its identity, node,
//! start time and the engines it is wired to — decoded straight from the JSON, so the rest of a
//! user's pod (containers, env, volumes of other kinds, annotations of other tools) is skipped
//! by the decoder instead of being built and dropped.
//!
//! A pod is a client of engine S/N when it is in namespace S and carries
//! `lmcache.ai/lmcache-injected: "true"` with `lmcache.ai/lmcache-engine: N` (the connection
//! webhook; LMCacheEngines), or `lmcache.ai/cacheblend-injected: "true"` with
//! `lmcache.ai/cacheblend-engine: N` (the CacheBlend webhook; CacheBlendEngines), or mounts the
//! ConfigMap `N-connection` (either kind: wired by hand or by another tool).

use crate::keys::Kind;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use lmcache_api::constants::annotations;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;

/// Suffix of an engine's connection ConfigMap (`<engine>-connection`).
const CONNECTION_SUFFIX: &str = "-connection";

/// One way a pod is wired to an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wiring {
    /// Injected by the connection webhook for the LMCacheEngine of this name.
    Connection(String),
    /// Injected by the CacheBlend webhook for the CacheBlendEngine of this name.
    Blend(String),
    /// Mounts the connection ConfigMap of the engine of this name (either kind).
    ConfigMap(String),
}

/// A pod as the client watch keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientPod {
    /// Name, namespace, uid, resourceVersion (the watcher resumes from it) and the deletion
    /// timestamp.
    metadata: ObjectMeta,
    /// `spec.nodeName` ("" before scheduling).
    pub node_name: String,
    /// `status.startTime`, else `metadata.creationTimestamp`.
    pub started: Option<Time>,
    /// `status.phase` is `Succeeded` or `Failed`.
    pub finished: bool,
    /// The engines it is wired to (empty: not a client of any).
    pub wiring: Vec<Wiring>,
}

impl ClientPod {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or_default()
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or_default()
    }

    /// Neither terminating nor finished: worth restarting.
    pub fn is_live(&self) -> bool {
        self.metadata.deletion_timestamp.is_none() && !self.finished
    }

    /// Wired to the engine `name` of `kind` (in the pod's own namespace).
    pub fn is_client_of(&self, kind: Kind, name: &str) -> bool {
        self.wiring.iter().any(|w| match w {
            Wiring::Connection(n) => kind == Kind::Engine && n == name,
            Wiring::Blend(n) => kind == Kind::BlendEngine && n == name,
            Wiring::ConfigMap(n) => kind != Kind::Coordinator && n == name,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    annotations: WebhookAnnotations,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    node_name: Option<String>,
    #[serde(default)]
    volumes: Vec<RawVolume>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVolume {
    config_map: Option<RawConfigMapSource>,
}

#[derive(Deserialize)]
struct RawConfigMapSource {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    start_time: Option<Time>,
    phase: Option<String>,
}

#[derive(Deserialize)]
struct RawPod {
    #[serde(default)]
    metadata: RawMeta,
    #[serde(default)]
    spec: Option<RawSpec>,
    #[serde(default)]
    status: Option<RawStatus>,
}

/// The four webhook annotations; every other annotation is skipped unread.
#[derive(Default)]
struct WebhookAnnotations {
    lmcache_injected: bool,
    lmcache_engine: Option<String>,
    cacheblend_injected: bool,
    cacheblend_engine: Option<String>,
}

impl<'de> Deserialize<'de> for WebhookAnnotations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keep;
        impl<'de> Visitor<'de> for Keep {
            type Value = WebhookAnnotations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(WebhookAnnotations::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = WebhookAnnotations::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        annotations::LMCACHE_INJECTED => {
                            out.lmcache_injected = map.next_value::<String>()? == "true";
                        }
                        annotations::LMCACHE_ENGINE => out.lmcache_engine = Some(map.next_value()?),
                        annotations::CACHEBLEND_INJECTED => {
                            out.cacheblend_injected = map.next_value::<String>()? == "true";
                        }
                        annotations::CACHEBLEND_ENGINE => out.cacheblend_engine = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_any(Keep)
    }
}

impl From<RawPod> for ClientPod {
    fn from(raw: RawPod) -> Self {
        let RawPod {
            metadata: meta,
            spec,
            status,
        } = raw;
        let spec = spec.unwrap_or_default();
        let status = status.unwrap_or_default();
        let found = meta.annotations;
        let mut wiring = Vec::new();
        if found.lmcache_injected
            && let Some(engine) = found.lmcache_engine
        {
            wiring.push(Wiring::Connection(engine));
        }
        if found.cacheblend_injected
            && let Some(engine) = found.cacheblend_engine
        {
            wiring.push(Wiring::Blend(engine));
        }
        for volume in spec.volumes {
            if let Some(engine) = volume
                .config_map
                .and_then(|c| c.name)
                .and_then(|n| n.strip_suffix(CONNECTION_SUFFIX).map(str::to_string))
                .filter(|n| !n.is_empty())
            {
                wiring.push(Wiring::ConfigMap(engine));
            }
        }
        Self {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                deletion_timestamp: meta.deletion_timestamp,
                ..ObjectMeta::default()
            },
            node_name: spec.node_name.unwrap_or_default(),
            started: status.start_time.or(meta.creation_timestamp),
            finished: crate::cached_pod::finished(status.phase.as_deref()),
            wiring,
        }
    }
}

impl<'de> Deserialize<'de> for ClientPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawPod::deserialize(deserializer).map(Self::from)
    }
}

crate::cached_pod::pod_view_resource!(ClientPod);

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    fn decode(value: serde_json::Value) -> ClientPod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn keeps_identity_node_start_and_wiring_only() {
        let pod = decode(json!({
            "metadata": {"name": "vllm-0", "namespace": "team-a", "uid": "u1", "resourceVersion": "7",
                         "creationTimestamp": "2026-12-01T09:59:00Z",
                         "labels": {"app": "vllm"},
                         "annotations": {"lmcache.ai/lmcache-injected": "true", "lmcache.ai/lmcache-engine": "cache",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": 1}",
                                         "other": "x"},
                         "managedFields": [{"manager": "m"}]},
            "spec": {"nodeName": "gpu-node-0", "containers": [{"name": "vllm", "image": "i"}],
                     "volumes": [{"name": "a", "emptyDir": {}},
                                 {"name": "b", "configMap": {"name": "other-connection"}},
                                 {"name": "c", "configMap": {"name": "settings"}}]},
            "status": {"phase": "Running", "startTime": "2026-12-01T10:00:00Z"}
        }));
        assert_eq!(
            (pod.name(), pod.namespace(), pod.uid()),
            ("vllm-0", "team-a", "u1")
        );
        assert_eq!(pod.meta().resource_version.as_deref(), Some("7"));
        assert!(pod.meta().labels.is_none() && pod.meta().annotations.is_none());
        assert_eq!(pod.node_name, "gpu-node-0");
        assert_eq!(pod.started.as_ref().map(|t| t.0.as_second()), Some(1_796_119_200));
        assert_eq!(
            pod.wiring,
            [
                Wiring::Connection("cache".into()),
                Wiring::ConfigMap("other".into())
            ]
        );
        assert!(pod.is_live());
        assert!(pod.is_client_of(Kind::Engine, "cache"));
        assert!(
            !pod.is_client_of(Kind::BlendEngine, "cache"),
            "the connection webhook wires LMCacheEngines"
        );
        assert!(
            pod.is_client_of(Kind::BlendEngine, "other"),
            "a mounted ConfigMap wires either kind"
        );
        assert!(!pod.is_client_of(Kind::Engine, "settings"));
    }

    #[test]
    fn an_annotation_without_injected_true_is_not_a_client() {
        let pod = decode(json!({
            "metadata": {"name": "p", "namespace": "n",
                         "annotations": {"lmcache.ai/lmcache-engine": "cache",
                                         "lmcache.ai/cacheblend-injected": "false",
                                         "lmcache.ai/cacheblend-engine": "blend"}},
            "status": {"phase": "Pending"}
        }));
        assert!(pod.wiring.is_empty());
        let blend = decode(json!({
            "metadata": {"name": "p", "namespace": "n", "creationTimestamp": "2026-12-01T10:00:00Z",
                         "annotations": {"lmcache.ai/cacheblend-injected": "true",
                                         "lmcache.ai/cacheblend-engine": "blend"}}
        }));
        assert!(blend.is_client_of(Kind::BlendEngine, "blend") && !blend.is_client_of(Kind::Engine, "blend"));
        assert_eq!(
            blend.started.map(|t| t.0.as_second()),
            Some(1_796_119_200),
            "creation time without a start time"
        );
    }

    #[test]
    fn terminating_and_finished_pods_are_not_live() {
        let terminating =
            decode(json!({"metadata": {"name": "p", "deletionTimestamp": "2026-12-01T10:00:00Z"}}));
        let finished = decode(json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}));
        let null_annotations = decode(json!({"metadata": {"name": "p", "annotations": null}}));
        assert!(!terminating.is_live() && !finished.is_live() && null_annotations.is_live());
    }
}
