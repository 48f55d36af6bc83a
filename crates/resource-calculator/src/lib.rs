//! Requests and limits of LMCache engine pods, sized from `spec.l1.sizeGB` (engine.md §3.6).
//!
//! Without overrides an engine container gets
//!
//! * `requests.cpu` = `"4"`,
//! * `requests.memory` = `"<R>Gi"` with `R = ceil(sizeGB + 5)`,
//! * `limits.memory` = `"<L>Gi"` with `L = ceil(R × 1.5)`, computed from the integer `R`,
//!
//! and nothing else (no CPU limit, no GPU resources). `spec.resourceOverrides`, when present,
//! replaces all of it verbatim.
//!
//! ```
//! use lmcache_resource_calculator::engine_resources;
//!
//! let r = engine_resources(60.0, None);
//! let requests = r.requests.unwrap();
//! assert_eq!(requests["cpu"].0, "4");
//! assert_eq!(requests["memory"].0, "65Gi");
//! assert_eq!(r.limits.unwrap()["memory"].0, "98Gi");
//! ```

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// CPU request of every engine pod.
pub const CPU_REQUEST: &str = "4";
/// GiB added to the L1 size for the server process itself.
pub const MEMORY_OVERHEAD_GB: f64 = 5.0;

/// The engine container's resources: `overrides` verbatim when given, otherwise computed from
/// the L1 size in GB.
pub fn engine_resources(size_gb: f64, overrides: Option<&ResourceRequirements>) -> ResourceRequirements {
    if let Some(overrides) = overrides {
        return overrides.clone();
    }
    let (request, limit) = memory_gib(size_gb);
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(CPU_REQUEST.to_string())),
            ("memory".to_string(), Quantity(format!("{request}Gi"))),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(format!("{limit}Gi")),
        )])),
        ..Default::default()
    }
}

/// `(R, L)` in GiB: `R = ceil(size_gb + 5)`, `L = ceil(R * 1.5)`.
///
/// The limit is computed in integers (`ceil(3R / 2)`) so no float rounding can
/// move it. Sizes too large for `u64` saturate (validation only bounds the size from below).
pub fn memory_gib(size_gb: f64) -> (u64, u64) {
    // `as` saturates and maps NaN to 0, which is what we want for nonsense input.
    let request = (size_gb + MEMORY_OVERHEAD_GB).ceil() as u64;
    let limit = u64::try_from((u128::from(request) * 3).div_ceil(2)).unwrap_or(u64::MAX);
    (request, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantities(r: &ResourceRequirements) -> (String, String, String) {
        let requests = r.requests.as_ref().unwrap();
        let limits = r.limits.as_ref().unwrap();
        assert_eq!(requests.len(), 2, "only cpu and memory requests");
        assert_eq!(limits.len(), 1, "only a memory limit");
        assert!(r.claims.is_none());
        (
            requests["cpu"].0.clone(),
            requests["memory"].0.clone(),
            limits["memory"].0.clone(),
        )
    }

    #[test]
    fn table_from_the_spec_and_more() {
        let cases = [
            (0.5, "6Gi", "9Gi"),
            (1.0, "6Gi", "9Gi"),
            (1.25, "7Gi", "11Gi"),
            (10.2, "16Gi", "24Gi"),
            (60.0, "65Gi", "98Gi"),
            (100.0, "105Gi", "158Gi"),
            (1000.0, "1005Gi", "1508Gi"),
            (0.001, "6Gi", "9Gi"),
            (2.0, "7Gi", "11Gi"),
            (3.0, "8Gi", "12Gi"),
        ];
        for (size, request, limit) in cases {
            let got = quantities(&engine_resources(size, None));
            assert_eq!(
                got,
                ("4".to_string(), request.to_string(), limit.to_string()),
                "sizeGB {size}"
            );
        }
    }

    #[test]
    fn limit_is_ceil_of_one_and_a_half_times_the_integer_request() {
        for tenths in 1..5000u32 {
            let size = f64::from(tenths) / 10.0;
            let (r, l) = memory_gib(size);
            assert_eq!(r as f64, (size + 5.0).ceil());
            assert_eq!(l as f64, (r as f64 * 1.5).ceil(), "sizeGB {size}");
        }
    }

    #[test]
    fn huge_sizes_saturate_instead_of_wrapping() {
        let (r, l) = memory_gib(1e300);
        assert_eq!(r, u64::MAX);
        assert_eq!(l, u64::MAX, "the limit never drops below the request");
    }

    #[test]
    fn overrides_replace_everything_verbatim() {
        let overrides = ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("memory".to_string(), Quantity("70Gi".into())),
                ("cpu".to_string(), Quantity("8".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_string(), Quantity("100Gi".into()))])),
            ..Default::default()
        };
        assert_eq!(engine_resources(60.0, Some(&overrides)), overrides);

        // Even an empty override wins: no merging with computed values.
        let empty = ResourceRequirements::default();
        assert_eq!(engine_resources(60.0, Some(&empty)), empty);
    }
}
