//! The layout's rule: no import cycle between modules. At every level of the module tree (the
//! crate's top modules; the files of `drr/`, of `train/`, ...), the modules that import each
//! other (`use crate::…`, `use super::…`, or a path written inline) must form no cycle. A child
//! importing its parent, or a parent its children, is not a cycle: that is how a module is built.
//! And one rule across the two halves: the page's file-size limits agree with the engine's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`["drr", "volume"]`) → source text, for every file of the library.
fn library_sources(src: &Path) -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(src).unwrap();
            if rel.starts_with("bin") {
                continue; // the binary is a crate of its own
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut parts: Vec<String> = rel
                    .with_extension("")
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                    parts.pop();
                }
                out.insert(parts, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

/// The code without `//` comments (doc links are not imports).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut base = prefix.to_vec();
        base.extend(segments(&tree[..open]));
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let (mut depth, mut start) = (0, 0);
        for (i, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let mut p = prefix.to_vec();
        p.extend(segments(tree.split(" as ").next().unwrap_or(tree)));
        out.push(p);
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A path that starts with `crate::` or `super::` (repeated), resolved from the crate root;
/// `None` for any other path.
fn resolve(module: &[String], path: &str) -> Option<(Vec<String>, String)> {
    if let Some(rest) = path.strip_prefix("crate::") {
        return Some((Vec::new(), rest.to_string()));
    }
    let mut base = module.to_vec();
    let mut rest = path;
    let mut any = false;
    while let Some(r) = rest.strip_prefix("super::") {
        base.pop()?;
        rest = r;
        any = true;
    }
    any.then(|| (base, rest.to_string()))
}

/// Every path a module names from the crate root, with `super::` resolved.
fn imported_paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let code = without_comments(text);
    let mut out = Vec::new();
    // use statements, grouped ones included
    for stmt in code.split(';') {
        let Some(at) = stmt.find("use ") else {
            continue;
        };
        if let Some((base, rest)) = resolve(module, stmt[at + 4..].trim()) {
            expand(&rest, &base, &mut out);
        }
    }
    // paths written inline (`crate::scale::otsu(..)`): every maximal path that starts at a
    // word boundary
    let is_path = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut i = 0;
    while i < code.len() {
        let c = code[i..].chars().next().unwrap();
        if !is_path(c) {
            i += c.len_utf8();
            continue;
        }
        let end = code[i..]
            .find(|c: char| !is_path(c))
            .map_or(code.len(), |e| i + e);
        if let Some((base, rest)) = resolve(module, &code[i..end]) {
            let mut p = base;
            p.extend(segments(&rest));
            out.push(p);
        }
        i = end;
    }
    out
}

/// The cycles: for each level of the tree, the groups of sibling modules that import each other,
/// with one import per edge as evidence.
fn cycles(sources: &BTreeMap<Vec<String>, String>) -> Vec<String> {
    // (level, from, to) -> an example import
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for (module, text) in sources {
        for path in imported_paths(module, text) {
            let Some(target) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| sources.contains_key(p))
            else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // parent and child
            }
            edges
                .entry((
                    module[..common].to_vec(),
                    module[common].clone(),
                    target[common].clone(),
                ))
                .or_insert_with(|| format!("{} uses crate::{}", module.join("/"), path.join("::")));
        }
    }
    let mut found = Vec::new();
    let levels: BTreeSet<Vec<String>> = edges.keys().map(|(l, _, _)| l.clone()).collect();
    for level in levels {
        let adj: BTreeMap<&str, Vec<&str>> = edges.keys().filter(|(l, _, _)| *l == level).fold(
            BTreeMap::new(),
            |mut m, (_, a, b)| {
                m.entry(a.as_str()).or_default().push(b.as_str());
                m
            },
        );
        // a and b are in one cycle when each reaches the other
        let reach = |from: &str| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from];
            while let Some(n) = todo.pop() {
                for &m in adj.get(n).into_iter().flatten() {
                    if seen.insert(m) {
                        todo.push(m);
                    }
                }
            }
            seen
        };
        let mut reported = BTreeSet::new();
        for &a in adj.keys() {
            let ra = reach(a);
            if !ra.contains(a) || reported.contains(a) {
                continue;
            }
            let group: BTreeSet<&str> = ra
                .iter()
                .copied()
                .filter(|b| reach(b).contains(a))
                .collect();
            reported.extend(group.iter().copied());
            let evidence: Vec<&String> = edges
                .iter()
                .filter(|((l, x, y), _)| {
                    *l == level && group.contains(x.as_str()) && group.contains(y.as_str())
                })
                .map(|(_, why)| why)
                .collect();
            found.push(format!(
                "cycle in {}: {:?} ({})",
                if level.is_empty() {
                    "crate".to_string()
                } else {
                    level.join("/")
                },
                group,
                evidence
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    found
}

#[test]
fn no_import_cycles_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = library_sources(&src);
    assert!(
        sources.len() > 20,
        "read only {} files of src/",
        sources.len()
    );
    let found = cycles(&sources);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

/// The checker finds what it should: a cycle through a grouped `use`, one through `super::`
/// and an inline path, and no cycle for a parent and its child.
#[test]
fn the_cycle_check_finds_cycles() {
    let m = |p: &str, text: &str| {
        (
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>(),
            text.to_string(),
        )
    };
    let sources: BTreeMap<_, _> = [
        m("", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        m(
            "a",
            "use crate::{error::X, b::{Thing, other}};\npub mod inner;",
        ),
        m("a/inner", "use super::super::c::Y; // use crate::d::Z;\n"),
        m("b", "fn f() { crate::a::inner::g() }"),
        m("c", "use crate::a::Q;"),
        m("d", "use crate::a;"),
        m("error", ""),
        m("p", "pub mod q; use q::Z;"),
        m("p/q", "use super::W;"),
    ]
    .into_iter()
    .collect();
    let found = cycles(&sources);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(r#"cycle in crate: {"a", "b", "c"}"#),
        "{}",
        found[0]
    );
}

/// The page checks file sizes before reading (www/limits.js): its image limit is the engine's,
/// its checkpoint limit is no larger than the native one, and its CT limit no larger than the
/// studio's voxel limit takes.
#[test]
fn the_page_file_limits_agree_with_the_engine() {
    let js = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("www/limits.js"))
        .unwrap();
    let mib = |name: &str| -> u64 {
        let line = js
            .lines()
            .find(|l| l.starts_with(&format!("export const {name} = ")))
            .unwrap_or_else(|| panic!("www/limits.js has no {name}"));
        let n = line.split('=').nth(1).unwrap().trim();
        let n = n
            .strip_suffix("* MiB;")
            .unwrap_or_else(|| panic!("{line}: not N * MiB"));
        n.trim().parse::<u64>().unwrap() << 20
    };
    assert_eq!(mib("IMAGE_BYTES"), dxr::io::MAX_FILE_BYTES);
    assert!(mib("CHECKPOINT_BYTES") <= dxr::checkpoint::MAX_CHECKPOINT_BYTES);
    assert!(mib("CONFIG_BYTES") > 0);
    assert!(mib("CT_BYTES") <= 4 * dxr::drr::studio::MAX_STUDIO_VOXELS as u64);
}

/// `docs/limits.md` shows every limit of `dxr::limits::Limits` with the value the code has, and
/// names no limit the code does not have.
#[test]
fn the_limits_table_shows_every_limit_as_the_code_has_it() {
    use dxr::limits::Limits;
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/limits.md"))
        .expect("docs/limits.md");
    for l in Limits::ALL {
        let key = format!("`Limits::{}`", l.name);
        let row = doc
            .lines()
            .find(|r| r.starts_with('|') && r.contains(&key))
            .unwrap_or_else(|| panic!("docs/limits.md has no row naming {key}"));
        assert!(
            row.contains(&l.shown()),
            "docs/limits.md's row naming {key} does not show {}: {row}",
            l.shown()
        );
    }
    for (at, _) in doc.match_indices("`Limits::") {
        let name: String = doc[at + 9..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        assert!(
            Limits::ALL.iter().any(|l| l.name == name),
            "docs/limits.md names Limits::{name}, which the code does not have"
        );
    }
}
