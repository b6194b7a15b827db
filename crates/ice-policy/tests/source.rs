//! Loading a policy directory and hashing its source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use ice_policy::{DEFAULT_POLICIES, DEFAULT_SCHEMA, PolicyEngine, PolicyFile, PolicySource, default_source};

#[test]
fn load_dir_reads_sorted_cedar_files_and_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.cedarschema"), DEFAULT_SCHEMA).unwrap();
    for (name, text) in DEFAULT_POLICIES.iter().rev() {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    // Not policies: other extensions, and a directory named like a policy file.
    std::fs::write(dir.path().join("policy.toml"), "x").unwrap();
    std::fs::write(dir.path().join("notes.cedar.bak"), "x").unwrap();
    std::fs::create_dir(dir.path().join("old.cedar")).unwrap();

    let loaded = PolicySource::load_dir(dir.path()).unwrap();
    assert_eq!(loaded, default_source());
    let engine = PolicyEngine::compile(&loaded).unwrap();
    assert_eq!(engine.hash(), default_source().hash());
}

#[test]
fn load_dir_refuses_missing_directory_empty_directory_and_missing_schema() {
    let dir = tempfile::tempdir().unwrap();
    let e = PolicySource::load_dir(&dir.path().join("nope")).unwrap_err();
    assert_eq!(e.code(), "ICE-E0606");

    let e = PolicySource::load_dir(dir.path()).unwrap_err();
    assert_eq!(e.code(), "ICE-E0606");
    assert!(e.to_string().contains("no *.cedar"), "{e}");

    std::fs::write(dir.path().join("a.cedar"), "permit(principal, action, resource);").unwrap();
    let e = PolicySource::load_dir(dir.path()).unwrap_err();
    assert_eq!(e.code(), "ICE-E0603");
    assert!(e.to_string().contains("schema.cedarschema"), "{e}");

    std::fs::write(dir.path().join("schema.cedarschema"), DEFAULT_SCHEMA).unwrap();
    std::fs::write(dir.path().join("b.cedar"), [0xff, 0xfe]).unwrap();
    let e = PolicySource::load_dir(dir.path()).unwrap_err();
    assert_eq!(e.code(), "ICE-E0601");
    assert!(e.to_string().contains("`b.cedar`"), "{e}");
}

#[test]
fn hash_is_pinned() {
    // The encoding is part of the ledger's meaning (PolicyActivated records it): never change it silently.
    let s = PolicySource {
        files: vec![PolicyFile { name: "a.cedar".into(), text: "permit(principal, action, resource);".into() }],
        schema: "namespace Ice {}".into(),
    };
    assert_eq!(s.hash(), "d97eea73ac06a85a3db5cff0763109064cefda0eb95f3fd1fab8bc8ce3ff2c9e");
    // … and it is the documented encoding: tag, file count, length-prefixed name and text, length-prefixed schema.
    let mut bytes = b"ice.policy-source.v1\n".to_vec();
    bytes.extend(1u64.to_be_bytes());
    for part in ["a.cedar", "permit(principal, action, resource);", "namespace Ice {}"] {
        bytes.extend((part.len() as u64).to_be_bytes());
        bytes.extend(part.as_bytes());
    }
    assert_eq!(s.hash(), blake3::hash(&bytes).to_hex().to_string());
}

#[test]
fn hash_changes_with_any_file_name_text_order_or_schema() {
    let base = default_source();
    let h = base.hash();
    assert_eq!(h.len(), 64);
    let mut variants = Vec::new();

    let mut s = base.clone();
    s.files[0].text.push(' ');
    variants.push(s);
    let mut s = base.clone();
    s.files[1].text.push('\n');
    variants.push(s);
    let mut s = base.clone();
    s.files[0].name = "renamed.cedar".into();
    variants.push(s);
    let mut s = base.clone();
    s.files.reverse();
    variants.push(s);
    let mut s = base.clone();
    s.schema.push(' ');
    variants.push(s);
    let mut s = base.clone();
    s.files.pop();
    variants.push(s);
    // Moving text across the name/text boundary must not collide (length prefixes).
    let mut s = base.clone();
    let first = s.files[0].text.remove(0);
    s.files[0].name.push(first);
    variants.push(s);

    let mut hashes: Vec<String> = variants.iter().map(PolicySource::hash).collect();
    assert!(hashes.iter().all(|v| *v != h));
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), variants.len());
}

#[test]
fn source_round_trips_through_json() {
    let s = default_source();
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(serde_json::from_value::<PolicySource>(json).unwrap(), s);
}
