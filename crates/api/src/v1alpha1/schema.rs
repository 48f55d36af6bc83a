//! Schema helpers used through `#[schemars(transform = ...)]` on the CRD types.

use schemars::Schema;
use serde_json::Value;

/// Removes `description` from an embedded Kubernetes type's schema (keeping the field's own),
/// which keeps each CRD well below the 256 KiB last-applied-annotation limit.
pub fn strip_embedded_descriptions(schema: &mut Schema) {
    if let Some(obj) = schema.as_object_mut() {
        let own = obj.remove("description");
        let mut value = Value::Object(std::mem::take(obj));
        strip(&mut value);
        if let Value::Object(stripped) = value {
            *obj = stripped;
        }
        if let Some(own) = own {
            obj.insert("description".into(), own);
        }
    }
}

fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("description");
            // `properties` is keyed by field name: a field called `description` is kept.
            for (key, child) in map.iter_mut() {
                if key == "properties" {
                    if let Value::Object(props) = child {
                        props.values_mut().for_each(strip);
                    }
                } else {
                    strip(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

/// Replaces a derived object default with `{}`: the API server then applies each child's own
/// default, which keeps one source of truth for every default.
pub fn empty_object_default(schema: &mut Schema) {
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("default".into(), Value::Object(Default::default()));
    }
}

/// Marks a list `x-kubernetes-list-type: atomic`.
pub fn atomic_list(schema: &mut Schema) {
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("x-kubernetes-list-type".into(), "atomic".into());
    }
}

/// `minimum: 0, exclusiveMinimum: true` (OpenAPI v3.0 form, which Kubernetes expects).
pub fn exclusive_minimum_zero(schema: &mut Schema) {
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("minimum".into(), 0.into());
        obj.insert("exclusiveMinimum".into(), true.into());
    }
}

/// Embedded k8s type inside a list: strip descriptions and mark the list atomic.
pub fn embedded_list(schema: &mut Schema) {
    strip_embedded_descriptions(schema);
    atomic_list(schema);
}

/// Sets the `description` of the named properties of an object schema: the flattened
/// [`PodConfig`](super::PodConfig) fields are worded per kind.
pub fn describe(schema: &mut Schema, descriptions: &[(&str, &str)]) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, description) in descriptions {
        if let Some(property) = properties.get_mut(*field).and_then(Value::as_object_mut) {
            property.insert("description".into(), (*description).into());
        }
    }
}
