#![no_main]
//! Any JSON as the object of a pod CREATE: always allowed; a patch must apply to the object,
//! and re-admitting the patched object must not produce another patch.

mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn review(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {},
            "object": object
        }
    }))
    .expect("serialisable")
}

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let webhook = common::webhook_of(data);
    let body = review(&object);
    let verdict = common::ADMITTER.review(webhook, &body);
    common::check_answer(&verdict, &body);
    assert!(verdict.response.allowed);
    let Some(patch) = verdict.response.patch.as_ref() else {
        return;
    };
    let ops: json_patch::Patch = serde_json::from_slice(patch).expect("patch is JSON Patch");
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &ops).expect("patch applies to the submitted object");
    let again = common::ADMITTER.review(webhook, &review(&patched));
    assert!(
        again.response.patch.is_none(),
        "second admission changed the pod again"
    );
});
