//! Encoding events into rows and decoding rows back. A row that does not decode is reported as
//! [`StoreError::Corrupt`] with its seq, never as a panic.

use ice_core::{CanonicalJson, ChainHead, Event, EventHash, EventId, RunId, Seq, Timestamp};
use ice_store::StoreError;
use rusqlite::Row;

/// Column list shared by every SELECT of events, in the order [`decode`] expects.
pub const COLUMNS: &str = "seq, event_id, run_id, kind, origin, time, causes, payload, prev_hash, hash";

/// Causes are stored as the concatenation of their 16-byte ids.
pub fn encode_causes(causes: &[EventId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(causes.len() * 16);
    for c in causes {
        out.extend_from_slice(c.as_bytes());
    }
    out
}

fn seq_of(v: i64) -> Seq {
    Seq(u64::try_from(v).unwrap_or(0))
}

/// Converts a seq to SQLite's integer type (seqs never approach i64::MAX).
pub fn sql_seq(seq: Seq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

/// Decodes one event row selected with [`COLUMNS`].
pub fn decode(row: &Row<'_>) -> Result<Result<Event, StoreError>, rusqlite::Error> {
    let seq = seq_of(row.get::<_, i64>(0)?);
    let corrupt = |detail: String| Err(StoreError::Corrupt { seq, detail });
    let event_id: Vec<u8> = row.get(1)?;
    let run_id: Option<Vec<u8>> = row.get(2)?;
    let kind: String = row.get(3)?;
    let origin: String = row.get(4)?;
    let time: i64 = row.get(5)?;
    let causes: Vec<u8> = row.get(6)?;
    let payload: String = row.get(7)?;
    let prev_hash: Vec<u8> = row.get(8)?;
    let hash: Vec<u8> = row.get(9)?;
    let Ok(event_id) = <[u8; 16]>::try_from(event_id.as_slice()) else {
        return Ok(corrupt("event_id is not 16 bytes".into()));
    };
    let run_id = match run_id {
        None => None,
        Some(b) => match <[u8; 16]>::try_from(b.as_slice()) {
            Ok(b) => Some(RunId::from_bytes(b)),
            Err(_) => return Ok(corrupt("run_id is not 16 bytes".into())),
        },
    };
    let kind = match kind.parse() {
        Ok(k) => k,
        Err(e) => return Ok(corrupt(format!("kind: {e}"))),
    };
    let (origin, acted_by) = match ice_core::event::parse_origin_text(&origin) {
        Ok(o) => o,
        Err(e) => return Ok(corrupt(format!("origin: {e}"))),
    };
    if !causes.len().is_multiple_of(16) {
        return Ok(corrupt("causes are not a whole number of 16-byte ids".into()));
    }
    let causes =
        causes.chunks_exact(16).map(|c| EventId::from_bytes(<[u8; 16]>::try_from(c).unwrap_or([0; 16]))).collect();
    let (Some(prev_hash), Some(hash)) = (EventHash::from_slice(&prev_hash), EventHash::from_slice(&hash)) else {
        return Ok(corrupt("a hash is not 32 bytes".into()));
    };
    Ok(Ok(Event {
        seq,
        event_id: EventId::from_bytes(event_id),
        run_id,
        kind,
        origin,
        acted_by,
        time: Timestamp(time),
        causes,
        payload: CanonicalJson::from_stored(payload),
        prev_hash,
        hash,
    }))
}

/// Decodes the `chain_head` row.
pub fn decode_head(row: &Row<'_>) -> Result<Result<ChainHead, StoreError>, rusqlite::Error> {
    let seq = seq_of(row.get::<_, i64>(0)?);
    let hash: Vec<u8> = row.get(1)?;
    let time: i64 = row.get(2)?;
    Ok(match EventHash::from_slice(&hash) {
        Some(hash) => Ok(ChainHead { seq, hash, time: Timestamp(time) }),
        None => Err(StoreError::Corrupt { seq, detail: "recorded head hash is not 32 bytes".into() }),
    })
}
