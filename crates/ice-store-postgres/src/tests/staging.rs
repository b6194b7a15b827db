//! The staging schema `ice migrate` fills a copy into: invisible at the destination until moved there in one
//! transaction, never moved over a written ledger, and dropped without a trace.

use ice_core::{IdSource, SequentialIds};
use ice_store::{AppendRequest, Store, StoreError, verify_ledger};
use ice_testkit::pg::{OWNER, cluster};

use super::{T0, draft, options, refused_by_ledger};
use crate::{PostgresStore, Staging};

const NO_STAGING_LEFT: &str = "DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname LIKE 'ice\\_migrating\\_%') THEN
        RAISE EXCEPTION 'a staging schema was left behind';
    END IF;
END $$";

fn fill(url: &str, ids: &dyn IdSource, n: usize) -> Vec<ice_core::Event> {
    let store = PostgresStore::open(url, options()).expect("open");
    let drafts = (0..n).map(|i| draft(ids, T0 + i as i64, &format!("n{i}"))).collect();
    store.append(AppendRequest::new(drafts)).expect("append")
}

fn head(url: &str) -> Option<u64> {
    PostgresStore::open(url, options()).expect("open").head().expect("head").map(|h| h.seq.0)
}

#[test]
fn a_staged_copy_is_invisible_until_moved_into_place_in_one_step() {
    let db = cluster().create_database();
    let url = cluster().url(OWNER, &db);
    // `ice migrate` opens the destination to check it is empty, which creates an empty ledger there.
    assert_eq!(head(&url), None);
    let staging = Staging::create(&url, std::time::Duration::from_secs(10)).expect("staging");
    let staged_url = staging.url(&url).expect("url");
    let ids = SequentialIds::new(41);
    let written = fill(&staged_url, &ids, 3);
    assert_eq!(head(&url), None, "the copy is not visible at the destination while it is made");

    assert_eq!(staging.promote().expect("promote"), "public");
    let dest = PostgresStore::open(&url, options()).expect("open");
    assert_eq!(dest.head().unwrap().map(|h| h.hash), written.last().map(|e| e.hash));
    verify_ledger(&*dest, &mut |_| {}).unwrap().expect("the moved ledger verifies");
    cluster().exec(OWNER, &db, NO_STAGING_LEFT).expect("the staging schema is gone");
    // The append-only triggers moved with the tables.
    assert!(refused_by_ledger(cluster().exec(OWNER, &db, "DELETE FROM events WHERE seq = 1")));
    // And the moved ledger goes on as any other.
    fill(&url, &ids, 1);
    assert_eq!(head(&url), Some(4));
}

#[test]
fn a_copy_is_never_moved_over_a_written_ledger_and_is_dropped_instead() {
    let db = cluster().create_database();
    let url = cluster().url(OWNER, &db);
    let staging = Staging::create(&url, std::time::Duration::from_secs(10)).expect("staging");
    let ids = SequentialIds::new(42);
    fill(&staging.url(&url).unwrap(), &ids, 2);
    // Someone writes to the destination while the copy is made.
    fill(&url, &ids, 1);
    let err = staging.promote().expect_err("refused");
    assert!(matches!(&err, StoreError::Schema(m) if m.contains("were written")), "{err}");
    assert_eq!(head(&url), Some(1), "the destination is untouched");
    staging.discard().expect("discard");
    cluster().exec(OWNER, &db, NO_STAGING_LEFT).expect("the staging schema is gone");
    // A destination URL that sets its own session options cannot be staged (they would conflict).
    let other = Staging::create(&url, std::time::Duration::from_secs(10)).expect("staging");
    assert!(other.url(&format!("{url}?options=-cfoo%3Dbar")).is_err());
    other.discard().expect("discard");
}
