//! The C2SP tlog-witness protocol end to end: `ice tlog-witness` (the witness) and `ice tlog witness` (the log's
//! side) over real HTTP. The witness cosigns a first checkpoint, then a later one proven consistent with it; it
//! answers unknown origins 404, bad signatures 403, a stale old size 409 with its size, an old size beyond the
//! checkpoint 400 and a proof that does not verify 422 — and what it cosigned is in its state file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::{Ice, bin};

/// POSTs `body` to `/add-checkpoint`; returns (status, content type, body).
fn add_checkpoint(addr: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let kind = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, kind, rest.to_owned())
}

#[test]
fn a_witness_cosigns_consistent_checkpoints_and_refuses_the_rest() {
    let ice = Ice::init();
    let key = ice.ok(&["key"]).trim().to_owned();
    let first_note = ice.ok(&["tlog", "checkpoint"]);
    let origin = first_note.lines().next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("witness.json");
    let mut witness = Command::new(bin())
        .args(["tlog-witness", "--state", state.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--name", "witness.test/w1", "--log", &format!("{origin}={key}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(witness.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let rest = line.strip_prefix("ice tlog-witness: listening on http://").unwrap_or_else(|| panic!("{line}"));
    let (addr, about) = rest.split_once(' ').unwrap();
    let witness_key = about.rsplit(' ').next().unwrap().trim().to_owned();
    let url = format!("http://{addr}");
    let submit = || {
        ice.run(&["tlog", "witness", "--url", &url, "--witness-key", &witness_key, "--witness-name", "witness.test/w1"])
    };

    // First sight: cosigned, and the cosignature verifies with the witness's key.
    let out = submit();
    assert!(out.status.success(), "{}{}", crate::stdout(&out), crate::stderr(&out));
    let cosigned = crate::stdout(&out);
    assert!(cosigned.starts_with(&origin) && cosigned.contains("\u{2014} witness.test/w1 "), "{cosigned}");
    // More events and a checkpoint: the client learns the witness's size (409) and proves consistency from it.
    for _ in 0..5 {
        ice.ok(&["run", "create"]);
    }
    ice.ok(&["checkpoint"]);
    let out = submit();
    assert!(out.status.success(), "{}{}", crate::stdout(&out), crate::stderr(&out));
    let held: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let size = held["logs"][&origin][0].as_u64().unwrap();
    let note = ice.ok(&["tlog", "checkpoint"]);
    assert!(note.contains(&format!("\n{size}\n")), "the witness recorded the second checkpoint: {held}");

    // The refusals the protocol names.
    let request = |old: u64, proof: &[&str], note: &str| {
        format!("old {old}\n{}\n{note}", proof.iter().map(|p| format!("{p}\n")).collect::<String>())
    };
    let (status, kind, body) = add_checkpoint(addr, &request(1, &[], &note));
    assert_eq!((status, kind.as_str(), body.trim()), (409, "text/x.tlog.size", size.to_string().as_str()));
    let (status, ..) = add_checkpoint(addr, &request(size + 1, &[], &note));
    assert_eq!(status, 400, "an old size beyond the checkpoint");
    let forged = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    let (status, ..) = add_checkpoint(addr, &request(size, &[], &forged));
    assert_eq!(status, 403, "a body the log's key did not sign");
    let stranger = note.replacen(&origin, "example.com/another-log", 1);
    let (status, ..) = add_checkpoint(addr, &request(size, &[], &stranger));
    assert_eq!(status, 404, "an origin the witness does not know");
    // A later checkpoint with a proof that does not verify.
    for _ in 0..3 {
        ice.ok(&["run", "create"]);
    }
    ice.ok(&["checkpoint"]);
    let later = ice.ok(&["tlog", "checkpoint"]);
    let zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (status, ..) = add_checkpoint(addr, &request(size, &[zero], &later));
    assert_eq!(status, 422, "a consistency proof that does not verify");
    // The honest client still gets it cosigned.
    assert!(submit().status.success());
    let _ = witness.kill();
    let _ = witness.wait();
}
