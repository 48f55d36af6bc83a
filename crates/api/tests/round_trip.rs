//! Every example object (deploy/examples/*.yaml and the renderer's input fixtures) read into the
//! typed structs and written back: one JSON snapshot per object, defaults applied. A change to a
//! type that changes what users' objects mean or how they are stored shows up here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The folders whose YAML files hold example objects, relative to this crate.
const SOURCES: [(&str, &str); 2] = [
    ("examples", "../../deploy/examples"),
    ("renderer", "../manifest-renderer/tests/fixtures"),
];

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The non-empty documents of a YAML stream.
fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).unwrap()
}

/// The object read as `T` and written back; reading and writing the result again changes
/// nothing (every default is written out).
fn round_trip<T: DeserializeOwned + Serialize>(doc: Value) -> Value {
    let write = |doc: Value| serde_json::to_value(serde_json::from_value::<T>(doc).unwrap()).unwrap();
    let json = write(doc);
    assert_eq!(
        write(json.clone()),
        json,
        "the written object reads back differently"
    );
    json
}

#[test]
fn example_objects_round_trip() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for (source, dir) in SOURCES {
        for file in yaml_files(&root.join(dir)) {
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&file).unwrap();
            for doc in documents(&text) {
                let kind = doc["kind"].as_str().unwrap_or_default().to_string();
                let json = match kind.as_str() {
                    "LMCacheEngine" => round_trip::<LMCacheEngine>(doc.clone()),
                    "CacheBlendEngine" => round_trip::<CacheBlendEngine>(doc.clone()),
                    "LMCacheCoordinator" => round_trip::<LMCacheCoordinator>(doc.clone()),
                    _ => continue,
                };
                let name = doc["metadata"]["name"].as_str().unwrap();
                seen += 1;
                insta::assert_json_snapshot!(format!("{source}-{stem}-{kind}-{name}"), json);
            }
        }
    }
    // 4 custom resources in deploy/examples, 17 in the renderer's fixtures.
    assert_eq!(seen, 21, "example objects read");
}
