//! Proving what happened, through the real binary: replay, what-if, signed checkpoints (and what an attacker
//! who rewrites history can and cannot get past), verification from a checkpoint, audit bundles.

use ed25519_dalek::{Signer, SigningKey};
use ice_core::checkpoint::{CheckpointPayload, to_hex};
use ice_core::{Event, EventKind};
use ice_store::{EventQuery, Store};
use ice_store_sqlite::{SqliteOptions, SqliteStore};
use rusqlite::Connection;

use crate::{Ice, permit_of, propose_file, stderr, stdout};

/// A ledger that checkpoints every 8 events, with a run that wrote and deleted files and an agent's notes.
fn ledger() -> (Ice, String) {
    let ice = Ice::init();
    let config = ice.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("checkpoint_every_events = 2000", "checkpoint_every_events = 8")).unwrap();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.*", "--resource", "file:"]);
    let run = ice.executing_run();
    for i in 0..4 {
        let (code, d) = propose_file(&ice, &run, "fs.write", &format!(r#"{{"path":"f{i}.txt","content":"v{i}"}}"#));
        assert_eq!(code, 0, "{d}");
        ice.ok(&["exec", "--as", "agent:a", &permit_of(&d)]);
        let note = format!(r#"{{"note":"wrote {i}"}}"#);
        ice.ok(&["emit", "--kind", "ReasoningRecorded", "--origin", "agent:a", "--run", &run, "--payload", &note]);
    }
    ice.ok(&["run", "finish", &run]);
    (ice, run)
}

fn events(ice: &Ice) -> Vec<Event> {
    let store = SqliteStore::open(ice.db(), SqliteOptions::default()).unwrap();
    store.read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).unwrap()
}

fn checkpoints(ice: &Ice) -> Vec<(u64, CheckpointPayload)> {
    events(ice)
        .into_iter()
        .filter(|e| e.kind == EventKind::Checkpoint)
        .map(|e| (e.seq.0, serde_json::from_str(e.payload.as_str()).unwrap()))
        .collect()
}

/// Rewrites history as an attacker with write access to the file would: changes one event's payload, then
/// re-hashes the whole chain after it (and moves the recorded head), so the chain itself verifies again. With
/// `resign`, checkpoints are rebuilt too (Merkle root, to_hash) and signed with `resign`'s key.
fn rewrite(ice: &Ice, seq: u64, from: &str, to: &str, resign: Option<&SigningKey>) {
    let mut all = events(ice);
    let c = Connection::open(ice.db()).unwrap();
    c.execute_batch(
        "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
         DROP TRIGGER chain_head_forward; DROP TRIGGER chain_head_no_delete;",
    )
    .unwrap();
    let mut prev = all[0].prev_hash;
    let mut range: Vec<[u8; 32]> = Vec::new();
    for e in &mut all {
        if e.seq.0 == seq {
            let text = e.payload.as_str().replacen(from, to, 1);
            assert_ne!(text, e.payload.as_str(), "the payload at seq {seq} holds {from:?}");
            e.payload = ice_core::CanonicalJson::parse(&text).unwrap();
        }
        if let (Some(key), EventKind::Checkpoint) = (resign, e.kind) {
            let mut p: CheckpointPayload = serde_json::from_str(e.payload.as_str()).unwrap();
            let n = usize::try_from(p.to_seq - p.from_seq + 1).unwrap();
            p.merkle_root = to_hex(&ice_core::merkle::merkle_root(&range[..n]));
            p.to_hash = to_hex(&range[n - 1]);
            p.public_key = to_hex(key.verifying_key().as_bytes());
            p.signature = to_hex(&key.sign(&p.signing_message()).to_bytes());
            range.drain(..n);
            e.payload = ice_core::CanonicalJson::from_serialize(&p).unwrap();
        }
        e.prev_hash = prev;
        e.hash = e.compute_hash();
        prev = e.hash;
        range.push(e.hash.0);
        c.execute(
            "UPDATE events SET payload = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![e.payload.as_str(), e.prev_hash.0.to_vec(), e.hash.0.to_vec(), e.seq.0 as i64],
        )
        .unwrap();
    }
    c.execute("UPDATE chain_head SET hash = ?1", rusqlite::params![prev.0.to_vec()]).unwrap();
}

fn verify_fails(ice: &Ice, code: &str) -> String {
    let out = ice.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "verify must fail: {}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(code), "expected {code}: {}", stdout(&out));
    stdout(&out)
}

fn key_of(ice: &Ice) -> SigningKey {
    let hex = std::fs::read_to_string(ice.path().join(".ice/keys/runtime.key")).unwrap();
    let bytes: [u8; 32] = ice_core::checkpoint::from_hex(hex.trim()).unwrap().try_into().unwrap();
    SigningKey::from_bytes(&bytes)
}

#[test]
fn checkpoints_are_signed_and_replay_reproduces_the_live_state() {
    let (ice, _) = ledger();
    let cps = checkpoints(&ice);
    assert!(cps.len() >= 3, "checkpoints every 8 events: {}", cps.len());
    // Consecutive checkpoints tile the ledger.
    for w in cps.windows(2) {
        assert_eq!(w[1].1.from_seq, w[0].1.to_seq + 1);
    }
    let out = ice.ok(&["verify"]);
    assert!(out.contains(&format!("{} signed checkpoint(s) verified", cps.len())), "{out}");
    let from = ice.ok(&["verify", "--from-checkpoint", "--json"]);
    let v: serde_json::Value = serde_json::from_str(from.trim()).unwrap();
    assert!(v["started_at_seq"].as_u64().unwrap() > 1, "{v}");

    let replay = ice.ok(&["replay", "--json"]);
    let r: serde_json::Value = serde_json::from_str(replay.trim()).unwrap();
    assert_eq!(r["state_root"], r["live_root"]);
    assert_eq!(r["checkpoints"], cps.len());
    assert!(r["live_started_from"].as_u64().unwrap() > 0, "the live state was loaded from a snapshot: {r}");
    assert!(r["decision_mismatches"].as_array().unwrap().is_empty());
    assert!(r["decisions"].as_u64().unwrap() >= 4);
    assert!(ice.ok(&["key"]).trim().len() == 64);
}

#[test]
fn tampering_with_a_signed_checkpoint_is_detected() {
    let (ice, _) = ledger();
    let (seq, cp) = checkpoints(&ice)[1].clone();
    // Edit it in place: its own hash no longer matches.
    let c = Connection::open(ice.db()).unwrap();
    c.execute_batch("DROP TRIGGER events_no_update;").unwrap();
    let payload: String = c.query_row("SELECT payload FROM events WHERE seq = ?1", [seq as i64], |r| r.get(0)).unwrap();
    c.execute(
        "UPDATE events SET payload = ?1 WHERE seq = ?2",
        rusqlite::params![payload.replace(&cp.state_root, &"0".repeat(64)), seq as i64],
    )
    .unwrap();
    drop(c);
    verify_fails(&ice, "ICE-E0501");
}

#[test]
fn rehashing_a_modified_chain_without_the_key_is_detected() {
    let (ice, _) = ledger();
    let cps = checkpoints(&ice);
    let covered = cps.last().unwrap().0;
    let note = events(&ice).into_iter().find(|e| e.kind == EventKind::ReasoningRecorded && e.seq.0 < covered).unwrap();
    // Re-hashing alone: the chain verifies, the signed Merkle root does not.
    rewrite(&ice, note.seq.0, "wrote", "WROTE", None);
    let text = verify_fails(&ice, "ICE-E0506");
    assert!(text.contains("Merkle root"), "{text}");
}

#[test]
fn re_signing_with_another_key_or_swapping_the_public_key_is_detected() {
    let (ice, _) = ledger();
    let note = events(&ice).into_iter().find(|e| e.kind == EventKind::ReasoningRecorded).unwrap();
    let attacker = SigningKey::from_bytes(&[66u8; 32]);
    rewrite(&ice, note.seq.0, "wrote", "WROTE", Some(&attacker));
    verify_fails(&ice, "ICE-E0507");
    // Trusting the attacker's key explicitly is the only way through.
    let key = to_hex(attacker.verifying_key().as_bytes());
    ice.ok(&["verify", "--trust-key", &key]);

    // An intact ledger with its pinned public key swapped for another fails too.
    let (other, _) = ledger();
    std::fs::write(other.path().join(".ice/keys/ledger.pub"), format!("{key}\n")).unwrap();
    verify_fails(&other, "ICE-E0507");
}

#[test]
fn replay_names_where_recorded_and_replayed_state_diverge() {
    let (ice, _) = ledger();
    let cps = checkpoints(&ice);
    // Someone with the key signs a checkpoint whose state root does not match what the events fold to (what a
    // nondeterministic or silently changed engine would produce): replay localises it.
    let key = key_of(&ice);
    let (seq, bad) = cps[1].clone();
    rewrite(&ice, seq, &bad.state_root, &"ab".repeat(32), Some(&key));
    ice.ok(&["verify"]);
    let out = ice.run(&["replay", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(r["divergence"]["agree_through"], cps[0].1.to_seq);
    assert_eq!(r["divergence"]["differ_by"], cps[1].1.to_seq);
}

#[test]
fn what_if_gates_a_stricter_policy_through_the_cli() {
    let (ice, run) = ledger();
    let candidate = ice.path().join("candidate");
    copy_dir(&ice.path().join(".ice/policies"), &candidate);
    let out = ice.run(&["what-if", "--policies", candidate.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "the same policies change nothing: {}", stdout(&out));
    std::fs::write(
        candidate.join("freeze.cedar"),
        "@id(\"freeze-writes\")\nforbid (principal, action == Ice::Action::\"fs.write\", resource);\n",
    )
    .unwrap();
    let out = ice.run(&["what-if", "--policies", candidate.to_str().unwrap(), "--run", &run, "--json"]);
    assert_eq!(out.status.code(), Some(1), "changes found: {}", stderr(&out));
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(r["counts"]["allow→deny"], 4);
    assert!(r["changes"].as_array().unwrap().iter().all(|c| c["policies"][0] == "freeze-writes"));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn an_exported_bundle_verifies_offline_and_an_altered_event_fails() {
    let (ice, run) = ledger();
    let bundle = ice.path().join("run.bundle.jsonl");
    ice.ok(&["export", "--run", &run, "-o", bundle.to_str().unwrap()]);
    let key = ice.ok(&["key"]).trim().to_owned();
    // Offline: no ledger, no .ice directory needed.
    let elsewhere = tempfile::tempdir().unwrap();
    let offline = |args: &[&str]| {
        std::process::Command::new(crate::bin()).current_dir(elsewhere.path()).args(args).output().unwrap()
    };
    // Without a pinned key the bundle's own key proves only consistency: refused unless asked for explicitly.
    let out = offline(&["verify", "--bundle", bundle.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("ICE-E0508"), "{}", stderr(&out));
    let out = offline(&["verify", "--bundle", bundle.to_str().unwrap(), "--trust-bundle-key"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("keys from the bundle"), "{}", stdout(&out));
    let out = offline(&["verify", "--bundle", bundle.to_str().unwrap(), "--trust-key", &key, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(r["report"]["events_verified"].as_u64().unwrap() > 10);
    assert_eq!(r["report"]["keys_from"], "pinned");

    // One altered event (its payload, keeping its recorded hash): its hash and its inclusion proof fail.
    let text = std::fs::read_to_string(&bundle).unwrap();
    let altered = text.replacen("wrote 1", "wrote 9", 1);
    assert_ne!(altered, text);
    let bad = ice.path().join("altered.jsonl");
    std::fs::write(&bad, altered).unwrap();
    let out = offline(&["verify", "--bundle", bad.to_str().unwrap(), "--trust-key", &key]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("ICE-E0501"), "{}", stdout(&out));

    // Pinned to another key, the genuine bundle is refused.
    let other = to_hex(SigningKey::from_bytes(&[5u8; 32]).verifying_key().as_bytes());
    let out = offline(&["verify", "--bundle", bundle.to_str().unwrap(), "--trust-key", &other]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // A range export is complete and chain-linked.
    let range = ice.path().join("range.jsonl");
    ice.ok(&["export", "--range", "3..12", "-o", range.to_str().unwrap()]);
    let out = offline(&["verify", "--bundle", range.to_str().unwrap(), "--trust-key", &key, "--json"]);
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(r["report"]["events_verified"], 10);
    assert_eq!(r["report"]["links_verified"], 9);
    assert_eq!(r["report"]["range_complete"], true);
}

/// The pinned key is never silently skipped: unreadable or garbled, verification stops with its own code.
#[test]
fn an_unreadable_or_garbled_pinned_key_fails_verification() {
    use std::os::unix::fs::PermissionsExt;
    let (ice, _) = ledger();
    let pinned = ice.path().join(".ice/keys/ledger.pub");
    let original = std::fs::read_to_string(&pinned).unwrap();
    std::fs::write(&pinned, "not a key\n").unwrap();
    let out = ice.run(&["verify"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("ICE-E0508"), "{}", stderr(&out));
    std::fs::write(&pinned, &original).unwrap();
    std::fs::set_permissions(&pinned, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything: the unreadable case is only observable as another user.
    if std::fs::read_to_string(&pinned).is_err() {
        let out = ice.run(&["verify"]);
        assert!(stderr(&out).contains("ICE-E0508"), "{}", stderr(&out));
    }
    std::fs::set_permissions(&pinned, std::fs::Permissions::from_mode(0o600)).unwrap();
    ice.ok(&["verify"]);
}

/// A ledger whose unsigned tail exceeds the configured bound fails verification, naming the first unsigned seq.
#[test]
fn an_unsigned_tail_longer_than_the_bound_fails_verification() {
    let (ice, run) = ledger();
    let config = ice.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("checkpoint_every_events = 8", "checkpoint_every_events = 0");
    std::fs::write(&config, text.replace("[runtime]", "[runtime]\nmax_unsigned_tail = 3")).unwrap();
    for i in 0..5 {
        let note = format!(r#"{{"note":"tail {i}"}}"#);
        ice.ok(&["emit", "--kind", "ReasoningRecorded", "--origin", "agent:a", "--run", &run, "--payload", &note]);
    }
    let failed = verify_fails(&ice, "ICE-E0509");
    assert!(failed.contains("follow the last signed checkpoint"), "{failed}");
    ice.ok(&["checkpoint"]);
    ice.ok(&["verify"]);
}

/// A finished run leaves memory at the next checkpoint and stays readable from the ledger: `run list` says how many
/// left, `inspect` rebuilds it, nothing can name it again, and replay still reproduces every signed root.
#[test]
fn a_settled_run_leaves_memory_but_not_the_ledger() {
    let (ice, run) = ledger();
    let shown = ice.ok(&["inspect", &run]);
    ice.ok(&["run", "advance", &run]);
    ice.ok(&["checkpoint"]);
    let list = ice.ok(&["run", "list"]);
    assert!(!list.contains(&run), "{list}");
    assert!(list.contains("1 terminated run(s) settled and left memory"), "{list}");
    let again = ice.ok(&["inspect", &run]);
    assert!(again.contains("TERMINATED"), "{again}");
    // Its effects and used permits left memory; the listings that promise all of them read the ledger.
    assert_eq!(ice.ok(&["effects", "list", "--run", &run, "--json"]).lines().count(), 4);
    assert_eq!(ice.ok(&["effects", "permits", "--all", "--json"]).lines().count(), 4);
    assert_eq!(ice.ok(&["effects", "permits", "--json"]).lines().count(), 0, "none is live");
    let count = |text: &str| text.split("history (").nth(1).and_then(|t| t.split(' ').next()?.parse::<u64>().ok());
    assert_eq!(count(&again), count(&shown).map(|n| n + 1), "the termination is in its history: {shown}\n{again}");
    let out = ice.run(&["run", "advance", &run, "--to", "ABORTED"]);
    assert_eq!(out.status.code(), Some(3), "refused: {}", stderr(&out));
    assert!(stderr(&out).contains("ICE-E0202"), "as a terminated run: {}", stderr(&out));
    let replay = ice.ok(&["replay", "--json"]);
    let r: serde_json::Value = serde_json::from_str(replay.trim()).unwrap();
    assert_eq!(r["state_root"], r["live_root"], "{r}");
    assert!(r["divergence"].is_null(), "{r}");
    ice.ok(&["verify"]);
}

/// Deletes every event after `keep` and rewinds the recorded head to it, as someone with write access to the disk
/// (who dropped the triggers) would to make approvals and effects vanish.
fn rewind(ice: &Ice, keep: u64) {
    let last = events(ice).into_iter().find(|e| e.seq.0 == keep).unwrap();
    let c = Connection::open(ice.db()).unwrap();
    c.execute_batch(
        "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
         DROP TRIGGER chain_head_forward; DROP TRIGGER chain_head_no_delete;",
    )
    .unwrap();
    c.execute("DELETE FROM events WHERE seq > ?1", [keep as i64]).unwrap();
    c.execute(
        "UPDATE chain_head SET seq = ?1, hash = ?2, time = ?3",
        rusqlite::params![keep as i64, last.hash.0.to_vec(), last.time.0],
    )
    .unwrap();
}

/// The rewind attack of the integrity issue: truncate the tail, rewind the head, re-sign what is left with the
/// genuine key. `ice verify` cannot see it (every remaining signature is genuine); a witness that cosigned a later
/// checkpoint can, and refuses to cosign the rewritten ledger.
#[test]
fn a_witness_detects_a_rewound_and_re_signed_ledger() {
    let (ice, run) = ledger();
    let state = ice.path().join("witness/state.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    let state_arg = state.to_str().unwrap();
    let first = ice.ok(&["witness", "--state", state_arg]);
    assert!(first.contains("first sight of this log"), "{first}");
    let note = r#"{"note":"after the first witness"}"#;
    ice.ok(&["emit", "--kind", "ReasoningRecorded", "--origin", "agent:a", "--run", &run, "--payload", note]);
    ice.ok(&["checkpoint"]);
    let second = ice.ok(&["witness", "--state", state_arg]);
    assert!(second.contains("it extends seq"), "{second}");
    let again = ice.ok(&["witness", "--state", state_arg]);
    assert!(again.contains("nothing new"), "{again}");
    let witnessed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let (log, cosigned) = witnessed["logs"].as_object().unwrap().iter().next().unwrap();
    let seq = cosigned["seq"].as_u64().unwrap();
    assert_eq!(log.len(), 64);
    assert!(ice.ok(&["verify", "--witness", state_arg]).contains(&format!("cosigned (seq {seq}) is present")));

    rewind(&ice, seq - 4);
    ice.ok(&["checkpoint"]);
    let plain = ice.ok(&["verify"]);
    assert!(plain.starts_with("ok: "), "without a witness the rewind passes: {plain}");

    let out = ice.run(&["verify", "--witness", state_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("FAILED at seq {seq}: [ICE-E0511]")), "{}", stdout(&out));
    let before = std::fs::read_to_string(&state).unwrap();
    let out = ice.run(&["witness", "--state", state_arg]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("ICE-E0511"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), before, "nothing cosigned");

    // A state file that is not the witness's own is refused, as is one pinned to another witness key.
    let other = "ab".repeat(32);
    let out = ice.run(&["verify", "--witness", state_arg, "--witness-key", &other]);
    assert!(stderr(&out).contains("ICE-E0512"), "{}", stderr(&out));
    let forged = before.replace(&format!("\"seq\": {seq}"), &format!("\"seq\": {}", seq - 8));
    std::fs::write(&state, forged).unwrap();
    let out = ice.run(&["verify", "--witness", state_arg]);
    assert!(stderr(&out).contains("ICE-E0512"), "{}", stderr(&out));
}

/// `ice export --witness` puts the witness's cosignature in the bundle, with the checkpoints chaining the run's
/// events to the cosigned one; a verifier that pins the witness (`--trust-witness`) then knows the witness saw
/// those events, and refuses a bundle whose cosignature was edited, is another witness's, or is missing.
#[test]
fn a_bundle_carries_a_witness_cosignature_that_a_verifier_can_pin() {
    let (ice, run) = ledger();
    let state = ice.path().join("witness.json");
    ice.ok(&["checkpoint"]);
    ice.ok(&["witness", "--state", state.to_str().unwrap()]);
    let witness: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let witness_key = witness["witness_key"].as_str().unwrap().to_owned();
    let (key, bundle) = (ice.ok(&["key"]).trim().to_owned(), ice.path().join("run.jsonl"));
    let out = ice.ok(&["export", "--run", &run, "-o", bundle.to_str().unwrap(), "--witness", state.to_str().unwrap()]);
    assert!(out.contains("under a checkpoint a witness cosigned"), "{out}");
    let verify = |path: &std::path::Path, witness: &str| {
        let args = ["verify", "--bundle", path.to_str().unwrap(), "--trust-key", &key, "--trust-witness", witness];
        ice.run(&[&args[..], &["--json"]].concat())
    };
    let out = verify(&bundle, &witness_key);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(r["report"]["events_witnessed"], r["report"]["events_verified"], "{r}");
    assert_eq!(
        (&r["report"]["cosignatures_verified"], &r["report"]["witness_keys_from"]),
        (&1.into(), &"pinned".into())
    );

    let text = std::fs::read_to_string(&bundle).unwrap();
    let sig = witness["logs"].as_object().unwrap().values().next().unwrap()["cosignature"].as_str().unwrap().to_owned();
    let flipped = format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]);
    let forged = ice.path().join("forged.jsonl");
    std::fs::write(&forged, text.replace(&sig, &flipped)).unwrap();
    let refused = |path: &std::path::Path, witness: &str, code: &str| {
        let out = verify(path, witness);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert_eq!(serde_json::from_str::<serde_json::Value>(stdout(&out).trim()).unwrap()["code"], code);
    };
    refused(&forged, &witness_key, "ICE-E0514");
    refused(&bundle, &"ab".repeat(32), "ICE-E0507");
    let plain = ice.path().join("plain.jsonl");
    ice.ok(&["export", "--run", &run, "-o", plain.to_str().unwrap()]);
    refused(&plain, &witness_key, "ICE-E0515");
}

/// The signing key can live outside `.ice/`: in a file elsewhere, or behind an external signer (`ice signer`, which
/// an operator would run as another OS user). A process that cannot use the key still records and verifies; it
/// just does not sign, and says so when asked to.
#[test]
fn the_signing_key_can_live_outside_the_home() {
    let elsewhere = tempfile::tempdir().unwrap();
    let key = elsewhere.path().join("ledger.key");
    let ice = Ice::init_with(&["--signing-key", &format!("file:{}", key.display())]);
    assert!(key.exists(), "the key was created where asked");
    assert!(!ice.path().join(".ice/keys/runtime.key").exists(), "and no secret was written into the home");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    ice.create_run();
    assert!(ice.ok(&["checkpoint"]).starts_with("checkpoint at seq"));
    assert!(ice.ok(&["verify"]).contains("2 signed checkpoint(s) verified"));

    let public = ice.ok(&["signer", "--key", key.to_str().unwrap(), "public-key"]).trim().to_owned();
    assert_eq!(public, ice.ok(&["key"]).trim());
    let signer = format!("command:{} signer --key {}", crate::bin(), key.display());
    let via_signer = Ice::init_with(&["--signing-key", &signer]);
    via_signer.create_run();
    let cp = via_signer.ok(&["checkpoint"]);
    assert!(cp.contains(&format!("signed by {}", &public[..16])), "{cp}");
    assert!(via_signer.ok(&["verify"]).contains("2 signed checkpoint(s) verified"));

    // The signer is out of reach (as for an agent's OS user that sudo refuses): commands still work, nothing is
    // signed, and `ice checkpoint` says why.
    let config = via_signer.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&signer, "command:/nonexistent/ice-signer")).unwrap();
    via_signer.create_run();
    let out = via_signer.run(&["checkpoint"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("cannot use the signing key"), "{}", stderr(&out));
    assert!(via_signer.ok(&["verify"]).starts_with("ok: "));
}

/// The ledger as a standard transparency log: a C2SP checkpoint note over the RFC 6962 tree of the event hashes
/// verifies against the ledger; a consistency proof between two sizes verifies with the RFC algorithm; after a
/// rewrite re-signed with the genuine key, the note the auditor kept no longer matches the ledger.
#[test]
fn tlog_checkpoints_and_consistency_proofs_follow_the_standards() {
    let (ice, _) = ledger();
    let agent = ice.token("agent:a", "agent");
    let out = ice.run_token(&agent, &["tlog", "checkpoint"]);
    assert!(stderr(&out).contains("ICE-E0905"), "signing with the ledger's key is an operator's: {}", stderr(&out));
    let note = ice.ok(&["tlog", "checkpoint"]);
    let parsed = ice_core::tlog::parse_checkpoint_note(&note).unwrap_or_else(|| panic!("not a note: {note}"));
    assert_eq!(parsed.size, checkpoints(&ice).last().unwrap().1.to_seq, "the latest signed checkpoint's size");
    assert!(parsed.origin.starts_with("ice-ledger/"), "{note}");
    let file = ice.path().join("note.txt");
    std::fs::write(&file, &note).unwrap();
    let ok = ice.ok(&["tlog", "verify", file.to_str().unwrap()]);
    assert!(ok.starts_with("ok: "), "{ok}");

    let proof = ice.ok(&["tlog", "consistency", "--from", "3", "--to", &parsed.size.to_string()]);
    let mut lines = proof.lines();
    let root = |line: Option<&str>| -> [u8; 32] {
        use base64::Engine as _;
        let b64 = line.unwrap().rsplit(' ').next().unwrap();
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap().try_into().unwrap()
    };
    let (old, new) = (root(lines.next()), root(lines.next()));
    assert_eq!(new, parsed.root, "the same tree head as the note");
    let hashes: Vec<[u8; 32]> = lines.map(|l| root(Some(l))).collect();
    assert!(ice_core::tlog::verify_consistency(3, parsed.size, &old, &new, &hashes));
    assert!(!ice_core::tlog::verify_consistency(3, parsed.size, &new, &new, &hashes), "a forged old root fails");
    // The same proof as a tlog-witness add-checkpoint request body: `old 3`, proof lines, blank line, signed note.
    let size = parsed.size.to_string();
    let request = ice.ok(&["tlog", "consistency", "--from", "3", "--to", &size, "--witness-request"]);
    let (head, note_text) = request.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("old 3"));
    let proof_lines: Vec<[u8; 32]> = lines.map(|l| root(Some(l))).collect();
    assert_eq!(proof_lines, hashes);
    let note_in_request = ice_core::tlog::parse_checkpoint_note(note_text).unwrap();
    assert_eq!((note_in_request.size, note_in_request.root), (parsed.size, parsed.root));

    // A note whose size was changed no longer carries a valid signature.
    let altered = note.replacen(&format!("\n{}\n", parsed.size), &format!("\n{}\n", parsed.size - 1), 1);
    std::fs::write(&file, altered).unwrap();
    let out = ice.run(&["tlog", "verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // Rewriting history and re-signing every ICE checkpoint with the genuine key does not fool the kept note.
    std::fs::write(&file, &note).unwrap();
    let first_note = events(&ice).into_iter().find(|e| e.kind == EventKind::ReasoningRecorded).unwrap();
    rewrite(&ice, first_note.seq.0, "wrote", "WROTE", Some(&key_of(&ice)));
    assert!(ice.ok(&["verify"]).starts_with("ok: "), "the re-signed rewrite passes plain verification");
    let out = ice.run(&["tlog", "verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("rewritten"), "{}", stdout(&out));
}
