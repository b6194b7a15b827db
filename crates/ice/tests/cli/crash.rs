//! Crash test: a child `ice` process appending under load (4 threads, group commit, synchronous=FULL) is killed
//! with SIGKILL at random moments, 20 times. After each kill, every event it had acknowledged is in the ledger
//! and `ice verify` passes.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Ice, stdout};

/// xorshift: a random kill moment per round without a dependency; the seed is printed for reproduction.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    let ice = Ice::init();
    let mut rng = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash test seed {rng}");
    let mut total_acked = 0usize;
    for round in 0..20 {
        let mut child = Command::new(crate::bin())
            .arg("--dir")
            .arg(ice.path())
            .args(["debug", "append-load", "--threads", "4", "--events", "10000000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ack ") {
                    acked.push(id.to_owned());
                }
            }
            acked
        });
        // Wait until the child is appending, then kill it at a random moment.
        std::thread::sleep(Duration::from_millis(150 + next(&mut rng) % 600));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        total_acked += acked.len();

        let conn = rusqlite::Connection::open(ice.db()).unwrap();
        let mut stmt = conn.prepare("SELECT event_id FROM events").unwrap();
        let stored: HashSet<Vec<u8>> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        for id in &acked {
            let uuid = uuid_bytes(id);
            assert!(stored.contains(&uuid), "round {round}: acknowledged event {id} is missing after SIGKILL");
        }
        let verify = ice.run(&["verify"]);
        assert!(verify.status.success(), "round {round}: verify failed after SIGKILL: {}", stdout(&verify));
    }
    assert!(total_acked > 1000, "the child should have been acknowledged for many events, got {total_acked}");
    eprintln!("crash test: {total_acked} acknowledged events survived 20 SIGKILLs");
}

fn uuid_bytes(s: &str) -> Vec<u8> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect()
}
