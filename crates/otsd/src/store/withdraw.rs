//! Withdrawing a batch's proofs: a reorg deeper than the stamper's
//! confirmations took the block its tail attests out of the best chain, so
//! its proofs would send a verifier to a block it cannot find. A withdrawn
//! batch is kept (its record, levels and index entries stay as they were)
//! but never served: a lookup landing on it answers "not here", and
//! [`Store::contains`] says no, so the start-up scan counts its
//! commitments as pending. When they are stamped again, the new batch's
//! index entries replace the old ones.
//!
//! The `withdrawn` table holds batch id → `sha256(WITHDRAWN_DOMAIN ‖ id)`,
//! checked when the store opens (a damaged row is logged and skipped: it
//! can no longer say which batch it meant; the stamper's state names the
//! withdrawn batches too and withdraws them again at start). Writing the
//! first row moves the store to format 3, which a build that does not know
//! withdrawals refuses instead of serving them.

use redb::{ReadableTable, TableError};

use super::{
    db, Store, StoreError, BATCHES, FORMAT_KEY, META, STORE_FORMAT_WITHDRAWN, WITHDRAWN,
    WITHDRAWN_DOMAIN,
};
use ots_proof::op::sha256;
use std::sync::atomic::Ordering;

/// The value of batch `batch`'s `withdrawn` row.
fn seal(batch: u64) -> [u8; 32] {
    let mut buf = WITHDRAWN_DOMAIN.to_vec();
    buf.extend_from_slice(&batch.to_be_bytes());
    sha256(&buf)
}

impl Store {
    /// Stops serving the proofs of `batch`, durably (one transaction).
    /// Idempotent; a batch the store does not hold is a no-op. Lookups
    /// stop serving it before the transaction commits: a failed write
    /// serves nothing wrong, and the caller tries again.
    pub fn withdraw_batch(&self, batch: u64) -> Result<(), StoreError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(StoreError::Unreadable {
                path: self.path.clone(),
                why: "redb panicked earlier: writes refused until restart".into(),
            });
        }
        let op = "withdrawing a batch";
        self.guarded(op, || {
            self.withdrawn
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(batch);
            let txn = self.db.begin_write().map_err(db(op))?;
            {
                let batches = txn.open_table(BATCHES).map_err(db(op))?;
                if batches.get(batch).map_err(db(op))?.is_none() {
                    return Ok(());
                }
                let mut rows = txn.open_table(WITHDRAWN).map_err(db(op))?;
                rows.insert(batch, seal(batch).as_slice()).map_err(db(op))?;
                txn.open_table(META)
                    .map_err(db(op))?
                    .insert(FORMAT_KEY, STORE_FORMAT_WITHDRAWN)
                    .map_err(db(op))?;
            }
            txn.commit().map_err(db(op))?;
            Ok(())
        })
    }

    /// Whether `batch`'s proofs are withdrawn.
    pub fn is_withdrawn(&self, batch: u64) -> bool {
        self.withdrawn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&batch)
    }

    /// How many batches are withdrawn.
    pub fn withdrawn_batches(&self) -> usize {
        self.withdrawn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Reads the `withdrawn` rows into memory (at open).
    pub(super) fn load_withdrawn(&self) -> Result<(), StoreError> {
        let op = "reading the withdrawn batches";
        let txn = self.db.begin_read().map_err(db(op))?;
        let rows = match txn.open_table(WITHDRAWN) {
            Ok(rows) => rows,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(db(op)(e)),
        };
        let mut set = self.withdrawn.write().unwrap_or_else(|p| p.into_inner());
        for row in rows.iter().map_err(db(op))? {
            let (key, value) = row.map_err(db(op))?;
            let batch = key.value();
            if value.value() == seal(batch).as_slice() {
                set.insert(batch);
            } else {
                tracing::error!(
                    batch,
                    "proof store: a damaged row of the withdrawn batches; the stamper withdraws its batches again at start"
                );
            }
        }
        Ok(())
    }
}
