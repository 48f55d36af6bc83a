//! Facts about the running process both binaries need: which namespace it runs in, and how an
//! error reads in a log line.

use std::path::Path;

/// The service-account namespace file, the fallback when `POD_NAMESPACE` is unset.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The process's own namespace: `given` (`POD_NAMESPACE` or a flag) when it is not blank, else
/// the content of `sa_file`; `None` when neither says (the caller names what it needed it for).
pub fn own_namespace(given: Option<String>, sa_file: &Path) -> Option<String> {
    given
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string(sa_file)
                .ok()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
        })
}

/// `error: cause: cause ...`, the whole `source()` chain on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_from_the_given_value_then_the_file() {
        let dir = std::env::temp_dir().join(format!("lmcache-runtime-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namespace");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(own_namespace(Some("ops".into()), &file).as_deref(), Some("ops"));
        assert_eq!(
            own_namespace(Some(" ".into()), &file).as_deref(),
            Some("from-file")
        );
        assert_eq!(own_namespace(None, &file).as_deref(), Some("from-file"));
        assert_eq!(own_namespace(None, &dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn error_chain_joins_the_causes() {
        let inner = std::io::Error::other("disk gone");
        let outer = std::io::Error::new(std::io::ErrorKind::NotFound, inner);
        assert_eq!(error_chain(&outer), "disk gone");
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("reading the key")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            error_chain(&Outer(std::io::Error::other("disk gone"))),
            "reading the key: disk gone"
        );
    }
}
