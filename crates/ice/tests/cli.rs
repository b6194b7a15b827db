//! End-to-end tests through the real `ice` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

mod cli {
    mod authority;
    mod bad_input;
    mod crash;
    mod effects;
    mod flow;
    mod postgres;
    mod proof;
    mod tamper;
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

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
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
    let argv = ["propose", "--json", "--as", "agent:a", "--run", run, "--action", action, "--resource", &resource];
    let mut argv = argv.to_vec();
    argv.extend(["--args", args]);
    let out = ice.run(&argv);
    let d =
        serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), d)
}

/// The permit id a decision carries.
pub fn permit_of(d: &Value) -> String {
    d["permit_id"].as_str().unwrap_or_else(|| panic!("no permit in {d}")).to_owned()
}

/// The permit id `ice approve` printed.
pub fn approved_permit(out: &str) -> String {
    let line = out.lines().find_map(|l| l.strip_prefix("permit ")).unwrap_or_else(|| panic!("no permit in {out}"));
    line.split_whitespace().next().unwrap().to_owned()
}
