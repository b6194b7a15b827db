//! The fs effector: write/append/delete/restore sequences rolled back through their compensations, state-check
//! idempotency and conflicts, the args/resource binding, and the read/list/limit edges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

#[path = "support/harness.rs"]
mod harness;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use harness::{Env, call, hash};
use ice_core::ErrorCode;
use ice_effects::{Compensation, EffectsConfig, MAX_FILE_BYTES, OwnedCall, RetryMode};
use serde_json::{Value, json};

fn env() -> Env {
    Env::new(&EffectsConfig::default())
}

fn write(path: &str, content: &str) -> OwnedCall {
    call("fs.write", &format!("file:{path}"), json!({"path": path, "content": content}))
}

fn append(path: &str, content: &str) -> OwnedCall {
    call("fs.append", &format!("file:{path}"), json!({"path": path, "content": content}))
}

fn path_call(action: &str, path: &str) -> OwnedCall {
    call(action, &format!("file:{path}"), json!({"path": path}))
}

/// The call that undoes an effect, as rollback would propose it.
fn compensation_call(c: &Compensation) -> OwnedCall {
    match c {
        Compensation::RestoreFile { path, blob } => {
            call("fs.restore", &format!("file:{path}"), json!({"path": path, "blob": blob}))
        }
        Compensation::DeleteFile { path } => path_call("fs.delete", path),
        other => panic!("no compensation call for {other:?}"),
    }
}

/// The content hash of a sandbox file, or None when absent.
fn state(env: &Env, path: &str) -> Option<String> {
    std::fs::read(env.sandbox().join(path)).ok().map(|b| hash(&b))
}

#[test]
fn a_sequence_rolls_back_byte_for_byte_through_its_compensations() {
    let env = env();
    let steps = [
        write("notes/deep/a.txt", "hello"),
        append("notes/deep/a.txt", " world"),
        write("notes/deep/a.txt", "replaced\0with binary-ish \u{1F600} content"),
        path_call("fs.delete", "notes/deep/a.txt"),
        call(
            "fs.restore",
            "file:notes/deep/a.txt",
            json!({"path": "notes/deep/a.txt", "blob": env.effectors.blobs().put(b"from a blob").unwrap()}),
        ),
    ];
    let mut undo = Vec::new();
    for step in &steps {
        let prior = state(&env, "notes/deep/a.txt");
        let (plan, evidence) = env.run(step).unwrap();
        assert_eq!(plan.before, prior, "{}", step.action);
        assert_eq!(plan.retry, RetryMode::StateCheck);
        assert!(!evidence.already_applied);
        assert_eq!(evidence.after, state(&env, "notes/deep/a.txt"), "{}", step.action);
        assert_eq!(evidence.after, plan.expected_after, "{}", step.action);
        match (&prior, &plan.compensation) {
            (None, Compensation::DeleteFile { path }) => assert_eq!(path, "notes/deep/a.txt"),
            (Some(h), Compensation::RestoreFile { path, blob }) => {
                assert_eq!((path.as_str(), blob), ("notes/deep/a.txt", h));
                assert_eq!(hash(&env.blob(blob)), *h);
            }
            other => panic!("{}: unexpected compensation {other:?}", step.action),
        }
        undo.push((prior, plan.compensation));
    }
    assert_eq!(std::fs::read(env.sandbox().join("notes/deep/a.txt")).unwrap(), b"from a blob");
    for (prior, compensation) in undo.into_iter().rev() {
        env.run(&compensation_call(&compensation)).unwrap();
        assert_eq!(state(&env, "notes/deep/a.txt"), prior);
    }
    assert!(!env.sandbox().join("notes/deep/a.txt").exists());
}

#[test]
fn hashes_in_plan_and_evidence() {
    let env = env();
    let (plan, evidence) = env.run(&write("a.txt", "abc")).unwrap();
    assert_eq!(plan.target, "a.txt");
    assert_eq!(plan.input_hash, hash(b"abc"));
    assert_eq!(plan.expected_after, Some(hash(b"abc")));
    assert_eq!(evidence.bytes, 3);
    let (plan, evidence) = env.run(&append("a.txt", "de")).unwrap();
    assert_eq!(plan.input_hash, hash(b"de"));
    assert_eq!((plan.before, plan.expected_after), (Some(hash(b"abc")), Some(hash(b"abcde"))));
    assert_eq!(evidence.bytes, 2);
    let (plan, evidence) = env.run(&path_call("fs.delete", "a.txt")).unwrap();
    assert_eq!((plan.input_hash, plan.expected_after, evidence.after), (hash(b""), None, None));
}

#[test]
fn applying_twice_is_already_applied_and_changes_nothing() {
    let env = env();
    for step in [write("f", "one"), append("f", "+two"), path_call("fs.delete", "f")] {
        let plan = env.plan(&step).unwrap();
        let first = env.apply(&step, &plan).unwrap();
        assert!(!first.already_applied);
        let meta = std::fs::metadata(env.sandbox().join("f")).ok().map(|m| (m.ino(), m.mtime_nsec()));
        let second = env.apply(&step, &plan).unwrap();
        assert!(second.already_applied, "{}", step.action);
        assert_eq!(second.after, first.after);
        assert_eq!(std::fs::metadata(env.sandbox().join("f")).ok().map(|m| (m.ino(), m.mtime_nsec())), meta);
    }
    assert!(!env.sandbox().join("f").exists());
}

#[test]
fn an_external_change_between_plan_and_apply_is_a_conflict() {
    let env = env();
    env.run(&write("f", "one")).unwrap();
    for step in [write("f", "two"), append("f", "x"), path_call("fs.delete", "f")] {
        let plan = env.plan(&step).unwrap();
        std::fs::write(env.sandbox().join("f"), b"someone else").unwrap();
        assert_eq!(env.apply(&step, &plan).unwrap_err().code, ErrorCode::EffectConflict, "{}", step.action);
        assert_eq!(std::fs::read(env.sandbox().join("f")).unwrap(), b"someone else");
        std::fs::write(env.sandbox().join("f"), b"one").unwrap();
    }
    // A file created after a plan that found none.
    let step = write("new", "mine");
    let plan = env.plan(&step).unwrap();
    std::fs::write(env.sandbox().join("new"), b"theirs").unwrap();
    assert_eq!(env.apply(&step, &plan).unwrap_err().code, ErrorCode::EffectConflict);
}

#[test]
fn args_must_hash_to_the_permit_and_the_resource_must_name_the_path() {
    let env = env();
    let good = write("f", "content");
    let plan = env.plan(&good).unwrap();

    let mut forged = good.clone();
    forged.args = json!({"path": "f", "content": "other"});
    assert_eq!(env.plan(&forged).unwrap_err().code, ErrorCode::ArgsMismatch);
    assert_eq!(env.apply(&forged, &plan).unwrap_err().code, ErrorCode::ArgsMismatch);
    let mut forged = good.clone();
    forged.args_hash = hash(b"something else");
    assert_eq!(env.apply(&forged, &plan).unwrap_err().code, ErrorCode::ArgsMismatch);

    let mut other_resource = good.clone();
    other_resource.resource = "file:g".to_owned();
    assert_eq!(env.plan(&other_resource).unwrap_err().code, ErrorCode::ResourceMismatch);
    let absolute = call("fs.write", "file:/f", json!({"path": "f", "content": "x"}));
    assert_eq!(env.plan(&absolute).unwrap_err().code, ErrorCode::ResourceMismatch);

    // A plan made for other args is refused too.
    let other_plan = env.plan(&write("f", "different")).unwrap();
    assert_eq!(env.apply(&good, &other_plan).unwrap_err().code, ErrorCode::ArgsMismatch);
    assert!(!env.sandbox().join("f").exists());
}

#[test]
fn malformed_args_are_bad_arguments() {
    let env = env();
    for (action, args) in [
        ("fs.write", json!({"path": "f", "content": "x", "mode": 777})),
        ("fs.write", json!({"path": "f"})),
        ("fs.read", json!({"path": 3})),
        ("fs.read", json!({})),
        ("fs.restore", json!({"path": "f", "blob": "../../etc/passwd"})),
    ] {
        let resource = format!("file:{}", args["path"].as_str().unwrap_or(""));
        assert_eq!(env.plan(&call(action, &resource, args)).unwrap_err().code, ErrorCode::BadArgument, "{action}");
    }
    let routed_wrong = call("fs.chmod", "file:f", json!({"path": "f"}));
    let fs = env.effectors.for_action("fs.read").unwrap();
    assert_eq!(fs.plan(&routed_wrong.call()).unwrap_err().code, ErrorCode::NoEffector);
}

#[test]
fn reads_return_content_as_evidence() {
    let env = env();
    env.run(&write("r.txt", "read me")).unwrap();
    let (plan, evidence) = env.run(&path_call("fs.read", "r.txt")).unwrap();
    assert_eq!(plan.compensation, Compensation::Nothing);
    assert_eq!(plan.before, Some(hash(b"read me")));
    assert_eq!(evidence.output_hash, hash(b"read me"));
    assert_eq!(evidence.output_bytes, 7);
    assert_eq!(env.blob(evidence.output_blob.as_deref().unwrap()), b"read me");

    assert_eq!(env.plan(&path_call("fs.read", "missing")).unwrap_err().code, ErrorCode::NotFound);
    std::fs::create_dir(env.sandbox().join("d")).unwrap();
    assert_eq!(env.plan(&path_call("fs.read", "d")).unwrap_err().code, ErrorCode::BadArgument);
    assert_eq!(env.plan(&path_call("fs.delete", "d")).unwrap_err().code, ErrorCode::BadArgument);
    assert_eq!(env.plan(&path_call("fs.delete", "missing")).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(env.plan(&write("d", "x")).unwrap_err().code, ErrorCode::BadArgument);
    assert_eq!(env.plan(&write("r.txt/under", "x")).unwrap_err().code, ErrorCode::BadArgument);
}

#[test]
fn listings_are_sorted_and_do_not_follow_symlinks() {
    let env = env();
    let sandbox = env.sandbox();
    std::fs::create_dir(sandbox.join("dir")).unwrap();
    std::fs::write(sandbox.join("dir/b.txt"), b"12345").unwrap();
    std::fs::create_dir(sandbox.join("dir/a-sub")).unwrap();
    std::os::unix::fs::symlink("/etc", sandbox.join("dir/c-link")).unwrap();
    let (plan, evidence) = env.run(&path_call("fs.list", "dir")).unwrap();
    assert_eq!(plan.compensation, Compensation::Nothing);
    assert_eq!(
        evidence.detail["entries"],
        json!([
            {"name": "a-sub", "kind": "dir", "bytes": 0},
            {"name": "b.txt", "kind": "file", "bytes": 5},
            {"name": "c-link", "kind": "symlink", "bytes": 0},
        ])
    );
    assert_eq!(evidence.detail["truncated"], json!(false));
    let listing: Value = serde_json::from_slice(&env.blob(evidence.output_blob.as_deref().unwrap())).unwrap();
    assert_eq!(listing["entries"], evidence.detail["entries"]);

    let (_, root) = env.run(&call("fs.list", "file:", json!({"path": ""}))).unwrap();
    assert_eq!(root.detail["entries"], json!([{"name": "dir", "kind": "dir", "bytes": 0}]));
    assert_eq!(env.plan(&path_call("fs.list", "dir/b.txt")).unwrap_err().code, ErrorCode::BadArgument);
    assert_eq!(env.plan(&path_call("fs.list", "nope")).unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn restore_needs_a_stored_blob() {
    let env = env();
    let missing = hash(b"never stored");
    let restore = call("fs.restore", "file:f", json!({"path": "f", "blob": missing}));
    assert_eq!(env.plan(&restore).unwrap_err().code, ErrorCode::NotFound);
    assert!(!env.sandbox().join("f").exists());
}

#[test]
fn planning_changes_nothing_in_the_sandbox() {
    let env = env();
    let plan = env.plan(&write("a/b/c.txt", "x")).unwrap();
    assert_eq!(plan.compensation, Compensation::DeleteFile { path: "a/b/c.txt".into() });
    assert_eq!(std::fs::read_dir(env.sandbox()).unwrap().count(), 0);
}

#[test]
fn a_rewrite_keeps_the_file_mode() {
    let env = env();
    env.run(&write("secret", "v1")).unwrap();
    std::fs::set_permissions(env.sandbox().join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    env.run(&write("secret", "v2")).unwrap();
    let mode = std::fs::metadata(env.sandbox().join("secret")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn files_over_the_limit_are_refused() {
    let env = env();
    let big = std::fs::File::create(env.sandbox().join("big")).unwrap();
    big.set_len(MAX_FILE_BYTES + 1).unwrap();
    assert_eq!(env.plan(&path_call("fs.read", "big")).unwrap_err().code, ErrorCode::EffectLimit);
    big.set_len(MAX_FILE_BYTES).unwrap();
    assert_eq!(env.plan(&append("big", "x")).unwrap_err().code, ErrorCode::EffectLimit);
    assert_eq!(std::fs::metadata(env.sandbox().join("big")).unwrap().len(), MAX_FILE_BYTES);
}

#[test]
fn declarations_match_the_default_catalog() {
    let env = env();
    let listed: Vec<(String, String, String, String)> = env
        .effectors
        .actions()
        .into_iter()
        .map(|(action, effector, c)| {
            let v = serde_json::to_value(c).unwrap();
            (action.into(), effector.into(), v["access"].as_str().unwrap().into(), v["risk"].as_str().unwrap().into())
        })
        .collect();
    let expected = [
        ("fs.append", "fs", "write", "medium"),
        ("fs.delete", "fs", "irreversible", "high"),
        ("fs.list", "fs", "read", "low"),
        ("fs.read", "fs", "read", "low"),
        ("fs.restore", "fs", "write", "medium"),
        ("fs.write", "fs", "write", "medium"),
        ("http.request", "http", "write", "medium"),
        ("process.exec", "process", "irreversible", "high"),
    ];
    let expected: Vec<_> =
        expected.iter().map(|(a, e, x, r)| (a.to_string(), e.to_string(), x.to_string(), r.to_string())).collect();
    assert_eq!(listed, expected);
}
