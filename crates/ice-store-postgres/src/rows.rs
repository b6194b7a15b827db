//! Encoding events into column arrays for the batched insert, and decoding rows back. A row that does not
//! decode is reported as [`StoreError::Corrupt`] with its seq, never as a panic.

use ice_core::{ChainHead, Event};
use ice_store::StoreError;
pub(crate) use ice_store::rows::{COLUMNS, sql_seq};
use ice_store::rows::{RawRow, decode_row, encode_causes};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::connection::pg_error;

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

/// Decodes one event row selected with [`COLUMNS`] (the shared decoder: one meaning for a row in every backend).
pub(crate) fn decode(row: &Row) -> Result<Event, StoreError> {
    let column = |e: tokio_postgres::Error| StoreError::Corrupt { seq: ice_core::Seq(0), detail: pg_error(&e) };
    decode_row(RawRow {
        seq: row.try_get(0).map_err(column)?,
        event_id: row.try_get(1).map_err(column)?,
        run_id: row.try_get(2).map_err(column)?,
        kind: row.try_get(3).map_err(column)?,
        origin: row.try_get(4).map_err(column)?,
        time: row.try_get(5).map_err(column)?,
        causes: row.try_get(6).map_err(column)?,
        payload: row.try_get(7).map_err(column)?,
        prev_hash: row.try_get(8).map_err(column)?,
        hash: row.try_get(9).map_err(column)?,
    })
}

/// Decodes the `chain_head` row (`seq, hash, time`). Seq 0 is the empty ledger's head.
pub(crate) fn decode_head(row: &Row) -> Result<ChainHead, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Corrupt {
        seq: ice_core::Seq(0),
        detail: format!("recorded head: {}", pg_error(&e)),
    };
    ice_store::rows::decode_head(
        row.try_get(0).map_err(bad)?,
        row.try_get(1).map_err(bad)?,
        row.try_get(2).map_err(bad)?,
    )
}
