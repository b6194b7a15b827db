//! Audit bundles end to end over a synthetic, signed in-process ledger: build, serialise, parse, verify, and the
//! tamperings a verifier must catch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use ed25519_dalek::{Signer, SigningKey};
use ice_core::bundle::{
    Bundle, BundleCosignature, BundleError, BundleHeader, KeySource, build_bundle, verify_bundle,
    verify_bundle_witnessed,
};
use ice_core::checkpoint::{CheckpointPayload, to_hex};
use ice_core::merkle::merkle_root;
use ice_core::witness::{WitnessedCheckpoint, cosign_message};
use ice_core::{
    CanonicalJson, ErrorCode, Event, EventHash, EventId, EventKind, IdSource, Principal, PrincipalKind, RunId, Seq,
    SequentialIds, Timestamp,
};
use serde_json::{Value, json};

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

fn public_hex(k: &SigningKey) -> String {
    to_hex(k.verifying_key().as_bytes())
}

fn run_a() -> RunId {
    RunId::from_bytes([0xa; 16])
}

fn run_b() -> RunId {
    RunId::from_bytes([0xb; 16])
}

/// An in-memory ledger that seals events the way a store does and checkpoints them in tiles.
struct Ledger {
    events: Vec<Event>,
    ids: SequentialIds,
    last_checkpoint: Option<u64>,
}

impl Ledger {
    fn new() -> Self {
        Self { events: Vec::new(), ids: SequentialIds::new(7), last_checkpoint: None }
    }

    fn push(&mut self, kind: EventKind, run: Option<RunId>, payload: Value) {
        let prev = self.events.last().map_or(EventHash::GENESIS, |e| e.hash);
        self.push_linked(kind, run, payload, prev);
    }

    /// Seals with an explicit prev_hash (to build a ledger whose chain is broken before it was checkpointed).
    fn push_linked(&mut self, kind: EventKind, run: Option<RunId>, payload: Value, prev_hash: EventHash) {
        let seq = self.events.len() as u64 + 1;
        let origin = if kind.family() == ice_core::Family::Cognitive {
            Principal::new(PrincipalKind::Agent, "planner").unwrap()
        } else {
            Principal::runtime()
        };
        let mut e = Event {
            seq: Seq(seq),
            event_id: EventId(self.ids.next_uuid()),
            run_id: run,
            kind,
            origin,
            acted_by: None,
            time: Timestamp::from_secs(1_795_000_000).plus_micros(seq as i64 * 1000),
            causes: Vec::new(),
            payload: CanonicalJson::from_value(&payload).unwrap(),
            prev_hash,
            hash: EventHash::GENESIS,
        };
        e.hash = e.compute_hash();
        self.events.push(e);
    }

    fn hashes(&self, from: u64, to: u64) -> Vec<EventHash> {
        self.events[(from - 1) as usize..to as usize].iter().map(|e| e.hash).collect()
    }

    /// Appends a checkpoint over everything since the previous checkpoint (inclusive), signed by `k`.
    fn checkpoint(&mut self, k: &SigningKey) {
        let from = self.last_checkpoint.unwrap_or(1);
        let to = self.events.len() as u64;
        let payload = signed_payload(&self.hashes(from, to), from, k);
        self.push(EventKind::Checkpoint, None, serde_json::to_value(payload).unwrap());
        self.last_checkpoint = Some(to + 1);
    }

    fn event(&self, seq: u64) -> &Event {
        &self.events[(seq - 1) as usize]
    }

    /// What a runtime hands the builder: every checkpoint with the hashes of its range.
    fn checkpoints(&self) -> Vec<(Event, Vec<EventHash>)> {
        self.events
            .iter()
            .filter(|e| e.kind == EventKind::Checkpoint)
            .map(|cp| {
                let p = payload_of(cp);
                (cp.clone(), self.hashes(p.from_seq, p.to_seq))
            })
            .collect()
    }

    fn export(&self, selection: Value, pick: impl Fn(&Event) -> bool) -> Bundle {
        let header = BundleHeader {
            created_at: Timestamp::from_secs(1_795_000_100).plus_micros(123_456),
            selection,
            public_keys: vec![public_hex(&key(7))],
        };
        let selected: Vec<Event> = self.events.iter().filter(|e| pick(e)).cloned().collect();
        build_bundle(header, &selected, &self.checkpoints()).unwrap()
    }
}

fn signed_payload(hashes: &[EventHash], from: u64, k: &SigningKey) -> CheckpointPayload {
    let leaves: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
    let mut p = CheckpointPayload {
        from_seq: from,
        to_seq: from + hashes.len() as u64 - 1,
        to_hash: hashes.last().unwrap().to_hex(),
        merkle_root: to_hex(&merkle_root(&leaves)),
        state_root: to_hex(&[0x5a; 32]),
        public_key: public_hex(k),
        signature: String::new(),
    };
    p.signature = to_hex(&k.sign(&p.signing_message()).to_bytes());
    p
}

fn payload_of(cp: &Event) -> CheckpointPayload {
    serde_json::from_str(cp.payload.as_str()).unwrap()
}

/// seq 1–3, checkpoint 4 (1..=3), 5–8, checkpoint 9 (4..=8), 10–12, checkpoint 13 (9..=12); runs A and B interleave.
fn ledger() -> Ledger {
    let k = key(7);
    let mut l = Ledger::new();
    l.push(EventKind::LedgerInitialized, None, json!({"format": 1}));
    l.push(EventKind::RunCreated, Some(run_a()), json!({"goal": "report"}));
    l.push(EventKind::ObservationRecorded, Some(run_a()), json!({"note": "hello"}));
    l.checkpoint(&k);
    l.push(EventKind::RunCreated, Some(run_b()), json!({"goal": "other"}));
    l.push(EventKind::PlanRecorded, Some(run_a()), json!({"note": "plan the report"}));
    l.push(EventKind::ObservationRecorded, Some(run_b()), json!({"note": "b sees"}));
    l.push(EventKind::ReasoningRecorded, Some(run_a()), json!({"note": "because"}));
    l.checkpoint(&k);
    l.push(EventKind::ObservationRecorded, Some(run_a()), json!({"note": "done"}));
    l.push(EventKind::ObservationRecorded, Some(run_b()), json!({"note": "b done"}));
    l.push(EventKind::PlanRecorded, Some(run_a()), json!({"note": "last"}));
    l.checkpoint(&k);
    l
}

fn run_bundle(l: &Ledger) -> Bundle {
    l.export(json!({"run": run_a().to_string()}), |e| e.run_id == Some(run_a()))
}

fn range_bundle(l: &Ledger, from: u64, to: u64) -> Bundle {
    l.export(json!({"from_seq": from, "to_seq": to}), |e| (from..=to).contains(&e.seq.0))
}

fn pinned() -> Vec<String> {
    vec![public_hex(&key(7))]
}

fn fails(b: &Bundle, keys: &[String], code: ErrorCode) -> BundleError {
    let err = verify_bundle(b, keys).expect_err("verification should fail");
    assert_eq!(err.code, code, "{err}");
    err
}

/// Re-signs checkpoint `seq` of `b` with `k` (payload otherwise unchanged) and reseals its hash, as a forger would.
fn resign(b: &mut Bundle, seq: u64, k: &SigningKey) {
    let cp = b.checkpoints.iter_mut().find(|c| c.seq.0 == seq).unwrap();
    let mut p = payload_of(cp);
    p.public_key = public_hex(k);
    p.signature = to_hex(&k.sign(&p.signing_message()).to_bytes());
    cp.payload = CanonicalJson::from_serialize(&p).unwrap();
    cp.hash = cp.compute_hash();
}

#[test]
fn a_run_bundle_verifies() {
    let l = ledger();
    let b = run_bundle(&l);
    let seqs: Vec<u64> = b.events.iter().map(|e| e.event.seq.0).collect();
    assert_eq!(seqs, [2, 3, 6, 8, 10, 12]);
    assert_eq!(b.checkpoints.iter().map(|c| c.seq.0).collect::<Vec<_>>(), [4, 9, 13]);
    assert_eq!(b.events[0].checkpoint_seq, 4);
    assert_eq!(b.events[0].proof.index, 1);
    assert_eq!(b.events[0].proof.leaf_count, 3);
    let r = verify_bundle(&b, &pinned()).unwrap();
    assert_eq!((r.events_verified, r.checkpoints_verified), (6, 3));
    assert_eq!((r.first_seq, r.last_seq), (Some(2), Some(12)));
    assert_eq!(r.links_verified, 1); // 2 → 3 only
    assert!(!r.range_complete);
    assert_eq!(r.keys_from, KeySource::Pinned);
    assert_eq!(r.signing_keys, pinned());
    assert_eq!(verify_bundle(&b, &[]).unwrap().keys_from, KeySource::Bundle);
}

#[test]
fn a_range_bundle_checks_links_and_completeness() {
    let l = ledger();
    let b = range_bundle(&l, 3, 10);
    // Seq 4 and 9 are checkpoints and also exported events, covered by the next checkpoint.
    assert_eq!(b.checkpoints.iter().map(|c| c.seq.0).collect::<Vec<_>>(), [4, 9, 13]);
    let r = verify_bundle(&b, &pinned()).unwrap();
    assert_eq!((r.events_verified, r.links_verified, r.range_complete), (8, 7, true));

    let mut missing = b.clone();
    missing.events.remove(3);
    let err = fails(&missing, &pinned(), ErrorCode::SequenceGap);
    assert!(err.message.contains("3..=10"), "{err}");
}

#[test]
fn jsonl_round_trip_is_stable() {
    let l = ledger();
    for b in [run_bundle(&l), range_bundle(&l, 1, 12)] {
        let text = b.to_jsonl();
        assert!(text.starts_with("{\"type\":\"header\",\"format\":\"ice-audit-bundle/1\""), "{text}");
        assert!(
            text.lines()
                .skip(1)
                .all(|l| l.starts_with("{\"type\":\"checkpoint\"") || l.starts_with("{\"type\":\"event\""))
        );
        assert_eq!(text.lines().count(), 1 + b.checkpoints.len() + b.events.len());
        let back = Bundle::from_jsonl(&text).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.to_jsonl(), text);
        verify_bundle(&back, &pinned()).unwrap();
    }
}

#[test]
fn a_flipped_payload_byte_names_the_seq() {
    let l = ledger();
    let text = run_bundle(&l).to_jsonl();
    assert_eq!(text.matches("plan the report").count(), 1);
    let tampered = text.replace("plan the report", "plan thf report");
    let b = Bundle::from_jsonl(&tampered).unwrap();
    let err = fails(&b, &pinned(), ErrorCode::HashMismatch);
    assert_eq!(err.seq, Some(6));
    // Header, three checkpoints, then events 2, 3, 6: seq 6 is line 7.
    assert_eq!(err.line, Some(7));
    assert!(err.to_string().contains("line 7, seq 6"), "{err}");
}

#[test]
fn a_resealed_event_fails_its_proof() {
    let l = ledger();
    let mut b = run_bundle(&l);
    let e = &mut b.events[2].event;
    e.payload = CanonicalJson::from_value(&json!({"note": "rewritten"})).unwrap();
    e.hash = e.compute_hash();
    let err = fails(&b, &pinned(), ErrorCode::HashMismatch);
    assert_eq!(err.seq, Some(6));
    assert!(err.message.contains("inclusion proof"), "{err}");
}

#[test]
fn altered_proofs_fail() {
    let l = ledger();
    let b = run_bundle(&l);
    let mut path = b.clone();
    path.events[4].proof.path[0][5] ^= 0x10;
    assert_eq!(fails(&path, &pinned(), ErrorCode::HashMismatch).seq, Some(10));

    let mut index = b.clone();
    index.events[4].proof.index += 1;
    assert!(fails(&index, &pinned(), ErrorCode::HashMismatch).message.contains("leaf"));

    let mut other = b;
    other.events[4].checkpoint_seq = 4;
    assert_eq!(fails(&other, &pinned(), ErrorCode::NotFound).seq, Some(10));
}

#[test]
fn a_checkpoint_resigned_with_another_key() {
    let l = ledger();
    let mut b = run_bundle(&l);
    resign(&mut b, 9, &key(8));
    // Not pinned, header still lists only the original key: refused.
    let err = fails(&b, &[], ErrorCode::UntrustedKey);
    assert!(err.message.contains("header"), "{err}");
    assert_eq!(err.seq, Some(9));
    // Pinned to the original key: refused.
    let err = fails(&b, &pinned(), ErrorCode::UntrustedKey);
    assert!(err.message.contains("pinned"), "{err}");
    // The exporter declares the new key and nobody pins: accepted, but the report says whose keys decided.
    b.header.public_keys.push(public_hex(&key(8)));
    let r = verify_bundle(&b, &[]).unwrap();
    assert_eq!(r.keys_from, KeySource::Bundle);
    assert_eq!(r.signing_keys, [public_hex(&key(7)), public_hex(&key(8))]);
}

#[test]
fn a_forged_history_with_a_swapped_header_key_fails_when_pinned() {
    let l = ledger();
    let mut b = run_bundle(&l);
    let forger = key(9);
    // Rewrite seq 6 and rebuild everything the forger can: its hash, the range's Merkle root, the checkpoint.
    let e = &mut b.events[2].event;
    e.payload = CanonicalJson::from_value(&json!({"note": "a different plan"})).unwrap();
    e.hash = e.compute_hash();
    let mut hashes = l.hashes(4, 8);
    hashes[2] = b.events[2].event.hash;
    let forged = signed_payload(&hashes, 4, &forger);
    let cp = b.checkpoints.iter_mut().find(|c| c.seq.0 == 9).unwrap();
    cp.payload = CanonicalJson::from_serialize(&forged).unwrap();
    cp.hash = cp.compute_hash();
    let leaves: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
    for be in b.events.iter_mut().filter(|be| be.checkpoint_seq == 9) {
        be.proof = ice_core::merkle::inclusion_proof(&leaves, (be.event.seq.0 - 4) as usize).unwrap();
    }
    b.header.public_keys = vec![public_hex(&forger), public_hex(&key(7))];

    assert_eq!(verify_bundle(&b, &[]).unwrap().keys_from, KeySource::Bundle);
    let err = fails(&b, &pinned(), ErrorCode::UntrustedKey);
    assert_eq!(err.seq, Some(9));

    // Claiming the original key while signing with the forger's fails the signature itself.
    let mut claimed = forged;
    claimed.public_key = public_hex(&key(7));
    let cp = b.checkpoints.iter_mut().find(|c| c.seq.0 == 9).unwrap();
    cp.payload = CanonicalJson::from_serialize(&claimed).unwrap();
    cp.hash = cp.compute_hash();
    assert!(fails(&b, &pinned(), ErrorCode::CheckpointInvalid).message.contains("signature"));
}

#[test]
fn a_removed_checkpoint_line_is_not_found() {
    let l = ledger();
    let text = run_bundle(&l).to_jsonl();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains("\"type\":\"checkpoint\",\"event\":{") || !line.contains("\"seq\":9,"))
        .collect();
    assert_eq!(kept.len(), text.lines().count() - 1);
    let b = Bundle::from_jsonl(&kept.join("\n")).unwrap();
    let err = fails(&b, &pinned(), ErrorCode::NotFound);
    assert_eq!(err.seq, Some(6));
    assert!(err.message.contains("checkpoint seq 9"), "{err}");
}

#[test]
fn a_tampered_checkpoint_event_fails_its_hash() {
    let l = ledger();
    let mut b = run_bundle(&l);
    b.checkpoints[1].time = b.checkpoints[1].time.plus_micros(1);
    let err = fails(&b, &pinned(), ErrorCode::HashMismatch);
    assert_eq!((err.seq, err.line), (Some(9), Some(3)));
}

#[test]
fn a_chain_broken_before_checkpointing_is_a_broken_link() {
    let k = key(7);
    let mut l = Ledger::new();
    l.push(EventKind::LedgerInitialized, None, json!({"format": 1}));
    l.push(EventKind::RunCreated, Some(run_a()), json!({"goal": "x"}));
    l.push_linked(EventKind::ObservationRecorded, Some(run_a()), json!({"note": "y"}), EventHash([3; 32]));
    l.checkpoint(&k);
    let b = range_bundle(&l, 1, 3);
    let err = fails(&b, &pinned(), ErrorCode::BrokenLink);
    assert_eq!(err.seq, Some(3));
}

#[test]
fn builder_refuses_uncovered_events_and_wrong_hashes() {
    let mut l = ledger();
    l.push(EventKind::ObservationRecorded, Some(run_a()), json!({"note": "after the last checkpoint"}));
    let header = || BundleHeader { created_at: Timestamp(0), selection: json!({}), public_keys: vec![] };
    let err = build_bundle(header(), &[l.event(14).clone()], &l.checkpoints()).unwrap_err();
    assert_eq!((err.code, err.seq), (ErrorCode::NotFound, Some(14)));

    let mut cps = l.checkpoints();
    cps[1].1[0] = EventHash([1; 32]);
    let err = build_bundle(header(), &[l.event(5).clone()], &cps).unwrap_err();
    assert_eq!((err.code, err.seq), (ErrorCode::HashMismatch, Some(9)));

    let mut cps = l.checkpoints();
    cps[1].1.pop();
    assert_eq!(build_bundle(header(), &[], &cps).unwrap_err().code, ErrorCode::BadArgument);

    let mut stranger = l.event(5).clone();
    stranger.hash = EventHash([2; 32]);
    let err = build_bundle(header(), &[stranger], &l.checkpoints()).unwrap_err();
    assert_eq!((err.code, err.seq), (ErrorCode::HashMismatch, Some(5)));
}

#[test]
fn unparseable_lines_name_their_line() {
    let l = ledger();
    let text = run_bundle(&l).to_jsonl();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let with = |i: usize, s: &str| {
        let mut v = lines.clone();
        v[i] = s.to_owned();
        Bundle::from_jsonl(&v.join("\n")).unwrap_err()
    };
    let err = with(5, "{not json");
    assert_eq!((err.code, err.line), (ErrorCode::MalformedJson, Some(6)));
    assert_eq!(with(5, r#"{"type":"note"}"#).code, ErrorCode::BadEnvelopeField);
    assert_eq!(with(0, &lines[0].replace("bundle/1", "bundle/2")).code, ErrorCode::SchemaMismatch);
    assert_eq!(with(0, &lines[1]).line, Some(1));
    let err = with(5, &lines[5].replace("\"time\":\"2026", "\"time\":\"2025"));
    assert_eq!((err.code, err.line, err.seq), (ErrorCode::BadEnvelopeField, Some(6), Some(3)), "{err}");
    let err = with(5, &lines[5].replacen("{\"type\":\"event\",", "{\"type\":\"event\",\"approved_by\":\"cfo\",", 1));
    assert_eq!((err.code, err.line, err.seq), (ErrorCode::BadEnvelopeField, Some(6), Some(3)), "{err}");
    assert!(err.message.contains("approved_by"), "{err}");
    // A checkpoint after the events is out of layout.
    let cp = lines.remove(1);
    lines.push(cp);
    assert_eq!(Bundle::from_jsonl(&lines.join("\n")).unwrap_err().line, Some(lines.len()));
    assert_eq!(Bundle::from_jsonl("").unwrap_err().line, Some(1));
}

/// Witness `w`'s cosignature of checkpoint `seq` of `l`, as `ice witness` writes it.
fn cosign(l: &Ledger, seq: u64, w: &SigningKey) -> BundleCosignature {
    let cp = l.event(seq);
    let p = payload_of(cp);
    let log = public_hex(&key(7));
    let mut c = WitnessedCheckpoint {
        seq,
        event_hash: cp.hash.to_hex(),
        to_seq: p.to_seq,
        to_hash: p.to_hash,
        merkle_root: p.merkle_root,
        state_root: p.state_root,
        witnessed_at: Timestamp::from_secs(1_795_000_200),
        cosignature: String::new(),
    };
    c.cosignature = to_hex(&w.sign(&cosign_message(&log, &c)).to_bytes());
    BundleCosignature { log, witness_key: public_hex(w), checkpoint: c }
}

/// Run A's events and, as `ice export --witness` adds them, the checkpoints chaining them to the cosigned seq 13.
fn witnessed_run_bundle(l: &Ledger, w: &SigningKey) -> Bundle {
    let run = l.export(json!({"run": run_a().to_string()}), |e| {
        e.run_id == Some(run_a()) || (e.kind == EventKind::Checkpoint && e.seq.0 < 13)
    });
    Bundle { cosignatures: vec![cosign(l, 13, w)], ..run }
}

fn witness_fails(b: &Bundle, witnesses: &[String], code: ErrorCode) -> BundleError {
    let err = verify_bundle_witnessed(b, &pinned(), witnesses).expect_err("verification should fail");
    assert_eq!(err.code, code, "{err}");
    err
}

#[test]
fn a_cosigned_checkpoint_witnesses_every_event_it_chains_to() {
    let (l, w) = (ledger(), key(9));
    let b = witnessed_run_bundle(&l, &w);
    assert_eq!(b.events.iter().map(|e| e.event.seq.0).collect::<Vec<_>>(), [2, 3, 4, 6, 8, 9, 10, 12]);
    let r = verify_bundle_witnessed(&b, &pinned(), &[public_hex(&w)]).unwrap();
    assert_eq!((r.cosignatures_verified, r.events_witnessed, r.events_verified), (1, 8, 8));
    assert_eq!(r.witness_keys_from, Some(KeySource::Pinned));
    assert_eq!(verify_bundle(&b, &pinned()).unwrap().witness_keys_from, Some(KeySource::Bundle));

    // The text round-trips, the cosignature last.
    let text = b.to_jsonl();
    assert!(text.lines().last().unwrap().starts_with("{\"type\":\"cosignature\""), "{text}");
    assert_eq!(Bundle::from_jsonl(&text).unwrap(), b);

    // Without the chain only the events seq 13 covers directly are witnessed; a pinned witness then refuses.
    let direct = Bundle { cosignatures: vec![cosign(&l, 13, &w)], ..run_bundle(&l) };
    assert_eq!(verify_bundle(&direct, &pinned()).unwrap().events_witnessed, 2);
    let err = witness_fails(&direct, &[public_hex(&w)], ErrorCode::NotWitnessed);
    assert_eq!(err.seq, Some(2), "{err}");
    // Nothing cosigned at all, a witness pinned.
    witness_fails(&run_bundle(&l), &[public_hex(&w)], ErrorCode::NotWitnessed);
    assert_eq!(verify_bundle(&run_bundle(&l), &pinned()).unwrap().witness_keys_from, None);
}

#[test]
fn a_forged_or_misplaced_cosignature_is_refused() {
    let (l, w) = (ledger(), key(9));
    let b = witnessed_run_bundle(&l, &w);

    // Another witness than the pinned one.
    witness_fails(&b, &[public_hex(&key(10))], ErrorCode::UntrustedKey);
    // The cosigned root edited after the witness signed.
    let mut edited = b.clone();
    edited.cosignatures[0].checkpoint.state_root = "00".repeat(32);
    let err = witness_fails(&edited, &[], ErrorCode::CosignatureInvalid);
    assert_eq!(err.line, Some(1 + b.checkpoints.len() + b.events.len() + 1), "{err}");
    // A genuine cosignature, of another checkpoint, relabelled with seq 13 (re-signed, as the witness key would).
    let mut relabelled = b.clone();
    let forged = cosign(&l, 9, &w);
    let mut moved = WitnessedCheckpoint { seq: 13, ..forged.checkpoint.clone() };
    moved.cosignature = to_hex(&w.sign(&cosign_message(&forged.log, &moved)).to_bytes());
    relabelled.cosignatures = vec![BundleCosignature { checkpoint: moved, ..forged }];
    witness_fails(&relabelled, &[], ErrorCode::CosignatureInvalid);
    // A cosignature of a checkpoint the bundle left out.
    let mut absent = run_bundle(&l);
    absent.checkpoints.retain(|c| c.seq.0 != 13);
    absent.events.retain(|e| e.checkpoint_seq != 13);
    absent.cosignatures = vec![cosign(&l, 13, &w)];
    witness_fails(&absent, &[], ErrorCode::CosignatureInvalid);
    // Dropping a link of the chain leaves the events below it unwitnessed.
    let mut unlinked = b.clone();
    unlinked.events.retain(|e| e.event.seq.0 != 9);
    let err = witness_fails(&unlinked, &[public_hex(&w)], ErrorCode::NotWitnessed);
    assert_eq!(err.seq, Some(2), "{err}");

    // Layout: an unknown field, and anything after a cosignature line.
    let text = b.to_jsonl();
    let extra = text.replacen("\"witness_key\":", "\"note\":1,\"witness_key\":", 1);
    assert_eq!(Bundle::from_jsonl(&extra).unwrap_err().code, ErrorCode::BadEnvelopeField);
    let mut lines: Vec<&str> = text.lines().collect();
    let last = lines.pop().unwrap();
    let moved = format!("{}\n{last}\n{}\n", lines[..lines.len() - 1].join("\n"), lines[lines.len() - 1]);
    assert_eq!(Bundle::from_jsonl(&moved).unwrap_err().code, ErrorCode::BadEnvelopeField);
}

#[test]
fn a_range_bundle_may_carry_the_chain_outside_its_range() {
    let (l, w) = (ledger(), key(9));
    let range =
        l.export(json!({"from_seq": 2, "to_seq": 3}), |e| (2..=3).contains(&e.seq.0) || e.seq.0 == 4 || e.seq.0 == 9);
    let b = Bundle { cosignatures: vec![cosign(&l, 13, &w)], ..range };
    let r = verify_bundle_witnessed(&b, &pinned(), &[public_hex(&w)]).unwrap();
    assert!(r.range_complete);
    assert_eq!(r.events_witnessed, 4);
    // An event outside the range that is not a checkpoint is refused.
    let stray = l.export(json!({"from_seq": 2, "to_seq": 3}), |e| (2..=3).contains(&e.seq.0) || e.seq.0 == 6);
    let err = fails(&stray, &pinned(), ErrorCode::SequenceGap);
    assert_eq!(err.seq, Some(6), "{err}");
}
