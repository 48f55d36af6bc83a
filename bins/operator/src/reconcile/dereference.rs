//! Read step: the object from the watch cache, or — when the cache could not deserialize it (an
//! object stored before the current schema) — the raw object from the API, decoded with the
//! validation crate so the user gets the specification's field messages.

use crate::error::Error;
use crate::primary::Primary;
use kube::api::Api;
use kube::core::{ApiResource, DeserializeGuard, DynamicObject};
use kube::{Client, Resource};
use serde_json::Value;

/// The result of reading a custom resource.
#[derive(Debug)]
pub enum Dereferenced<K: Primary> {
    /// A typed object with defaults applied.
    Usable(Box<K>),
    /// The stored object cannot be decoded; `message` is the `ConfigValid` message.
    Undecodable {
        /// Joined field errors.
        message: String,
        /// The stored status, if it could be read.
        old_status: Option<K::Status>,
    },
    /// The object was deleted meanwhile.
    Gone,
}

/// Reads the object behind `guard`.
pub async fn dereference<K: Primary>(
    client: &Client,
    guard: &DeserializeGuard<K>,
) -> Result<Dereferenced<K>, Error> {
    let invalid = match &guard.0 {
        Ok(obj) => return Ok(Dereferenced::Usable(Box::new(obj.clone()))),
        Err(invalid) => invalid,
    };
    let meta = guard.meta();
    let name = meta.name.as_deref().ok_or(Error::MissingField("metadata.name"))?;
    let namespace = meta
        .namespace
        .as_deref()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    tracing::debug!(kind = %K::KIND, namespace, name, error = %invalid.error, "cached object does not deserialize; reading it raw");
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()));
    let Some(raw) = api.get_opt(name).await? else {
        return Ok(Dereferenced::Gone);
    };
    let raw = serde_json::to_value(&raw)?;
    Ok(decode_raw::<K>(&raw))
}

/// Decodes a raw object: usable, or undecodable with the stored status kept.
pub fn decode_raw<K: Primary>(raw: &Value) -> Dereferenced<K> {
    match K::decode(raw) {
        Ok(obj) => Dereferenced::Usable(Box::new(obj)),
        Err(message) => Dereferenced::Undecodable {
            message,
            old_status: raw
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
        },
    }
}
