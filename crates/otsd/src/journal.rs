//! The journal: the append-only file of every commitment the calendar has
//! acknowledged, its recovery at start-up, and shared read access.
//!
//! On-disk format (version 1, identical to the reference server's, so that
//! reference calendars are adopted as they are): `journal` is a flat file of
//! 44-byte records, `time (4, BE) ‖ tip (32) ‖ mac (8)`, no header. The
//! format version lives beside it in `journal.version` (ASCII decimal,
//! written atomically); a journal without that file is a reference journal
//! and is adopted as version 1.
//!
//! Durability: records are appended at an explicit offset and fsynced
//! (`fdatasync`) once per aggregation round; only then are they counted in
//! [`JournalReader::durable_len`] and acknowledged. Recovery at start-up:
//! a trailing partial record was never acknowledged (acknowledgements follow
//! a complete fsync), so it is truncated away (the reference pads it with
//! zeros instead, which leaves a record that is neither valid nor
//! recognisable). Every record carries its own MAC, so corruption is found
//! by checking MACs; a bad one stops the start-up with the record's index.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;

use crate::calendar::{self, has_no_mac, Commitment, HmacKey, KeyDeriver, COMMITMENT_LEN};

pub use crate::calendar::JOURNAL_FILE;
/// Name of the file holding the journal's format version.
pub const JOURNAL_VERSION_FILE: &str = "journal.version";
/// The journal format this server writes and reads.
pub const JOURNAL_FORMAT_VERSION: u32 = 1;
/// Length of one record.
pub const RECORD_LEN: u64 = COMMITMENT_LEN as u64;
/// Records read per system call while scanning the journal at start-up.
const SCAN_BATCH_RECORDS: usize = 4096;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A record's MAC does not match: the file is corrupt or belongs to
    /// another key.
    #[error(
        "journal record {index} (byte offset {offset}) fails its MAC check: the journal is \
         corrupt or was written with another hmac-key; refusing to start"
    )]
    Corrupt {
        /// Index of the first bad record.
        index: u64,
        /// Its byte offset.
        offset: u64,
    },
    /// `journal.version` names a format this build does not know.
    #[error("{path}: unsupported journal format version {found:?} (this build reads {JOURNAL_FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version file.
        path: PathBuf,
        /// Its content.
        found: String,
    },
    /// A previous append failed and the file could not be restored to its
    /// last durable length: no further append is attempted.
    #[error("journal is unusable after a failed append that could not be rolled back")]
    Poisoned,
    /// Writing a file in the calendar directory failed.
    #[error(transparent)]
    Calendar(#[from] calendar::CalendarError),
}

/// How much of the journal to check at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Every record's MAC (cheap: a few hashes per record).
    All,
    /// Only the last `n` records.
    Last(u64),
}

/// What start-up found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Complete records in the journal.
    pub records: u64,
    /// Bytes of a partial trailing record that were truncated.
    pub truncated_bytes: u64,
    /// Records without MAC (reference legacy records), accepted unchecked.
    pub unmacced: u64,
    /// Whether the journal was created empty.
    pub created: bool,
}

/// The writer. Owned by the aggregator; moved to a blocking thread for
/// each append.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    durable: Arc<AtomicU64>,
    poisoned: bool,
    /// Where each append's fsync time goes (the metrics, issue 17).
    fsync_seconds: Option<Histogram>,
}

/// Read access to the durable part of the journal; cheap to clone.
#[derive(Debug, Clone)]
pub struct JournalReader {
    file: Arc<File>,
    durable: Arc<AtomicU64>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Journal {
    /// Opens (or creates) the journal of the calendar in `dir`: checks the
    /// format version, truncates a torn tail, verifies MACs as asked by
    /// `verify` (records before those are not read).
    pub fn open(
        dir: &Path,
        key: &HmacKey,
        verify: Verify,
    ) -> Result<(Journal, JournalReader, Recovery), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let version_path = dir.join(JOURNAL_VERSION_FILE);
        let mut recovery = Recovery {
            created: !path.exists(),
            ..Recovery::default()
        };
        match fs::read_to_string(&version_path) {
            Ok(s) if s.trim() == JOURNAL_FORMAT_VERSION.to_string() => {}
            Ok(s) => {
                return Err(JournalError::UnsupportedVersion {
                    path: version_path,
                    found: s.trim().to_owned(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !recovery.created {
                    tracing::info!("adopting a reference journal as format version 1");
                }
                calendar::write_atomic(
                    &version_path,
                    format!("{JOURNAL_FORMAT_VERSION}\n").as_bytes(),
                )?;
            }
            Err(e) => return Err(io_err(&version_path)(e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        if recovery.created {
            calendar::sync_dir(dir)?;
        }
        let size = file.metadata().map_err(io_err(&path))?.len();
        let excess = size % RECORD_LEN;
        if excess != 0 {
            tracing::warn!(
                bytes = excess,
                "journal ends with a partial record (interrupted write, never acknowledged); \
                 truncating it"
            );
            file.set_len(size - excess).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            recovery.truncated_bytes = excess;
        }
        let records = size / RECORD_LEN;
        recovery.records = records;
        let verify_from = match verify {
            Verify::All => 0,
            Verify::Last(n) => records.saturating_sub(n),
        };
        let mut deriver = KeyDeriver::new(key.clone());
        let mut scan = File::open(&path).map_err(io_err(&path))?;
        scan.seek(io::SeekFrom::Start(verify_from * RECORD_LEN))
            .map_err(io_err(&path))?;
        let mut reader = io::BufReader::with_capacity(SCAN_BATCH_RECORDS * COMMITMENT_LEN, scan);
        let mut record = [0u8; COMMITMENT_LEN];
        for index in verify_from..records {
            reader.read_exact(&mut record).map_err(io_err(&path))?;
            if has_no_mac(&record) {
                if record[..COMMITMENT_LEN - calendar::MAC_LEN]
                    .iter()
                    .all(|&b| b == 0)
                {
                    // All zeros: a zero-filled block, not a record.
                    return Err(JournalError::Corrupt {
                        index,
                        offset: index * RECORD_LEN,
                    });
                }
                recovery.unmacced += 1;
            } else if !deriver.verify(&record) {
                return Err(JournalError::Corrupt {
                    index,
                    offset: index * RECORD_LEN,
                });
            }
        }
        if recovery.unmacced > 0 {
            tracing::warn!(
                count = recovery.unmacced,
                "journal holds records without MAC (reference legacy format); accepted unchecked"
            );
        }
        let durable = Arc::new(AtomicU64::new(records));
        let reader = JournalReader {
            file: Arc::new(File::open(&path).map_err(io_err(&path))?),
            durable: durable.clone(),
        };
        let journal = Journal {
            file,
            path,
            durable,
            poisoned: false,
            fsync_seconds: None,
        };
        Ok((journal, reader, recovery))
    }

    /// Number of durable records.
    pub fn len(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Whether the journal holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the duration of every later append's fsync in `h`.
    pub fn observe_fsync(&mut self, h: Histogram) {
        self.fsync_seconds = Some(h);
    }

    /// Appends `records` with a single write and a single fsync; returns
    /// the index of the first. On error nothing is counted as durable and
    /// the file is cut back to its durable length, so the next append
    /// starts on a record boundary; if even that fails, the journal
    /// refuses every later append.
    pub fn append(&mut self, records: &[Commitment]) -> Result<u64, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let first = self.len();
        let offset = first * RECORD_LEN;
        let buf: Vec<u8> = records.concat();
        let result = self.file.write_all_at(&buf, offset).and_then(|()| {
            let started = std::time::Instant::now();
            let synced = self.file.sync_data();
            if let Some(h) = &self.fsync_seconds {
                h.observe(started.elapsed().as_secs_f64());
            }
            synced
        });
        if let Err(e) = result {
            if self
                .file
                .set_len(offset)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                self.poisoned = true;
            }
            return Err(io_err(&self.path)(e));
        }
        self.durable
            .store(first + records.len() as u64, Ordering::Release);
        Ok(first)
    }
}

impl JournalReader {
    /// Opens a read-only view of the journal in `dir`, for tools and tests;
    /// every complete record in the file counts as durable.
    pub fn open(dir: &Path) -> Result<JournalReader, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let file = File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len() / RECORD_LEN;
        Ok(JournalReader {
            file: Arc::new(file),
            durable: Arc::new(AtomicU64::new(len)),
        })
    }

    /// Number of records known durable (fsynced). The stamper reads
    /// `[cursor, durable_len())` to find new commitments.
    pub fn durable_len(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Record `index`, if durable.
    pub fn get(&self, index: u64) -> io::Result<Option<Commitment>> {
        if index >= self.durable_len() {
            return Ok(None);
        }
        let mut rec = [0u8; COMMITMENT_LEN];
        self.file.read_exact_at(&mut rec, index * RECORD_LEN)?;
        Ok(Some(rec))
    }

    /// Up to `max` durable records starting at `start`, in journal order.
    pub fn read_range(&self, start: u64, max: usize) -> io::Result<Vec<Commitment>> {
        let end = self.durable_len().min(start.saturating_add(max as u64));
        if start >= end {
            return Ok(Vec::new());
        }
        let count = (end - start) as usize;
        let mut buf = vec![0u8; count * COMMITMENT_LEN];
        self.file.read_exact_at(&mut buf, start * RECORD_LEN)?;
        Ok(buf
            .chunks_exact(COMMITMENT_LEN)
            .map(|c| {
                let mut rec = [0u8; COMMITMENT_LEN];
                rec.copy_from_slice(c);
                rec
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HmacKey {
        HmacKey::new(vec![3; 32])
    }

    fn records(n: u32) -> Vec<Commitment> {
        let mut d = KeyDeriver::new(key());
        (0..n)
            .map(|i| d.commitment(1_700_000_000 + i, &ots_proof::op::sha256(&i.to_be_bytes())))
            .collect()
    }

    fn open(
        dir: &Path,
    ) -> Result<(Journal, JournalReader, Recovery, Vec<Commitment>), JournalError> {
        let (j, r, rec) = Journal::open(dir, &key(), Verify::All)?;
        let seen = r.read_range(0, usize::MAX).expect("records read back");
        Ok((j, r, rec, seen))
    }

    #[test]
    fn append_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, r, rec, seen) = open(dir.path()).unwrap();
        assert!(rec.created && seen.is_empty());
        let recs = records(5);
        assert_eq!(j.append(&recs[..2]).unwrap(), 0);
        assert_eq!(j.append(&recs[2..]).unwrap(), 2);
        assert_eq!(r.durable_len(), 5);
        assert_eq!(r.get(3).unwrap(), Some(recs[3]));
        assert_eq!(r.get(5).unwrap(), None);
        assert_eq!(r.read_range(1, 10).unwrap(), recs[1..].to_vec());
        drop(j);
        let (_, _, rec, seen) = open(dir.path()).unwrap();
        assert_eq!(seen, recs);
        assert_eq!(rec.records, 5);
        assert!(!rec.created);
        assert_eq!(
            fs::read_to_string(dir.path().join(JOURNAL_VERSION_FILE)).unwrap(),
            "1\n"
        );
    }

    /// A crash can cut the file anywhere: every length recovers to the
    /// complete records before the cut, and appending continues cleanly.
    #[test]
    fn recovery_at_every_truncation_length() {
        let recs = records(3);
        let full: Vec<u8> = recs.concat();
        for cut in 0..=full.len() {
            let dir = tempfile::tempdir().unwrap();
            {
                let (_j, _, _, _) = open(dir.path()).unwrap();
            }
            fs::write(dir.path().join(JOURNAL_FILE), &full[..cut]).unwrap();
            let (mut j, r, rec, seen) = open(dir.path()).unwrap();
            let whole = cut / COMMITMENT_LEN;
            assert_eq!(seen, recs[..whole].to_vec(), "cut={cut}");
            assert_eq!(rec.truncated_bytes, (cut % COMMITMENT_LEN) as u64);
            let extra = records(4)[3];
            assert_eq!(j.append(&[extra]).unwrap(), whole as u64);
            assert_eq!(r.get(whole as u64).unwrap(), Some(extra));
            drop(j);
            let (_, _, rec, seen) = open(dir.path()).unwrap();
            assert_eq!(rec.truncated_bytes, 0);
            assert_eq!(seen.len(), whole + 1);
        }
    }

    #[test]
    fn corruption_is_refused_with_the_record_index() {
        let recs = records(4);
        for (index, byte) in [(0usize, 0usize), (2, 17), (3, 43)] {
            let dir = tempfile::tempdir().unwrap();
            open(dir.path()).unwrap();
            let mut bytes = recs.concat();
            bytes[index * COMMITMENT_LEN + byte] ^= 0x40;
            fs::write(dir.path().join(JOURNAL_FILE), &bytes).unwrap();
            let err = open(dir.path()).unwrap_err();
            assert!(
                matches!(err, JournalError::Corrupt { index: i, .. } if i == index as u64),
                "{err}"
            );
            assert!(err.to_string().contains(&format!("record {index}")));
            // Checking only the last record skips earlier damage.
            let tail_only = Journal::open(dir.path(), &key(), Verify::Last(1));
            assert_eq!(tail_only.is_ok(), index < 3);
        }
    }

    #[test]
    fn zero_blocks_and_legacy_records() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path()).unwrap();
        let mut legacy = records(1)[0];
        legacy[36..].fill(0);
        fs::write(dir.path().join(JOURNAL_FILE), legacy).unwrap();
        let (_, _, rec, _) = open(dir.path()).unwrap();
        assert_eq!(rec.unmacced, 1);
        fs::write(dir.path().join(JOURNAL_FILE), [0u8; 88]).unwrap();
        assert!(matches!(
            open(dir.path()).unwrap_err(),
            JournalError::Corrupt { index: 0, .. }
        ));
    }

    #[test]
    fn reference_journal_is_adopted_and_unknown_version_refused() {
        let dir = tempfile::tempdir().unwrap();
        let recs = records(2);
        fs::write(dir.path().join(JOURNAL_FILE), recs.concat()).unwrap();
        let (_, _, rec, seen) = open(dir.path()).unwrap();
        assert!(!rec.created);
        assert_eq!(seen, recs);
        fs::write(dir.path().join(JOURNAL_VERSION_FILE), "2\n").unwrap();
        assert!(matches!(
            open(dir.path()).unwrap_err(),
            JournalError::UnsupportedVersion { .. }
        ));
    }
}
