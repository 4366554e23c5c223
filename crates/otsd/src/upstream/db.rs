//! `upstream.redb`: what was sent to each upstream calendar and what came
//! back, durably, so that a restart resubmits exactly the commitments
//! without a reply and serves the replies it has.
//!
//! Tables (see docs/formats.md):
//!
//! * `replies`: `leaf ‖ url` → `state (1 byte) ‖ position (u64 BE) ‖
//!   proof ‖ checksum`. `leaf` is `sha256(commitment)` (the message
//!   submitted), `proof` the serialized timestamp rooted at it; state 0 is
//!   the upstream's pending reply, state 1 a complete proof (its Bitcoin
//!   attestations only);
//! * `open`: `(url, position)` → `leaf`: the replies not yet complete, in
//!   journal order, for the upgrade poller (it only points: a damaged
//!   entry finds no reply and is dropped);
//! * `cursors`: `url` → `position ‖ checksum`: every journal position below
//!   it has a reply from that upstream;
//! * `completed`: `start` → `end ‖ checksum`: the journal positions with a
//!   complete upstream proof, as ranges (the stamper skips them);
//! * `meta`: `"format"` → [`UPSTREAM_FORMAT_VERSION`].
//!
//! Each checksummed value ends in `sha256(UPSTREAM_CHECKSUM_DOMAIN ‖ table
//! ‖ key ‖ value)`, checked on every read (redb does not check its pages):
//! a damaged value is logged and treated as absent, never served.

use std::ops::Range;
use std::path::{Path, PathBuf};

use ots_proof::op::sha256;
use ots_stamper::ranges;
use redb::{Database, ReadableTable, TableDefinition};

/// The file in the calendar directory.
pub const UPSTREAM_FILE: &str = "upstream.redb";
/// The format this build writes and reads.
pub const UPSTREAM_FORMAT_VERSION: u64 = 1;
/// What each checksum hashes first, so it is no other hash in the system.
pub const UPSTREAM_CHECKSUM_DOMAIN: &[u8] = b"otsd upstream record\0";
/// Bytes of the checksum ending each checksummed value.
pub const CHECKSUM_LEN: usize = 32;
/// redb's page cache for this file (small: it holds the recent rows).
pub const UPSTREAM_CACHE_BYTES: usize = 16 << 20;

const REPLIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("replies");
const OPEN: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("open");
const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
const COMPLETED: TableDefinition<u64, &[u8]> = TableDefinition::new("completed");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";

/// A reply's state byte: the upstream's pending reply.
const STATE_PENDING: u8 = 0;
/// A reply's state byte: a complete proof.
const STATE_COMPLETE: u8 = 1;

/// Errors of the upstream database.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamDbError {
    /// redb failed while doing `op`.
    #[error("upstream database {}: {op}: {source}", path.display())]
    Db {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file names a format this build does not know.
    #[error("upstream database {}: unsupported format version {found} (this build reads {UPSTREAM_FORMAT_VERSION})", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
}

/// One upstream's reply (or complete proof) for one commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The upstream's URL.
    pub url: String,
    /// The commitment's journal position.
    pub position: u64,
    /// Whether this is a complete proof.
    pub complete: bool,
    /// The serialized timestamp rooted at the leaf.
    pub proof: Vec<u8>,
}

/// The database.
#[derive(Debug)]
pub struct UpstreamDb {
    db: Database,
    path: PathBuf,
}

fn checksum(table: &str, key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut buf =
        Vec::with_capacity(UPSTREAM_CHECKSUM_DOMAIN.len() + table.len() + key.len() + value.len());
    buf.extend_from_slice(UPSTREAM_CHECKSUM_DOMAIN);
    buf.extend_from_slice(table.as_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    sha256(&buf)
}

/// `value ‖ checksum`.
pub(crate) fn seal(table: &str, key: &[u8], mut value: Vec<u8>) -> Vec<u8> {
    let sum = checksum(table, key, &value);
    value.extend_from_slice(&sum);
    value
}

/// The value of a sealed record whose checksum holds.
pub(crate) fn unseal<'a>(table: &str, key: &[u8], sealed: &'a [u8]) -> Option<&'a [u8]> {
    let split = sealed.len().checked_sub(CHECKSUM_LEN)?;
    let (value, sum) = sealed.split_at(split);
    (checksum(table, key, value) == *sum).then_some(value)
}

fn reply_key(leaf: &[u8; 32], url: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + url.len());
    k.extend_from_slice(leaf);
    k.extend_from_slice(url.as_bytes());
    k
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl UpstreamDb {
    /// Opens (or creates) `dir`'s [`UPSTREAM_FILE`].
    pub fn open(dir: &Path) -> Result<UpstreamDb, UpstreamDbError> {
        let path = dir.join(UPSTREAM_FILE);
        let err = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |e: redb::Error| UpstreamDbError::Db {
                path,
                op,
                source: Box::new(e),
            }
        };
        let db = redb::Builder::new()
            .set_cache_size(UPSTREAM_CACHE_BYTES)
            .create(&path)
            .map_err(|e| err("opening", &path)(e.into()))?;
        let this = UpstreamDb { db, path };
        let op = "initialising";
        let txn = this.db.begin_write().map_err(this.db_err(op))?;
        {
            let mut meta = txn.open_table(META).map_err(this.db_err(op))?;
            let found = meta
                .get(FORMAT_KEY)
                .map_err(this.db_err(op))?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert(FORMAT_KEY, UPSTREAM_FORMAT_VERSION)
                        .map_err(this.db_err(op))?;
                }
                Some(UPSTREAM_FORMAT_VERSION) => {}
                Some(found) => {
                    return Err(UpstreamDbError::UnsupportedFormat {
                        path: this.path.clone(),
                        found,
                    })
                }
            }
            txn.open_table(REPLIES).map_err(this.db_err(op))?;
            txn.open_table(OPEN).map_err(this.db_err(op))?;
            txn.open_table(CURSORS).map_err(this.db_err(op))?;
            txn.open_table(COMPLETED).map_err(this.db_err(op))?;
        }
        txn.commit().map_err(this.db_err(op))?;
        Ok(this)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err<E: Into<redb::Error>>(&self, op: &'static str) -> impl FnOnce(E) -> UpstreamDbError {
        let path = self.path.clone();
        move |e| UpstreamDbError::Db {
            path,
            op,
            source: Box::new(e.into()),
        }
    }

    /// `url`'s cursor; `None` for an upstream never seen.
    pub fn cursor(&self, url: &str) -> Result<Option<u64>, UpstreamDbError> {
        let op = "reading a cursor";
        let txn = self.db.begin_read().map_err(self.db_err(op))?;
        let t = txn.open_table(CURSORS).map_err(self.db_err(op))?;
        let Some(v) = t.get(url).map_err(self.db_err(op))? else {
            return Ok(None);
        };
        match unseal("cursors", url.as_bytes(), v.value()).and_then(u64_of) {
            Some(c) => Ok(Some(c)),
            None => {
                // Restarting from 0 resubmits; skipping would lose.
                tracing::error!(url, db = %self.path.display(), "upstream cursor fails its checksum: resubmitting from the journal's start");
                Ok(Some(0))
            }
        }
    }

    /// Sets `url`'s cursor to `at` if it has none (an upstream added to a
    /// calendar takes its commitments from `at` on).
    pub fn init_cursor(&self, url: &str, at: u64) -> Result<u64, UpstreamDbError> {
        if let Some(c) = self.cursor(url)? {
            return Ok(c);
        }
        let op = "writing a cursor";
        let txn = self.db.begin_write().map_err(self.db_err(op))?;
        {
            let mut t = txn.open_table(CURSORS).map_err(self.db_err(op))?;
            let v = seal("cursors", url.as_bytes(), at.to_be_bytes().to_vec());
            t.insert(url, v.as_slice()).map_err(self.db_err(op))?;
        }
        txn.commit().map_err(self.db_err(op))?;
        Ok(at)
    }

    /// Whether `url` replied for `leaf`.
    pub fn has_reply(&self, leaf: &[u8; 32], url: &str) -> Result<bool, UpstreamDbError> {
        let op = "reading a reply";
        let txn = self.db.begin_read().map_err(self.db_err(op))?;
        let t = txn.open_table(REPLIES).map_err(self.db_err(op))?;
        let key = reply_key(leaf, url);
        let Some(v) = t.get(key.as_slice()).map_err(self.db_err(op))? else {
            return Ok(false);
        };
        Ok(unseal("replies", &key, v.value()).is_some())
    }

    /// Every upstream's reply for `leaf` whose checksum holds (a damaged
    /// one is logged and left out).
    pub fn replies(&self, leaf: &[u8; 32]) -> Result<Vec<Reply>, UpstreamDbError> {
        let op = "reading replies";
        let txn = self.db.begin_read().map_err(self.db_err(op))?;
        let t = txn.open_table(REPLIES).map_err(self.db_err(op))?;
        let mut end = leaf.to_vec();
        // No UTF-8 string holds the byte 0xff: every `leaf ‖ url` is below.
        end.push(0xff);
        let mut out = Vec::new();
        for row in t
            .range(leaf.as_slice()..end.as_slice())
            .map_err(self.db_err(op))?
        {
            let (k, v) = row.map_err(self.db_err(op))?;
            let key = k.value();
            let url = String::from_utf8_lossy(&key[32..]).into_owned();
            match unseal("replies", key, v.value()).and_then(parse_reply) {
                Some((complete, position, proof)) => out.push(Reply {
                    url,
                    position,
                    complete,
                    proof: proof.to_vec(),
                }),
                None => {
                    tracing::error!(url, leaf = %hex::encode(leaf), db = %self.path.display(), "an upstream reply fails its checksum: not served")
                }
            }
        }
        Ok(out)
    }

    /// Records `url`'s replies (`(position, leaf, proof)`) and moves its
    /// cursor to `cursor`, in one transaction (one fsync).
    pub fn record_replies(
        &self,
        url: &str,
        replies: &[(u64, [u8; 32], Vec<u8>)],
        cursor: u64,
    ) -> Result<(), UpstreamDbError> {
        let op = "recording replies";
        let txn = self.db.begin_write().map_err(self.db_err(op))?;
        {
            let mut r = txn.open_table(REPLIES).map_err(self.db_err(op))?;
            let mut o = txn.open_table(OPEN).map_err(self.db_err(op))?;
            for (position, leaf, proof) in replies {
                let key = reply_key(leaf, url);
                let v = seal("replies", &key, reply_value(false, *position, proof));
                r.insert(key.as_slice(), v.as_slice())
                    .map_err(self.db_err(op))?;
                o.insert((url, *position), leaf.as_slice())
                    .map_err(self.db_err(op))?;
            }
            let mut c = txn.open_table(CURSORS).map_err(self.db_err(op))?;
            let v = seal("cursors", url.as_bytes(), cursor.to_be_bytes().to_vec());
            c.insert(url, v.as_slice()).map_err(self.db_err(op))?;
        }
        txn.commit().map_err(self.db_err(op))
    }

    /// Records `url`'s complete proof of the commitment at `position`
    /// (replacing its pending reply), and the position as completed.
    pub fn record_complete(
        &self,
        url: &str,
        position: u64,
        leaf: &[u8; 32],
        proof: &[u8],
    ) -> Result<(), UpstreamDbError> {
        let op = "recording a complete proof";
        let txn = self.db.begin_write().map_err(self.db_err(op))?;
        {
            let mut r = txn.open_table(REPLIES).map_err(self.db_err(op))?;
            let key = reply_key(leaf, url);
            let v = seal("replies", &key, reply_value(true, position, proof));
            r.insert(key.as_slice(), v.as_slice())
                .map_err(self.db_err(op))?;
            let mut o = txn.open_table(OPEN).map_err(self.db_err(op))?;
            o.remove((url, position)).map_err(self.db_err(op))?;
            let mut c = txn.open_table(COMPLETED).map_err(self.db_err(op))?;
            // Merged with the ranges touching it, so the table stays a few
            // rows when upstreams complete in order.
            let mut merged = position..position + 1;
            let mut gone = Vec::new();
            {
                let before = c
                    .range(..=position)
                    .map_err(self.db_err(op))?
                    .next_back()
                    .transpose()
                    .map_err(self.db_err(op))?;
                if let Some((k, v)) = before {
                    let start = k.value();
                    if let Some(end) =
                        unseal("completed", &start.to_be_bytes(), v.value()).and_then(u64_of)
                    {
                        if end >= position {
                            merged.start = start;
                            merged.end = merged.end.max(end);
                            gone.push(start);
                        }
                    }
                }
                let after = c.get(position + 1).map_err(self.db_err(op))?.and_then(|v| {
                    unseal("completed", &(position + 1).to_be_bytes(), v.value()).and_then(u64_of)
                });
                if let Some(end) = after {
                    merged.end = merged.end.max(end);
                    gone.push(position + 1);
                }
            }
            for k in gone {
                c.remove(k).map_err(self.db_err(op))?;
            }
            let v = seal(
                "completed",
                &merged.start.to_be_bytes(),
                merged.end.to_be_bytes().to_vec(),
            );
            c.insert(merged.start, v.as_slice())
                .map_err(self.db_err(op))?;
        }
        txn.commit().map_err(self.db_err(op))
    }

    /// Up to `max` of `url`'s replies not yet complete, in journal order,
    /// from `from` on: `(position, leaf)`.
    pub fn open_replies(
        &self,
        url: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, [u8; 32])>, UpstreamDbError> {
        let op = "reading open replies";
        let txn = self.db.begin_read().map_err(self.db_err(op))?;
        let t = txn.open_table(OPEN).map_err(self.db_err(op))?;
        let mut out = Vec::new();
        for row in t
            .range((url, from)..=(url, u64::MAX))
            .map_err(self.db_err(op))?
        {
            let (k, v) = row.map_err(self.db_err(op))?;
            if let Ok(leaf) = <[u8; 32]>::try_from(v.value()) {
                out.push((k.value().1, leaf));
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// How many of `url`'s replies are not complete.
    pub fn open_count(&self, url: &str) -> Result<u64, UpstreamDbError> {
        let op = "counting open replies";
        let txn = self.db.begin_read().map_err(self.db_err(op))?;
        let t = txn.open_table(OPEN).map_err(self.db_err(op))?;
        let mut n = 0;
        for row in t
            .range((url, 0)..=(url, u64::MAX))
            .map_err(self.db_err(op))?
        {
            row.map_err(self.db_err(op))?;
            n += 1;
        }
        Ok(n)
    }

    /// The journal positions with a complete upstream proof, as ranges.
    pub fn completed(&self) -> Result<Vec<Range<u64>>, UpstreamDbError> {
        let op = "reading completed ranges";
        let txn = self.db.begin_read().map_err(self.db_err(op))?;
        let t = txn.open_table(COMPLETED).map_err(self.db_err(op))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(self.db_err(op))? {
            let (k, v) = row.map_err(self.db_err(op))?;
            let start = k.value();
            match unseal("completed", &start.to_be_bytes(), v.value()).and_then(u64_of) {
                Some(end) if end > start => out.push(start..end),
                _ => {
                    tracing::error!(start, db = %self.path.display(), "a completed range fails its checksum: its commitments count as not completed upstream")
                }
            }
        }
        Ok(ranges::normalize(out))
    }
}

fn reply_value(complete: bool, position: u64, proof: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + proof.len());
    v.push(if complete {
        STATE_COMPLETE
    } else {
        STATE_PENDING
    });
    v.extend_from_slice(&position.to_be_bytes());
    v.extend_from_slice(proof);
    v
}

fn parse_reply(v: &[u8]) -> Option<(bool, u64, &[u8])> {
    let complete = match *v.first()? {
        STATE_PENDING => false,
        STATE_COMPLETE => true,
        _ => return None,
    };
    let position = u64_of(v.get(1..9)?)?;
    Some((complete, position, &v[9..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_cursors_and_completions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = UpstreamDb::open(dir.path()).unwrap();
        assert_eq!(db.cursor("http://a/").unwrap(), None);
        assert_eq!(db.init_cursor("http://a/", 5).unwrap(), 5);
        assert_eq!(db.init_cursor("http://a/", 9).unwrap(), 5);
        let leaf = [7u8; 32];
        db.record_replies("http://a/", &[(5, leaf, vec![1, 2, 3])], 6)
            .unwrap();
        db.record_replies("http://b/", &[(5, leaf, vec![4])], 6)
            .unwrap();
        assert!(db.has_reply(&leaf, "http://a/").unwrap());
        assert!(!db.has_reply(&[8u8; 32], "http://a/").unwrap());
        assert_eq!(
            db.open_replies("http://a/", 0, 10).unwrap(),
            vec![(5, leaf)]
        );
        db.record_complete("http://a/", 5, &leaf, &[9, 9]).unwrap();
        db.record_complete("http://a/", 6, &[1u8; 32], &[9])
            .unwrap();
        db.record_complete("http://a/", 8, &[2u8; 32], &[9])
            .unwrap();
        db.record_complete("http://a/", 7, &[3u8; 32], &[9])
            .unwrap();
        drop(db);
        let db = UpstreamDb::open(dir.path()).unwrap();
        assert_eq!(db.cursor("http://a/").unwrap(), Some(6));
        assert!(db.open_replies("http://a/", 0, 10).unwrap().is_empty());
        assert_eq!(db.open_count("http://b/").unwrap(), 1);
        assert_eq!(db.completed().unwrap(), vec![5..9]);
        let replies = db.replies(&leaf).unwrap();
        assert_eq!(replies.len(), 2);
        assert!(replies[0].complete && replies[0].proof == [9, 9]);
        assert!(!replies[1].complete && replies[1].proof == [4]);
    }

    #[test]
    fn a_sealed_value_opens_only_unchanged_and_under_its_key() {
        let v = seal("replies", b"k", b"value".to_vec());
        assert_eq!(unseal("replies", b"k", &v), Some(&b"value"[..]));
        assert_eq!(unseal("replies", b"j", &v), None);
        assert_eq!(unseal("cursors", b"k", &v), None);
        for bit in 0..v.len() * 8 {
            let mut w = v.clone();
            w[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(unseal("replies", b"k", &w), None, "bit {bit}");
        }
    }
}
