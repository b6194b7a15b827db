//! Known-answer vectors: the exact bytes and hashes ICE commits to. Every ledger ever written depends on these
//! encodings (the envelope hash, the Merkle tree over event hashes, the checkpoint signing message, the state
//! root), so a change of field order, prefix or domain string must fail here, loudly, instead of silently
//! invalidating existing ledgers. Changing one of these constants means a new format version and a migration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ice_core::checkpoint::{CheckpointPayload, to_hex};
use ice_core::event::envelope_hash;
use ice_core::merkle::{leaf_hash, merkle_root, node_hash};
use ice_core::{
    Attribution, CanonicalJson, ChainHead, Draft, EventHash, EventId, EventKind, LedgerState, Principal, RunId,
    TimeSource, seal_job,
};

fn id(n: u8) -> EventId {
    format!("01900000-0000-7000-8000-0000000000{n:02x}").parse().unwrap()
}

fn run_id() -> RunId {
    "01900000-0000-7000-8000-00000000aaaa".parse().unwrap()
}

fn draft(n: u8, kind: EventKind, origin: &str, run: Option<RunId>, payload: &str) -> Draft {
    Draft {
        event_id: id(n),
        run_id: run,
        kind,
        origin: origin.parse().unwrap(),
        acted_by: None,
        time: ice_core::Timestamp::from_secs(1_900_000_000 + i64::from(n)),
        time_source: TimeSource::Clock,
        causes: Vec::new(),
        payload: CanonicalJson::parse(payload).unwrap(),
    }
}

#[test]
fn envelope_hash_is_pinned() {
    let attribution: Attribution = "human:alice;uid:1000;operator".parse().unwrap();
    let h = envelope_hash(
        ice_core::Seq(7),
        id(1),
        Some(run_id()),
        EventKind::RunCreated,
        &"human:alice".parse::<Principal>().unwrap(),
        Some(&attribution),
        ice_core::Timestamp::from_secs(1_900_000_000),
        &[id(2)],
        &CanonicalJson::parse(r#"{"label":"kat"}"#).unwrap(),
        &EventHash([0x11; 32]),
    );
    assert_eq!(h.to_hex(), "10b2f4845ae90b4f88feb604577c8980d39cb7616c8339f021441f883c1ee025");
    let unattributed = envelope_hash(
        ice_core::Seq(1),
        id(1),
        None,
        EventKind::LedgerInitialized,
        &Principal::runtime(),
        None,
        ice_core::Timestamp::from_secs(1_900_000_000),
        &[],
        &CanonicalJson::parse(r#"{"format":1,"runtime_public_key":"00"}"#).unwrap(),
        &EventHash::GENESIS,
    );
    assert_eq!(unattributed.to_hex(), "62d466c4e43a1df12742335ab6e1290def0a833f4f5b1b6001ccf93d83d35853");
}

#[test]
fn merkle_tree_is_pinned() {
    let leaves: Vec<[u8; 32]> = (1..=5u8).map(|i| [i; 32]).collect();
    assert_eq!(to_hex(&leaf_hash(&leaves[0])), "a2ddb4931d05ba6281549052c62d2780a2d3ac29514c0a77598283d61e861206");
    assert_eq!(
        to_hex(&node_hash(&leaves[0], &leaves[1])),
        "7dfb6d5986153fae21ad072c102d9b029a7c247f7e4019dc0ad217145a4a3485"
    );
    assert_eq!(to_hex(&merkle_root(&leaves)), "4f8c8b478debaf74d6c17962f6b86fd8acfd420766f0ca62f16c9ffe444ff77f");
    assert_eq!(to_hex(&merkle_root(&leaves[..1])), "b1db57f0b1cb81e42ed70b433d6a857c087f51152188e4776d2d8ae458698c9a");
}

#[test]
fn checkpoint_signing_message_is_pinned() {
    let c = CheckpointPayload {
        from_seq: 1,
        to_seq: 42,
        to_hash: "ab".repeat(32),
        merkle_root: "cd".repeat(32),
        state_root: "ef".repeat(32),
        public_key: "01".repeat(32),
        signature: String::new(),
    };
    assert_eq!(
        to_hex(&c.signing_message()),
        "6963652e636865636b706f696e742e76310a0000000000000001000000000000002a000000000000004061626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162000000000000004063646364636463646364636463646364636463646364636463646364636463646364636463646364636463646364636463646364636463646364636463646364000000000000004065666566656665666566656665666566656665666566656665666566656665666566656665666566656665666566656665666566656665666566656665666566000000000000004030313031303130313031303130313031303130313031303130313031303130313031303130313031303130313031303130313031303130313031303130313031"
    );
}

#[test]
fn state_root_is_pinned() {
    let operator: Attribution = "human:alice;uid:1000;operator".parse().unwrap();
    let drafts = vec![
        draft(1, EventKind::LedgerInitialized, "runtime:ice", None, r#"{"format":1,"runtime_public_key":"00"}"#),
        {
            let mut d = draft(2, EventKind::RunCreated, "human:alice", Some(run_id()), r#"{"label":"kat"}"#);
            d.acted_by = Some(operator.clone());
            d
        },
    ];
    let events = seal_job(&ChainHead::genesis(), &drafts, &mut |_| false).unwrap();
    let mut st = LedgerState::new();
    for e in &events {
        st.apply(e).unwrap();
    }
    assert_eq!(events[1].hash.to_hex(), "cf2d2ca5a0f7ca107be69375609d7ad6c8aa46af2d8bc6ec067eb30d68e8592e");
    assert_eq!(
        LedgerState::new().state_root().unwrap(),
        "14af5814e7a50deeea732f5abb26422a95c9777178b81b5f1d3dc9bfbcc92f25"
    );
    assert_eq!(st.state_root().unwrap(), "2ae87245e135e3b7a3aaebee7962c85b68e400599b008bea0f1fb11fa8d55839");

    // The run ends; the next checkpoint retires it from memory, and the root does not move.
    let mut end = draft(
        3,
        EventKind::RunTransitioned,
        "human:alice",
        Some(run_id()),
        r#"{"from":"CREATED","reason":"kat","to":"TERMINATED"}"#,
    );
    end.acted_by = Some(operator);
    let ended = seal_job(&ChainHead::after(&events[1]), &[end], &mut |_| false).unwrap();
    st.apply(&ended[0]).unwrap();
    let root = st.state_root().unwrap();
    assert_eq!(root, "4c001d91a06ac64a3360edb425ce52a1cc36f3176cb4a9b957db82a226bd0ca1");
    let checkpoint = CheckpointPayload {
        from_seq: 1,
        to_seq: 3,
        to_hash: ended[0].hash.to_hex(),
        merkle_root: "cd".repeat(32),
        state_root: root.clone(),
        public_key: "01".repeat(32),
        signature: String::new(),
    };
    let payload = serde_json::to_string(&checkpoint).unwrap();
    let sealed = seal_job(
        &ChainHead::after(&ended[0]),
        &[draft(4, EventKind::Checkpoint, "runtime:ice", None, &payload)],
        &mut |_| false,
    )
    .unwrap();
    assert_eq!(st.runs().count(), 1);
    st.apply(&sealed[0]).unwrap();
    assert_eq!(st.runs().count(), 0, "the terminated run retired at the checkpoint");
    assert_eq!(st.retired_runs(), 1);
    assert_eq!(st.state_root().unwrap(), root);
}

#[test]
fn witness_cosign_message_is_pinned() {
    let c = ice_core::witness::WitnessedCheckpoint {
        seq: 9,
        event_hash: "aa".repeat(32),
        to_seq: 8,
        to_hash: "bb".repeat(32),
        merkle_root: "cc".repeat(32),
        state_root: "dd".repeat(32),
        witnessed_at: ice_core::Timestamp::from_secs(1_900_000_000),
        cosignature: String::new(),
    };
    let m = ice_core::witness::cosign_message(&"01".repeat(32), &c);
    assert_eq!(
        blake3::hash(&m).to_hex().to_string(),
        "c9e669f82c01a9333111c4b7f14b4b08ca468504841c2762507be7beb8a0eac4"
    );
    assert!(m.starts_with(b"ice.witness.v1\n"));
}
