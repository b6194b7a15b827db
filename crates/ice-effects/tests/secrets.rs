//! Secrets stay out of what ICE records: `${secret:NAME}` references in HTTP header values and process
//! environment values reach the server or the child with the real value (from an environment variable or a 0600
//! file), while the args, plans, evidence, journal and blobs hold only the reference or `[redacted]`; undeclared,
//! misplaced, unreadable and over-exposed secrets are refused; and `Effectors::screen_args` refuses literal
//! credentials at intake (table in `tests/data/screen_args.txt`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

#[path = "support/harness.rs"]
mod harness;
#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

use harness::{Env, call};
use ice_core::ErrorCode;
use ice_effects::{EffectsConfig, HttpConfig, OwnedCall, ProcessConfig, SecretSource};
use serde_json::{Value, json};
use server::Server;

/// The value behind `FILE_TOKEN`, and behind `ENV_TOKEN` in the child process that has `ICE_TEST_ENV_TOKEN` set.
const FILE_VALUE: &str = "file-secret-5b0d1e";
const ENV_VALUE: &str = "env-secret-9c4a7f";
/// Marks the re-executed child of [`in_child_with`].
const CHILD_MARK: &str = "ICE_EFFECTS_SECRETS_TEST_CHILD";
/// Never set.
const UNSET_VAR: &str = "ICE_TEST_SURELY_UNSET_2D7E";

/// A temp dir holding a secret file of the given content and mode.
fn secret_file(content: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    (dir, path)
}

/// A config allowing the server (if any), `sh` with `TOKEN_X`, and declaring `FILE_TOKEN` (from `file`),
/// `ENV_TOKEN` (from `ICE_TEST_ENV_TOKEN`) and `UNSET_TOKEN` (from a variable never set).
fn config(server: Option<&Server>, file: &Path) -> EffectsConfig {
    let mut secrets = BTreeMap::new();
    secrets.insert("FILE_TOKEN".to_owned(), SecretSource { env: None, file: Some(file.to_owned()) });
    secrets.insert("ENV_TOKEN".to_owned(), SecretSource { env: Some("ICE_TEST_ENV_TOKEN".into()), file: None });
    secrets.insert("UNSET_TOKEN".to_owned(), SecretSource { env: Some(UNSET_VAR.into()), file: None });
    EffectsConfig {
        http: HttpConfig {
            allow_hosts: server.map(|s| vec![s.addr.to_string()]).unwrap_or_default(),
            // Empty on purpose: a header whose value came from a secret is redacted regardless.
            redact_headers: Vec::new(),
            ..HttpConfig::default()
        },
        process: ProcessConfig {
            allow: vec!["sh".to_owned()],
            env_allow: vec!["TOKEN_X".to_owned()],
            ..ProcessConfig::default()
        },
        secrets,
        ..EffectsConfig::default()
    }
}

fn get(server: &Server, path: &str, headers: Value) -> OwnedCall {
    let url = server.url(path);
    call("http.request", &url, json!({"method": "GET", "url": url, "headers": headers}))
}

fn exec(args: Value) -> OwnedCall {
    let program = args["argv"][0].as_str().unwrap().to_owned();
    call("process.exec", &format!("process:{program}"), args)
}

/// Files under `dir` whose bytes contain `needle`, skipping directories named in `skip`.
fn files_containing(dir: &Path, needle: &str, skip: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !skip.iter().any(|s| path.file_name().is_some_and(|n| n == *s)) {
                found.extend(files_containing(&path, needle, skip));
            }
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(path);
        }
    }
    found
}

/// Runs test `name` again in a child process with `vars` set, because a test may not change its own process's
/// environment (`set_var` is unsafe, and unsafe code is forbidden). True in the parent, once the child passed;
/// false in the child, which then runs the test body.
fn in_child_with(name: &str, vars: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD_MARK).is_some() {
        return false;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(CHILD_MARK, "1")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "the child did not run {name}: {stdout}");
    true
}

#[test]
fn a_header_secret_from_a_0600_file_is_sent_and_never_recorded() {
    let server = Server::start();
    let (_keep, file) = secret_file(&format!("{FILE_VALUE}\n"), 0o600);
    let env = Env::new(&config(Some(&server), &file));
    let owned = get(
        &server,
        "/echo-headers",
        json!(["Authorization: Bearer ${secret:FILE_TOKEN}", "X-Key: ${secret:FILE_TOKEN}", "X-Trace: t1"]),
    );
    env.effectors.screen_args(&owned.action, &owned.args).unwrap();
    // The permit is bound to the args with the reference; the value is nowhere in them.
    assert!(owned.canonical_args.contains("Bearer ${secret:FILE_TOKEN}"), "{}", owned.canonical_args);
    let (plan, evidence) = env.run(&owned).unwrap();

    let seen = server.seen();
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {FILE_VALUE}")));
    assert_eq!(seen[0].header("x-key").as_deref(), Some(FILE_VALUE));
    let d = &evidence.detail;
    assert_eq!(d["request_headers"]["authorization"], json!("[redacted]"));
    assert_eq!(d["request_headers"]["x-key"], json!("[redacted]"));
    assert_eq!(d["request_headers"]["x-trace"], json!("t1"));
    // The server echoed the value back in response headers: redacted there too.
    assert_eq!(d["headers"]["x-seen-auth"], json!("[redacted]"));
    assert_eq!(d["headers"]["x-seen-key"], json!("[redacted]"));
    let recorded = serde_json::to_string(&(&plan, &evidence)).unwrap();
    assert!(!recorded.contains(FILE_VALUE), "{recorded}");
    assert_eq!(files_containing(env.dir.path(), FILE_VALUE, &[]), Vec::<PathBuf>::new());

    // A retry is answered from the journal without the secret: even a source that went bad does not matter.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = env.apply(&owned, &plan).unwrap();
    assert!(again.already_applied);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_header_secret_from_the_environment_is_sent_and_never_recorded() {
    let name = "a_header_secret_from_the_environment_is_sent_and_never_recorded";
    if in_child_with(name, &[("ICE_TEST_ENV_TOKEN", ENV_VALUE)]) {
        return;
    }
    let server = Server::start();
    let (_keep, file) = secret_file(FILE_VALUE, 0o600);
    let env = Env::new(&config(Some(&server), &file));
    let owned = get(&server, "/hello", json!(["Authorization: token ${secret:ENV_TOKEN}"]));
    let (plan, evidence) = env.run(&owned).unwrap();
    assert_eq!(server.seen()[0].header("authorization"), Some(format!("token {ENV_VALUE}")));
    assert_eq!(evidence.detail["request_headers"]["authorization"], json!("[redacted]"));
    let recorded = serde_json::to_string(&(&plan, &evidence)).unwrap();
    assert!(!recorded.contains(ENV_VALUE), "{recorded}");
    assert_eq!(files_containing(env.dir.path(), ENV_VALUE, &[]), Vec::<PathBuf>::new());
}

#[test]
fn an_undeclared_secret_is_refused_in_plan() {
    let server = Server::start();
    let (_keep, file) = secret_file(FILE_VALUE, 0o600);
    let env = Env::new(&config(Some(&server), &file));
    let http = get(&server, "/hello", json!(["Authorization: Bearer ${secret:NOT_DECLARED}"]));
    let process = exec(json!({"argv": ["sh", "-c", "true"], "env": ["TOKEN_X=${secret:NOT_DECLARED}"]}));
    for owned in [&http, &process] {
        let err = env.plan(owned).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSecret, "{err}");
        assert!(err.message.contains("secret `NOT_DECLARED`, which is not declared under [effects.secrets]"), "{err}");
        assert_eq!(env.effectors.screen_args(&owned.action, &owned.args).unwrap_err().code, ErrorCode::UnknownSecret);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn an_unset_variable_fails_apply_sends_nothing_and_may_be_retried() {
    let server = Server::start();
    let (_keep, file) = secret_file(FILE_VALUE, 0o600);
    let env = Env::new(&config(Some(&server), &file));
    let owned = get(&server, "/hello", json!(["Authorization: Bearer ${secret:UNSET_TOKEN}"]));
    // Declared, so plan accepts it: whether the source can be read is only known when the effect is applied.
    let plan = env.plan(&owned).unwrap();
    let err = env.apply(&owned, &plan).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSecret);
    assert_eq!(
        err.message,
        format!(
            "http.request: secret `UNSET_TOKEN` (environment variable `{UNSET_VAR}`) cannot be resolved: it is not \
             set in the runtime's environment"
        )
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    // Nothing was sent, so nothing is journaled: the same permit may run once the source is fixed.
    assert_eq!(std::fs::read_dir(env.journal()).unwrap().count(), 0);
    assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::UnknownSecret);

    let process = exec(json!({"argv": ["sh", "-c", "echo ran > ran"], "env": ["TOKEN_X=${secret:UNSET_TOKEN}"]}));
    let plan = env.plan(&process).unwrap();
    assert_eq!(env.apply(&process, &plan).unwrap_err().code, ErrorCode::UnknownSecret);
    assert!(!env.sandbox().join("ran").exists());
}

#[test]
fn a_secret_file_others_can_read_is_refused() {
    let server = Server::start();
    let (_keep, file) = secret_file(FILE_VALUE, 0o644);
    let env = Env::new(&config(Some(&server), &file));
    let owned = get(&server, "/hello", json!(["Authorization: Bearer ${secret:FILE_TOKEN}"]));
    let plan = env.plan(&owned).unwrap();
    let err = env.apply(&owned, &plan).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSecret);
    assert!(err.message.contains(&format!("secret `FILE_TOKEN` (file {})", file.display())), "{err}");
    assert!(err.message.contains("its mode is 0644") && err.message.contains("0600 or 0400"), "{err}");
    assert!(!err.message.contains(FILE_VALUE), "{err}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // Fixed by the operator: the same permit now runs.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    env.apply(&owned, &plan).unwrap();
    assert_eq!(server.seen()[0].header("authorization"), Some(format!("Bearer {FILE_VALUE}")));
}

#[test]
fn a_secret_a_header_cannot_carry_is_refused_without_echoing_it() {
    let server = Server::start();
    let (_keep, file) = secret_file(&format!("{FILE_VALUE}\r\nInjected: 1\n"), 0o600);
    let env = Env::new(&config(Some(&server), &file));
    let owned = get(&server, "/hello", json!(["Authorization: Bearer ${secret:FILE_TOKEN}"]));
    let plan = env.plan(&owned).unwrap();
    let err = env.apply(&owned, &plan).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownSecret);
    assert!(err.message.contains("control character") && !err.message.contains(FILE_VALUE), "{err}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn process_env_gets_the_resolved_value_and_only_its_output_shows_it() {
    let (_keep, file) = secret_file(&format!("{FILE_VALUE}\n"), 0o600);
    let env = Env::new(&config(None, &file));
    let owned = exec(json!({"argv": ["sh", "-c", "printf %s \"$TOKEN_X\""], "env": ["TOKEN_X=${secret:FILE_TOKEN}"]}));
    env.effectors.screen_args(&owned.action, &owned.args).unwrap();
    let (plan, evidence) = env.run(&owned).unwrap();
    // The program printed it: its output is its output (the user's business), kept as a blob.
    assert_eq!(env.blob(evidence.output_blob.as_deref().unwrap()), FILE_VALUE.as_bytes());
    let recorded = serde_json::to_string(&(&plan, &evidence)).unwrap();
    assert!(!recorded.contains(FILE_VALUE), "{recorded}");
    // Nothing else ICE wrote (journal included) has it.
    assert_eq!(files_containing(env.dir.path(), FILE_VALUE, &["blobs"]), Vec::<PathBuf>::new());
}

#[test]
fn references_are_resolved_only_in_header_and_env_values() {
    let server = Server::start();
    let (_keep, file) = secret_file(FILE_VALUE, 0o600);
    let env = Env::new(&config(Some(&server), &file));
    let url = server.url("/echo");
    let http = |args: Value| call("http.request", &url, args);
    let fs = |action: &str, args: Value| {
        let path = args["path"].as_str().unwrap().to_owned();
        call(action, &format!("file:{path}"), args)
    };
    let cases = [
        (http(json!({"method": "GET", "url": url, "body": "k=${secret:FILE_TOKEN}"})), ErrorCode::NotAllowlisted),
        (exec(json!({"argv": ["sh", "-c", "echo ${secret:FILE_TOKEN}"]})), ErrorCode::NotAllowlisted),
        (exec(json!({"argv": ["sh"], "stdin": "${secret:FILE_TOKEN}"})), ErrorCode::NotAllowlisted),
        (fs("fs.write", json!({"path": "a", "content": "${secret:FILE_TOKEN}"})), ErrorCode::NotAllowlisted),
        (fs("fs.write", json!({"path": "${secret:FILE_TOKEN}", "content": "x"})), ErrorCode::NotAllowlisted),
        (
            http(json!({"method": "GET", "url": url, "headers": ["Authorization: ${secret:file_token}"]})),
            ErrorCode::BadArgument,
        ),
        (exec(json!({"argv": ["sh"], "env": ["TOKEN_X=${secret:FILE_TOKEN"]})), ErrorCode::BadArgument),
    ];
    for (owned, code) in cases {
        let err = env.plan(&owned).unwrap_err();
        assert_eq!(err.code, code, "{}: {err}", owned.canonical_args);
        assert_eq!(env.effectors.screen_args(&owned.action, &owned.args).unwrap_err().code, code);
    }
    let url_ref = format!("{url}?k=${{secret:FILE_TOKEN}}");
    let owned = call("http.request", &url_ref, json!({"method": "GET", "url": url_ref}));
    let err = env.plan(&owned).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotAllowlisted);
    assert!(err.message.contains("args.url has a secret reference") && err.message.contains("args.headers values"));
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

/// One line of `tests/data/screen_args.txt`.
struct Case {
    line: usize,
    expected: String,
    action: String,
    args: Value,
}

fn screen_cases() -> Vec<Case> {
    let text = include_str!("data/screen_args.txt");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            let (expected, rest) = line.split_once(char::is_whitespace).unwrap();
            let (action, args) = rest.trim_start().split_once(char::is_whitespace).unwrap();
            let args = serde_json::from_str(args.trim()).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            Case { line: i + 1, expected: expected.to_owned(), action: action.to_owned(), args }
        })
        .collect()
}

/// Every string in `value`, and the part after the first `:` or `=` of each (a header or env value).
fn strings_and_values(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            out.push(s.clone());
            if let Some((_, v)) = s.split_once([':', '=']) {
                out.push(v.trim().to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_and_values(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings_and_values(v, out)),
        _ => {}
    }
}

#[test]
fn screen_args_table() {
    let (_keep, file) = secret_file(FILE_VALUE, 0o600);
    let mut config = config(None, &file);
    config.http.redact_headers = vec!["X-Custom-Secret".to_owned()];
    config.secrets.insert("GITHUB_TOKEN".to_owned(), SecretSource { env: Some("GITHUB_TOKEN".into()), file: None });
    let env = Env::new(&config);
    let cases = screen_cases();
    assert!(cases.len() > 40, "{}", cases.len());
    for case in cases {
        let at = format!("screen_args.txt:{} {} {}", case.line, case.action, case.args);
        match env.effectors.screen_args(&case.action, &case.args) {
            Ok(()) => assert_eq!(case.expected, "ok", "{at}: accepted"),
            Err(err) => {
                assert_eq!(format!("{:?}", err.code), case.expected, "{at}: {err}");
                assert!(err.message.starts_with(&format!("{}: ", case.action)), "{at}: {err}");
                let mut shown = Vec::new();
                strings_and_values(&case.args, &mut shown);
                for s in shown.iter().filter(|s| s.len() >= 6) {
                    assert!(!err.message.contains(s.as_str()), "{at}: the message echoes `{s}`: {err}");
                }
            }
        }
    }
}
