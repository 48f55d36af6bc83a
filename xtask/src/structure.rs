//! Checks of xtask's own source (tests only): its modules form no cycle and no function is long.
//!
//! Both read `xtask/src/**/*.rs` with comments and string and char literals blanked out (newlines
//! kept), so only code is scanned and line numbers stay true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The longest function allowed, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 90;

/// One file: its module path (`bench::converge`; the crate root is empty) and its code.
struct Source {
    file: String,
    module: Vec<String>,
    code: Vec<char>,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            let mut module: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            let last = module.pop().unwrap();
            if !matches!(last.as_str(), "main.rs" | "mod.rs") {
                module.push(last.trim_end_matches(".rs").to_string());
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Source {
                file: rel.display().to_string(),
                module,
                code: blank_non_code(&text.chars().collect::<Vec<_>>()),
            }
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` with the contents of comments and of string, raw string and char literals replaced by
/// spaces (newlines kept).
fn blank_non_code(text: &[char]) -> Vec<char> {
    let mut out = text.to_vec();
    let mut i = 0;
    while i < text.len() {
        let Some((from, to, resume)) = literal_or_comment(text, i) else {
            i += 1;
            continue;
        };
        for c in &mut out[from..to] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = resume;
    }
    out
}

/// A comment or literal starting at `i`: the span to blank and where code resumes.
fn literal_or_comment(t: &[char], i: usize) -> Option<(usize, usize, usize)> {
    let at = |k: usize| t.get(k).copied().unwrap_or('\0');
    let find = |from: usize, c: char| (from..t.len()).find(|&k| t[k] == c).unwrap_or(t.len());
    let ident_before = i > 0 && (t[i - 1].is_alphanumeric() || t[i - 1] == '_');
    match at(i) {
        '/' if at(i + 1) == '/' => {
            let end = find(i, '\n');
            Some((i, end, end))
        }
        '/' if at(i + 1) == '*' => {
            let end = block_comment_end(t, i);
            Some((i, end, end))
        }
        '"' => {
            let close = string_end(t, i + 1);
            Some((i + 1, close, close + 1))
        }
        'r' | 'b' if !ident_before => raw_string(t, i),
        '\'' if at(i + 1) == '\\' => {
            let close = find(i + 3, '\'');
            Some((i + 1, close, close + 1))
        }
        // A char literal; anything else after a quote is a lifetime.
        '\'' if at(i + 2) == '\'' => Some((i + 1, i + 2, i + 3)),
        _ => None,
    }
}

fn block_comment_end(t: &[char], start: usize) -> usize {
    let (mut depth, mut k) = (0, start);
    while k + 1 < t.len() {
        match (t[k], t[k + 1]) {
            ('/', '*') => depth += 1,
            ('*', '/') => depth -= 1,
            _ => {
                k += 1;
                continue;
            }
        }
        k += 2;
        if depth == 0 {
            return k;
        }
    }
    t.len()
}

/// The index of the closing quote of a string whose contents start at `k`.
fn string_end(t: &[char], mut k: usize) -> usize {
    while k < t.len() && t[k] != '"' {
        k += if t[k] == '\\' { 2 } else { 1 };
    }
    k.min(t.len())
}

/// `r"…"`, `r#"…"#` or `br"…"` at `i`: the span of its contents and the end of its delimiter.
fn raw_string(t: &[char], i: usize) -> Option<(usize, usize, usize)> {
    let r = i + usize::from(t[i] == 'b');
    let hashes = t
        .get(r + 1..)
        .unwrap_or_default()
        .iter()
        .take_while(|c| **c == '#')
        .count();
    if t.get(r) != Some(&'r') || t.get(r + 1 + hashes) != Some(&'"') {
        return None;
    }
    let open = r + hashes + 2;
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let end = (open..t.len())
        .find(|&e| t[e..].starts_with(&close))
        .unwrap_or(t.len());
    Some((open, end, end + close.len()))
}

/// Every `fn` with a body: (name, line of `fn`, lines up to its closing brace).
fn functions(code: &[char]) -> Vec<(String, usize, usize)> {
    let line_of = |k: usize| code[..k].iter().filter(|c| **c == '\n').count() + 1;
    let mut out = Vec::new();
    for start in word_starts(code, "fn") {
        let name: String = code[start + 2..]
            .iter()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        // `fn(` is a function pointer type, not a definition.
        let Some(open) = (start..code.len()).find(|&k| code[k] == '{' || code[k] == ';') else {
            continue;
        };
        if name.is_empty() || code[open] == ';' {
            continue;
        }
        let close = matching_brace(code, open);
        out.push((name, line_of(start), line_of(close) - line_of(start) + 1));
    }
    out
}

fn matching_brace(code: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (k, c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return k,
            '}' => depth -= 1,
            _ => {}
        }
    }
    code.len() - 1
}

/// Where the identifier `word` starts in `code` (not inside a longer identifier or a path).
fn word_starts<'a>(code: &'a [char], word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let word: Vec<char> = word.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    (0..code.len()).filter(move |&k| {
        code[k..].starts_with(&word)
            && (k == 0 || !ident(code[k - 1]))
            && !code.get(k + word.len()).copied().is_some_and(ident)
    })
}

/// A module path (`["bench", "converge"]`; the crate root is empty) as written in Rust.
fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// The code as identifiers and punctuation (whitespace dropped, `::` one token).
fn tokens(code: &[char]) -> Vec<String> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < code.len() {
        let c = code[k];
        let len = if c.is_alphanumeric() || c == '_' {
            code[k..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .count()
        } else if code[k..].starts_with(&[':', ':']) {
            2
        } else {
            1
        };
        if !c.is_whitespace() {
            out.push(code[k..k + len].iter().collect());
        }
        k += len;
    }
    out
}

/// The paths of a path expression or `use` tree starting at token `j` (after `crate::` and
/// the like), each below `prefix`; returns them and the token after the tree.
fn path_tree(t: &[String], mut j: usize, prefix: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix.to_vec();
    while j < t.len() {
        if t[j] == "{" {
            let mut all = Vec::new();
            j += 1;
            while j < t.len() && t[j] != "}" {
                let (paths, next) = path_tree(t, j, &path);
                all.extend(paths);
                j = next;
                while j < t.len() && t[j] != "," && t[j] != "}" {
                    j += 1; // `as alias`, or what follows a nested group
                }
                j += usize::from(t.get(j).is_some_and(|t| t == ","));
            }
            return (all, j + 1);
        }
        if !t[j].starts_with(|c: char| c.is_alphabetic() || c == '_') {
            break;
        }
        if t[j] != "self" {
            path.push(t[j].clone());
        }
        if t.get(j + 1).is_none_or(|t| t != "::") {
            return (vec![path], j + 1);
        }
        j += 2;
    }
    (vec![path], j)
}

/// The file modules `source` names through `crate::`, `super::` and `self::` paths and through
/// paths into its own child modules (`pki::write` in `cluster`).
fn dependencies(source: &Source, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let t = tokens(&source.code);
    let child = |name: &str| {
        let mut path = source.module.clone();
        path.push(name.to_string());
        modules.iter().any(|m| m.starts_with(&path))
    };
    // Inline modules (`mod tests { .. }`) the scan is in, with the brace depth they opened at.
    let (mut inline, mut depth): (Vec<(String, usize)>, usize) = (Vec::new(), 0);
    let mut found = BTreeSet::new();
    let mut j = 0;
    while j < t.len() {
        match t[j].as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if t.get(j + 2).is_some_and(|t| t == "{") => inline.push((t[j + 1].clone(), depth)),
            _ => {}
        }
        let starts_path = t.get(j + 1).is_some_and(|t| t == "::") && (j == 0 || t[j - 1] != "::");
        let mut here = source.module.clone();
        here.extend(inline.iter().map(|(name, _)| name.clone()));
        let base = match t[j].as_str() {
            _ if !starts_path => None,
            "crate" => Some((Vec::new(), j + 2)),
            "self" => Some((here, j + 2)),
            "super" => {
                let mut k = j;
                while t.get(k).is_some_and(|t| t == "super") && t.get(k + 1).is_some_and(|t| t == "::") {
                    here.pop();
                    k += 2;
                }
                Some((here, k))
            }
            name if child(name) => Some((source.module.clone(), j)),
            _ => None,
        };
        let Some((prefix, from)) = base else {
            j += 1;
            continue;
        };
        let (paths, next) = path_tree(&t, from, &prefix);
        found.extend(paths.iter().map(|p| defining_module(p, modules)));
        // A skipped `use` group holds balanced braces, so the depth stays true.
        j = next;
    }
    found.remove(&source.module);
    found
}

/// The longest file module `path` starts with (an item's path names its module first).
fn defining_module(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
        .unwrap_or_default()
}

/// A cycle in `graph` (the first module repeated at its end), if there is one.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        module: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = stack.iter().position(|m| m == module) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(module.clone());
            return Some(cycle);
        }
        if !done.insert(module.clone()) {
            return None;
        }
        stack.push(module.clone());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

fn module_graph(sources: &[Source]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    sources
        .iter()
        .map(|s| (s.module.clone(), dependencies(s, &modules)))
        .collect()
}

#[test]
fn the_modules_form_no_cycle() {
    let graph = module_graph(&sources());
    // The scan sees the dependencies it is meant to: through `crate::`, a child and `super::`.
    let module = |path: &str| path.split("::").map(String::from).collect::<Vec<_>>();
    assert!(graph[&module("ci")].contains(&module("e2e")), "{graph:?}");
    assert!(
        graph[&module("cluster")].contains(&module("cluster::proc")),
        "{graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let cycle: Vec<String> = cycle.iter().map(|m| display(m)).collect();
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_scans_skip_literals_and_comments_and_see_parents() {
    let source = |module: &str, code: &str| Source {
        file: format!("{module}.rs"),
        module: module.split("::").map(String::from).collect(),
        code: blank_non_code(&code.chars().collect::<Vec<_>>()),
    };
    let code =
        "fn f() {\n    let s = \"}\";\n    let c = '{';\n    let r = r#\"{\"#;\n    // }\n}\nfn g() {}\n";
    let lengths: Vec<(String, usize, usize)> = functions(&source("a", code).code);
    assert_eq!(lengths, [("f".into(), 1, 6), ("g".into(), 7, 1)]);
    let child = source("a::b", "use super::{X, Y as Z};\nfn f() { crate::c::X }\n");
    let parent = source(
        "a",
        "use self::b::W;\n// crate::c\nmod tests {\n    use super::*;\n}\n",
    );
    let other = source("c", "");
    let graph = module_graph(&[child, parent, other]);
    let module = |path: &str| path.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(graph[&module("a")], BTreeSet::from([module("a::b")]));
    assert_eq!(graph[&module("a::b")], BTreeSet::from([module("a"), module("c")]));
    assert_eq!(find_cycle(&graph).map(|c| c.len()), Some(3));
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for source in sources() {
        for (name, line, lines) in functions(&source.code) {
            if lines > MAX_FN_LINES {
                long.push(format!("{}:{line} fn {name}: {lines} lines", source.file));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into helpers that each do one thing):\n  {}",
        long.join("\n  ")
    );
}
