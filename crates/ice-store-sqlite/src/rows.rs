//! Decoding SQLite rows with the shared decoder ([`ice_store::rows`]). A row that does not decode is reported as
//! [`StoreError::Corrupt`] with its seq, never as a panic.

use ice_core::{ChainHead, Event};
use ice_store::StoreError;
pub use ice_store::rows::{COLUMNS, encode_causes, sql_seq};
use ice_store::rows::{RawRow, decode_row};
use rusqlite::Row;

/// Decodes one event row selected with [`COLUMNS`].
pub fn decode(row: &Row<'_>) -> Result<Result<Event, StoreError>, rusqlite::Error> {
    let event_id: Vec<u8> = row.get(1)?;
    let run_id: Option<Vec<u8>> = row.get(2)?;
    let kind: String = row.get(3)?;
    let origin: String = row.get(4)?;
    let causes: Vec<u8> = row.get(6)?;
    let prev_hash: Vec<u8> = row.get(8)?;
    let hash: Vec<u8> = row.get(9)?;
    Ok(decode_row(RawRow {
        seq: row.get(0)?,
        event_id: &event_id,
        run_id: run_id.as_deref(),
        kind: &kind,
        origin: &origin,
        time: row.get(5)?,
        causes: &causes,
        payload: row.get(7)?,
        prev_hash: &prev_hash,
        hash: &hash,
    }))
}

/// Decodes the `chain_head` row.
pub fn decode_head(row: &Row<'_>) -> Result<Result<ChainHead, StoreError>, rusqlite::Error> {
    let hash: Vec<u8> = row.get(1)?;
    Ok(ice_store::rows::decode_head(row.get(0)?, &hash, row.get(2)?))
}
