//! Typed identities. Every map, index and queue in the operator is keyed by an [`ObjectKey`]
//! (kind + namespace + name) or by a [`Uid`] — never by a bare name (multitenancy.md MT-1).

use std::fmt;

pub use lmcache_api::Kind;

/// One custom resource: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// `namespace/name` of an LMCacheCoordinator (what `coordinator.ref.name` resolves to).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoordinatorKey {
    /// Namespace (always the referring engine's).
    pub namespace: String,
    /// Coordinator name.
    pub name: String,
}

/// A `metadata.uid`: identifies one incarnation of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [Kind::Engine, Kind::BlendEngine, Kind::Coordinator] {
            assert_eq!(Kind::from_kind_name(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::from_kind_name("DaemonSet"), None);
    }

    #[test]
    fn same_name_in_two_namespaces_or_kinds_are_different_keys() {
        let a = ObjectKey::new(Kind::Engine, "team-a", "cache");
        let b = ObjectKey::new(Kind::Engine, "team-b", "cache");
        let c = ObjectKey::new(Kind::BlendEngine, "team-a", "cache");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "LMCacheEngine team-a/cache");
    }

    /// MTT-13: every map, index and queue takes a typed key. The signatures below only compile
    /// while that holds; the calls check that the keys keep tenants apart.
    #[test]
    fn state_and_indexes_are_keyed_by_typed_keys_or_uids() {
        use crate::coordinator_index::CoordinatorIndex;
        use crate::state::{Backoff, EventLog};
        use crate::watches::TriggerRef;
        use kube::runtime::reflector::ObjectRef;
        use lmcache_api::v1alpha1::LMCacheEngine;

        let engines_for: fn(&CoordinatorIndex, &CoordinatorKey) -> Vec<ObjectKey> =
            CoordinatorIndex::engines_for;
        let first_time: fn(&EventLog, &Uid, i64, &str, &str) -> bool = EventLog::first_time;
        let next_delay: fn(&Backoff, &Uid) -> std::time::Duration = Backoff::next_delay;
        // Client restarts, the missed-injection counts and the resync queue, likewise.
        let _: fn(&crate::reconcile::restart::RestartTracker, &Uid) =
            crate::reconcile::restart::RestartTracker::forget;
        let _: fn(&crate::client_cache::ClientDemand, &ObjectKey, bool) =
            crate::client_cache::ClientDemand::set;
        let _: fn(&crate::watchdog::MissedCounts, &ObjectKey) -> Option<i32> =
            crate::watchdog::MissedCounts::get;
        let _: fn(&crate::resync_queue::ResyncQueue, ObjectKey) = crate::resync_queue::ResyncQueue::push;
        let clients_on: fn(
            &crate::client_cache::ClientCache,
            Kind,
            &str,
            &str,
            &str,
        ) -> Vec<std::sync::Arc<crate::client_pod::ClientPod>> = crate::client_cache::ClientCache::clients_on;
        assert!(clients_on(&Default::default(), Kind::Engine, "team-a", "cache", "n0").is_empty());
        // The controller queue is keyed by ObjectRef: namespace + name within one kind.
        let queued: TriggerRef<LMCacheEngine> = ObjectRef::new("cache").within("team-a");
        assert_ne!(queued, ObjectRef::new("cache").within("team-b"));

        let index = CoordinatorIndex::default();
        index.set(&ObjectKey::new(Kind::Engine, "team-a", "cache"), Some("coord"));
        let other_namespace = CoordinatorKey {
            namespace: "team-b".into(),
            name: "coord".into(),
        };
        assert!(engines_for(&index, &other_namespace).is_empty());
        let log = EventLog::default();
        assert!(first_time(&log, &Uid("a".into()), 1, "R", "m"));
        assert!(first_time(&log, &Uid("b".into()), 1, "R", "m"));
        let backoff = Backoff::default();
        assert_eq!(
            next_delay(&backoff, &Uid("a".into())),
            next_delay(&backoff, &Uid("b".into()))
        );
    }

    /// Where a map or set keyed by a bare string is data or half of a typed key, not an index a
    /// name alone could mix tenants in: (file, the declaration line as written, why).
    const BARE_STRING_KEYS: [(&str, &str, &str); 3] = [
        (
            "bins/operator/src/client_cache.rs",
            "type ByNamespace = HashMap<String, HashMap<String, Arc<ClientPod>>>;",
            "namespace, then pod name: the two halves of one (namespace, name) key",
        ),
        (
            "bins/operator/src/pod_index.rs",
            "by_instance: HashMap<Instance, BTreeSet<String>>,",
            "the pod names of one (namespace, instance) entry: the namespace is in the key",
        ),
        (
            "bins/operator/src/reconcile/restart.rs",
            "inner: UidMap<HashMap<String, NodeState>>,",
            "node names (cluster-scoped) within one engine's uid entry",
        ),
    ];

    /// The Rust files under `dir`, recursively.
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// A map, set or cache type whose key is a bare string: `HashMap<String`, `BTreeSet<&str`,
    /// `DashMap<Arc<str>`, ...
    fn keyed_by_bare_string(line: &str) -> bool {
        const COLLECTIONS: [&str; 10] = [
            "HashMap", "BTreeMap", "HashSet", "BTreeSet", "DashMap", "DashSet", "IndexMap", "IndexSet",
            "LruCache", "Cache",
        ];
        const KEYS: [&str; 5] = ["String", "&str", "&'", "Arc<str>", "Box<str>"];
        COLLECTIONS.iter().any(|collection| {
            line.match_indices(&format!("{collection}<")).any(|(at, found)| {
                let before = line[..at].chars().next_back();
                let key = line[at + found.len()..].trim_start();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && KEYS.iter().any(|k| key.starts_with(k))
            })
        })
    }

    /// The lines of `text` that declare state: struct and enum bodies (every line, so a field
    /// type rustfmt wraps is seen whole), statics and type aliases. Comments are skipped.
    fn declaration_lines(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut depth = 0usize; // brace depth inside a struct or enum body, 0 outside
        let mut alias = false; // inside a `type` alias or `static`, until its `;`
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default().trim();
            let opens = code.matches('{').count();
            let closes = code.matches('}').count();
            let item = code
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ");
            if depth > 0 {
                out.push(code);
                depth = (depth + opens).saturating_sub(closes);
            } else if item.starts_with("struct ") || item.starts_with("enum ") {
                out.push(code);
                depth = opens.saturating_sub(closes);
            } else if alias || item.starts_with("type ") || item.starts_with("static ") {
                out.push(code);
                alias = !code.ends_with(';');
            }
        }
        out
    }

    /// MT-1 for everything, not only the maps named above: no struct field, static or type
    /// alias of the operator, the webhook or the injector holds a map, set or cache keyed by a
    /// bare string (a name alone would mix up two tenants' objects of the same name), unless
    /// [`BARE_STRING_KEYS`] says why it is not an index by name.
    #[test]
    fn no_state_is_keyed_by_a_bare_string() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in [
            "bins/operator/src",
            "bins/webhook/src",
            "crates/blend-injector/src",
        ] {
            rust_files(&root.join(dir), &mut files);
        }
        files.sort();
        assert!(
            files.len() > 20,
            "only {} files found under {}",
            files.len(),
            root.display()
        );
        let mut found = Vec::new();
        for file in &files {
            let relative = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(file).unwrap();
            for line in declaration_lines(&text) {
                if keyed_by_bare_string(line) {
                    found.push((relative.clone(), line.to_string()));
                }
            }
        }
        let allowed =
            |(file, line): &(String, String)| BARE_STRING_KEYS.iter().any(|(f, l, _)| f == file && l == line);
        let offending: Vec<_> = found.iter().filter(|f| !allowed(f)).collect();
        assert!(
            offending.is_empty(),
            "state keyed by a bare string (use ObjectKey, Uid or CoordinatorKey, or add the line \
             to BARE_STRING_KEYS with the reason it is not an index by name): {offending:#?}"
        );
        // An entry whose line is gone or changed must go or be checked again.
        for (file, line, _) in BARE_STRING_KEYS {
            assert!(
                found.iter().any(|(f, l)| f == file && l == line),
                "BARE_STRING_KEYS entry no longer found: {file}: {line}"
            );
        }
    }

    /// The scanner sees what rustfmt wraps, statics and aliases, and leaves typed keys, labels
    /// passed to functions and code outside declarations alone.
    #[test]
    fn the_bare_string_scan_finds_wrapped_fields_statics_and_aliases() {
        let text = "struct State {\n    pending: Mutex<\n        HashMap<String, Instant>,\n    >,\n    ok: HashMap<Uid, u8>,\n}\nstatic NAMES: LazyLock<BTreeSet<&'static str>> = todo;\ntype ByName =\n    DashMap<Arc<str>, u8>;\nfn f(labels: &BTreeMap<String, String>) { let m: HashMap<String, u8> = x; }\nstruct Typed(HashMap<ObjectKey, u8>, EngineCache<String>);\n";
        let found: Vec<&str> = declaration_lines(text)
            .into_iter()
            .filter(|l| keyed_by_bare_string(l))
            .collect();
        assert_eq!(
            found,
            [
                "HashMap<String, Instant>,",
                "static NAMES: LazyLock<BTreeSet<&'static str>> = todo;",
                "DashMap<Arc<str>, u8>;"
            ]
        );
    }
}
