//! Benchmark baseline: raw batched INSERTs of given rows into a plain copy of the event table (same columns,
//! constraints and indexes, no chain, no sealing, no triggers), on the same server as the ledger, so `ice bench
//! postgres` can print ICE's append throughput as a ratio of what the server does with the same rows.

use std::time::Instant;

use ice_core::Event;
use ice_store::StoreError;

use crate::PostgresStore;
use crate::connection::pg_error;
use crate::rows::Columns;
use crate::schema::EVENTS_DDL;

const TABLE: &str = "ice_bench_raw";

impl PostgresStore {
    /// Inserts `events` into a scratch table `ice_bench_raw` (dropped before and after), `batch` rows per
    /// transaction with one `INSERT ... SELECT FROM UNNEST` each, and returns rows per second.
    pub fn raw_insert_baseline(&self, events: &[Event], batch: usize) -> Result<f64, StoreError> {
        let owned: Vec<Event> = events.to_vec();
        let db = self.db.clone();
        let batch = batch.max(1);
        self.call(async move {
            let mut client = db.client().await?;
            let failed = |e: tokio_postgres::Error| StoreError::Unavailable(pg_error(&e));
            let ddl = EVENTS_DDL.replace("events", TABLE);
            client.batch_execute(&format!("DROP TABLE IF EXISTS {TABLE}; {ddl}")).await.map_err(failed)?;
            let insert = format!(
                "INSERT INTO {TABLE} (seq, event_id, run_id, kind, origin, time, causes, payload, prev_hash, hash)
                 SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::bigint[],
                                      $7::bytea[], $8::text[], $9::bytea[], $10::bytea[])"
            );
            let start = Instant::now();
            for chunk in owned.chunks(batch) {
                let mut cols = Columns::default();
                for e in chunk {
                    cols.push(e);
                }
                let tx = client.transaction().await.map_err(failed)?;
                tx.execute(&insert, &cols.params()).await.map_err(failed)?;
                tx.commit().await.map_err(failed)?;
            }
            let rate = owned.len() as f64 / start.elapsed().as_secs_f64();
            client.batch_execute(&format!("DROP TABLE IF EXISTS {TABLE}")).await.map_err(failed)?;
            Ok(rate)
        })
    }
}
