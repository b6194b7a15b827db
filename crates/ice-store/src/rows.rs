//! The one row format every backend stores (ten columns) and the one decoder for it, so the SQLite and PostgreSQL
//! backends cannot disagree on what a stored row means. A row that does not decode is [`StoreError::Corrupt`]
//! with its seq, never a panic.

use ice_core::{CanonicalJson, ChainHead, Event, EventHash, EventId, RunId, Seq, Timestamp};

use crate::StoreError;

/// Column list shared by every SELECT of events, in the order [`RawRow`] holds them.
pub const COLUMNS: &str = "seq, event_id, run_id, kind, origin, time, causes, payload, prev_hash, hash";

/// A seq as the databases' signed 64-bit integer (seqs never approach `i64::MAX`).
pub fn sql_seq(seq: Seq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

/// Causes are stored as the concatenation of their 16-byte ids.
pub fn encode_causes(causes: &[EventId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(causes.len() * 16);
    for c in causes {
        out.extend_from_slice(c.as_bytes());
    }
    out
}

/// One stored event row, column by column, as the database returned it.
#[derive(Debug)]
pub struct RawRow<'a> {
    /// `seq`.
    pub seq: i64,
    /// `event_id` (16 bytes).
    pub event_id: &'a [u8],
    /// `run_id` (16 bytes or NULL).
    pub run_id: Option<&'a [u8]>,
    /// `kind`.
    pub kind: &'a str,
    /// `origin` (`KIND:NAME` or `KIND:NAME|ATTRIBUTION`).
    pub origin: &'a str,
    /// `time` (µs since the epoch).
    pub time: i64,
    /// `causes` (concatenated 16-byte ids).
    pub causes: &'a [u8],
    /// `payload` (canonical JSON, kept byte-exact).
    pub payload: String,
    /// `prev_hash` (32 bytes).
    pub prev_hash: &'a [u8],
    /// `hash` (32 bytes).
    pub hash: &'a [u8],
}

fn seq_of(v: i64) -> Result<Seq, StoreError> {
    u64::try_from(v).map(Seq).map_err(|_| StoreError::Corrupt { seq: Seq(0), detail: format!("negative seq {v}") })
}

fn id16(bytes: &[u8]) -> Option<[u8; 16]> {
    <[u8; 16]>::try_from(bytes).ok()
}

/// Decodes one event row.
pub fn decode_row(r: RawRow<'_>) -> Result<Event, StoreError> {
    let seq = seq_of(r.seq)?;
    let corrupt = |detail: String| StoreError::Corrupt { seq, detail };
    let event_id = id16(r.event_id).ok_or_else(|| corrupt("event_id is not 16 bytes".into()))?;
    let run_id = match r.run_id {
        None => None,
        Some(b) => Some(RunId::from_bytes(id16(b).ok_or_else(|| corrupt("run_id is not 16 bytes".into()))?)),
    };
    let kind = r.kind.parse().map_err(|e| corrupt(format!("kind: {e}")))?;
    let (origin, acted_by) =
        ice_core::event::parse_origin_text(r.origin).map_err(|e| corrupt(format!("origin: {e}")))?;
    if !r.causes.len().is_multiple_of(16) {
        return Err(corrupt("causes are not a whole number of 16-byte ids".into()));
    }
    let causes = r.causes.chunks_exact(16).filter_map(id16).map(EventId::from_bytes).collect();
    let (Some(prev_hash), Some(hash)) = (EventHash::from_slice(r.prev_hash), EventHash::from_slice(r.hash)) else {
        return Err(corrupt("a hash is not 32 bytes".into()));
    };
    Ok(Event {
        seq,
        event_id: EventId::from_bytes(event_id),
        run_id,
        kind,
        origin,
        acted_by,
        time: Timestamp(r.time),
        causes,
        payload: CanonicalJson::from_stored(r.payload),
        prev_hash,
        hash,
    })
}

/// Decodes the recorded head row (`seq, hash, time`); seq 0 is the empty ledger's head.
pub fn decode_head(seq: i64, hash: &[u8], time: i64) -> Result<ChainHead, StoreError> {
    let bad = |detail: String| StoreError::Corrupt { seq: Seq(0), detail: format!("recorded head: {detail}") };
    let seq = seq_of(seq).map_err(|_| bad(format!("negative seq {seq}")))?;
    let hash = EventHash::from_slice(hash).ok_or_else(|| bad("hash is not 32 bytes".into()))?;
    if seq.0 == 0 {
        return Ok(ChainHead::genesis());
    }
    Ok(ChainHead { seq, hash, time: Timestamp(time) })
}

#[cfg(test)]
mod tests {
    use super::{RawRow, decode_row};

    /// A negative seq is corruption in every backend (one copy of this rule, not two that disagree).
    #[test]
    fn a_negative_seq_is_corrupt() {
        let zeros = [0u8; 32];
        let row = RawRow {
            seq: -1,
            event_id: &zeros[..16],
            run_id: None,
            kind: "ReasoningRecorded",
            origin: "agent:a",
            time: 0,
            causes: &[],
            payload: "{}".into(),
            prev_hash: &zeros,
            hash: &zeros,
        };
        let err = decode_row(row).unwrap_err();
        assert!(err.to_string().contains("negative seq -1"), "{err}");
    }
}
