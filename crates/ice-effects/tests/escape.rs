//! The sandbox escape corpus (`tests/data/escape_corpus.txt`): every path, through every fs action that takes
//! one, is refused with SandboxEscape at plan time and at apply time (with a forged plan), and nothing is created
//! or changed anywhere in the temp tree — inside the sandbox or out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use harness::{Env, call, hash};
use ice_core::ErrorCode;
use ice_effects::{Compensation, EffectsConfig, Plan, RetryMode};
use serde_json::{Value, json};

const ACTIONS: [&str; 6] = ["fs.read", "fs.list", "fs.write", "fs.append", "fs.delete", "fs.restore"];

/// Every entry under `root`, without following symlinks: path → kind and content (or link target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link:{}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                format!("file:{}", hash(&std::fs::read(&path).unwrap()))
            };
            out.insert(path.strip_prefix(root).unwrap().to_owned(), what);
        }
    }
    out
}

struct Case {
    line: usize,
    path: String,
}

/// Reads the corpus, setting up each case's sandbox in its own env.
fn cases() -> Vec<(Case, Value)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/escape_corpus.txt")).unwrap();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        out.push((Case { line: i + 1, path: String::new() }, value));
    }
    out
}

fn expand(text: &str, env: &Env, outside: &Path) -> String {
    text.replace("@sandbox", &env.sandbox().display().to_string()).replace("@outside", &outside.display().to_string())
}

fn setup(case: &mut Case, spec: &Value, env: &Env, outside: &Path) {
    let sandbox = env.sandbox();
    match spec {
        Value::String(path) => case.path = expand(path, env, outside),
        Value::Object(o) => {
            for dir in o.get("dirs").and_then(Value::as_array).into_iter().flatten() {
                std::fs::create_dir_all(sandbox.join(dir.as_str().unwrap())).unwrap();
            }
            for file in o.get("files").and_then(Value::as_array).into_iter().flatten() {
                std::fs::write(sandbox.join(file.as_str().unwrap()), b"inside").unwrap();
            }
            if let Some(link) = o.get("symlink") {
                let target = expand(link[1].as_str().unwrap(), env, outside);
                std::os::unix::fs::symlink(target, sandbox.join(link[0].as_str().unwrap())).unwrap();
            }
            let mut path = String::new();
            if let Some(repeat) = o.get("repeat") {
                path = repeat[0].as_str().unwrap().repeat(repeat[1].as_u64().unwrap() as usize);
            }
            path.push_str(o["path"].as_str().unwrap());
            case.path = path;
        }
        other => panic!("line {}: unexpected {other}", case.line),
    }
}

fn args(action: &str, path: &str, blob: &str) -> Value {
    match action {
        "fs.write" | "fs.append" => json!({"path": path, "content": "pwned"}),
        "fs.restore" => json!({"path": path, "blob": blob}),
        _ => json!({"path": path}),
    }
}

/// A plausible plan for the path, as a buggy or hostile caller might hand to apply without planning.
fn forged_plan(action: &str, path: &str, blob: &str) -> Plan {
    let (input_hash, expected_after, compensation) = match action {
        "fs.write" | "fs.append" => {
            (hash(b"pwned"), Some(hash(b"pwned")), Compensation::DeleteFile { path: path.to_owned() })
        }
        "fs.restore" => (blob.to_owned(), Some(blob.to_owned()), Compensation::DeleteFile { path: path.to_owned() }),
        _ => (hash(b""), None, Compensation::Nothing),
    };
    let before = (action == "fs.delete").then(|| hash(b"victim"));
    Plan { target: path.to_owned(), input_hash, before, expected_after, compensation, retry: RetryMode::StateCheck }
}

#[test]
fn every_corpus_path_is_refused_by_every_fs_action_and_nothing_changes() {
    let corpus = cases();
    assert!(corpus.len() >= 30, "corpus has {} cases", corpus.len());
    for (mut case, spec) in corpus {
        let env = Env::new(&EffectsConfig::default());
        let outside = env.dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim.txt"), b"victim").unwrap();
        let blob = env.effectors.blobs().put(b"restored content").unwrap();
        setup(&mut case, &spec, &env, &outside);
        let before = snapshot(env.dir.path());
        for action in ACTIONS {
            let path = &case.path;
            let shown = format!("line {} {action} {:?}", case.line, path.chars().take(60).collect::<String>());
            let owned = call(action, &format!("file:{path}"), args(action, path, &blob));
            let err = env.plan(&owned).expect_err(&shown);
            assert_eq!(err.code, ErrorCode::SandboxEscape, "{shown}: {err}");
            let err = env.apply(&owned, &forged_plan(action, path, &blob)).expect_err(&shown);
            assert_eq!(err.code, ErrorCode::SandboxEscape, "{shown} (apply): {err}");
            assert_eq!(snapshot(env.dir.path()), before, "{shown} changed the tree");
        }
        assert_eq!(std::fs::read(outside.join("victim.txt")).unwrap(), b"victim");
        assert!(!outside.join("created-by-escape.txt").exists());
    }
}

#[test]
fn an_empty_path_names_the_root_only_for_a_listing() {
    let env = Env::new(&EffectsConfig::default());
    let blob = env.effectors.blobs().put(b"x").unwrap();
    for action in ACTIONS {
        let owned = call(action, "file:", args(action, "", &blob));
        match action {
            "fs.list" => {
                env.run(&owned).unwrap();
            }
            _ => assert_eq!(env.plan(&owned).unwrap_err().code, ErrorCode::SandboxEscape, "{action}"),
        }
    }
}
