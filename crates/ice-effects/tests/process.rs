//! The process effector: allowlisted programs run with captured output in a clean environment; everything else
//! is refused; timeouts kill the process group; output is capped; the journal makes apply exactly-once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

#[path = "support/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{Env, call, hash};
use ice_core::ErrorCode;
use ice_effects::{Compensation, EffectsConfig, OwnedCall, ProcessConfig, RetryMode};
use serde_json::{Value, json};

fn config(timeout_ms: u64, max_output_bytes: u64) -> EffectsConfig {
    EffectsConfig {
        process: ProcessConfig {
            allow: ["/bin/echo", "true", "sh", "cat", "sleep", "head"].map(str::to_owned).to_vec(),
            env_allow: vec!["GREETING".to_owned()],
            timeout_ms,
            max_output_bytes,
        },
        ..EffectsConfig::default()
    }
}

fn env() -> Env {
    Env::new(&config(10_000, 1024 * 1024))
}

fn exec(args: Value) -> OwnedCall {
    let program = args["argv"][0].as_str().unwrap_or_default().to_owned();
    call("process.exec", &format!("process:{program}"), args)
}

fn stdout(env: &Env, evidence: &ice_effects::Evidence) -> String {
    evidence.output_blob.as_deref().map(|b| String::from_utf8(env.blob(b)).unwrap()).unwrap_or_default()
}

#[test]
fn an_allowlisted_program_runs_with_captured_output() {
    let env = env();
    let (plan, evidence) = env.run(&exec(json!({"argv": ["/bin/echo", "hello", "world"]}))).unwrap();
    assert_eq!(plan.target, "/bin/echo");
    assert_eq!(plan.retry, RetryMode::Journal);
    assert!(matches!(plan.compensation, Compensation::Irreversible { .. }));
    assert_eq!(stdout(&env, &evidence), "hello world\n");
    assert_eq!(evidence.output_hash, hash(b"hello world\n"));
    assert_eq!(evidence.output_bytes, 12);
    let d = &evidence.detail;
    assert_eq!(d["exit_code"], json!(0));
    assert_eq!(d["stdout_hash"], json!(hash(b"hello world\n")));
    assert_eq!((d["stdout_bytes"].clone(), d["stderr_bytes"].clone()), (json!(12), json!(0)));
    assert_eq!(d["stderr_hash"], json!(hash(b"")));
    assert_eq!(d["truncated"], json!({"stdout": false, "stderr": false}));
    assert!(d["duration_ms"].is_u64());
    assert!(d.get("signal").is_none());

    // A bare name runs from /usr/bin or /bin, never from the caller's PATH.
    let (plan, evidence) = env.run(&exec(json!({"argv": ["true"]}))).unwrap();
    assert!(plan.target == "/usr/bin/true" || plan.target == "/bin/true", "{}", plan.target);
    assert_eq!(evidence.output_blob, None);
}

#[test]
fn the_child_gets_a_clean_env_its_cwd_and_its_stdin() {
    let env = env();
    std::fs::create_dir(env.sandbox().join("work")).unwrap();
    let script = r#"pwd; echo "[$PATH] [$HOME] [$GREETING]"; cat; echo oops >&2; exit 3"#;
    let args = json!({"argv": ["sh", "-c", script], "cwd": "work", "env": ["GREETING=hi"], "stdin": "from stdin\n"});
    let (_, evidence) = env.run(&exec(args)).unwrap();
    let expected = format!("{}\n[/usr/bin:/bin] [] [hi]\nfrom stdin\n", env.sandbox().join("work").display());
    assert_eq!(stdout(&env, &evidence), expected);
    // A non-zero exit is a completed effect with its code.
    assert_eq!(evidence.detail["exit_code"], json!(3));
    assert_eq!(evidence.detail["stderr_hash"], json!(hash(b"oops\n")));
    assert_eq!(env.blob(evidence.detail["stderr_blob"].as_str().unwrap()), b"oops\n");

    let (_, killed) = env.run(&exec(json!({"argv": ["sh", "-c", "kill -9 $$"]}))).unwrap();
    assert_eq!((killed.detail["exit_code"].clone(), killed.detail["signal"].clone()), (Value::Null, json!(9)));
}

#[test]
fn anything_off_the_allowlists_is_refused() {
    let env = env();
    let cases = [
        (json!({"argv": ["/usr/bin/id"]}), ErrorCode::NotAllowlisted),
        (json!({"argv": ["echo", "x"]}), ErrorCode::NotAllowlisted),
        (json!({"argv": ["/usr/bin/echo", "x"]}), ErrorCode::NotAllowlisted),
        (json!({"argv": ["sh", "-c", "true"], "env": ["HOME=/root"]}), ErrorCode::NotAllowlisted),
        (json!({"argv": ["sh", "-c", "true"], "env": ["GREETING=a\u{0}b"]}), ErrorCode::BadArgument),
        // The environment is a set of "NAME=value" strings; the object form is refused.
        (json!({"argv": ["sh", "-c", "true"], "env": {"GREETING": "hi"}}), ErrorCode::BadArgument),
        (json!({"argv": ["sh", "-c", "true"], "env": ["GREETING"]}), ErrorCode::BadArgument),
        (json!({"argv": ["sh", "-c", "true"], "env": ["=hi"]}), ErrorCode::BadArgument),
        (json!({"argv": ["sh", "-c", "true"], "env": ["GREETING=a", "GREETING=b"]}), ErrorCode::BadArgument),
        (json!({"argv": ["true"], "cwd": "../"}), ErrorCode::SandboxEscape),
        (json!({"argv": ["true"], "cwd": "/tmp"}), ErrorCode::SandboxEscape),
        (json!({"argv": ["true"], "cwd": "missing"}), ErrorCode::NotFound),
        (json!({"argv": []}), ErrorCode::BadArgument),
        (json!({"argv": ["true"], "shell": true}), ErrorCode::BadArgument),
        (json!({"argv": ["sh", "-c", "a\u{0}b"]}), ErrorCode::BadArgument),
    ];
    for (args, code) in cases {
        assert_eq!(env.plan(&exec(args.clone())).unwrap_err().code, code, "{args}");
    }
    let mismatch = call("process.exec", "process:sh", json!({"argv": ["true"]}));
    assert_eq!(env.plan(&mismatch).unwrap_err().code, ErrorCode::ResourceMismatch);
    let object = env.plan(&exec(json!({"argv": ["true"], "env": {"GREETING": "hi"}}))).unwrap_err();
    assert!(object.message.contains("args.env must be an array of \"NAME=value\" strings"), "{object}");
    let bad_key = OwnedCall::new("process.exec", "process:true", json!({"argv": ["true"]}), "../../x").unwrap();
    assert_eq!(env.plan(&bad_key).unwrap_err().code, ErrorCode::BadArgument);
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let env = Env::new(&config(200, 1024));
    for argv in [json!(["sleep", "5"]), json!(["sh", "-c", "sleep 5; echo late > late.txt"])] {
        let owned = exec(json!({ "argv": argv }));
        let start = Instant::now();
        let err = env.run(&owned).unwrap_err();
        assert_eq!(err.code, ErrorCode::EffectLimit, "{err}");
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
        // The failure is journaled: a retry reports it without running again.
        let plan = env.plan(&owned).unwrap();
        assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::EffectLimit);
    }
    assert!(!env.sandbox().join("late.txt").exists());

    // A background grandchild is killed with its group too: the timeout does not leave it running.
    let err = env.run(&exec(json!({"argv": ["sh", "-c", "sleep 5 & echo $! > bg.pid; wait"]}))).unwrap_err();
    assert_eq!(err.code, ErrorCode::EffectLimit);
    assert_gone(&env, "bg.pid");
}

#[test]
fn leftovers_of_a_finished_process_are_killed() {
    let env = env();
    let start = Instant::now();
    let (_, evidence) = env.run(&exec(json!({"argv": ["sh", "-c", "sleep 5 & echo $! > bg.pid"]}))).unwrap();
    assert_eq!(evidence.detail["exit_code"], json!(0));
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert_gone(&env, "bg.pid");
}

/// The process whose pid the file holds is dead (gone, or a zombie awaiting its reaper).
fn assert_gone(env: &Env, pid_file: &str) {
    let pid = std::fs::read_to_string(env.sandbox().join(pid_file)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next().unwrap_or('?')));
        if matches!(state, None | Some('Z' | 'X')) {
            return;
        }
        assert!(Instant::now() < deadline, "pid {} still running ({state:?})", pid.trim());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn output_past_the_cap_is_read_hashed_and_dropped() {
    let env = Env::new(&config(10_000, 1000));
    let (_, evidence) = env.run(&exec(json!({"argv": ["head", "-c", "2000000", "/dev/zero"]}))).unwrap();
    assert_eq!(evidence.detail["exit_code"], json!(0));
    assert_eq!(evidence.detail["truncated"], json!({"stdout": true, "stderr": false}));
    assert_eq!(evidence.output_bytes, 2_000_000);
    assert_eq!(evidence.output_hash, hash(&vec![0u8; 2_000_000]));
    assert_eq!(env.blob(evidence.output_blob.as_deref().unwrap()), vec![0u8; 1000]);
}

#[test]
fn the_journal_makes_apply_exactly_once() {
    let env = env();
    let counter = env.sandbox().join("counter");
    let owned = exec(json!({"argv": ["sh", "-c", "echo x >> counter"]}));
    let plan = env.plan(&owned).unwrap();
    let first = env.apply(&owned, &plan).unwrap();
    assert!(!first.already_applied);
    let again = env.apply(&owned, &plan).unwrap();
    assert!(again.already_applied);
    assert_eq!(again.detail, first.detail);
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "x\n");

    // Another permit (key) for the same args is another effect.
    let other = OwnedCall::new(&owned.action, &owned.resource, owned.args.clone(), harness::key()).unwrap();
    env.run(&other).unwrap();
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "x\nx\n");

    // A key reused for other args is refused, not answered with the other call's evidence.
    let reused = OwnedCall::new("process.exec", "process:true", json!({"argv": ["true"]}), &owned.idempotency_key);
    let reused = reused.unwrap();
    let plan = env.plan(&reused).unwrap();
    assert_eq!(env.apply(&reused, &plan).unwrap_err().code, ErrorCode::ArgsMismatch);
}

#[test]
fn a_start_without_an_end_is_outcome_unknown() {
    let env = env();
    let owned = exec(json!({"argv": ["sh", "-c", "echo x >> counter"]}));
    let plan = env.plan(&owned).unwrap();
    // As a crash between spawning and recording the end would leave it.
    let started = json!({"action": owned.action, "args_hash": owned.args_hash});
    std::fs::write(env.journal().join(format!("{}.started", owned.idempotency_key)), started.to_string()).unwrap();
    assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::OutcomeUnknown);
    assert!(!env.sandbox().join("counter").exists());
}

#[test]
fn a_program_that_cannot_start_may_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("script.sh");
    std::fs::write(&not_executable, "#!/bin/sh\necho hi\n").unwrap();
    let program = not_executable.display().to_string();
    let mut config = config(10_000, 1024);
    config.process.allow.push(program.clone());
    let env = Env::new(&config);
    let owned = call("process.exec", &format!("process:{program}"), json!({ "argv": [program] }));
    let plan = env.plan(&owned).unwrap();
    assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::EffectFailed);
    // Nothing ran, so the start was forgotten: the retry fails the same way instead of OutcomeUnknown.
    assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::EffectFailed);
}
