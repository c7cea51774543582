//! Tidy: the invariants of ARCHITECTURE.md that the compiler cannot check, checked on the
//! source tree (in the spirit of rust-analyzer's `tidy` test).
//!
//! * `unsafe` appears only in `dlr-sys`, the one crate that calls FFI.
//! * In the service, only the HTTP layer (`service/src/http/` and the accept loop
//!   `service/src/server.rs`) names the HTTP stack: `axum`, `hyper`, `tower_http`, `utoipa`,
//!   `StatusCode`. Lower layers return their own error enums; `http::problem` maps them.
//! * The shared wire types (`api/`) name `utoipa` only in derives gated on their `openapi`
//!   feature, and nothing else of the stack; the IPC adapter, their client, neither names
//!   `axum` or `utoipa` nor turns that feature on.
//! * The IPC protocol crate (`greengrass-ipc`) knows nothing of what travels over it: it names
//!   neither the adapter, the service nor their wire types, nor any HTTP crate, and depends on
//!   none of them.
//! * The request document's field names are written as literals only in `api/`: the service's
//!   HTTP layer and the IPC adapter read and build it through `classify-api` (its reader and
//!   its `field` constants), so a field cannot be added or renamed in one reader and not in
//!   the other.
//!
//! Comments and string literals are blanked before searching, so prose about `unsafe` or a
//! doc line that mentions axum does not count; code in `#[cfg(test)]` modules does.

use std::path::{Path, PathBuf};

/// Directories never scanned: build outputs and generated files.
const SKIPPED: &[&str] = &[
    "target",
    "generated",
    "greengrass-build",
    ".git",
    "node_modules",
];

/// Identifiers that belong to the HTTP layer.
const HTTP_STACK: &[&str] = &[
    "axum",
    "hyper",
    "hyper_util",
    "tower_http",
    "utoipa",
    "StatusCode",
];

fn root() -> PathBuf {
    xtask::dist::workspace_root()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_ref()) {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string literals and char literals replaced by spaces (newlines
/// kept, so line numbers still match).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) && {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            chars.get(start + hashes) == Some(&'"')
        } {
            // A raw string: r"..." or r#"..."#, byte or not.
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            let body = start + hashes + 1;
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let mut end = body;
            while end < chars.len() && !chars[end..].starts_with(&closing) {
                end += 1;
            }
            let end = (end + closing.len()).min(chars.len());
            chars[i..end].iter().for_each(|&c| out.push(blank(c)));
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Lines (1-based) where `word` occurs as a whole identifier, e.g. as `axum::` or `unsafe {`.
fn lines_with_word(code: &str, word: &str) -> Vec<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.match_indices(word).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + word.len()..].chars().next();
                !before.is_some_and(ident) && !after.is_some_and(ident)
            })
        })
        .map(|(n, _)| n + 1)
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Every `(file, line)` outside `allowed` where one of `words` appears in code.
fn occurrences(
    files: &[PathBuf],
    words: &[&str],
    allowed: impl Fn(&str) -> bool,
) -> (Vec<String>, usize) {
    let mut found = Vec::new();
    let mut allowed_hits = 0;
    for file in files {
        let name = relative(file);
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for word in words {
            for line in lines_with_word(&code, word) {
                if allowed(&name) {
                    allowed_hits += 1;
                } else {
                    found.push(format!("{name}:{line}: {word}"));
                }
            }
        }
    }
    (found, allowed_hits)
}

/// The one `unsafe` block outside dlr-sys: glibc's `mallopt(M_ARENA_MAX)`, which no safe
/// wrapper offers.
const ARENA_BOUND: &str = "memory-limit/src/arenas.rs";

#[test]
fn unsafe_code_only_in_dlr_sys_and_the_arena_bound() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let (found, allowed) = occurrences(&files, &["unsafe"], |f| {
        f.starts_with("dlr-sys/") || f == ARENA_BOUND
    });
    assert!(
        found.is_empty(),
        "`unsafe` outside dlr-sys (only the FFI binding may use it) and {ARENA_BOUND}:\n{}",
        found.join("\n")
    );
    let (in_arenas, _) = occurrences(&[root().join(ARENA_BOUND)], &["unsafe"], |_| false);
    assert_eq!(
        in_arenas.len(),
        1,
        "{ARENA_BOUND} holds exactly its one mallopt call: {in_arenas:?}"
    );
    assert!(
        allowed > in_arenas.len(),
        "the scan finds dlr-sys's own unsafe blocks"
    );
}

#[test]
fn only_the_http_layer_knows_the_http_stack() {
    let mut files = Vec::new();
    rust_files(&root().join("service/src"), &mut files);
    let (found, in_http) = occurrences(&files, HTTP_STACK, |f| {
        f.starts_with("service/src/http/") || f == "service/src/server.rs"
    });
    assert!(
        found.is_empty(),
        "the HTTP stack named outside service/src/http/ (lower layers return their own \
         errors; http::problem maps them to statuses):\n{}",
        found.join("\n")
    );
    assert!(in_http > 0, "the scan finds the HTTP layer's own uses");
}

/// The only form in which `api/src` may name utoipa: a derive that exists with the feature only.
const GATED_DERIVE: &str = "#[cfg_attr(feature = \"openapi\", derive(utoipa::";

#[test]
fn the_wire_types_name_utoipa_only_behind_their_openapi_feature() {
    let mut files = Vec::new();
    rust_files(&root().join("api/src"), &mut files);
    let mut found = Vec::new();
    let mut gated = 0;
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        let raw: Vec<&str> = source.lines().collect();
        let code = code_only(&source);
        for word in HTTP_STACK {
            for line in lines_with_word(&code, word) {
                if *word == "utoipa" && raw[line - 1].trim_start().starts_with(GATED_DERIVE) {
                    gated += 1;
                } else {
                    found.push(format!("{}:{line}: {word}", relative(file)));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the wire types must build with serde alone (utoipa only as `{GATED_DERIVE}...))]`):\n{}",
        found.join("\n")
    );
    assert!(gated > 0, "the scan finds the gated schema derives");
}

#[test]
fn the_adapter_reads_the_wire_types_without_the_http_server_stack() {
    let mut files = Vec::new();
    rust_files(&root().join("ipc-adapter/src"), &mut files);
    // reqwest re-exports `StatusCode`: the adapter is an HTTP client and may name it.
    let (found, _) = occurrences(&files, &["axum", "utoipa", "tower_http"], |_| false);
    assert!(
        found.is_empty(),
        "the adapter names the service's HTTP stack:\n{}",
        found.join("\n")
    );
    let manifest = std::fs::read_to_string(root().join("ipc-adapter/Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("ipc-adapter/Cargo.toml has [dependencies]");
    let api = dependencies
        .lines()
        .find(|line| line.starts_with("classify-api"))
        .expect("the adapter depends on classify-api");
    assert!(
        !api.contains("openapi"),
        "the adapter turns on the schemas: {api}"
    );
    for stack in ["axum", "utoipa"] {
        assert!(
            !dependencies.lines().any(|line| line.starts_with(stack)),
            "the adapter depends on {stack}"
        );
    }
}

/// What the protocol crate must not know: the programs built on it and HTTP.
const NOT_PROTOCOL: &[&str] = &[
    "classify_ipc_adapter",
    "classify_service",
    "classify_api",
    "axum",
    "hyper",
    "reqwest",
    "tower_http",
    "utoipa",
];

#[test]
fn the_protocol_crate_knows_neither_the_adapter_nor_the_service_nor_http() {
    let mut files = Vec::new();
    rust_files(&root().join("greengrass-ipc/src"), &mut files);
    assert!(files.len() >= 5, "the scan finds the protocol's modules");
    let (found, _) = occurrences(&files, NOT_PROTOCOL, |_| false);
    assert!(
        found.is_empty(),
        "the protocol crate names a program built on it, or HTTP:\n{}",
        found.join("\n")
    );
    let manifest = std::fs::read_to_string(root().join("greengrass-ipc/Cargo.toml")).unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("greengrass-ipc/Cargo.toml has [dependencies]");
    for crate_name in NOT_PROTOCOL {
        let dashed = crate_name.replace('_', "-");
        assert!(
            !dependencies
                .lines()
                .any(|line| line.starts_with(&dashed) || line.starts_with(crate_name)),
            "greengrass-ipc depends on {dashed}"
        );
    }
}

/// The request document's field names (`classify_api::request::field`), as literals.
const REQUEST_FIELDS: &[&str] = &[
    "\"image_base64\"",
    "\"path\"",
    "\"image_dir\"",
    "\"fname\"",
    "\"top_k\"",
    "\"threshold\"",
];

/// `(file, line)` of each request field name written as a literal in production code (before
/// the file's `#[cfg(test)]`, comments aside). clap's `#[arg(...)]` lines are the command
/// line's ids (`--path`, `--fname`), not the document's fields.
fn request_field_literals(files: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(file).unwrap();
        let production = source.lines().take_while(|l| l.trim() != "#[cfg(test)]");
        for (n, line) in production.enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") || trimmed.starts_with("#[arg(") {
                continue;
            }
            for literal in REQUEST_FIELDS {
                if line.contains(literal) {
                    found.push(format!("{}:{}: {literal}", relative(file), n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn request_field_names_are_written_only_in_the_wire_types() {
    let mut files = Vec::new();
    rust_files(&root().join("service/src/http"), &mut files);
    rust_files(&root().join("ipc-adapter/src"), &mut files);
    let found = request_field_literals(&files);
    assert!(
        found.is_empty(),
        "request field names written by hand (use classify-api's reader, its types or \
         classify_api::request::field):\n{}",
        found.join("\n")
    );
    let mut api = Vec::new();
    rust_files(&root().join("api/src"), &mut api);
    assert!(
        request_field_literals(&api).len() >= REQUEST_FIELDS.len(),
        "the scan finds the field constants in api/"
    );
}

#[test]
fn comments_and_literals_do_not_count() {
    let code = code_only(
        "// unsafe axum\nlet a = \"unsafe\"; /* axum /* nested */ unsafe */ let b = 'u';\n\
         let c = r#\"unsafe \"axum\"\"#; fn f<'a>(x: &'a str) {}\nunsafe { axum::x() }\n",
    );
    assert_eq!(lines_with_word(&code, "unsafe"), [4]);
    assert_eq!(lines_with_word(&code, "axum"), [4]);
    assert_eq!(code.lines().count(), 4, "line numbers are kept");
    assert!(
        code.contains("fn f<'a>(x: &'a str)"),
        "lifetimes are code: {code}"
    );
    assert!(lines_with_word("unsafe_op(); my_axum; axumx", "unsafe").is_empty());
    assert!(lines_with_word("unsafe_op(); my_axum; axumx", "axum").is_empty());
}
