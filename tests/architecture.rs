//! The house rule, held by a test: lower rooms never import higher ones.
//!
//! Reads every `.rs` file under `src/`, finds each path into the crate (`crate::room::...`,
//! `use crate::{room::..., ...}`, and `rstar::room` in the binary's CLI), and fails naming the
//! file and line of every import that a room's rules forbid (see [`FORBIDDEN`] and
//! `docs/architecture.md`). Comments are ignored. A second test plants upward imports in a
//! scratch tree and checks that each is caught, so the checker itself can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Rooms the CLI and the C ABI are made of: no library room may import them.
const SHELLS: &[&str] = &["cli", "ffi", "bin"];

/// For each room, the rooms it must not import (besides the shells, forbidden to all but `cli`
/// and `bin`). Bottom to top: the leaves error/plot/rng/assets, backend, model + tokenizer, engine,
/// exec/grade/steps, data, search, train, bench, the shells.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("error", &["*"]),
    ("plot", &["*"]),
    ("rng", &["*"]),
    (
        "backend",
        &[
            "model",
            "tokenizer",
            "engine",
            "steps",
            "exec",
            "grade",
            "data",
            "search",
            "train",
            "bench",
            "assets",
        ],
    ),
    (
        "model",
        &[
            "engine", "steps", "exec", "grade", "data", "search", "train", "bench",
        ],
    ),
    (
        "tokenizer",
        &[
            "engine", "steps", "exec", "grade", "data", "search", "train", "bench",
        ],
    ),
    (
        "engine",
        &["steps", "exec", "grade", "data", "search", "train", "bench"],
    ),
    (
        "exec",
        &[
            "backend",
            "model",
            "tokenizer",
            "engine",
            "grade",
            "steps",
            "data",
            "search",
            "train",
            "bench",
        ],
    ),
    (
        "grade",
        &[
            "backend",
            "model",
            "tokenizer",
            "engine",
            "steps",
            "data",
            "search",
            "train",
            "bench",
        ],
    ),
    (
        "steps",
        &[
            "backend", "model", "engine", "data", "search", "train", "bench",
        ],
    ),
    ("data", &["engine", "search", "train", "bench"]),
    ("search", &["train", "bench"]),
    ("train", &["bench"]),
];

#[derive(Debug, PartialEq)]
struct Violation {
    file: PathBuf,
    line: usize,
    from: String,
    to: String,
}

/// The room of a file: its first path component under `src/`, without `.rs`.
fn room_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn forbidden(from: &str, to: &str) -> bool {
    if from == to || to == "self" || to == "super" {
        return false;
    }
    let shell = |r: &str| SHELLS.contains(&r);
    if shell(to) && !(from == "cli" || from == "bin") {
        return true;
    }
    if from == "cli" || from == "bin" {
        return to == "ffi";
    }
    FORBIDDEN
        .iter()
        .find(|(room, _)| *room == from)
        .is_some_and(|(_, rooms)| rooms.contains(&"*") && to != "error" || rooms.contains(&to))
}

/// The file's text with `//` comments blanked (line structure kept, so offsets map to lines).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The rooms a `{...}` group names at its first level, e.g. `{engine::Engine, model::{a, b}}`,
/// with each one's byte offset in `s`.
fn group_rooms(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 1usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let item = &s[start..i];
                let lead = item.len() - item.trim_start().len();
                if !item.trim().is_empty() {
                    out.push((start + lead, ident_at(item.trim_start())));
                }
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

/// Every (line, room) that `text` reaches through `prefix` (`crate::` or `rstar::`).
fn imports(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let code = strip_comments(text);
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let start = at + prefix.len();
        let rest = &code[start..];
        let rooms = if rest.starts_with('{') {
            group_rooms(rest)
        } else {
            vec![(0, ident_at(rest))]
        };
        for (offset, room) in rooms.into_iter().filter(|(_, r)| !r.is_empty()) {
            let line = code[..start + offset].matches('\n').count() + 1;
            out.push((line, room.to_string()));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every forbidden import under `src`, by file and line.
fn violations(src: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let from = room_of(rel);
        if from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let prefix = if from == "cli" || from == "bin" {
            "rstar::"
        } else {
            "crate::"
        };
        for (line, to) in imports(&text, prefix) {
            if forbidden(&from, &to) {
                found.push(Violation {
                    file: rel.to_path_buf(),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    found
}

#[test]
fn lower_rooms_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    let mut by_edge: BTreeMap<(String, String), usize> = BTreeMap::new();
    for v in &found {
        *by_edge.entry((v.from.clone(), v.to.clone())).or_default() += 1;
    }
    let listing: Vec<String> = found
        .iter()
        .map(|v| {
            format!(
                "src/{}:{}: `{}` imports `{}`",
                v.file.display(),
                v.line,
                v.from,
                v.to
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "{} upward import(s) ({by_edge:?}):\n{}",
        found.len(),
        listing.join("\n")
    );
}

#[test]
fn a_planted_upward_import_is_caught_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "backend/cpu/mod.rs",
        "//! uses crate::model in a comment only\nuse crate::error::Result;\n\nuse crate::model::Weight;\n",
    );
    write(
        "engine/core.rs",
        "use crate::{\n    model::Model,\n    search::{api::Problem, Policy},\n};\n",
    );
    write(
        "exec/mod.rs",
        "fn f() { let _ = crate::engine::Engine::new(); }\n",
    );
    write("grade/mod.rs", "use crate::ffi::status;\n");
    write(
        "cli/mod.rs",
        "use rstar::search::Solver;\nuse rstar::ffi::x;\n",
    );
    write(
        "search/mod.rs",
        "use crate::engine::Engine;\nuse crate::data::prompts;\n",
    );
    let got: Vec<(String, usize, String)> = violations(src)
        .into_iter()
        .map(|v| (v.file.display().to_string(), v.line, v.to))
        .collect();
    let want = [
        ("backend/cpu/mod.rs", 4, "model"),
        ("cli/mod.rs", 2, "ffi"),
        ("engine/core.rs", 3, "search"),
        ("exec/mod.rs", 1, "engine"),
        ("grade/mod.rs", 1, "ffi"),
    ];
    let want: Vec<(String, usize, String)> = want
        .iter()
        .map(|(f, l, t)| (f.to_string(), *l, t.to_string()))
        .collect();
    assert_eq!(got, want);
}
