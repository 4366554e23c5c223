//! The LevelDB environment that reads the reference's `db/` in place and
//! never writes to it: every write LevelDB makes on open (its `LOCK`, `LOG`,
//! a new log and `MANIFEST`, `CURRENT`, deletions of obsolete files, a
//! compaction's tables) goes to memory and is forgotten on close.
//!
//! Why an environment and not a copy: a copy (or a hardlink set, which
//! LevelDB's writes could still reach through the shared inodes) costs the
//! size of the store at every start, where reading in place costs nothing;
//! and rusty-leveldb has no read-only option, so no set of options can stop
//! it writing. Here the disk is only ever opened for reading: there is no
//! code path that creates, writes, renames or deletes a file on disk, so
//! the guarantee holds by construction, whatever LevelDB decides to do.
//!
//! Sealed once open: LevelDB compacts on reads too (a table consulted too
//! often in vain is merged into the next level). Such a compaction must
//! never change what the store holds, and rusty-leveldb 4.0.2 does not
//! make sure of that: when a compaction's work fails, it still installs
//! the compaction, deleting its input tables from the live version with
//! only the outputs finished so far in their place. Refusing only the
//! new tables (what this environment first did) thus made every
//! read-triggered compaction drop a table and its overlaps from view: on
//! a store of a million commitments, most of its records. So once the
//! store is open, the environment refuses every new file and every
//! append: the compaction's first table fails, and so does installing it
//! (the new `CURRENT` is a new file), which happens before rusty-leveldb
//! switches versions, so the store reads as it is on disk. Nothing else
//! writes once open: this process never writes to the store. A
//! compaction LevelDB wants while opening (a store left with many level-0
//! tables, or one over a level's size) still happens, in memory, once.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusty_leveldb::env::{Env, FileLock, Logger, RandomAccess};
use rusty_leveldb::{MemEnv, Result, Status, StatusCode};

/// Reads from the disk, writes to memory; a file written or deleted in
/// memory hides the disk's file of that name.
pub struct OverlayEnv {
    mem: MemEnv,
    /// Disk files LevelDB has deleted (obsolete files after recovery): it
    /// must not see them again, though they stay on disk.
    hidden: Mutex<HashSet<PathBuf>>,
    /// Set once the store is open: no new tables from then on.
    sealed: Arc<AtomicBool>,
}

impl OverlayEnv {
    /// An overlay with nothing written yet.
    pub fn new() -> Self {
        OverlayEnv {
            mem: MemEnv::new(),
            hidden: Mutex::new(HashSet::new()),
            sealed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// What seals the environment (see the module's *Memory*): set it to
    /// `true` once the store is open.
    pub fn seal(&self) -> Arc<AtomicBool> {
        self.sealed.clone()
    }

    /// Once sealed, no new file and no append (see the module's
    /// *Sealed once open*).
    fn refuse_if_sealed(&self, p: &Path) -> Result<()> {
        if self.sealed.load(Ordering::Relaxed) {
            return Err(Status::new(
                StatusCode::NotSupported,
                &format!(
                    "{}: no compaction of the reference store once open",
                    p.display()
                ),
            ));
        }
        Ok(())
    }

    fn in_mem(&self, p: &Path) -> bool {
        self.mem.exists(p).unwrap_or(false)
    }

    fn hidden(&self, p: &Path) -> bool {
        self.hidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(p)
    }

    fn unhide(&self, p: &Path) {
        self.hidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(p);
    }

    /// The disk's file, opened for reading only.
    fn disk(&self, p: &Path) -> Result<File> {
        if self.hidden(p) {
            return Err(Status::new(StatusCode::NotFound, &p.display().to_string()));
        }
        Ok(File::open(p)?)
    }
}

impl Default for OverlayEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Env for OverlayEnv {
    fn open_sequential_file(&self, p: &Path) -> Result<Box<dyn Read>> {
        if self.in_mem(p) {
            return self.mem.open_sequential_file(p);
        }
        // The file itself, not a `BufReader`: rusty-leveldb's log reader
        // takes a short `read` for the end of the data, and a buffered
        // reader returns short reads at its buffer's edges, which lost
        // every record of a log past its first 8 KiB.
        Ok(Box::new(self.disk(p)?))
    }

    fn open_random_access_file(&self, p: &Path) -> Result<Box<dyn RandomAccess>> {
        if self.in_mem(p) {
            return self.mem.open_random_access_file(p);
        }
        Ok(Box::new(self.disk(p)?))
    }

    fn open_writable_file(&self, p: &Path) -> Result<Box<dyn Write>> {
        self.refuse_if_sealed(p)?;
        self.unhide(p);
        self.mem.open_writable_file(p)
    }

    fn open_appendable_file(&self, p: &Path) -> Result<Box<dyn Write>> {
        self.refuse_if_sealed(p)?;
        if !self.in_mem(p) {
            // Copy on write: the disk's content first, into memory.
            let mut content = Vec::new();
            if let Ok(mut f) = self.disk(p) {
                f.read_to_end(&mut content)?;
            }
            self.mem.open_writable_file(p)?.write_all(&content)?;
            self.unhide(p);
        }
        self.mem.open_appendable_file(p)
    }

    fn exists(&self, p: &Path) -> Result<bool> {
        Ok(self.in_mem(p) || (!self.hidden(p) && p.exists()))
    }

    fn children(&self, p: &Path) -> Result<Vec<PathBuf>> {
        let mut names: Vec<PathBuf> = match std::fs::read_dir(p) {
            Ok(dir) => dir
                .filter_map(|e| e.ok())
                .map(|e| PathBuf::from(e.file_name()))
                .filter(|name| !self.hidden(&p.join(name)))
                .collect(),
            Err(_) => Vec::new(),
        };
        for name in self.mem.children(p).unwrap_or_default() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn size_of(&self, p: &Path) -> Result<usize> {
        if self.in_mem(p) {
            return self.mem.size_of(p);
        }
        Ok(self.disk(p)?.metadata()?.len() as usize)
    }

    fn delete(&self, p: &Path) -> Result<()> {
        if self.in_mem(p) {
            self.mem.delete(p)?;
        }
        self.hidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.to_path_buf());
        Ok(())
    }

    fn mkdir(&self, _: &Path) -> Result<()> {
        // The directory exists (it was checked before opening); nothing
        // is made on disk.
        Ok(())
    }

    fn rmdir(&self, _: &Path) -> Result<()> {
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        if !self.in_mem(from) {
            // LevelDB renames only files it wrote itself (a new CURRENT).
            return Err(Status::new(
                StatusCode::NotSupported,
                &format!("rename of a disk file {}", from.display()),
            ));
        }
        self.mem.rename(from, to)?;
        self.unhide(to);
        Ok(())
    }

    fn lock(&self, p: &Path) -> Result<FileLock> {
        // A lock in memory: LevelDB's LOCK file is not created or taken on
        // disk (see the module's caveat in `refstore`).
        self.mem.lock(p)
    }

    fn unlock(&self, l: FileLock) -> Result<()> {
        self.mem.unlock(l)
    }

    fn new_logger(&self, _: &Path) -> Result<Logger> {
        // LevelDB's info log (its `LOG`) is dropped: not written to disk.
        Ok(Logger::new(Box::new(std::io::sink())))
    }

    fn micros(&self) -> u64 {
        self.mem.micros()
    }

    fn sleep_for(&self, micros: u32) {
        self.mem.sleep_for(micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_in_memory_and_a_sealed_env_makes_no_table() {
        let dir = tempfile::tempdir().unwrap();
        let on_disk = dir.path().join("000005.ldb");
        std::fs::write(&on_disk, b"disk").unwrap();
        let env = OverlayEnv::new();
        env.open_writable_file(&dir.path().join("CURRENT"))
            .unwrap()
            .write_all(b"x")
            .unwrap();
        env.open_appendable_file(&on_disk)
            .unwrap()
            .write_all(b"+")
            .unwrap();
        let mut read = String::new();
        env.open_sequential_file(&on_disk)
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "disk+", "the overlay sees its own writes");
        env.delete(&on_disk).unwrap();
        assert!(!env.exists(&on_disk).unwrap());
        assert_eq!(
            std::fs::read(&on_disk).unwrap(),
            b"disk",
            "the disk does not"
        );
        assert!(!dir.path().join("CURRENT").exists());
        env.seal().store(true, Ordering::Relaxed);
        assert!(env
            .open_writable_file(&dir.path().join("000007.ldb"))
            .is_err());
        assert!(env
            .open_writable_file(&dir.path().join("000008.dbtmp"))
            .is_err());
        assert!(env.open_appendable_file(&on_disk).is_err());
    }

    /// A store whose log holds much more than a buffer's worth (the
    /// reference stopped before LevelDB wrote its memtable to a table):
    /// every record written is read back through the overlay.
    #[test]
    fn a_long_log_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let keys: Vec<Vec<u8>> = (0u32..5000)
            .map(|i| ots_proof::op::sha256(&i.to_be_bytes()).to_vec())
            .collect();
        {
            let mut db = rusty_leveldb::DB::open(&path, rusty_leveldb::Options::default()).unwrap();
            for k in &keys {
                db.put(k, &[0, 1, 0x08]).unwrap();
            }
            db.close().unwrap();
        }
        let log: u64 = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(log > 64 << 10, "the records are in the log ({log} bytes)");
        let mut db = crate::refstore::open_read_only(&path, 1 << 20).unwrap();
        for k in &keys {
            assert!(
                crate::refstore::get_record(&mut db, k).unwrap().is_some(),
                "{}",
                hex::encode(k)
            );
        }
    }

    /// Options that make many small tables.
    fn small_tables() -> rusty_leveldb::Options {
        rusty_leveldb::Options {
            write_buffer_size: 16 << 10,
            max_file_size: 8 << 10,
            ..rusty_leveldb::Options::default()
        }
    }

    /// Writes `n` keys to a store at `path` with small write buffers and
    /// tables, so that it has many tables over two levels (as a large
    /// store has at default sizes); returns the keys.
    fn many_tables(path: &Path, n: u32) -> Vec<Vec<u8>> {
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|i| ots_proof::op::sha256(&i.to_be_bytes()).to_vec())
            .collect();
        let mut db = rusty_leveldb::DB::open(path, small_tables()).unwrap();
        for k in &keys {
            db.put(k, &[0, 1, 0x08]).unwrap();
        }
        db.close().unwrap();
        let tables = std::fs::read_dir(path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "ldb")
            })
            .count();
        assert!(tables > 20, "{tables} tables");
        keys
    }

    /// Reading a store of many tables makes LevelDB want compactions (a
    /// table consulted in vain too often): refused once sealed, each must
    /// leave the store as it is. rusty-leveldb installs a failed
    /// compaction, so refusing only its tables lost most records of a
    /// million-commitment store (the 1M bench).
    #[test]
    fn reads_that_want_compactions_lose_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let keys = many_tables(&path, 20_000);
        // Level-0 tables over the whole key range (fewer than make LevelDB
        // compact while opening): most reads consult them in vain.
        {
            let mut db = rusty_leveldb::DB::open(&path, small_tables()).unwrap();
            // No level-0 table left from the first writes.
            db.compact_range(&[0], &[0xff; 33]).unwrap();
            // Each a write buffer's worth (a large filler value ends it),
            // made a table by the next write; the last stays in the log.
            for offset in 0..2u8 {
                for k in keys.iter().skip(offset.into()).step_by(200) {
                    db.put(k, &[0, 1, 0x08]).unwrap();
                }
                db.put(&[0xff, offset], &vec![0; 16 << 10]).unwrap();
            }
            db.close().unwrap();
        }
        let before: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut db = crate::refstore::open_read_only(&path, 1 << 20).unwrap();
        // Twice: the first pass spends the tables' allowed seeks.
        for pass in 0..2 {
            for k in &keys {
                assert!(
                    crate::refstore::get_record(&mut db, k).unwrap().is_some(),
                    "pass {pass}: {}",
                    hex::encode(k)
                );
            }
        }
        drop(db);
        let after: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after, "the disk is untouched");
    }

    /// A path that is not canonical (`..`, a relative path) names the same
    /// store: a compaction while opening writes its tables under the
    /// canonical path, and they must be the ones read.
    #[test]
    fn a_non_canonical_path_reads_the_store_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let keys = many_tables(&dir.path().join("db"), 20_000);
        // More level-0 tables than LevelDB keeps: opening compacts them.
        {
            let opt = rusty_leveldb::Options {
                write_buffer_size: 16 << 10,
                ..rusty_leveldb::Options::default()
            };
            let mut db = rusty_leveldb::DB::open(dir.path().join("db"), opt).unwrap();
            for (i, k) in keys.iter().enumerate().take(3000) {
                db.put(k, &[0, 1, 0x08]).unwrap();
                if i % 500 == 499 {
                    db.flush().unwrap();
                }
            }
            db.close().unwrap();
        }
        let mut db = crate::refstore::open_read_only(&dir.path().join("x/../db"), 1 << 20).unwrap();
        for k in &keys {
            assert!(
                crate::refstore::get_record(&mut db, k).unwrap().is_some(),
                "{}",
                hex::encode(k)
            );
        }
    }
}
