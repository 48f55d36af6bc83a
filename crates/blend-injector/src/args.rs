//! The vLLM argument-merge rules (cacheblend.md §8).
//!
//! A token matches flag `F` when its option name (the part before the first `=`), with `_`
//! read as `-`, equals `F`: vLLM accepts both spellings. User arguments are never removed.

/// Whether `token` is flag `flag` in the `F` or `F=value` form (either spelling).
pub fn matches_flag(token: &str, flag: &str) -> bool {
    let name = token.split_once('=').map_or(token, |(name, _)| name);
    name.len() == flag.len()
        && name
            .bytes()
            .zip(flag.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Whether any token matches `flag`.
pub fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|token| matches_flag(token, flag))
}

/// `set(F, V)`: every match gets the value `V` in place (`F V` keeps the space form, `F=old`
/// becomes `F=V`); the token after a space-form match is its value and is not examined. A
/// trailing `F` gets `V` appended. Without any match, `F V` is appended.
pub fn set_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    let mut matched = false;
    let mut i = 0;
    while i < args.len() {
        if !matches_flag(&args[i], flag) {
            i += 1;
            continue;
        }
        matched = true;
        if args[i].contains('=') {
            args[i] = format!("{flag}={value}");
            i += 1;
        } else {
            match args.get_mut(i + 1) {
                Some(next) => *next = value.to_string(),
                None => args.push(value.to_string()),
            }
            i += 2;
        }
    }
    if !matched {
        args.push(flag.to_string());
        args.push(value.to_string());
    }
}

/// `bare(F)`: append `F` unless a token already matches it.
pub fn bare_flag(args: &mut Vec<String>, flag: &str) {
    if !has_flag(args, flag) {
        args.push(flag.to_string());
    }
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
}
