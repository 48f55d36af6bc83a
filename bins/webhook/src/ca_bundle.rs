//! The `caBundle` of the webhook's own MutatingWebhookConfiguration: what it trusts now, and
//! the JSON patch that makes every entry carry the Secret's bundle.
//!
//! The patch touches only `webhooks[i].clientConfig.caBundle` of the entries that differ, each
//! guarded by a `test` of the entry's name, so an entry added, removed or reordered since the
//! GET fails the patch instead of receiving the wrong value (the next poll retries). Nothing is
//! written when every entry is already right.

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// DER of every CA that all entries of `config` trust (empty when it has no entries).
pub fn trusted_by_all(config: &MutatingWebhookConfiguration) -> Vec<Vec<u8>> {
    let bundles: Vec<Vec<Vec<u8>>> = config
        .webhooks
        .iter()
        .flatten()
        .map(|hook| {
            hook.client_config
                .ca_bundle
                .as_ref()
                .map(|bundle| {
                    CertificateDer::pem_slice_iter(&bundle.0)
                        .filter_map(Result::ok)
                        .map(|der| der.to_vec())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let Some((first, rest)) = bundles.split_first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter(|der| rest.iter().all(|other| other.contains(der)))
        .cloned()
        .collect()
}

/// The JSON patch setting `caBundle` to `bundle` (PEM) on every entry of `config` that differs;
/// `None` when none does.
pub fn patch(config: &MutatingWebhookConfiguration, bundle: &[u8]) -> Option<json_patch::Patch> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut ops: Vec<Value> = Vec::new();
    for (index, hook) in config.webhooks.iter().flatten().enumerate() {
        if hook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle) {
            continue;
        }
        ops.push(json!({"op": "test", "path": format!("/webhooks/{index}/name"), "value": hook.name}));
        // `add` replaces an existing member and creates an absent one.
        ops.push(json!({
            "op": "add",
            "path": format!("/webhooks/{index}/clientConfig/caBundle"),
            "value": encoded,
        }));
    }
    if ops.is_empty() {
        return None;
    }
    serde_json::from_value(Value::Array(ops)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn config(bundles: &[Option<&[u8]>]) -> MutatingWebhookConfiguration {
        let webhooks: Vec<Value> = bundles
            .iter()
            .enumerate()
            .map(|(i, bundle)| {
                let mut client = json!({"service": {"name": "svc", "namespace": "ops", "path": "/p"}});
                if let Some(bundle) = bundle {
                    client["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(bundle));
                }
                json!({"name": format!("hook-{i}.lmcache.ai"), "clientConfig": client,
                       "admissionReviewVersions": ["v1"], "sideEffects": "None"})
            })
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "lmcache-webhook"}, "webhooks": webhooks}))
            .unwrap()
    }

    fn ca_pem() -> (String, Vec<u8>) {
        let ca = crate::pki::new_ca(
            1_800_000_000,
            std::time::Duration::from_secs(60),
            std::time::Duration::ZERO,
        )
        .unwrap();
        let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
            .unwrap()
            .to_vec();
        (ca.cert_pem, der)
    }

    #[test]
    fn patches_only_entries_that_differ() {
        let (a, a_der) = ca_pem();
        let (b, b_der) = ca_pem();
        let both = format!("{a}{b}");
        let mut current = config(&[Some(both.as_bytes()), None, Some(a.as_bytes())]);
        assert_eq!(
            trusted_by_all(&current),
            Vec::<Vec<u8>>::new(),
            "entry 1 trusts nothing"
        );

        let patch = patch(&current, both.as_bytes()).unwrap();
        let ops = serde_json::to_value(&patch).unwrap();
        let paths: Vec<&str> = ops
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/webhooks/1/name",
                "/webhooks/1/clientConfig/caBundle",
                "/webhooks/2/name",
                "/webhooks/2/clientConfig/caBundle"
            ]
        );

        let mut value = serde_json::to_value(&current).unwrap();
        json_patch::patch(&mut value, &patch).unwrap();
        current = serde_json::from_value(value).unwrap();
        for hook in current.webhooks.as_ref().unwrap() {
            assert_eq!(
                hook.client_config.ca_bundle,
                Some(ByteString(both.as_bytes().to_vec()))
            );
            assert_eq!(
                hook.client_config.service.as_ref().unwrap().path.as_deref(),
                Some("/p")
            );
        }
        assert!(
            super::patch(&current, both.as_bytes()).is_none(),
            "no write when right"
        );
        assert_eq!(trusted_by_all(&current), [a_der.clone(), b_der]);
        assert_eq!(
            trusted_by_all(&config(&[Some(both.as_bytes()), Some(a.as_bytes())])),
            [a_der]
        );
    }

    #[test]
    fn a_reordered_configuration_fails_the_patch() {
        let (a, _) = ca_pem();
        let before = config(&[None, None]);
        let patch = patch(&before, a.as_bytes()).unwrap();
        let mut after = serde_json::to_value(&before).unwrap();
        after["webhooks"].as_array_mut().unwrap().reverse();
        assert!(json_patch::patch(&mut after, &patch).is_err());
        assert!(super::patch(&config(&[]), a.as_bytes()).is_none());
        assert!(trusted_by_all(&config(&[])).is_empty());
    }
}
