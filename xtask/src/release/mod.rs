//! What a release ships, generated or built from the sources: the CRDs, the install manifests,
//! the Helm chart's checks and the OCI image archives.

pub mod chart;
pub mod crd;
pub mod image;
pub mod manifests;
pub mod reference;
