//! Encoding events into column arrays for the batched insert, and decoding rows back. A row that does not
//! decode is reported as [`StoreError::Corrupt`] with its seq, never as a panic.

use ice_core::{CanonicalJson, ChainHead, Event, EventHash, EventId, RunId, Seq, Timestamp};
use ice_store::StoreError;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::connection::pg_error;

/// Column list shared by every SELECT of events, in the order [`decode`] expects.
pub(crate) const COLUMNS: &str = "seq, event_id, run_id, kind, origin, time, causes, payload, prev_hash, hash";

/// Converts a seq to PostgreSQL's BIGINT (seqs never approach i64::MAX).
pub(crate) fn sql_seq(seq: Seq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

/// Causes are stored as the concatenation of their 16-byte ids.
fn encode_causes(causes: &[EventId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(causes.len() * 16);
    for c in causes {
        out.extend_from_slice(c.as_bytes());
    }
    out
}

/// Sealed events as one array per column: the parameters of a single `INSERT ... SELECT FROM UNNEST(...)`, so
/// a whole batch is written in one round trip.
#[derive(Default)]
pub(crate) struct Columns<'a> {
    pub(crate) seq: Vec<i64>,
    pub(crate) event_id: Vec<&'a [u8]>,
    pub(crate) run_id: Vec<Option<&'a [u8]>>,
    pub(crate) kind: Vec<&'a str>,
    pub(crate) origin: Vec<String>,
    pub(crate) time: Vec<i64>,
    pub(crate) causes: Vec<Vec<u8>>,
    pub(crate) payload: Vec<&'a str>,
    pub(crate) prev_hash: Vec<&'a [u8]>,
    pub(crate) hash: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    /// Appends one event's fields.
    pub(crate) fn push(&mut self, e: &'a Event) {
        self.seq.push(sql_seq(e.seq));
        self.event_id.push(e.event_id.as_bytes());
        self.run_id.push(e.run_id.as_ref().map(|r| r.as_bytes().as_slice()));
        self.kind.push(e.kind.as_str());
        self.origin.push(ice_core::event::origin_text(&e.origin, e.acted_by.as_ref()));
        self.time.push(e.time.0);
        self.causes.push(encode_causes(&e.causes));
        self.payload.push(e.payload.as_str());
        self.prev_hash.push(&e.prev_hash.0);
        self.hash.push(&e.hash.0);
    }

    /// The ten column arrays as statement parameters, in table column order (`UNNEST($1 … $10)`).
    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.seq,
            &self.event_id,
            &self.run_id,
            &self.kind,
            &self.origin,
            &self.time,
            &self.causes,
            &self.payload,
            &self.prev_hash,
            &self.hash,
        ]
    }
}

fn seq_of(v: i64) -> Result<Seq, StoreError> {
    u64::try_from(v).map(Seq).map_err(|_| StoreError::Corrupt { seq: Seq(0), detail: format!("negative seq {v}") })
}

fn id16(bytes: &[u8]) -> Option<[u8; 16]> {
    <[u8; 16]>::try_from(bytes).ok()
}

/// Decodes one event row selected with [`COLUMNS`].
pub(crate) fn decode(row: &Row) -> Result<Event, StoreError> {
    let seq = seq_of(
        row.try_get::<_, i64>(0)
            .map_err(|e| StoreError::Corrupt { seq: Seq(0), detail: format!("seq: {}", pg_error(&e)) })?,
    )?;
    let corrupt = |detail: String| StoreError::Corrupt { seq, detail };
    let column = |e: tokio_postgres::Error| corrupt(pg_error(&e));
    let event_id: &[u8] = row.try_get(1).map_err(column)?;
    let run_id: Option<&[u8]> = row.try_get(2).map_err(column)?;
    let kind: &str = row.try_get(3).map_err(column)?;
    let origin: &str = row.try_get(4).map_err(column)?;
    let time: i64 = row.try_get(5).map_err(column)?;
    let causes: &[u8] = row.try_get(6).map_err(column)?;
    let payload: String = row.try_get(7).map_err(column)?;
    let prev_hash: &[u8] = row.try_get(8).map_err(column)?;
    let hash: &[u8] = row.try_get(9).map_err(column)?;

    let event_id = id16(event_id).ok_or_else(|| corrupt("event_id is not 16 bytes".into()))?;
    let run_id = match run_id {
        None => None,
        Some(b) => Some(RunId::from_bytes(id16(b).ok_or_else(|| corrupt("run_id is not 16 bytes".into()))?)),
    };
    let kind = kind.parse().map_err(|e| corrupt(format!("kind: {e}")))?;
    let (origin, acted_by) = ice_core::event::parse_origin_text(origin).map_err(|e| corrupt(format!("origin: {e}")))?;
    if !causes.len().is_multiple_of(16) {
        return Err(corrupt("causes are not a whole number of 16-byte ids".into()));
    }
    let causes = causes.chunks_exact(16).filter_map(id16).map(EventId::from_bytes).collect();
    let (Some(prev_hash), Some(hash)) = (EventHash::from_slice(prev_hash), EventHash::from_slice(hash)) else {
        return Err(corrupt("a hash is not 32 bytes".into()));
    };
    Ok(Event {
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
    })
}

/// Decodes the `chain_head` row (`seq, hash, time`). Seq 0 is the empty ledger's head.
pub(crate) fn decode_head(row: &Row) -> Result<ChainHead, StoreError> {
    let bad = |detail: String| StoreError::Corrupt { seq: Seq(0), detail: format!("recorded head: {detail}") };
    let seq = seq_of(row.try_get::<_, i64>(0).map_err(|e| bad(pg_error(&e)))?)?;
    let hash: &[u8] = row.try_get(1).map_err(|e| bad(pg_error(&e)))?;
    let time: i64 = row.try_get(2).map_err(|e| bad(pg_error(&e)))?;
    let hash = EventHash::from_slice(hash).ok_or_else(|| bad("hash is not 32 bytes".into()))?;
    if seq.0 == 0 {
        return Ok(ChainHead::genesis());
    }
    Ok(ChainHead { seq, hash, time: Timestamp(time) })
}
