//! JSON helpers for comparing stored objects with expectations.

use anyhow::bail;
use serde_json::Value;

/// Fails unless every key and value in `expected` is present in `actual` (objects compared as
/// subsets, recursively; arrays and scalars compared exactly). Numbers compare by value, so a
/// stored `1` equals an expected `1.0`. The error names the first differing path.
pub fn assert_contains(actual: &Value, expected: &Value) -> anyhow::Result<()> {
    compare(actual, expected, "")
}

fn compare(actual: &Value, expected: &Value, path: &str) -> anyhow::Result<()> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, want) in e {
                let here = format!("{path}.{key}");
                match a.get(key) {
                    Some(got) => compare(got, want, &here)?,
                    None => bail!("{here}: missing, expected {want}"),
                }
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(e)) if a.as_f64() == e.as_f64() => Ok(()),
        (a, e) if a == e => Ok(()),
        (a, e) => bail!(
            "{}: expected {e}, got {a}",
            if path.is_empty() { "." } else { path }
        ),
    }
}

/// `base` with `patch` applied as a JSON merge patch (RFC 7386: `null` removes a key).
pub fn merged(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            let mut out = b.clone();
            for (key, value) in p {
                if value.is_null() {
                    out.remove(key);
                } else {
                    let next = merged(out.get(key).unwrap_or(&Value::Null), value);
                    out.insert(key.clone(), next);
                }
            }
            Value::Object(out)
        }
        (_, p) => p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matches_and_reports_the_differing_path() {
        let actual = json!({"a": {"b": 1, "c": "x"}, "d": [1, 2]});
        assert_contains(&actual, &json!({"a": {"b": 1.0}})).unwrap();
        assert_contains(&actual, &json!({"d": [1, 2]})).unwrap();
        let err = assert_contains(&actual, &json!({"a": {"c": "y"}})).unwrap_err();
        assert!(err.to_string().starts_with(".a.c: expected \"y\""), "{err}");
        let err = assert_contains(&actual, &json!({"e": 1})).unwrap_err();
        assert!(err.to_string().contains(".e: missing"), "{err}");
        assert!(assert_contains(&actual, &json!({"d": [1]})).is_err());
    }

    #[test]
    fn merge_patch_sets_nested_keys_and_null_removes() {
        let base = json!({"l1": {"sizeGB": 60}, "server": {"port": 5555}});
        let out = merged(&base, &json!({"l1": null, "server": {"chunkSize": 512}}));
        assert_eq!(out, json!({"server": {"port": 5555, "chunkSize": 512}}));
    }
}
