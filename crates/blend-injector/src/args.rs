//! The vLLM argument-merge rules (cacheblend.md §8, conformance.md §2.4).
//!
//! A token matches [`Flag`] `F` when its option name (the part before the first `=`) is one of
//! `F`'s spellings: the long name with `_` read as `-` (vLLM normalises underscores), or one of
//! its short aliases exactly (`-pp`, `-cc`). User arguments are never removed.

use lmcache_manifest_renderer::json::compact;
use serde_json::Value;

/// A vLLM option: its long name and the short aliases vLLM 0.33's parser accepts for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    /// The canonical `--long-name`.
    pub name: &'static str,
    /// Other spellings, matched exactly.
    pub aliases: &'static [&'static str],
}

impl Flag {
    /// A flag without aliases.
    pub const fn long(name: &'static str) -> Self {
        Self { name, aliases: &[] }
    }

    /// Whether `token` is this flag in the `F` or `F=value` form, in any spelling.
    pub fn matches(&self, token: &str) -> bool {
        let name = token.split_once('=').map_or(token, |(name, _)| name);
        long_name_matches(name, self.name) || self.aliases.contains(&name)
    }
}

impl From<&'static str> for Flag {
    fn from(name: &'static str) -> Self {
        Self::long(name)
    }
}

/// `--pipeline-parallel-size` / `-pp`.
pub const PIPELINE_PARALLEL_SIZE: Flag = Flag {
    name: "--pipeline-parallel-size",
    aliases: &["-pp"],
};
/// `--compilation-config` / `-cc`.
pub const COMPILATION_CONFIG: Flag = Flag {
    name: "--compilation-config",
    aliases: &["-cc"],
};
/// What CacheBlend needs: chunked prefill off.
pub const NO_CHUNKED_PREFILL: &str = "--no-enable-chunked-prefill";
/// vLLM 0.33's spellings of the chunked-prefill switch besides [`NO_CHUNKED_PREFILL`].
const ENABLE_CHUNKED_PREFILL: &str = "--enable-chunked-prefill";
const DISABLE_CHUNKED_PREFILL: &str = "--disable-chunked-prefill";

fn long_name_matches(name: &str, flag: &str) -> bool {
    name.len() == flag.len()
        && name
            .bytes()
            .zip(flag.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Whether `token` is flag `flag` in the `F` or `F=value` form (either spelling).
pub fn matches_flag(token: &str, flag: impl Into<Flag>) -> bool {
    flag.into().matches(token)
}

/// Whether any token matches `flag`.
pub fn has_flag(args: &[String], flag: impl Into<Flag>) -> bool {
    let flag = flag.into();
    args.iter().any(|token| flag.matches(token))
}

/// `set(F, V)`: every match gets the value `V` in place (`F V` keeps the space form and the
/// user's spelling, `F=old` becomes `F=V` with the long name); the token after a space-form
/// match is its value and is not examined. A trailing `F` gets `V` appended. Without any
/// match, `F V` is appended.
pub fn set_flag(args: &mut Vec<String>, flag: impl Into<Flag>, value: &str) {
    update_flag(args, flag.into(), |_| value.to_string());
}

/// [`set_flag`] with the new value computed from the old one (`None` for a trailing `F` and
/// for the appended `F V`).
fn update_flag(args: &mut Vec<String>, flag: Flag, value: impl Fn(Option<&str>) -> String) {
    let mut matched = false;
    let mut i = 0;
    while i < args.len() {
        if !flag.matches(&args[i]) {
            i += 1;
            continue;
        }
        matched = true;
        if let Some((_, old)) = args[i].split_once('=') {
            args[i] = format!("{}={}", flag.name, value(Some(old)));
            i += 1;
        } else {
            match args.get_mut(i + 1) {
                Some(next) => *next = value(Some(next)),
                None => args.push(value(None)),
            }
            i += 2;
        }
    }
    if !matched {
        args.push(flag.name.to_string());
        args.push(value(None));
    }
}

/// `bare(F)`: append `F` unless a token already matches it.
pub fn bare_flag(args: &mut Vec<String>, flag: impl Into<Flag>) {
    let flag = flag.into();
    if !has_flag(args, flag) {
        args.push(flag.name.to_string());
    }
}

/// Chunked prefill off: a user `--enable-chunked-prefill` (which CacheBlend cannot use) is
/// replaced in place by `--no-enable-chunked-prefill`; otherwise that flag is added unless the
/// user already disabled chunked prefill in either spelling.
pub fn disable_chunked_prefill(args: &mut Vec<String>) {
    let mut replaced = false;
    for token in args.iter_mut() {
        if matches_flag(token, ENABLE_CHUNKED_PREFILL) {
            *token = NO_CHUNKED_PREFILL.to_string();
            replaced = true;
        }
    }
    if !replaced && !has_flag(args, DISABLE_CHUNKED_PREFILL) {
        bare_flag(args, NO_CHUNKED_PREFILL);
    }
}

/// Sets `cudagraph_mode` in every `--compilation-config`/`-cc` value, keeping the user's other
/// keys when the value is a JSON object (otherwise it is replaced); appends the flag when
/// absent. Values are written as compact JSON with sorted keys.
pub fn set_cudagraph_mode(args: &mut Vec<String>, mode: &str) {
    update_flag(args, COMPILATION_CONFIG, |old| {
        let mut config = match old.and_then(|o| serde_json::from_str::<Value>(o).ok()) {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        config.insert("cudagraph_mode".into(), Value::from(mode));
        compact(&Value::Object(config))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matching() {
        let cases = [
            ("--block-size", true),
            ("--block-size=16", true),
            ("--block_size", true),
            ("--block_size=16", true),
            ("--block-sizes", false),
            ("--block-size-x=1", false),
            ("-block-size", false),
            ("--block", false),
            ("block-size", false),
            ("--block-size==", true),
        ];
        for (token, want) in cases {
            assert_eq!(matches_flag(token, "--block-size"), want, "{token}");
        }
        // Only the name is normalised: a value with `_` does not matter.
        assert!(matches_flag(
            "--kv-transfer-config={\"a_b\":1}",
            "--kv-transfer-config"
        ));
        // The flag side is canonical: `-` in a token never matches `_` in a flag.
        assert!(!matches_flag("--a-b", "--a_b"));
    }

    #[test]
    fn aliases_match_exactly() {
        let cases = [
            ("-pp", true),
            ("-pp=2", true),
            ("--pipeline-parallel-size", true),
            ("--pipeline_parallel_size=2", true),
            ("-p", false),
            ("-ppp", false),
            ("--pp", false),
        ];
        for (token, want) in cases {
            assert_eq!(PIPELINE_PARALLEL_SIZE.matches(token), want, "{token}");
        }
        assert!(COMPILATION_CONFIG.matches("-cc"));
        assert!(!COMPILATION_CONFIG.matches("-c"));
    }

    #[test]
    fn set_table() {
        let cases: [(&[&str], &[&str]); 9] = [
            (&[], &["--block-size", "64"]),
            (&["m", "--block-size", "16"], &["m", "--block-size", "64"]),
            (&["--block-size=16", "m"], &["--block-size=64", "m"]),
            (&["--block_size=16"], &["--block-size=64"]),
            (&["--block_size", "16"], &["--block_size", "64"]),
            (&["m", "--block-size"], &["m", "--block-size", "64"]),
            (
                &["--block-size", "16", "x", "--block-size", "32"],
                &["--block-size", "64", "x", "--block-size", "64"],
            ),
            // The value token is consumed, never examined as a flag.
            (
                &["--block-size", "--block-size", "x"],
                &["--block-size", "64", "x"],
            ),
            (
                &["--block-size=1", "--block-size", "2"],
                &["--block-size=64", "--block-size", "64"],
            ),
        ];
        for (input, want) in cases {
            let mut args = v(input);
            set_flag(&mut args, "--block-size", "64");
            assert_eq!(args, v(want), "{input:?}");
        }
    }

    #[test]
    fn set_keeps_an_alias_spelling() {
        let cases: [(&[&str], &[&str]); 4] = [
            (&["m", "-pp", "2"], &["m", "-pp", "1"]),
            (&["-pp=2"], &["--pipeline-parallel-size=1"]),
            (
                &["-pp", "2", "--pipeline-parallel-size", "4"],
                &["-pp", "1", "--pipeline-parallel-size", "1"],
            ),
            (&["m"], &["m", "--pipeline-parallel-size", "1"]),
        ];
        for (input, want) in cases {
            let mut args = v(input);
            set_flag(&mut args, PIPELINE_PARALLEL_SIZE, "1");
            assert_eq!(args, v(want), "{input:?}");
        }
    }

    #[test]
    fn bare_table() {
        let cases: [(&[&str], &[&str]); 4] = [
            (&[], &["--enforce-eager"]),
            (&["--enforce-eager"], &["--enforce-eager"]),
            (&["--enforce_eager"], &["--enforce_eager"]),
            (&["--enforce-eager=true", "m"], &["--enforce-eager=true", "m"]),
        ];
        for (input, want) in cases {
            let mut args = v(input);
            bare_flag(&mut args, "--enforce-eager");
            assert_eq!(args, v(want), "{input:?}");
        }
    }

    #[test]
    fn chunked_prefill_table() {
        let cases: [(&[&str], &[&str]); 7] = [
            (&["m"], &["m", "--no-enable-chunked-prefill"]),
            (&["--no-enable-chunked-prefill"], &["--no-enable-chunked-prefill"]),
            (&["--no_enable_chunked_prefill"], &["--no_enable_chunked_prefill"]),
            (&["--disable-chunked-prefill"], &["--disable-chunked-prefill"]),
            (
                &["--enable-chunked-prefill", "m"],
                &["--no-enable-chunked-prefill", "m"],
            ),
            (
                &["--enable_chunked_prefill=true"],
                &["--no-enable-chunked-prefill"],
            ),
            (
                &["--disable-chunked-prefill", "--enable-chunked-prefill"],
                &["--disable-chunked-prefill", "--no-enable-chunked-prefill"],
            ),
        ];
        for (input, want) in cases {
            let mut args = v(input);
            disable_chunked_prefill(&mut args);
            assert_eq!(args, v(want), "{input:?}");
        }
    }

    #[test]
    fn cudagraph_mode_merges_into_the_users_compilation_config() {
        let cases: [(&[&str], &[&str]); 6] = [
            (
                &["m"],
                &["m", "--compilation-config", r#"{"cudagraph_mode":"PIECEWISE"}"#],
            ),
            (
                &["-cc", r#"{"cudagraph_capture_sizes": [1, 2, 4]}"#],
                &[
                    "-cc",
                    r#"{"cudagraph_capture_sizes":[1,2,4],"cudagraph_mode":"PIECEWISE"}"#,
                ],
            ),
            (
                &[r#"--compilation-config={"cudagraph_mode":"FULL","level":3}"#],
                &[r#"--compilation-config={"cudagraph_mode":"PIECEWISE","level":3}"#],
            ),
            // Not a JSON object: replaced.
            (&["-cc", "3"], &["-cc", r#"{"cudagraph_mode":"PIECEWISE"}"#]),
            (
                &["-cc", "{not json"],
                &["-cc", r#"{"cudagraph_mode":"PIECEWISE"}"#],
            ),
            (&["m", "-cc"], &["m", "-cc", r#"{"cudagraph_mode":"PIECEWISE"}"#]),
        ];
        for (input, want) in cases {
            let mut args = v(input);
            set_cudagraph_mode(&mut args, "PIECEWISE");
            assert_eq!(args, v(want), "{input:?}");
        }
    }
}
