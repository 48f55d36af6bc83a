//! Lenient decoding of stored objects.
//!
//! An object stored before the schema existed (or by an API server that skipped a rule) may not
//! even deserialise: `spec.l1` missing, `logLevel: TRACE`, `l2Backends[0].config: "x"`. Rather
//! than report serde's first error, the raw JSON is first walked against the kind's own CRD
//! schema ([`lmcache_api::crds`]): every value whose JSON type or string `enum` does not match,
//! and every missing `required` property, becomes the matching table rule's error (or
//! [`DECODE_RULE`](crate::DECODE_RULE) when no rule covers it), and is repaired (removed so the
//! default applies, or replaced by a placeholder) so that decoding succeeds and the remaining
//! rules can still be checked. Errors the checks then report at a repaired path are dropped: the
//! decode error already names that field.

use crate::FieldError;
use crate::check::{self, Found};
use crate::rules::{self, Kind, Mechanism};
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// The `openAPIV3Schema` of each kind, generated once.
static SCHEMAS: LazyLock<Vec<(String, Value)>> = LazyLock::new(|| {
    lmcache_api::crds()
        .into_iter()
        .filter_map(|crd| {
            let version = crd.spec.versions.into_iter().next()?;
            let schema = serde_json::to_value(version.schema?.open_api_v3_schema?).ok()?;
            Some((crd.spec.names.kind, schema))
        })
        .collect()
});

fn schema_of(kind: Kind) -> Option<&'static Value> {
    SCHEMAS.iter().find(|(k, _)| k == kind.as_str()).map(|(_, s)| s)
}

/// Decodes a stored LMCacheEngine (the whole object) and validates it.
pub fn decode_engine(obj: &Value) -> Result<LMCacheEngine, Vec<FieldError>> {
    decode(Kind::Engine, obj, |name, e: &LMCacheEngine| {
        check::lmcache_engine_errors(name, &e.spec)
    })
}

/// Decodes a stored CacheBlendEngine (the whole object) and validates it.
pub fn decode_blend_engine(obj: &Value) -> Result<CacheBlendEngine, Vec<FieldError>> {
    decode(Kind::BlendEngine, obj, |name, e: &CacheBlendEngine| {
        check::blend_errors(name, &e.spec)
    })
}

/// Decodes a stored LMCacheCoordinator (the whole object) and validates it.
pub fn decode_coordinator(obj: &Value) -> Result<LMCacheCoordinator, Vec<FieldError>> {
    decode(Kind::Coordinator, obj, |name, c: &LMCacheCoordinator| {
        check::coordinator_errors(name, &c.spec)
    })
}

/// Decodes a stored LMCacheEngine leniently, without validating it: values the schema rejects
/// are dropped (so their defaults apply) and `null`s are read as absent, exactly as the
/// operator reads it before validation. `Err` only when even that cannot decode. The webhooks
/// use this, so an engine the operator renders is never "not found" to them.
pub fn repair_engine(obj: &Value) -> Result<LMCacheEngine, Vec<FieldError>> {
    repair(Kind::Engine, obj).map(|(engine, _)| engine)
}

/// [`repair_engine`] for a CacheBlendEngine.
pub fn repair_blend_engine(obj: &Value) -> Result<CacheBlendEngine, Vec<FieldError>> {
    repair(Kind::BlendEngine, obj).map(|(engine, _)| engine)
}

/// The object after the schema walk, and what the walk found.
fn repair<T: serde::de::DeserializeOwned>(kind: Kind, obj: &Value) -> Result<(T, Repair), Vec<FieldError>> {
    let mut value = obj.clone();
    let mut repair = Repair {
        kind,
        found: Vec::new(),
        repaired: Vec::new(),
        report: true,
    };
    if !value.is_object() {
        return Err(vec![Found::decode("", "must be an object").error]);
    }
    if let Some(schema) = schema_of(kind) {
        repair.walk(&mut value, schema, "");
    }
    // `metadata` is not in the CRD schema; an unusable one decodes as empty (E20/C14 then fire).
    if let Some(root) = value.as_object_mut()
        && !root.get("metadata").is_some_and(Value::is_object)
    {
        root.insert("metadata".into(), Value::Object(Map::new()));
    }
    match serde_json::from_value::<T>(value) {
        Ok(decoded) => Ok((decoded, repair)),
        Err(e) => {
            // The schema walk repairs everything serde needs; this is the safety net.
            repair.found.push(Found::decode("", e.to_string()));
            Err(finish(repair.found))
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: Kind,
    obj: &Value,
    validate: impl FnOnce(&str, &T) -> Vec<Found>,
) -> Result<T, Vec<FieldError>> {
    let (decoded, repair) = repair::<T>(kind, obj)?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let repaired = repair.repaired;
    let mut found = repair.found;
    found.extend(
        validate(&name, &decoded)
            .into_iter()
            .filter(|f| !repaired.iter().any(|r| is_under(&f.error.path, r))),
    );
    match check::finish(found) {
        Ok(()) => Ok(decoded),
        Err(errors) => Err(errors),
    }
}

fn finish(found: Vec<Found>) -> Vec<FieldError> {
    check::finish(found).err().unwrap_or_default()
}

/// `path` is `prefix` or inside it.
fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

struct Repair {
    kind: Kind,
    found: Vec<Found>,
    /// Paths whose stored value was replaced.
    repaired: Vec<String>,
    /// False inside `status`, which is repaired silently (it is ours, not the user's).
    report: bool,
}

impl Repair {
    fn walk(&mut self, value: &mut Value, schema: &Value, path: &str) {
        match value {
            Value::Object(map) => self.walk_object(map, schema, path),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{path}[{i}]");
                        if self.fits(item, item_schema, &item_path) {
                            self.walk(item, item_schema, &item_path);
                        } else {
                            // Replaced rather than dropped so later entries keep their indices.
                            *item = self.stand_in(item_schema, &item_path);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn walk_object(&mut self, map: &mut Map<String, Value>, schema: &Value, path: &str) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let required = required_of(schema);
            for (name, sub) in props {
                let child = join(path, name);
                let report = self.report;
                if path.is_empty() && name == "status" {
                    self.report = false;
                }
                self.property(map, name, sub, &child, required.contains(&name.as_str()));
                self.report = report;
            }
        }
        // Maps (`nodeSelector`, `podLabels`, ...): each value must have the value schema's type.
        if let Some(value_schema) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            let known = schema.get("properties").and_then(Value::as_object);
            let keys: Vec<String> = map
                .keys()
                .filter(|k| known.is_none_or(|p| !p.contains_key(*k)))
                .cloned()
                .collect();
            for key in keys {
                let child = join(path, &key);
                if let Some(v) = map.get_mut(&key)
                    && !self.fits(v, value_schema, &child)
                {
                    map.remove(&key);
                    self.repaired.push(child);
                } else if let Some(v) = map.get_mut(&key) {
                    self.walk(v, value_schema, &child);
                }
            }
        }
    }

    fn property(
        &mut self,
        map: &mut Map<String, Value>,
        name: &str,
        sub: &Value,
        path: &str,
        required: bool,
    ) {
        // Kubernetes treats `null` in a non-nullable field as absent.
        if map.get(name).is_some_and(Value::is_null) && !nullable(sub) {
            map.remove(name);
        }
        let mut was_bad = false;
        if let Some(v) = map.get_mut(name) {
            if self.fits(v, sub, path) {
                self.walk(v, sub, path);
                return;
            }
            map.remove(name);
            self.repaired.push(path.to_owned());
            was_bad = true;
        }
        if let Some(default) = sub.get("default") {
            map.insert(name.to_owned(), default.clone());
        } else if required {
            if was_bad {
                let stand_in = self.stand_in(sub, path);
                map.insert(name.to_owned(), stand_in);
            } else {
                self.report_at(path, Mechanism::Required, "is required");
                // Walked with reporting on: a missing `spec` also misses `spec.l1`'s rule (and,
                // for the blend engine, `spec.injection`'s).
                let mut placeholder = placeholder(sub);
                self.walk(&mut placeholder, sub, path);
                map.insert(name.to_owned(), placeholder);
                self.repaired.push(path.to_owned());
            }
        }
    }

    /// A placeholder for an unusable value already reported: its own required children are
    /// filled silently.
    fn stand_in(&mut self, schema: &Value, path: &str) -> Value {
        let mut value = placeholder(schema);
        let report = std::mem::replace(&mut self.report, false);
        self.walk(&mut value, schema, path);
        self.report = report;
        self.repaired.push(path.to_owned());
        value
    }

    /// Whether `value` has the schema's type (and string `enum`); reports it when not. Integral
    /// floats in integer fields are converted in place.
    fn fits(&mut self, value: &mut Value, schema: &Value, path: &str) -> bool {
        if value.is_null() && nullable(schema) {
            return true;
        }
        let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        let ty = schema.get("type").and_then(Value::as_str);
        let ok = match ty {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("number") => value.is_number(),
            Some("integer") => as_integer(value, schema),
            _ if int_or_string => value.is_string() || as_integer(value, schema),
            _ => true,
        };
        if !ok {
            let expected = match ty {
                Some("object") => "must be an object",
                Some("array") => "must be a list",
                Some("string") => "must be a string",
                Some("boolean") => "must be a boolean",
                Some("number") => "must be a number",
                Some("integer") => "must be an integer",
                _ => "must be an integer or a string",
            };
            // E14 names the type; an enum field's rule already says what is accepted.
            if !self.report_rule(path, Mechanism::Type) && !self.report_rule(path, Mechanism::Enum) {
                self.report_decode(path, expected);
            }
            return false;
        }
        if let Value::String(s) = &*value
            && let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| a.as_str() == Some(s))
        {
            let listed: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
            self.report_at(
                path,
                Mechanism::Enum,
                &format!("must be one of {}", listed.join(", ")),
            );
            return false;
        }
        true
    }

    /// Reports the table rule of `path` for `mechanism`, or a decode error with `fallback`.
    fn report_at(&mut self, path: &str, mechanism: Mechanism, fallback: &str) {
        if !self.report_rule(path, mechanism) {
            self.report_decode(path, fallback);
        }
    }

    fn report_rule(&mut self, path: &str, mechanism: Mechanism) -> bool {
        let Some(row) = rules::rows_at(self.kind, &rules::pattern_of(path), mechanism).next() else {
            return false;
        };
        if self.report {
            self.found.push(Found::rule(row, path));
        }
        true
    }

    fn report_decode(&mut self, path: &str, message: &str) {
        if self.report {
            self.found.push(Found::decode(path, message));
        }
    }
}

fn as_integer(value: &mut Value, schema: &Value) -> bool {
    let (min, max) = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    if let Some(i) = value.as_i64() {
        return (min..=max).contains(&i);
    }
    // `5.0` is an integer to the API server; serde wants an integer token.
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= min as f64 && f <= max as f64 => {
            *value = Value::from(f as i64);
            true
        }
        _ => false,
    }
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable") == Some(&Value::Bool(true))
}

fn required_of(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A stand-in for a missing required value, only there so that decoding succeeds.
fn placeholder(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => Value::Object(Map::new()),
        Some("array") => Value::Array(Vec::new()),
        Some("string") => Value::String(String::new()),
        Some("boolean") => Value::Bool(false),
        Some("integer" | "number") => Value::from(1),
        _ => Value::String(String::new()),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}
