//! Reading stored CacheBlendEngines as the webhook needs them.

use crate::Error;
use lmcache_api::v1alpha1::CacheBlendEngine;
use serde::Deserialize;
use serde_json::Value;

const CUDAGRAPH_MODES: [&str; 3] = ["eager", "piecewise", "full_decode_only"];

/// Decodes a stored CacheBlendEngine with its defaults applied and `managedFields` dropped.
///
/// Lenient where the spec asks for it: an `injection.cudagraph` other than `eager`,
/// `piecewise` or `full_decode_only` (e.g. the forbidden `full`) is read as `eager`
/// (cacheblend.md §9). Any other undecodable engine is an error, and the caller treats it
/// as absent.
pub fn decode_engine(mut value: Value) -> Result<CacheBlendEngine, Error> {
    let strict = CacheBlendEngine::deserialize(&value);
    let mut engine = match strict {
        Ok(engine) => engine,
        Err(error) => {
            let mode = value.pointer_mut("/spec/injection/cudagraph");
            match mode {
                Some(mode) if !mode.as_str().is_some_and(|m| CUDAGRAPH_MODES.contains(&m)) => {
                    *mode = Value::from("eager");
                    CacheBlendEngine::deserialize(&value).map_err(Error::DecodeEngine)?
                }
                _ => return Err(Error::DecodeEngine(error)),
            }
        }
    };
    engine.metadata.managed_fields = None;
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmcache_api::v1alpha1::CudaGraphMode;
    use serde_json::json;

    fn stored(cudagraph: Value) -> Value {
        json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1",
            "kind": "CacheBlendEngine",
            "metadata": {
                "name": "cb", "namespace": "team-a",
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {
                "l1": {"sizeGB": 60},
                "injection": {"payloadImage": {"repository": "reg/a"}, "cudagraph": cudagraph}
            }
        })
    }

    fn mode(engine: &CacheBlendEngine) -> CudaGraphMode {
        engine.spec.injection.as_ref().unwrap().cudagraph
    }

    #[test]
    fn known_modes_decode_strictly() {
        let engine = decode_engine(stored(json!("piecewise"))).unwrap();
        assert_eq!(mode(&engine), CudaGraphMode::Piecewise);
        assert_eq!(engine.metadata.managed_fields, None);
        assert_eq!(engine.spec.blend.recomp_ratio, 0.15);
    }

    #[test]
    fn unknown_modes_are_eager() {
        for bad in [json!("full"), json!("FULL"), json!(null), json!(3)] {
            let engine = decode_engine(stored(bad.clone())).unwrap();
            assert_eq!(mode(&engine), CudaGraphMode::Eager, "{bad}");
        }
    }

    #[test]
    fn other_damage_is_an_error() {
        let mut value = stored(json!("full"));
        value["spec"]["l1"] = json!("sixty");
        assert!(decode_engine(value).is_err());
        assert!(decode_engine(json!({"kind": "CacheBlendEngine"})).is_err());
    }
}
