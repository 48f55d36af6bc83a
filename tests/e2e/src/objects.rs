//! The operator's custom resources and their children as JSON, read and written through one
//! namespace-bound handle, plus readers for the fields the behaviour tests compare.

use crate::crd::{API_VERSION, Kind};
use crate::namespace::TempNamespace;
use crate::{Cluster, TIMEOUT, wait};
use anyhow::{Context, bail};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;

/// The label on every namespace the harness creates.
pub use crate::namespace::E2E_LABEL as E2E_NAMESPACE_LABEL;

/// The kinds the operator tests read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Res {
    DaemonSet,
    Deployment,
    Service,
    ConfigMap,
    ServiceMonitor,
    Pod,
    Event,
    Cr(Kind),
}

impl Res {
    fn gvk_plural(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Res::DaemonSet => ("apps", "v1", "DaemonSet", "daemonsets"),
            Res::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Res::Service => ("", "v1", "Service", "services"),
            Res::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Res::ServiceMonitor => ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
            Res::Pod => ("", "v1", "Pod", "pods"),
            Res::Event => ("", "v1", "Event", "events"),
            Res::Cr(kind) => ("lmcache.lmcache.ai", "v1alpha1", kind.kind(), kind.plural()),
        }
    }

    /// The dynamic API resource.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.gvk_plural();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// The Kind as printed in messages (`ConfigMap`, `LMCacheEngine`, ...).
    pub fn kind(self) -> &'static str {
        self.gvk_plural().2
    }
}

/// Reads and writes objects in one namespace.
#[derive(Clone)]
pub struct Scope {
    pub cluster: Cluster,
    pub ns: String,
}

/// A new namespace `<prefix>-<suffix>` and its scope, after checking that the shared operator
/// runs (a test of the operator fails at once, naming the missing process, otherwise).
pub async fn operator_scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    crate::settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

impl Scope {
    pub fn new(cluster: &Cluster, namespace: &TempNamespace) -> Self {
        Self {
            cluster: cluster.clone(),
            ns: namespace.name().to_string(),
        }
    }

    fn api(&self, res: Res) -> Api<DynamicObject> {
        Api::namespaced_with(self.cluster.client.clone(), &self.ns, &res.api_resource())
    }

    /// The object as JSON, `None` when it does not exist.
    pub async fn get(&self, res: Res, name: &str) -> anyhow::Result<Option<Value>> {
        let obj = self
            .api(res)
            .get_opt(name)
            .await
            .with_context(|| format!("getting {} {}/{name}", res.kind(), self.ns))?;
        obj.map(serde_json::to_value).transpose().map_err(Into::into)
    }

    /// The object as JSON; an error when it does not exist.
    pub async fn must_get(&self, res: Res, name: &str) -> anyhow::Result<Value> {
        match self.get(res, name).await? {
            Some(v) => Ok(v),
            None => bail!("{} {}/{name} does not exist", res.kind(), self.ns),
        }
    }

    /// Every object of `res` matching `labels` (a label selector, may be empty).
    pub async fn list(&self, res: Res, labels: &str) -> anyhow::Result<Vec<Value>> {
        let mut params = ListParams::default();
        if !labels.is_empty() {
            params = params.labels(labels);
        }
        let list = self.api(res).list(&params).await?;
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(Into::into))
            .collect()
    }

    /// `kubectl apply` of a custom resource (client-side apply, as users run it), so a later
    /// apply without a field removes it.
    pub async fn apply_cr(&self, kind: Kind, name: &str, spec: &Value) -> anyhow::Result<()> {
        self.cluster
            .kubectl
            .apply(&self.ns, &kind.manifest(name, spec))
            .await?
            .ok()
            .with_context(|| format!("applying {} {}/{name}", kind.kind(), self.ns))?;
        Ok(())
    }

    /// `kubectl apply` of any manifest (JSON or YAML) into this namespace.
    pub async fn apply_manifest(&self, manifest: &Value) -> anyhow::Result<()> {
        self.cluster
            .kubectl
            .apply(&self.ns, &manifest.to_string())
            .await?
            .ok()?;
        Ok(())
    }

    /// A JSON merge patch (RFC 7386).
    pub async fn merge_patch(&self, res: Res, name: &str, patch: &Value) -> anyhow::Result<Value> {
        let obj = self
            .api(res)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("merge-patching {} {}/{name}", res.kind(), self.ns))?;
        Ok(serde_json::to_value(obj)?)
    }

    /// A server-side apply of `obj` as field manager `manager` (another controller's view).
    pub async fn server_side_apply(
        &self,
        res: Res,
        name: &str,
        manager: &str,
        obj: &Value,
    ) -> anyhow::Result<Value> {
        let obj = self
            .api(res)
            .patch(name, &PatchParams::apply(manager), &Patch::Apply(obj))
            .await
            .with_context(|| format!("applying {} {}/{name} as {manager}", res.kind(), self.ns))?;
        Ok(serde_json::to_value(obj)?)
    }

    /// A JSON patch (RFC 6902) through kubectl, e.g. `[{"op":"remove","path":"/spec/x"}]`.
    pub async fn json_patch(&self, res: Res, name: &str, ops: &Value) -> anyhow::Result<()> {
        let (_, _, _, plural) = res.gvk_plural();
        let target = format!("{plural}/{name}");
        let ops = ops.to_string();
        self.kubectl(&["patch", &target, "--type=json", "-p", &ops])
            .await
            .with_context(|| format!("json-patching {target}"))?;
        Ok(())
    }

    /// Deletes the object (background propagation); a missing object is not an error.
    pub async fn delete(&self, res: Res, name: &str) -> anyhow::Result<()> {
        match self.api(res).delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {} {}/{name}", res.kind(), self.ns)),
        }
    }

    /// `kubectl <args> -n <ns>`; stdout on success.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.cluster.kubectl.run(&all).await?.ok()
    }

    /// Polls `probe` until it returns `Some`, for up to [`TIMEOUT`].
    pub async fn wait<T, F, Fut>(&self, what: &str, probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        wait::until(&format!("{what} (namespace {})", self.ns), TIMEOUT, probe).await
    }

    /// Waits until every named object of `res` exists; returns them in order.
    pub async fn wait_exist(&self, children: &[(Res, &str)]) -> anyhow::Result<Vec<Value>> {
        let what = children
            .iter()
            .map(|(r, n)| format!("{} {n}", r.kind()))
            .collect::<Vec<_>>()
            .join(", ");
        self.wait(&format!("{what} to exist"), || async {
            let mut out = Vec::new();
            for (res, name) in children {
                match self.get(*res, name).await? {
                    Some(v) => out.push(v),
                    None => return Ok(None),
                }
            }
            Ok(Some(out))
        })
        .await
    }

    /// Waits until none of the named objects exists.
    pub async fn wait_gone(&self, children: &[(Res, &str)]) -> anyhow::Result<()> {
        self.wait("objects to be deleted", || async {
            for (res, name) in children {
                if let Some(obj) = self.get(*res, name).await? {
                    bail!(
                        "{} {name} still exists (uid {})",
                        res.kind(),
                        obj["metadata"]["uid"]
                    );
                }
            }
            Ok(Some(()))
        })
        .await
    }

    /// Waits until the custom resource's status satisfies `check`; returns the whole object.
    pub async fn wait_status<F>(&self, kind: Kind, name: &str, what: &str, check: F) -> anyhow::Result<Value>
    where
        F: Fn(&Value) -> bool,
    {
        self.wait(&format!("{} {name}: {what}", kind.kind()), || async {
            let obj = self.must_get(Res::Cr(kind), name).await?;
            if check(&obj["status"]) {
                Ok(Some(obj))
            } else {
                bail!("status is {}", obj["status"])
            }
        })
        .await
    }

    /// Waits for `phase: Running` with `readyInstances == desiredInstances == n` and the
    /// status written for the current generation.
    pub async fn wait_running(&self, kind: Kind, name: &str, n: i64) -> anyhow::Result<Value> {
        self.wait(&format!("{} {name} Running {n}/{n}", kind.kind()), || async {
            let obj = self.must_get(Res::Cr(kind), name).await?;
            let s = &obj["status"];
            let counts = match kind {
                Kind::Coordinator => s["replicas"] == n && s["readyReplicas"] == n,
                _ => s["desiredInstances"] == n && s["readyInstances"] == n,
            };
            if s["phase"] == "Running" && counts && s["observedGeneration"] == obj["metadata"]["generation"] {
                Ok(Some(obj))
            } else {
                bail!("status is {s}")
            }
        })
        .await
    }

    /// Waits until the DaemonSet has rolled out its current template to `n` ready pods and its
    /// status no longer moves (so its resourceVersion is stable from here on).
    pub async fn wait_daemonset_settled(&self, name: &str, n: i64) -> anyhow::Result<Value> {
        self.wait(&format!("DaemonSet {name} settled at {n}"), || async {
            let ds = self.must_get(Res::DaemonSet, name).await?;
            let s = &ds["status"];
            let settled = s["observedGeneration"] == ds["metadata"]["generation"]
                && s["desiredNumberScheduled"] == n
                && s["currentNumberScheduled"] == n
                && s["updatedNumberScheduled"] == n
                && s["numberReady"] == n
                && s["numberAvailable"] == n;
            if settled {
                Ok(Some(ds))
            } else {
                bail!("status is {s}")
            }
        })
        .await
    }

    /// Events in this namespace about `name` with `reason`.
    pub async fn events(&self, name: &str, reason: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .list(Res::Event, "")
            .await?
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
            .collect())
    }

    /// Waits for an event about `name` with `reason`, `type_` and exactly `message`.
    pub async fn wait_event(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> anyhow::Result<Value> {
        self.wait(&format!("{type_} event {reason} on {name}"), || async {
            let events = self.events(name, reason).await?;
            match events
                .iter()
                .find(|e| e["type"] == type_ && e["message"] == message)
            {
                Some(e) => Ok(Some(e.clone())),
                None => bail!(
                    "events with reason {reason}: {:?}",
                    events.iter().map(|e| &e["message"]).collect::<Vec<_>>()
                ),
            }
        })
        .await
    }

    /// The namespace-qualified `kind/name` text the operator prints in messages.
    pub fn qualified(&self, name: &str) -> String {
        format!("{}/{name}", self.ns)
    }
}

/// The condition of `type_` in `status.conditions` (`Null` when absent).
pub fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The first container of a DaemonSet or Deployment pod template.
pub fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// The container args as strings.
pub fn args(workload: &Value) -> Vec<String> {
    strings(&container(workload)["args"])
}

/// A JSON array of strings as a vector (non-strings are skipped).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A `&[&str]` as owned strings, for comparing with [`args`].
pub fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `metadata.labels` as a map.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(&obj["metadata"]["labels"])
}

/// A JSON object of strings as a map.
pub fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.uid`.
pub fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap_or_default().to_string()
}

/// `metadata.resourceVersion`.
pub fn resource_version(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The selector labels of an object `name` of `app` (`lmcache` or `lmcache-coordinator`).
pub fn selector_labels(app: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), app.to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "lmcache-operator".to_string(),
        ),
    ])
}

/// The four standard labels of an engine (`cache-engine`) or coordinator (`coordinator`).
pub fn standard_labels(kind: Kind, name: &str) -> BTreeMap<String, String> {
    let (app, component) = match kind {
        Kind::Coordinator => ("lmcache-coordinator", "coordinator"),
        _ => ("lmcache", "cache-engine"),
    };
    let mut labels = selector_labels(app, name);
    labels.insert("app.kubernetes.io/component".to_string(), component.to_string());
    labels
}

/// Fails unless `child` has exactly one owner reference: the controller reference to `owner`
/// (kind, name and UID) with `blockOwnerDeletion: true`.
pub fn assert_controlled_by(child: &Value, kind: Kind, owner: &Value) -> anyhow::Result<()> {
    let refs = child["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let expected = json!([{
        "apiVersion": API_VERSION,
        "kind": kind.kind(),
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    if Value::Array(refs.clone()) != expected {
        bail!(
            "{} {}: ownerReferences {refs:?}, expected {expected}",
            child["kind"],
            child["metadata"]["name"]
        );
    }
    Ok(())
}

/// The UID of the controller owner reference (empty when there is none).
pub fn controller_uid(child: &Value) -> String {
    child["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .and_then(|r| r["uid"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The engine's children: DaemonSet `N`, Services `N` and `N-metrics`, ConfigMap
/// `N-connection`.
pub fn engine_children(name: &str) -> [(Res, String); 4] {
    [
        (Res::DaemonSet, name.to_string()),
        (Res::Service, name.to_string()),
        (Res::Service, format!("{name}-metrics")),
        (Res::ConfigMap, format!("{name}-connection")),
    ]
}

/// Borrowed form of [`engine_children`] for [`Scope::wait_exist`] and [`Scope::wait_gone`].
pub fn borrowed(children: &[(Res, String)]) -> Vec<(Res, &str)> {
    children.iter().map(|(r, n)| (*r, n.as_str())).collect()
}

/// The engine.md §6 connection JSON of an LMCacheEngine, byte for byte.
pub fn engine_connection_json(name: &str, ns: &str, port: u16) -> String {
    format!(
        "{{\n  \"kv_connector\": \"LMCacheMPConnector\",\n  \"kv_role\": \"kv_both\",\n  \
         \"kv_connector_extra_config\": {{\n    \"lmcache.mp.host\": \"tcp://{name}.{ns}.svc.cluster.local\",\n    \
         \"lmcache.mp.port\": \"{port}\"\n  }}\n}}"
    )
}

/// The args of a minimal engine (engine.md §3.7) with `port`.
pub fn minimal_engine_args(port: u16) -> Vec<String> {
    let port = port.to_string();
    owned(&[
        "--host",
        "0.0.0.0",
        "--port",
        &port,
        "--http-host",
        "0.0.0.0",
        "--http-port",
        "8080",
        "--l1-size-gb",
        "60",
        "--chunk-size",
        "256",
        "--max-workers",
        "1",
        "--hash-algorithm",
        "blake3",
        "--eviction-policy",
        "LRU",
        "--eviction-trigger-watermark",
        "0.8",
        "--eviction-ratio",
        "0.2",
        "--prometheus-port",
        "9090",
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_json_matches_the_spec_example() {
        let expected = r#"{
  "kv_connector": "LMCacheMPConnector",
  "kv_role": "kv_both",
  "kv_connector_extra_config": {
    "lmcache.mp.host": "tcp://my-cache.default.svc.cluster.local",
    "lmcache.mp.port": "5555"
  }
}"#;
        assert_eq!(engine_connection_json("my-cache", "default", 5555), expected);
    }

    #[test]
    fn owner_check_wants_exactly_the_controller_reference() {
        let owner = json!({"metadata": {"name": "e", "uid": "u1"}});
        let good = json!({"metadata": {"ownerReferences": [{
            "apiVersion": API_VERSION, "kind": "LMCacheEngine", "name": "e", "uid": "u1",
            "controller": true, "blockOwnerDeletion": true
        }]}});
        assert_controlled_by(&good, Kind::Engine, &owner).unwrap();
        assert_eq!(controller_uid(&good), "u1");
        assert!(assert_controlled_by(&good, Kind::BlendEngine, &owner).is_err());
        let other = json!({"metadata": {"name": "e", "uid": "u2"}});
        assert!(assert_controlled_by(&good, Kind::Engine, &other).is_err());
        assert!(assert_controlled_by(&json!({"metadata": {}}), Kind::Engine, &owner).is_err());
    }

    #[test]
    fn condition_and_args_readers() {
        let status = json!({"conditions": [{"type": "A", "status": "True"}]});
        assert_eq!(condition(&status, "A")["status"], "True");
        assert!(condition(&status, "B").is_null());
        let ds = json!({"spec": {"template": {"spec": {"containers": [{"args": ["--a", "1"]}]}}}});
        assert_eq!(args(&ds), owned(&["--a", "1"]));
        assert_eq!(minimal_engine_args(6555)[3], "6555");
    }
}
