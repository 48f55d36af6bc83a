//! "Would applying this child change anything?" — decided locally so that reconciling an
//! unchanged, converged custom resource sends no write at all.
//!
//! A child is converged when both hold:
//!
//! 1. **Every rendered field has the same value in the live object** ([`is_subset`]). Maps may
//!    have extra keys (API-server defaults, labels and annotations added by others); quantities
//!    compare by value; a rendered omitempty zero matches an absent field, a rendered empty
//!    object does not; lists keyed by `name` (and the other keys below) match when each
//!    rendered element is found, in order, as a subset of the live element with its key, so
//!    entries others add are not drift; other lists of objects must have the same length with
//!    each rendered element a subset of the live element at the same position; lists of
//!    scalars (`args`, `command`) must be equal.
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
    subset(rendered, live, None)
}

/// [`is_subset`] knowing the key `rendered` is the value of (quantities are compared by value
/// under `requests`, `limits`, `overhead` and `sizeLimit`).
fn subset(rendered: &Value, live: &Value, key: Option<&str>) -> bool {
    match (rendered, live) {
        (Value::Object(r), Value::Object(l)) => {
            let quantities = key.is_some_and(|k| QUANTITY_MAPS.contains(&k));
            r.iter().all(|(k, rv)| match l.get(k) {
                Some(lv) if quantities => same_quantity(rv, lv),
                Some(lv) => subset(rv, lv, Some(k)),
                None => absent_ok(rv, k),
            })
        }
        (Value::Object(_), Value::Null) => false,
        (Value::Array(r), Value::Array(l)) => list_subset(r, l, key),
        (Value::Array(r), Value::Null) => r.is_empty(),
        (Value::Number(r), Value::Number(l)) => r == l || r.as_f64() == l.as_f64(),
        (Value::String(_), _) if key == Some("sizeLimit") => same_quantity(rendered, live),
        (r, l) => r == l,
    }
}

/// Maps whose values are quantities (`resources.requests`, `.limits`, `overhead`).
const QUANTITY_MAPS: [&str; 3] = ["requests", "limits", "overhead"];
/// Fields whose zero value is kept by the API server and means something (a pointer field):
/// a rendered `false`/`0` there must really be present.
const MEANINGFUL_ZEROS: [&str; 3] = ["automountServiceAccountToken", "privileged", "replicas"];

/// Whether a rendered value may be missing from the live object: the API server drops empty
/// lists and nulls, and omits the zero value of plain (`omitempty`) fields such as
/// `readOnly: false` or `value: ""`. A rendered empty object is *not* optional: `emptyDir: {}`
/// says which volume source this is, and its absence means another one.
fn absent_ok(rendered: &Value, key: &str) -> bool {
    match rendered {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Bool(false) => !MEANINGFUL_ZEROS.contains(&key),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0) && !MEANINGFUL_ZEROS.contains(&key),
        _ => false,
    }
}

/// Lists of scalars (`args`, `command`) must be equal. In lists of objects every rendered
/// element must match a live one, in order; the live list may hold entries others added (an
/// extra owner reference, an injected debug container), which server-side apply would keep
/// anyway. Elements are matched by their merge key (`name`, `uid`, ...) when they have one,
/// else by position (then the lengths must agree).
fn list_subset(rendered: &[Value], live: &[Value], key: Option<&str>) -> bool {
    let keyed = rendered.iter().all(|r| merge_key(r).is_some());
    if !keyed || rendered.is_empty() {
        return rendered.len() == live.len()
            && rendered.iter().zip(live).all(|(rv, lv)| match rv {
                Value::Object(_) | Value::Array(_) => subset(rv, lv, key),
                scalar => scalar == lv,
            });
    }
    let mut from = 0;
    rendered.iter().all(|rv| {
        let wanted = merge_key(rv);
        match live[from..].iter().position(|lv| merge_key(lv) == wanted) {
            Some(at) if subset(rv, &live[from + at], key) => {
                from += at + 1;
                true
            }
            _ => false,
        }
    })
}

/// The merge key of a list element: the first of `name`, `uid`, `containerPort`, `mountPath`,
/// `key` it has (as the Kubernetes list types of the fields the renderer writes do).
fn merge_key(item: &Value) -> Option<(&'static str, &Value)> {
    let object = item.as_object()?;
    ["name", "uid", "containerPort", "mountPath", "key"]
        .into_iter()
        .find_map(|k| object.get(k).map(|v| (k, v)))
}

/// Two quantities with the same value (`0.5Gi` = `512Mi`, `2048Mi` = `2Gi`, `1000m` = `1`);
/// values that do not parse compare as text.
fn same_quantity(rendered: &Value, live: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match (text(rendered), text(live)) {
        (Some(r), Some(l)) => r == l || matches!((quantity(&r), quantity(&l)), (Some(a), Some(b)) if a == b),
        _ => rendered == live,
    }
}

/// A Kubernetes quantity as an exact rational `numerator / 10^scale`, reduced; `None` when it
/// is not one (or too large to represent exactly).
fn quantity(text: &str) -> Option<(i128, u32)> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (binary_exp, decimal_exp): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => (0, s[1..].parse().ok()?),
        _ => return None,
    };
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mut value: i128 = digits.parse().ok()?;
    let mut scale = i32::try_from(fraction.len()).ok()? - decimal_exp;
    value = value.checked_mul(1i128.checked_shl(binary_exp)?)?;
    while scale < 0 {
        value = value.checked_mul(10)?;
        scale += 1;
    }
    let mut scale = u32::try_from(scale).ok()?;
    while scale > 0 && value % 10 == 0 {
        value /= 10;
        scale -= 1;
    }
    Some((if negative { -value } else { value }, scale))
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
    fn empty_lists_and_omitempty_zeros_match_absent_live_fields() {
        assert!(is_subset(&json!({"b": [], "c": null}), &json!({})));
        assert!(!is_subset(&json!({"a": {"x": 1}}), &json!({})));
        assert!(is_subset(&json!({"n": 5}), &json!({"n": 5.0})));
        // `readOnly: false` and `value: ""` are dropped by the API server.
        let rendered = json!({"volumeMounts": [{"name": "d", "mountPath": "/d", "readOnly": false}],
                              "env": [{"name": "E", "value": ""}]});
        let live = json!({"volumeMounts": [{"name": "d", "mountPath": "/d"}], "env": [{"name": "E"}]});
        assert!(is_subset(&rendered, &live));
        // A pointer field's zero is kept by the server: its absence is drift.
        assert!(!is_subset(
            &json!({"automountServiceAccountToken": false}),
            &json!({})
        ));
        assert!(!is_subset(&json!({"replicas": 0}), &json!({})));
        assert!(!is_subset(&json!({"readOnly": true}), &json!({})));
    }

    #[test]
    fn an_empty_object_names_a_shape_and_must_be_there() {
        let rendered = json!({"volumes": [{"name": "data", "emptyDir": {}}]});
        assert!(is_subset(
            &rendered,
            &json!({"volumes": [{"name": "data", "emptyDir": {}}]})
        ));
        assert!(is_subset(
            &rendered,
            &json!({"volumes": [{"name": "data", "emptyDir": {"medium": ""}}]})
        ));
        // Someone switched the volume to a hostPath: repaired, not "converged".
        let drifted = json!({"volumes": [{"name": "data", "hostPath": {"path": "/var/data"}}]});
        assert!(!is_subset(&rendered, &drifted));
    }

    #[test]
    fn quantities_compare_by_value() {
        let cases = [
            ("0.5Gi", "512Mi", true),
            ("2048Mi", "2Gi", true),
            ("1000m", "1", true),
            ("1.5", "1500m", true),
            ("64Gi", "68719476736", true),
            ("1e3", "1k", true),
            ("100M", "100Mi", false),
            ("2", "3", false),
            ("1Gi", "1G", false),
        ];
        for (rendered, live, same) in cases {
            let r = json!({"resources": {"limits": {"memory": rendered}}});
            let l = json!({"resources": {"limits": {"memory": live}}});
            assert_eq!(is_subset(&r, &l), same, "{rendered} vs {live}");
        }
        // Only quantities: an env value is text.
        assert!(!is_subset(
            &json!({"env": [{"name": "A", "value": "0.5Gi"}]}),
            &json!({"env": [{"name": "A", "value": "512Mi"}]})
        ));
        assert!(is_subset(
            &json!({"emptyDir": {"sizeLimit": "1Gi"}}),
            &json!({"emptyDir": {"sizeLimit": "1024Mi"}})
        ));
    }

    #[test]
    fn entries_others_added_to_keyed_lists_are_not_drift() {
        let rendered = json!({"metadata": {"ownerReferences": [{"uid": "ours", "kind": "LMCacheEngine"}]},
                              "containers": [{"name": "lmcache", "args": ["--a"]}]});
        let live = json!({"metadata": {"ownerReferences": [{"uid": "theirs", "kind": "Thing"},
                                                           {"uid": "ours", "kind": "LMCacheEngine"}]},
                          "containers": [{"name": "lmcache", "args": ["--a"]}, {"name": "debugger"}]});
        assert!(is_subset(&rendered, &live));
        // Ours missing, out of order or changed is drift.
        let missing = json!({"metadata": {"ownerReferences": [{"uid": "theirs"}]},
                             "containers": [{"name": "lmcache", "args": ["--a"]}]});
        assert!(!is_subset(&rendered, &missing));
        let two = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        assert!(!is_subset(
            &two,
            &json!({"containers": [{"name": "b"}, {"name": "a"}]})
        ));
        let changed = json!({"metadata": {"ownerReferences": [{"uid": "ours", "kind": "LMCacheEngine"}]},
                             "containers": [{"name": "lmcache", "args": ["--b"]}]});
        assert!(!is_subset(&rendered, &changed));
        // Unkeyed lists (tolerations) stay positional with equal length.
        let tol = json!({"tolerations": [{"operator": "Exists"}]});
        assert!(!is_subset(
            &tol,
            &json!({"tolerations": [{"operator": "Exists"}, {"effect": "NoSchedule"}]})
        ));
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
