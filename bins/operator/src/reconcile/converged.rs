//! "Would applying this child change anything?" — decided locally so that reconciling an
//! unchanged, converged custom resource sends no write at all.
//!
//! A child is converged when both hold:
//!
//! 1. **Every rendered field has the same value in the live object** ([`is_subset`]). Maps may
//!    have extra keys (API-server defaults, labels and annotations added by others); lists of
//!    objects must have the same length with each rendered element a subset of the live element
//!    at the same position (defaults inside elements are fine); lists of scalars (`args`,
//!    `command`) must be equal.
//! 2. **Every field this operator's field manager owns is still rendered**
//!    ([`owns_only_rendered`]): the live object's `managedFields` entry of manager
//!    `lmcache-operator` (operation `Apply`) is walked against the rendered object. A field the
//!    spec stopped asking for (an env entry, a pod annotation) is still owned, so the child is
//!    re-applied and server-side apply removes it.
//!
//! Anything this module cannot interpret counts as "not converged": the cost of a wrong
//! answer is one no-op apply, never a missed repair.

use serde_json::{Map, Value};

/// Whether applying `rendered` over `live` (as field manager `manager`) would change nothing.
pub fn is_converged(rendered: &Value, live: &Value, manager: &str) -> bool {
    if !is_subset(rendered, live) {
        return false;
    }
    match owned_fields(live, manager) {
        Some(fields) => owns_only_rendered(fields, rendered),
        None => false,
    }
}

/// Whether every field of `rendered` has the same value in `live` (see the module docs).
pub fn is_subset(rendered: &Value, live: &Value) -> bool {
    match (rendered, live) {
        (Value::Object(r), Value::Object(l)) => r.iter().all(|(k, rv)| match l.get(k) {
            Some(lv) => is_subset(rv, lv),
            // The API server drops empty maps, lists and nulls.
            None => is_empty(rv),
        }),
        (Value::Object(r), Value::Null) => r.is_empty(),
        (Value::Array(r), Value::Array(l)) => {
            r.len() == l.len()
                && r.iter().zip(l).all(|(rv, lv)| match rv {
                    Value::Object(_) | Value::Array(_) => is_subset(rv, lv),
                    scalar => scalar == lv,
                })
        }
        (Value::Array(r), Value::Null) => r.is_empty(),
        (Value::Number(r), Value::Number(l)) => r == l || r.as_f64() == l.as_f64(),
        (r, l) => r == l,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The `fieldsV1` tree of `manager`'s Apply entry on the main resource (not a subresource).
pub fn owned_fields<'a>(live: &'a Value, manager: &str) -> Option<&'a Map<String, Value>> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|entry| {
            entry.get("manager").and_then(Value::as_str) == Some(manager)
                && entry.get("operation").and_then(Value::as_str) == Some("Apply")
                && entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
        })?
        .get("fieldsV1")?
        .as_object()
}

/// Whether every path in the `fieldsV1` tree `owned` exists in `rendered`.
pub fn owns_only_rendered(owned: &Map<String, Value>, rendered: &Value) -> bool {
    owned.iter().all(|(key, sub)| {
        if key == "." {
            return true;
        }
        let Some(child) = rendered_child(key, rendered) else {
            return false;
        };
        match sub.as_object() {
            Some(sub) if !sub.is_empty() => owns_only_rendered(sub, child),
            Some(_) => true,
            None => false,
        }
    })
}

/// The part of `rendered` a `fieldsV1` key names: `f:<field>`, `k:<json key fields>` (an
/// element of an associative list) or `v:<json value>` (an element of a set).
fn rendered_child<'a>(key: &str, rendered: &'a Value) -> Option<&'a Value> {
    if let Some(field) = key.strip_prefix("f:") {
        return rendered.as_object()?.get(field).filter(|v| !v.is_null());
    }
    if let Some(fields) = key.strip_prefix("k:") {
        let fields: Map<String, Value> = serde_json::from_str(fields).ok()?;
        return rendered.as_array()?.iter().find(|item| {
            fields
                .iter()
                .all(|(k, v)| item.get(k).is_some_and(|iv| is_subset(v, iv) && is_subset(iv, v)))
        });
    }
    if let Some(value) = key.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        return rendered.as_array()?.iter().find(|item| **item == value);
    }
    // `i:<index>` and anything newer: not interpreted.
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MANAGER: &str = "lmcache-operator";

    fn live_with(body: Value, fields: Value) -> Value {
        let mut live = body;
        live["metadata"]["managedFields"] = json!([
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "fieldsV1": {"f:status": {"f:numberReady": {}}}},
            {"manager": MANAGER, "operation": "Apply", "fieldsV1": fields},
        ]);
        live
    }

    fn rendered() -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1"}},
            "data": {"k": "v"},
            "spec": {"containers": [{"name": "x", "args": ["--a", "1"], "env": [{"name": "A", "value": "1"}]}]},
        })
    }

    fn fields() -> Value {
        json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:data": {"f:k": {}},
            "f:spec": {"f:containers": {"k:{\"name\":\"x\"}": {
                ".": {}, "f:name": {}, "f:args": {},
                "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
            }}},
        })
    }

    #[test]
    fn identical_object_with_server_defaults_is_converged() {
        let mut live = live_with(rendered(), fields());
        live["metadata"]["resourceVersion"] = json!("7");
        live["metadata"]["labels"]["added-by-someone"] = json!("y");
        live["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["status"] = json!({"numberReady": 3});
        assert!(is_converged(&rendered(), &live, MANAGER));
    }

    #[test]
    fn edited_value_or_scalar_list_is_drift() {
        let mut live = live_with(rendered(), fields());
        live["data"]["k"] = json!("edited");
        assert!(!is_converged(&rendered(), &live, MANAGER));

        let mut live = live_with(rendered(), fields());
        live["spec"]["containers"][0]["args"] = json!(["--a", "1", "--extra"]);
        assert!(!is_converged(&rendered(), &live, MANAGER));

        let mut live = live_with(rendered(), fields());
        live["metadata"]["labels"].as_object_mut().unwrap().remove("a");
        assert!(!is_converged(&rendered(), &live, MANAGER));
    }

    #[test]
    fn field_no_longer_rendered_but_still_owned_needs_apply() {
        let mut owned = fields();
        owned["f:spec"]["f:containers"]["k:{\"name\":\"x\"}"]["f:env"]["k:{\"name\":\"B\"}"] =
            json!({".": {}, "f:name": {}});
        let mut live = live_with(rendered(), owned);
        live["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}, {"name": "B"}]);
        // The env list differs in length as well; check the ownership walk on its own too.
        assert!(!is_converged(&rendered(), &live, MANAGER));
        let owned = live.pointer("/metadata/managedFields/1/fieldsV1").unwrap();
        assert!(!owns_only_rendered(owned.as_object().unwrap(), &rendered()));

        let mut owned = fields();
        owned["f:metadata"]["f:annotations"] = json!({"f:gone": {}});
        let live = live_with(rendered(), owned);
        assert!(is_subset(&rendered(), &live));
        assert!(!is_converged(&rendered(), &live, MANAGER));
    }

    #[test]
    fn missing_manager_entry_is_not_converged() {
        let live = rendered();
        assert!(is_subset(&rendered(), &live));
        assert!(!is_converged(&rendered(), &live, MANAGER));
        let live = live_with(rendered(), fields());
        assert!(!is_converged(&rendered(), &live, "someone-else"));
    }

    #[test]
    fn empty_rendered_maps_match_absent_live_fields() {
        assert!(is_subset(&json!({"a": {}, "b": []}), &json!({})));
        assert!(!is_subset(&json!({"a": {"x": 1}}), &json!({})));
        assert!(is_subset(&json!({"n": 5}), &json!({"n": 5.0})));
    }

    #[test]
    fn set_and_unknown_keys() {
        let rendered = json!({"finalizers": ["a"]});
        let owned = json!({"f:finalizers": {"v:\"a\"": {}}});
        assert!(owns_only_rendered(owned.as_object().unwrap(), &rendered));
        let owned = json!({"f:finalizers": {"v:\"b\"": {}}});
        assert!(!owns_only_rendered(owned.as_object().unwrap(), &rendered));
        let owned = json!({"f:finalizers": {"i:0": {}}});
        assert!(!owns_only_rendered(owned.as_object().unwrap(), &rendered));
    }
}
