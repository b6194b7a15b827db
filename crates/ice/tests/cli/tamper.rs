//! Tampering with the SQLite file behind ICE's back (an attacker who can drop the append-only triggers):
//! `ice verify` names the first bad seq and exits 1.

use rusqlite::Connection;

use crate::{Ice, stdout};

/// A ledger of 12 events: init + policy activation + the first checkpoint + run + 6 transitions + 2 agent notes.
fn ledger() -> Ice {
    let ice = Ice::init();
    let run = ice.create_run();
    for _ in 0..3 {
        ice.ok(&["run", "advance", &run]);
    }
    for note in ["one", "two"] {
        let payload = format!(r#"{{"note":"{note}"}}"#);
        ice.ok(&["emit", "--kind", "ReasoningRecorded", "--origin", "agent:a", "--run", &run, "--payload", &payload]);
    }
    ice.ok(&["run", "finish", &run]);
    ice.ok(&["run", "advance", &run]);
    assert!(ice.ok(&["verify"]).starts_with("ok: 12 events"));
    ice
}

fn attacker(ice: &Ice) -> Connection {
    let c = Connection::open(ice.db()).unwrap();
    c.execute_batch(
        "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
         DROP TRIGGER chain_head_forward; DROP TRIGGER chain_head_no_delete;",
    )
    .unwrap();
    c
}

fn assert_fails_at(ice: &Ice, seq: u64, code: &str) {
    let out = ice.run(&["verify"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "verify must fail: {text}");
    assert!(text.contains(&format!("FAILED at seq {seq}:")), "expected first bad seq {seq}: {text}");
    assert!(text.contains(code), "expected {code}: {text}");
    let json = ice.run(&["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(v["first_bad_seq"], seq);
    assert_eq!(v["ok"], false);
}

#[test]
fn flipping_one_payload_byte_is_detected() {
    let ice = ledger();
    let c = attacker(&ice);
    let payload: String = c.query_row("SELECT payload FROM events WHERE seq = 8", [], |r| r.get(0)).unwrap();
    let flipped = payload.replacen("one", "onf", 1);
    assert_ne!(payload, flipped);
    c.execute("UPDATE events SET payload = ?1 WHERE seq = 8", [flipped]).unwrap();
    assert_fails_at(&ice, 8, "ICE-E0501");
}

#[test]
fn deleting_a_row_is_detected() {
    let ice = ledger();
    attacker(&ice).execute("DELETE FROM events WHERE seq = 7", []).unwrap();
    assert_fails_at(&ice, 7, "ICE-E0503");
}

#[test]
fn swapping_two_rows_is_detected() {
    let ice = ledger();
    let c = attacker(&ice);
    c.execute_batch(
        "UPDATE events SET seq = -1 WHERE seq = 8;
         UPDATE events SET seq = 8 WHERE seq = 9;
         UPDATE events SET seq = 9 WHERE seq = -1;",
    )
    .unwrap();
    assert_fails_at(&ice, 8, "ICE-E050");
}

#[test]
fn truncating_the_tail_is_detected() {
    let ice = ledger();
    attacker(&ice).execute("DELETE FROM events WHERE seq > 9", []).unwrap();
    assert_fails_at(&ice, 10, "ICE-E0505");
}

#[test]
fn an_undecodable_row_is_reported_not_panicked_on() {
    let ice = ledger();
    attacker(&ice).execute("UPDATE events SET origin = 'robot:x' WHERE seq = 5", []).unwrap();
    // Its own code: the row cannot even be decoded (not a hash that fails to match).
    assert_fails_at(&ice, 5, "ICE-E0510");
}

#[test]
fn history_cannot_be_rewritten_while_the_triggers_stand() {
    let ice = ledger();
    let c = Connection::open(ice.db()).unwrap();
    let err = c.execute("UPDATE events SET payload = '{}' WHERE seq = 2", []).unwrap_err();
    assert!(err.to_string().contains("ICE-E0304"), "{err}");
    let err = c.execute("DELETE FROM events WHERE seq > 5", []).unwrap_err();
    assert!(err.to_string().contains("ICE-E0304"), "{err}");
    let err = c.execute("UPDATE chain_head SET seq = 5", []).unwrap_err();
    assert!(err.to_string().contains("ICE-E0304"), "{err}");
    ice.ok(&["verify"]);
}

/// `ice migrate` proves the source before copying: a tampered source is refused with nothing written at the
/// destination; an intact one is copied under a temporary name and moved into place only once proven.
#[test]
fn migrate_refuses_a_tampered_source_and_leaves_nothing_behind() {
    let ice = ledger();
    let copy = ice.path().join("copy.db");
    let leftovers = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("migrating"))
            .count()
    };
    let out = ice.run(&["migrate", "--to", &format!("sqlite:{}", copy.display())]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), crate::stderr(&out));
    assert!(copy.exists());
    assert_eq!(leftovers(ice.path()), 0);

    let c = attacker(&ice);
    let payload: String = c.query_row("SELECT payload FROM events WHERE seq = 8", [], |r| r.get(0)).unwrap();
    c.execute("UPDATE events SET payload = ?1 WHERE seq = 8", [payload.replacen("one", "onf", 1)]).unwrap();
    drop(c);
    let second = ice.path().join("second.db");
    let out = ice.run(&["migrate", "--to", &format!("sqlite:{}", second.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("the source does not verify at seq 8"), "{}", stdout(&out));
    assert!(!second.exists(), "nothing written where the copy was expected");
    assert_eq!(leftovers(ice.path()), 0);
}

/// `ice init` signs a checkpoint, so a ledger with none at all was stripped: truncating a fresh ledger to before
/// its first checkpoint (head rewound too) leaves a chain that links, and verification still fails.
#[test]
fn a_ledger_without_any_checkpoint_fails_verification() {
    let ice = Ice::init();
    let c = attacker(&ice);
    let (hash, time): (Vec<u8>, i64) =
        c.query_row("SELECT hash, time FROM events WHERE seq = 2", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    c.execute("DELETE FROM events WHERE seq > 2", []).unwrap();
    c.execute("UPDATE chain_head SET seq = 2, hash = ?1, time = ?2", rusqlite::params![hash, time]).unwrap();
    drop(c);
    assert_fails_at(&ice, 1, "ICE-E0513");
}

/// The rest of the tamper corpus, one column at a time on the first agent note (seq 8): each change is caught at
/// that seq — a changed kind, time or origin by the envelope hash, a flipped stored hash by the next event's link.
#[test]
fn changing_any_envelope_column_is_detected_at_its_seq() {
    let cases: [(&str, u64, &str); 5] = [
        ("UPDATE events SET kind = 'ObservationRecorded' WHERE seq = 8", 8, "ICE-E0501"),
        ("UPDATE events SET time = time + 1 WHERE seq = 8", 8, "ICE-E0501"),
        ("UPDATE events SET origin = 'agent:b' WHERE seq = 8", 8, "ICE-E0501"),
        ("UPDATE events SET causes = zeroblob(16) WHERE seq = 8", 8, "ICE-E0501"),
        ("UPDATE events SET hash = zeroblob(32) WHERE seq = 8", 8, "ICE-E0501"),
    ];
    for (sql, seq, code) in cases {
        let ice = ledger();
        attacker(&ice).execute(sql, []).unwrap();
        assert_fails_at(&ice, seq, code);
    }
}
