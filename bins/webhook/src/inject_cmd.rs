//! `lmcache-webhook inject`: what the webhook would do to Pods and pod templates in YAML files.

use crate::Error;
use crate::admission::Admitter;
use crate::engines::EngineCache;
use k8s_openapi::api::core::v1::Pod;
use lmcache_api::constants::{KIND_BLEND_ENGINE, KIND_ENGINE};
use lmcache_blend_injector::{Outcome, Webhook, decode_engine, decode_lmcache_engine, patch};
use serde_json::Value;

/// The printed documents and one line per object saying what happened.
#[derive(Debug)]
pub struct InjectReport {
    /// The input documents, pods mutated, as multi-document YAML.
    pub output: String,
    /// `Kind namespace/name: outcome` lines, in input order.
    pub notes: Vec<String>,
}

/// Where the pod template lives in each supported kind.
fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Parses the multi-document `engines_yaml` files (CacheBlendEngines and LMCacheEngines; other
/// kinds are an error) and applies both webhooks' mutations, in the order the API server calls
/// them (CacheBlend, then the LMCache connection), to every Pod or pod template in `input_yaml`,
/// each admitted in its own `metadata.namespace` (else `default_namespace`).
pub fn inject_yaml(
    engines_yaml: &[String],
    input_yaml: &str,
    default_namespace: &str,
    cluster_domain: &str,
) -> Result<InjectReport, Error> {
    let mut blend = Vec::new();
    let mut lmcache = Vec::new();
    for text in engines_yaml {
        for (index, doc) in documents(text)?.into_iter().enumerate() {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let engine = |source| Error::Engine { index, source };
            match kind {
                KIND_BLEND_ENGINE => blend.push(decode_engine(doc).map_err(engine)?),
                KIND_ENGINE => lmcache.push(decode_lmcache_engine(doc).map_err(engine)?),
                _ => {
                    return Err(Error::NotAnEngine {
                        index,
                        kind: kind.to_string(),
                    });
                }
            }
        }
    }
    let admitter = Admitter::new(
        EngineCache::from_engines(blend, default_namespace),
        EngineCache::from_engines(lmcache, default_namespace),
        cluster_domain,
    );

    let mut out = Vec::new();
    let mut notes = Vec::new();
    for mut doc in documents(input_yaml)? {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_namespace)
            .to_string();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let label = format!("{kind} {namespace}/{name}");
        let template = template_pointer(&kind).and_then(|p| doc.pointer_mut(p));
        match template {
            Some(template) => notes.push(format!(
                "{label}: {}",
                mutate_template(&admitter, template, &namespace)?
            )),
            None => notes.push(format!("{label}: unchanged (no pod template)")),
        }
        out.push(lmcache_manifest_renderer::yaml::to_string(&doc)?);
    }
    Ok(InjectReport {
        output: out.join("---\n"),
        notes,
    })
}

fn mutate_template(admitter: &Admitter, template: &mut Value, namespace: &str) -> Result<String, Error> {
    if let Some(object) = template.as_object_mut() {
        object
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
    }
    normalize_quantities(template);
    let mut parts = Vec::new();
    for webhook in Webhook::ALL {
        // Each webhook sees the pod as the previous one left it, as in the API server.
        let pod: Pod = serde_json::from_value(template.clone()).map_err(Error::DecodePod)?;
        let (outcome, note) = admitter.admit_pod(webhook, &pod, namespace);
        if let Some(mutated) = outcome.mutated_pod() {
            json_patch::patch(template, &patch(&pod, mutated)).map_err(Error::Patch)?;
        }
        let engine = lmcache_blend_injector::requested_engine(&pod, webhook).unwrap_or_default();
        let mut text = match &outcome {
            Outcome::Injected(_) => format!("{webhook}: injected (engine {engine})"),
            Outcome::Skipped { reason, .. } => format!("{webhook}: skipped: {reason} (engine {engine})"),
            Outcome::AlreadyInjected => format!("{webhook}: unchanged: already injected"),
            Outcome::NotOptedIn => continue,
        };
        if let Some(note) = note {
            text.push_str(&format!("; {note}"));
        }
        parts.push(text);
    }
    Ok(if parts.is_empty() {
        "unchanged: not opted in".to_string()
    } else {
        parts.join("; ")
    })
}

/// YAML lets users write `nvidia.com/gpu: 1`; the API server turns quantities into strings
/// before admission, so do the same for the quantity fields of a pod spec.
fn normalize_quantities(template: &mut Value) {
    let Some(spec) = template.get_mut("spec") else {
        return;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for part in ["limits", "requests"] {
                if let Some(map) = container
                    .get_mut("resources")
                    .and_then(|r| r.get_mut(part))
                    .and_then(Value::as_object_mut)
                {
                    map.values_mut().for_each(stringify_number);
                }
            }
        }
    }
    if let Some(map) = spec.get_mut("overhead").and_then(Value::as_object_mut) {
        map.values_mut().for_each(stringify_number);
    }
    for volume in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(limit) = volume.get_mut("emptyDir").and_then(|e| e.get_mut("sizeLimit")) {
            stringify_number(limit);
        }
    }
}

fn stringify_number(value: &mut Value) {
    if let Value::Number(n) = value {
        *value = Value::String(n.to_string());
    }
}

fn documents(text: &str) -> Result<Vec<Value>, Error> {
    Ok(lmcache_manifest_renderer::yaml::documents(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: &str = "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: CacheBlendEngine\nmetadata: {name: cb}\nspec:\n  l1: {sizeGB: 1}\n  injection: {payloadImage: {repository: reg/p}}\n";

    fn pod(ns: &str, annotations: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: {ns}\n  labels: {{lmcache.ai/cacheblend-inject: \"true\"}}\n  annotations: {annotations}\nspec:\n  containers:\n  - name: vllm\n    image: v\n    args: [m]\n    resources: {{limits: {{nvidia.com/gpu: 1}}}}\n"
        )
    }

    #[test]
    fn pods_in_other_namespaces_do_not_see_the_engine() {
        let input = format!(
            "{}---\n{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n",
            pod("default", "{lmcache.ai/cacheblend-engine: cb}"),
            pod("team-b", "{lmcache.ai/cacheblend-engine: cb}")
        );
        let report = inject_yaml(&[ENGINE.to_string()], &input, "default", "cluster.local").unwrap();
        assert_eq!(
            report.notes,
            [
                "Pod default/p: cacheblend: injected (engine cb)",
                "Pod team-b/p: cacheblend: skipped: engine-not-found (engine cb)",
                "ConfigMap default/c: unchanged (no pod template)"
            ]
        );
        let docs = documents(&report.output).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["spec"]["hostIPC"], true);
        assert_eq!(
            docs[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        assert_eq!(
            docs[1]["metadata"]["annotations"]["lmcache.ai/cacheblend-skip-reason"],
            "engine-not-found"
        );
        assert_eq!(docs[1]["spec"].get("hostIPC"), None);
        assert_eq!(docs[2]["kind"], "ConfigMap");
    }

    #[test]
    fn engines_file_must_hold_engines() {
        let err = inject_yaml(&["kind: Pod\n".to_string()], "", "default", "cluster.local").unwrap_err();
        assert!(matches!(err, Error::NotAnEngine { .. }), "{err}");
    }

    #[test]
    fn not_opted_in_and_cronjobs() {
        let input = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: j}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n          labels: {lmcache.ai/cacheblend-inject: \"true\"}\n          annotations: {lmcache.ai/cacheblend-engine: cb}\n        spec:\n          restartPolicy: Never\n          containers: [{name: vllm, image: v}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: plain}\nspec: {containers: [{name: c, image: i}]}\n";
        let report = inject_yaml(&[ENGINE.to_string()], input, "default", "cluster.local").unwrap();
        assert_eq!(
            report.notes,
            [
                "CronJob default/j: cacheblend: injected (engine cb)",
                "Pod default/plain: unchanged: not opted in"
            ]
        );
    }

    #[test]
    fn lmcache_engines_wire_kserve_style_pods() {
        let engine = "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheEngine\nmetadata: {name: my-cache, namespace: team-a}\nspec:\n  l1: {sizeGB: 60}\n";
        let input = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: predictor, namespace: team-a}\nspec:\n  selector: {matchLabels: {app: p}}\n  template:\n    metadata:\n      labels: {app: p, lmcache.ai/lmcache-inject: \"true\"}\n      annotations: {lmcache.ai/lmcache-engine: my-cache}\n    spec:\n      containers: [{name: kserve-container, image: vllm/vllm-openai, args: [--model, m]}]\n";
        let both = [engine.to_string(), ENGINE.to_string()];
        let report = inject_yaml(&both, input, "default", "cluster.local").unwrap();
        assert_eq!(
            report.notes,
            ["Deployment team-a/predictor: lmcache: injected (engine my-cache)"]
        );
        let doc = &documents(&report.output).unwrap()[0];
        let spec = &doc["spec"]["template"]["spec"];
        assert_eq!(spec["hostIPC"], true);
        let args = spec["containers"][0]["args"].as_array().unwrap();
        assert_eq!(args[2], "--kv-transfer-config");
        assert!(
            args[3]
                .as_str()
                .unwrap()
                .contains("tcp://my-cache.team-a.svc.cluster.local")
        );
        assert_eq!(
            spec["containers"][0]["env"],
            serde_json::json!([{"name": "PYTHONHASHSEED", "value": "0"}])
        );
    }
}
