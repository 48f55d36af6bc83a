//! Container environment: operator entries first, then `spec.env`, names unique.

use k8s_openapi::api::core::v1::EnvVar;

/// A plain `name=value` entry.
pub(crate) fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// Appends `user` to `base` (engine.md §3.4): an entry whose name is already in the list
/// replaces that entry in its position instead of being added again, so the user's definition
/// wins (as Kubernetes' last-definition rule would make it) and server-side apply never sees a
/// duplicate key.
pub(crate) fn merge(mut base: Vec<EnvVar>, user: Option<&[EnvVar]>) -> Vec<EnvVar> {
    for entry in user.unwrap_or_default() {
        match base.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => *existing = entry.clone(),
            None => base.push(entry.clone()),
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_values(env: &[EnvVar]) -> Vec<(String, Option<String>)> {
        env.iter().map(|e| (e.name.clone(), e.value.clone())).collect()
    }

    #[test]
    fn user_entries_replace_in_place_and_last_wins() {
        let base = vec![plain("A", "1"), plain("B", "2")];
        let user = vec![plain("B", "x"), plain("C", "1"), plain("C", "2"), plain("A", "y")];
        let got = names_values(&merge(base, Some(&user)));
        let want = [("A", "y"), ("B", "x"), ("C", "2")]
            .map(|(n, v)| (n.to_string(), Some(v.to_string())))
            .to_vec();
        assert_eq!(got, want);
    }
}
