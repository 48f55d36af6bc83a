//! Offline rendering: custom resources as multi-document YAML in, every object the operator
//! would create out. Pure; the operator binary only reads and writes the files.

use crate::{
    CoordinatorChildren, EngineChildren, RenderContext, coordinator_url, render_blend_engine,
    render_coordinator, render_engine,
};
use lmcache_api::constants::{API_VERSION, KIND_BLEND_ENGINE, KIND_COORDINATOR, KIND_ENGINE};
use lmcache_api::v1alpha1::{CacheBlendEngine, EngineSpec, LMCacheCoordinator, LMCacheEngine};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Namespace of input objects that name none (what `kubectl apply` would use by default).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Renders every object the operator would create for the custom resources in `input`
/// (multi-document YAML, any mix of the three kinds, defaults applied as the API server and the
/// operator would). Output: multi-document YAML, per custom resource in input order: workload,
/// Services, ConfigMap, ServiceMonitor. Objects without `metadata.namespace` go to `default`;
/// without `metadata.uid` no owner reference is rendered.
///
/// `coordinator.ref` must name an LMCacheCoordinator in the input (same namespace). On failure
/// every problem is reported, one line each, naming the object and the field path, e.g.
/// `LMCacheEngine default/my-cache: spec.l1.sizeGB: must be greater than 0`.
pub fn render_documents(input: &str, cluster_domain: &str) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let mut resources = Vec::new();
    for (number, doc) in parse_documents(input)? {
        match decode(number, doc) {
            Ok(resource) => resources.push(resource),
            Err(mut e) => errors.append(&mut e),
        }
    }
    check_duplicates(&resources, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }

    // coordinator.ref resolves within the input, in the engine's own namespace.
    let coordinators: BTreeMap<(String, String), String> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::Coordinator(c) => {
                let (ns, name) = (namespace_of(&c.metadata), name_of(&c.metadata));
                Some((
                    (ns.to_string(), name.to_string()),
                    coordinator_url(name, ns, c.spec.port),
                ))
            }
            _ => None,
        })
        .collect();

    let mut objects = Objects::default();
    for resource in &resources {
        let id = resource.id();
        let ctx = RenderContext::new(cluster_domain);
        let rendered = match resource {
            Resource::Engine(e) => resolve(&id, &e.metadata, &e.spec.engine, &coordinators, ctx)
                .and_then(|ctx| render_engine(e, &ctx).map_err(|err| vec![format!("{id}: {err}")]))
                .map(|children| objects.push_engine(&id, children)),
            Resource::Blend(e) => resolve(&id, &e.metadata, &e.spec.engine, &coordinators, ctx)
                .and_then(|ctx| render_blend_engine(e, &ctx).map_err(|err| vec![format!("{id}: {err}")]))
                .map(|children| objects.push_engine(&id, children)),
            Resource::Coordinator(c) => render_coordinator(c, &ctx)
                .map_err(|err| vec![format!("{id}: {err}")])
                .map(|children| objects.push_coordinator(&id, children)),
        };
        if let Err(mut e) = rendered {
            errors.append(&mut e);
        }
    }
    errors.append(&mut objects.errors);
    if errors.is_empty() {
        Ok(objects.documents.join("---\n"))
    } else {
        Err(errors)
    }
}

/// A decoded, validated custom resource.
enum Resource {
    Engine(LMCacheEngine),
    Blend(CacheBlendEngine),
    Coordinator(LMCacheCoordinator),
}

impl Resource {
    fn meta(
        &self,
    ) -> (
        &'static str,
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) {
        match self {
            Self::Engine(e) => (KIND_ENGINE, &e.metadata),
            Self::Blend(e) => (KIND_BLEND_ENGINE, &e.metadata),
            Self::Coordinator(c) => (KIND_COORDINATOR, &c.metadata),
        }
    }

    /// `Kind namespace/name`, the prefix of every error line about this object.
    fn id(&self) -> String {
        let (kind, meta) = self.meta();
        format!("{kind} {}/{}", namespace_of(meta), name_of(meta))
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

/// The YAML documents as JSON values with their 1-based numbers; empty documents are skipped.
fn parse_documents(input: &str) -> Result<Vec<(usize, Value)>, Vec<String>> {
    match crate::yaml::documents(input) {
        Ok(documents) => Ok((1..).zip(documents).collect()),
        Err(e) => Err(vec![e.to_string()]),
    }
}

/// Applies the default namespace, decodes (defaults) and validates one document.
fn decode(number: usize, mut doc: Value) -> Result<Resource, Vec<String>> {
    let Some(object) = doc.as_object_mut() else {
        return Err(vec![format!("document {number}: not a Kubernetes object")]);
    };
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if ![KIND_ENGINE, KIND_BLEND_ENGINE, KIND_COORDINATOR].contains(&kind.as_str()) {
        return Err(vec![format!(
            "document {number}: kind {kind:?} is not one of {KIND_ENGINE}, {KIND_BLEND_ENGINE}, {KIND_COORDINATOR}"
        )]);
    }
    if api_version != API_VERSION {
        return Err(vec![format!(
            "document {number}: {kind}: apiVersion must be {API_VERSION}, not {api_version:?}"
        )]);
    }
    let meta = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Value::Object(meta) = meta
        && meta.get("namespace").is_none_or(Value::is_null)
    {
        meta.insert("namespace".into(), Value::String(DEFAULT_NAMESPACE.into()));
    }
    // The coordinator CRD defaults an absent `spec` to `{}`; the API server would store that.
    if kind == KIND_COORDINATOR && object.get("spec").is_none_or(Value::is_null) {
        object.insert("spec".into(), Value::Object(serde_json::Map::new()));
    }
    let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let namespace = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string();
    let prefix = format!("{kind} {namespace}/{name}");
    let lines = |errors: Vec<lmcache_validation::FieldError>| -> Vec<String> {
        errors.iter().map(|e| format!("{prefix}: {e}")).collect()
    };

    match kind.as_str() {
        KIND_ENGINE => {
            let engine = lmcache_validation::decode_engine(&doc).map_err(lines)?;
            lmcache_validation::validate_engine(&name, &engine.spec).map_err(lines)?;
            Ok(Resource::Engine(engine))
        }
        KIND_BLEND_ENGINE => {
            let engine = lmcache_validation::decode_blend_engine(&doc).map_err(lines)?;
            lmcache_validation::validate_blend_engine(&name, &engine.spec).map_err(lines)?;
            Ok(Resource::Blend(engine))
        }
        _ => {
            let coordinator = lmcache_validation::decode_coordinator(&doc).map_err(lines)?;
            lmcache_validation::validate_coordinator(&name, &coordinator.spec).map_err(lines)?;
            Ok(Resource::Coordinator(coordinator))
        }
    }
}

/// The same kind, namespace and name twice in the input is almost certainly a mistake.
fn check_duplicates(resources: &[Resource], errors: &mut Vec<String>) {
    let mut seen = BTreeMap::new();
    for r in resources {
        let id = r.id();
        let count = seen.entry(id.clone()).or_insert(0usize);
        *count += 1;
        if *count == 2 {
            errors.push(format!("{id}: appears more than once in the input"));
        }
    }
}

/// The render context of an engine, with `coordinator.ref` resolved from the input.
fn resolve<'a>(
    id: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: &EngineSpec,
    coordinators: &'a BTreeMap<(String, String), String>,
    ctx: RenderContext<'a>,
) -> Result<RenderContext<'a>, Vec<String>> {
    let Some(reference) = spec.coordinator.as_ref().and_then(|c| c.ref_.as_ref()) else {
        return Ok(ctx);
    };
    let namespace = namespace_of(meta);
    match coordinators.get(&(namespace.to_string(), reference.name.clone())) {
        Some(url) => Ok(ctx.with_coordinator_url(url)),
        None => Err(vec![format!(
            "{id}: spec.coordinator.ref.name: {KIND_COORDINATOR} \"{}\" not found in namespace \"{namespace}\"",
            reference.name
        )]),
    }
}

/// Rendered documents, plus the errors of two custom resources needing the same child.
#[derive(Default)]
struct Objects {
    documents: Vec<String>,
    /// `Kind namespace/name` of each child -> the custom resource that rendered it.
    owners: BTreeMap<String, String>,
    errors: Vec<String>,
}

impl Objects {
    fn push_engine(&mut self, owner: &str, c: EngineChildren) {
        self.push(owner, "DaemonSet", &c.daemon_set.metadata, &c.daemon_set);
        self.push(owner, "Service", &c.service.metadata, &c.service);
        self.push(owner, "Service", &c.metrics_service.metadata, &c.metrics_service);
        self.push(owner, "ConfigMap", &c.config_map.metadata, &c.config_map);
        if let Some(sm) = &c.service_monitor {
            self.push(owner, "ServiceMonitor", &sm.metadata, sm);
        }
    }

    fn push_coordinator(&mut self, owner: &str, c: CoordinatorChildren) {
        self.push(owner, "Deployment", &c.deployment.metadata, &c.deployment);
        self.push(owner, "Service", &c.service.metadata, &c.service);
        if let Some(s) = &c.metrics_service {
            self.push(owner, "Service", &s.metadata, s);
        }
        if let Some(sm) = &c.service_monitor {
            self.push(owner, "ServiceMonitor", &sm.metadata, sm);
        }
    }

    fn push<T: Serialize>(
        &mut self,
        owner: &str,
        kind: &str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        object: &T,
    ) {
        let child = format!("{kind} {}/{}", namespace_of(meta), name_of(meta));
        if let Some(first) = self.owners.get(&child) {
            // Mirrors the operator's NameConflict: the later custom resource loses.
            self.errors.push(format!(
                "{owner}: {child} is already rendered for {first}; give the custom resources distinct names"
            ));
            return;
        }
        self.owners.insert(child.clone(), owner.to_string());
        match crate::yaml::to_string(object) {
            Ok(yaml) => self.documents.push(yaml),
            Err(e) => self.errors.push(format!("{owner}: {child}: {e}")),
        }
    }
}
