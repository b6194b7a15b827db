//! Several `ice` processes on one PostgreSQL ledger (a throwaway cluster started by the test): no gap, no fork,
//! nothing acknowledged lost, budgets exact across instances, and `ice migrate` from SQLite.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ice_testkit::pg::{OWNER, cluster};

use crate::{Ice, approved_permit, permit_of, propose_file, stderr, stdout};

fn pg_ice() -> (Ice, String) {
    let c = cluster();
    let url = c.url(OWNER, &c.create_database());
    (Ice::init_with(&["--store", &url]), url)
}

fn spawn(ice: &Ice, args: &[&str]) -> Child {
    Command::new(crate::bin())
        .arg("--dir")
        .arg(ice.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Collects `ack EVENT_ID` lines until the child's stdout closes.
fn acks(child: &mut Child) -> std::thread::JoinHandle<Vec<String>> {
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ack ").map(str::to_owned))
            .collect()
    })
}

fn stored_ids(ice: &Ice) -> HashSet<String> {
    ice.events().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

fn concurrent_appenders(n: usize, events_each: usize) {
    let (ice, _) = pg_ice();
    let per = events_each.to_string();
    let mut children: Vec<Child> =
        (0..n).map(|_| spawn(&ice, &["debug", "append-load", "--threads", "4", "--events", &per])).collect();
    let readers: Vec<_> = children.iter_mut().map(acks).collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let acked: Vec<Vec<String>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let stored = stored_ids(&ice);
    for (i, a) in acked.iter().enumerate() {
        assert_eq!(a.len(), events_each, "process {i} was acknowledged for every event");
        assert!(a.iter().all(|id| stored.contains(id)), "process {i}: an acknowledged event is missing");
    }
    let verify = ice.ok(&["verify"]);
    // init (2 events) + per process: one run + its events, and the checkpoints signed along the way
    let checkpoints = ice.events().iter().filter(|e| e["kind"] == "Checkpoint").count();
    let total = 2 + n * (1 + events_each) + checkpoints;
    assert!(verify.starts_with(&format!("ok: {total} events")), "{verify}");
    let seqs: Vec<u64> = ice.events().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "gapless");
}

#[test]
fn two_processes_append_to_one_chain() {
    concurrent_appenders(2, 2000);
}

#[test]
fn four_processes_append_to_one_chain() {
    concurrent_appenders(4, 1500);
}

#[test]
fn a_killed_instance_loses_nothing_acknowledged_and_the_others_continue() {
    let (ice, _) = pg_ice();
    let mut steady: Vec<Child> =
        (0..2).map(|_| spawn(&ice, &["debug", "append-load", "--threads", "4", "--events", "3000"])).collect();
    let mut victim = spawn(&ice, &["debug", "append-load", "--threads", "4", "--events", "1000000"]);
    let readers: Vec<_> = steady.iter_mut().map(acks).collect();
    let victim_reader = acks(&mut victim);
    std::thread::sleep(Duration::from_millis(800));
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    for c in &mut steady {
        assert!(c.wait().unwrap().success(), "the other instances carry on");
    }
    let stored = stored_ids(&ice);
    let victim_acked = victim_reader.join().unwrap();
    assert!(!victim_acked.is_empty(), "the killed instance had been appending");
    assert!(victim_acked.iter().all(|id| stored.contains(id)), "nothing acknowledged to the killed instance is lost");
    for r in readers {
        let a = r.join().unwrap();
        assert_eq!(a.len(), 3000);
        assert!(a.iter().all(|id| stored.contains(id)));
    }
    ice.ok(&["verify"]);
}

#[test]
fn a_budget_holds_across_three_instances() {
    let (ice, url) = pg_ice();
    // A second home joining the same ledger (as another host would).
    let other = Ice::init_with(&["--store", &url]);
    assert_eq!(other.events().len(), ice.events().len(), "the second init joined, it did not re-initialise");
    let run = ice.executing_run();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.write", "--resource", "file:/sandbox/"]);
    ice.ok(&["budget", "set", "--scope", "global", "--dimension", "calls", "--limit", "100"]);
    let args = r#"{"path":"/sandbox/x","content":"x"}"#;
    let load = [
        "debug",
        "propose-load",
        "--threads",
        "6",
        "--as",
        "agent:a",
        "--run",
        &run,
        "--action",
        "fs.write",
        "--resource",
        "file:/sandbox/x",
        "--args",
        args,
    ];
    let counts = ["334", "333", "333"];
    let mut children: Vec<Child> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut argv = load.to_vec();
            argv.extend(["--count", n]);
            spawn(if i == 1 { &other } else { &ice }, &argv)
        })
        .collect();
    let mut verdicts = Vec::new();
    for c in &mut children {
        let out = c.stdout.take().unwrap();
        verdicts.extend(BufReader::new(out).lines().map_while(Result::ok));
        let status = c.wait().unwrap();
        assert!(status.success());
    }
    assert_eq!(verdicts.len(), 1000);
    let allowed = verdicts.iter().filter(|v| v.starts_with("allow ")).count();
    assert_eq!(allowed, 100, "exactly what the budget fits, across instances");
    assert_eq!(verdicts.iter().filter(|v| v.starts_with("deny ")).count(), 900);
    ice.ok(&["verify"]);
}

#[test]
fn migrate_copies_a_sqlite_ledger_into_postgres_and_proves_it() {
    let ice = Ice::init();
    let run = ice.executing_run();
    ice.ok(&["emit", "--kind", "ReasoningRecorded", "--origin", "agent:a", "--run", &run, "--payload", r#"{"n":1}"#]);
    let c = cluster();
    let db = c.create_database();
    let url = c.url(OWNER, &db);
    let out = ice.run(&["migrate", "--to", &url]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("matches the source"), "{}", stdout(&out));
    // The copy was made in a staging schema and moved into place once proven; nothing of the staging is left.
    assert!(stdout(&out).contains("into schema public"), "{}", stdout(&out));
    let staging_left = "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname LIKE 'ice\\_migrating%') \
                        THEN RAISE EXCEPTION 'staging left'; END IF; END $$";
    c.exec(OWNER, &db, staging_left).expect("no staging schema is left");
    let sqlite_events = ice.events();
    let pg = Command::new(crate::bin())
        .arg("--dir")
        .arg(ice.path())
        .args(["log", "--json"])
        .env("ICE_STORE", &url)
        .output()
        .unwrap();
    let pg_events: Vec<serde_json::Value> = stdout(&pg).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(pg_events, sqlite_events, "the copy is event-for-event identical");
    let again = ice.run(&["migrate", "--to", &url]);
    assert_eq!(again.status.code(), Some(2), "a non-empty destination is refused: {}", stderr(&again));
}

/// The PostgreSQL benchmark against a throwaway cluster (fsync off: it measures ICE and the lock protocol, not
/// the disk). Not part of the suite; run it with
/// `cargo test --release -p ice --test cli bench_postgres -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run explicitly"]
fn bench_postgres() {
    let c = cluster();
    let url = c.url(OWNER, &c.create_database());
    let out = Command::new(crate::bin()).args(["bench", "postgres", "--url", &url]).output().unwrap();
    println!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success());
}

/// A single-use approval answered by two instances at once: exactly one answer is recorded; the permit it issues,
/// executed by both instances at once, runs exactly once.
#[test]
fn approvals_and_permits_stay_single_use_across_instances() {
    let (ice, url) = pg_ice();
    let other = Ice::init_with(&["--store", &url]);
    let run = ice.executing_run();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.*", "--resource", "file:"]);
    let (alice, bob) = (ice.token("human:alice", "approver"), other.token("human:bob", "approver"));
    for i in 0..6 {
        let path = format!("f{i}.txt");
        let args = format!(r#"{{"path":"{path}","content":"{i}"}}"#);
        let (code, d) = propose_file(&ice, &run, "fs.write", &args);
        assert_eq!(code, 0, "{d}");
        ice.ok(&["exec", "--as", "agent:a", &permit_of(&d)]);
        // Each instance has its own sandbox (as separate hosts would): give the other one the same file.
        std::fs::write(other.path().join("sandbox").join(&path), i.to_string()).unwrap();

        let (code, d) = propose_file(&ice, &run, "fs.delete", &format!(r#"{{"path":"{path}"}}"#));
        assert_eq!(code, 7, "{d}");
        let approval = d["approval_id"].as_str().unwrap().to_owned();

        // Two approvers, one per instance (each token verified by the home that issued it), answer at once.
        let answers: Vec<Child> = [(&ice, &alice), (&other, &bob)]
            .into_iter()
            .map(|(home, token)| spawn(home, &["--token", token, "approve", &approval]))
            .collect();
        let outs: Vec<_> = answers.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let ok: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(ok.len(), 1, "exactly one approval answer wins: {:?}", outs.iter().map(stderr).collect::<Vec<_>>());
        let lost = outs.iter().find(|o| !o.status.success()).unwrap();
        assert!(stderr(lost).contains("ICE-E0821"), "{}", stderr(lost));
        let permit = approved_permit(&stdout(ok[0]));

        let execs: Vec<Child> =
            [&ice, &other].into_iter().map(|home| spawn(home, &["exec", "--as", "agent:a", &permit])).collect();
        let outs: Vec<_> = execs.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        assert_eq!(outs.iter().filter(|o| o.status.success()).count(), 1, "one permit, one effect");
        let lost = outs.iter().find(|o| !o.status.success()).unwrap();
        assert!(stderr(lost).contains("ICE-E0802"), "{}", stderr(lost));
    }
    let events = ice.events();
    assert_eq!(events.iter().filter(|e| e["kind"] == "ApprovalGranted").count(), 6);
    assert_eq!(events.iter().filter(|e| e["kind"] == "EffectStarted").count(), 12);
    ice.ok(&["verify"]);
    // Proof works the same on PostgreSQL: the initialising instance signs, the joined one verifies against the key
    // it pinned when it joined, and both replay to their live state.
    assert!(ice.ok(&["checkpoint"]).starts_with("checkpoint at seq"));
    assert!(other.ok(&["checkpoint"]).starts_with("nothing to checkpoint"), "a joined instance does not sign");
    // The one signed at init and the one just asked for.
    assert!(other.ok(&["verify"]).contains("2 signed checkpoint(s) verified"));
    ice.ok(&["replay"]);
    other.ok(&["replay"]);
}
