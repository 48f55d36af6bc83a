//! Object metadata shared by every child: name, namespace, labels, controller reference.

use crate::error::RenderError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use lmcache_api::constants::API_VERSION;
use std::collections::BTreeMap;

/// Identity of the custom resource that owns the children being rendered.
#[derive(Clone, Debug)]
pub(crate) struct Owner<'a> {
    pub kind: &'static str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: Option<&'a str>,
}

impl<'a> Owner<'a> {
    pub fn from_meta(kind: &'static str, meta: &'a ObjectMeta) -> Result<Self, RenderError> {
        Ok(Self {
            kind,
            name: meta.name.as_deref().ok_or(RenderError::MissingName)?,
            namespace: meta.namespace.as_deref().ok_or(RenderError::MissingNamespace)?,
            uid: meta.uid.as_deref(),
        })
    }

    /// Exactly one controller reference, or none when the owner has no UID (offline render:
    /// an owner reference without a UID would be invalid).
    fn owner_references(&self) -> Option<Vec<OwnerReference>> {
        let uid = self.uid?;
        Some(vec![OwnerReference {
            api_version: API_VERSION.to_string(),
            kind: self.kind.to_string(),
            name: self.name.to_string(),
            uid: uid.to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    }

    /// Metadata of child `name`: namespace of the owner, `labels`, controller reference.
    pub fn child_meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_string()),
            labels: Some(labels),
            owner_references: self.owner_references(),
            ..Default::default()
        }
    }
}
