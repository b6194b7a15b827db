//! End-to-end tests through the real `ice` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

mod cli {
    mod agent;
    mod authority;
    mod bad_input;
    mod console;
    mod crash;
    mod effects;
    mod flow;
    mod mcp;
    mod memory;
    mod postgres;
    mod proof;
    mod roles;
    mod serve;
    mod tamper;
    mod tlog_witness;
    mod trust;
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A fresh, initialised ICE directory and helpers to run `ice` against it.
pub struct Ice {
    dir: tempfile::TempDir,
}

impl Ice {
    /// `ice init` in a new temporary directory.
    pub fn init() -> Self {
        Self::init_with(&[])
    }

    /// `ice init EXTRA...` in a new temporary directory.
    pub fn init_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(bin()).arg("init").arg(dir.path()).args(extra).output().expect("run ice init");
        assert!(out.status.success(), "ice init failed: {}", String::from_utf8_lossy(&out.stderr));
        Self { dir }
    }

    /// The directory holding `.ice/`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite ledger file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join(".ice").join("ledger.db")
    }

    /// Runs `ice --dir DIR ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin()).arg("--dir").arg(self.dir.path()).args(args).output().expect("run ice")
    }

    /// `ice propose` as `agent:a` (the operator acting for it) on `run`, with `extra` flags after the proposal.
    pub fn propose_as_a(&self, run: &str, action: &str, resource: &str, args: &str, extra: &[&str]) -> Output {
        let mut argv = vec!["propose", "--as", "agent:a", "--run", run, "--action", action, "--resource", resource];
        argv.extend(["--args", args]);
        argv.extend(extra);
        self.run(&argv)
    }

    /// Runs `ice --dir DIR --token TOKEN ARGS...` (a caller authenticated by token, not as the OS user).
    pub fn run_token(&self, token: &str, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--token")
            .arg(token)
            .args(args)
            .output()
            .expect("run ice")
    }

    /// [`Ice::run_token`], asserting success; returns stdout.
    pub fn ok_token(&self, token: &str, args: &[&str]) -> String {
        Self::success(args, self.run_token(token, args))
    }

    /// Issues a token (as the operator who ran `ice init`) for `principal` with `roles` (comma-separated) and
    /// returns its secret.
    pub fn token(&self, principal: &str, roles: &str) -> String {
        let out = self.ok(&["token", "create", "--principal", principal, "--role", roles, "--json"]);
        let v: Value = serde_json::from_str(out.trim()).expect("token json");
        v["token"].as_str().expect("token").to_owned()
    }

    /// The principal the OS user running the tests is mapped to by `ice init`.
    pub fn operator(&self) -> String {
        let config = std::fs::read_to_string(self.dir.path().join(".ice/config.toml")).expect("config");
        let line = config.lines().find(|l| l.starts_with("principal = ")).expect("a [[users]] principal");
        line.trim_start_matches("principal = ").trim_matches('"').to_owned()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        Self::success(args, self.run(args))
    }

    fn success(args: &[&str], out: Output) -> String {
        assert!(
            out.status.success(),
            "ice {args:?} failed ({:?}):\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Every event, via `ice log --json`.
    pub fn events(&self) -> Vec<Value> {
        self.ok(&["log", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Creates a run, advances it to EXECUTING and returns its id.
    pub fn executing_run(&self) -> String {
        let run = self.create_run();
        for _ in 0..3 {
            self.ok(&["run", "advance", &run]);
        }
        run
    }

    /// Creates a run and returns its id.
    pub fn create_run(&self) -> String {
        let out = self.ok(&["run", "create", "--json"]);
        let v: Value = serde_json::from_str(out.trim()).expect("run json");
        v["run_id"].as_str().expect("run_id").to_owned()
    }
}

/// The `ice` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ice")
}

/// A process's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A process's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `ice propose --json` as `agent:a` in `run`, on `file:PATH` where PATH is the args' `path`; returns the exit code
/// and the decision JSON.
pub fn propose_file(ice: &Ice, run: &str, action: &str, args: &str) -> (i32, Value) {
    let v: Value = serde_json::from_str(args).unwrap();
    let resource = format!("file:{}", v["path"].as_str().unwrap());
    let out = ice.propose_as_a(run, action, &resource, args, &["--json"]);
    let d =
        serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), d)
}

/// The permit id a decision carries.
pub fn permit_of(d: &Value) -> String {
    d["permit_id"].as_str().unwrap_or_else(|| panic!("no permit in {d}")).to_owned()
}

/// Starts `ice exec --as agent:a PERMIT` paused at `point`, waits until it says so, and SIGKILLs it.
pub fn exec_and_kill_at(ice: &Ice, permit: &str, point: &str) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin())
        .args(["--dir", ice.path().to_str().unwrap(), "exec", "--as", "agent:a", permit])
        .env("ICE_TEST_PAUSE", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let line = BufReader::new(err).lines().map_while(Result::ok).find(|l| l.starts_with("ICE_TEST_PAUSED"));
    assert_eq!(line.as_deref(), Some(format!("ICE_TEST_PAUSED {point}").as_str()));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The permit id `ice approve` printed.
pub fn approved_permit(out: &str) -> String {
    let line = out.lines().find_map(|l| l.strip_prefix("permit ")).unwrap_or_else(|| panic!("no permit in {out}"));
    line.split_whitespace().next().unwrap().to_owned()
}
