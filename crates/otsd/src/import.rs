//! `otsd import-reference`: copies the completed proofs of a reference
//! calendar's LevelDB `db/` into our store (`store.redb`), so that `db/` is
//! no longer needed, checking each on the way.
//!
//! The journal is read in order from the saved cursor; each commitment's
//! proof is walked in `db/` ([`groups`]) until it joins a batch already
//! met or ends. At the first commitment of a batch, the batch is found
//! whole from that one path ([`shape`]: the following journal commitments
//! whose tree has its root on it), or, with
//! [`Options::check_every_node`] and where that finds nothing, gathered
//! by walking each commitment and checked node for node against what `db/`
//! holds. Either way the batch is rebuilt as one of ours, so the bytes
//! served afterwards are the reference's (compared on a sample of each
//! batch), its tail must reach a Bitcoin attestation and, when asked, each
//! attestation's block header must match. A commitment or group that fails
//! is a *bad entry*: reported with the key at fault, and the import goes
//! on (such commitments are still served from `db/` in place while it is
//! there).
//!
//! Resumable at any point: batches are written many to a transaction
//! ([`WRITE_COMMITMENTS`], [`WRITE_INTERVAL`]; one fsync each, never one
//! per commitment) together with the cursor ([`CURSOR_KEY`] in the store's
//! `meta` table: the first journal position not wholly done, and never past
//! a bad entry, so that the next run checks it again), so a crash or
//! Ctrl-C loses at most the work since the last transaction, and the next
//! run starts at the cursor and skips the commitments the store already
//! has. `db/` is opened through the read-only environment of
//! [`crate::refstore`] (never written).

pub mod groups;
pub mod shape;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::calendar::Commitment;
use crate::journal::JournalReader;
use crate::refstore::{self, REFERENCE_DB_DIR};
use crate::store::{commitment_bytes, CompletedBatch, Store};
use groups::{Checked, Headers, Lookahead, Rejected, Started, Walked, Walker};

/// The store's `meta` key holding the import's cursor: journal positions
/// below it are done.
pub const CURSOR_KEY: &str = "import-reference.cursor";
/// Commitments written per store transaction at most.
pub const WRITE_COMMITMENTS: usize = 100_000;
/// A transaction is written at least this often while batches wait.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(2);
/// LevelDB's block cache during the import (the walk reads each node once;
/// the cache mostly holds index blocks and the blocks of recent nodes).
pub const IMPORT_BLOCK_CACHE_BYTES: usize = 64 << 20;
/// Journal records read at a time.
const READ_CHUNK: usize = 4096;

/// A commitment that was not imported, and why.
#[derive(Debug, Clone)]
pub struct BadEntry {
    /// Its journal position.
    pub position: u64,
    /// The commitment, as served (`GET /timestamp/<hex>`).
    pub commitment: Vec<u8>,
    /// Why, naming the LevelDB key at fault.
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Where this run started in the journal (the saved cursor).
    pub start: u64,
    /// Journal records.
    pub journal: u64,
    /// Commitments imported by this run.
    pub imported: u64,
    /// Batches imported by this run.
    pub batches: u64,
    /// Commitments the store already had (a previous run, or our stamper).
    pub already: u64,
    /// Commitments that are a second journal record of the same bytes.
    pub duplicates: u64,
    /// Commitments without a record in `db/`: pending, for our stamper.
    pub not_in_db: u64,
    /// Bad entries.
    pub bad: u64,
    /// Time taken.
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "import-reference: {} commitments imported in {} batches, {} already in the store, \
             {} duplicate records, {} not in db/ (pending: otsd stamps them), {} bad entries; \
             journal positions {}..{}; {:.1} s ({:.0} commitments/s)",
            self.imported,
            self.batches,
            self.already,
            self.duplicates,
            self.not_in_db,
            self.bad,
            self.start,
            self.journal,
            secs,
            if secs > 0.0 {
                self.imported as f64 / secs
            } else {
                0.0
            }
        )
    }
}

/// How to run.
pub struct Options<'a> {
    /// The calendar directory (holding `journal`, `db/`, `store.redb`).
    pub dir: PathBuf,
    /// Checks each Bitcoin attestation's block header, when given.
    pub headers: Option<&'a mut dyn Headers>,
    /// Shows a progress bar (on a terminal).
    pub progress: bool,
    /// Starts at the journal's first record, not at the saved cursor.
    pub from_start: bool,
    /// Commitments per store transaction at most ([`WRITE_COMMITMENTS`]).
    pub commitments_per_transaction: usize,
    /// Compares every node of every batch's tree with `db/` instead of
    /// finding each batch whole from its first commitment's path
    /// ([`shape`]): reads about four records per commitment instead of a
    /// few dozen per batch.
    pub check_every_node: bool,
}

/// Runs the import; `bad` is told of each bad entry as it is found.
pub fn run(opts: Options<'_>, mut bad: impl FnMut(&BadEntry)) -> anyhow::Result<Summary> {
    let t0 = Instant::now();
    // A damaged table makes rusty-leveldb panic on each lookup in it; each
    // is caught and reported as a bad entry naming the key, so the panic
    // messages themselves would only be noise (one per key).
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let hook = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        if !refstore::is_leveldb_panic(info) {
            hook(info);
        }
    }));
    let result = run_inner(opts, &mut bad, t0);
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    result
}

fn run_inner(
    opts: Options<'_>,
    bad: &mut dyn FnMut(&BadEntry),
    t0: Instant,
) -> anyhow::Result<Summary> {
    let dir = &opts.dir;
    let db_dir = dir.join(REFERENCE_DB_DIR);
    if !db_dir.join("CURRENT").is_file() {
        anyhow::bail!("{}: no reference LevelDB store here", db_dir.display());
    }
    let journal = JournalReader::open(dir)
        .with_context(|| format!("opening the journal of {}", dir.display()))?;
    let store = Store::open(dir, journal.clone()).with_context(|| {
        format!(
            "opening the proof store of {} (is otsd running on it? stop it first)",
            dir.display()
        )
    })?;
    let db = refstore::open_read_only(&db_dir, IMPORT_BLOCK_CACHE_BYTES)?;
    let len = journal.durable_len();
    let start = if opts.from_start {
        0
    } else {
        store.meta_value(CURSOR_KEY)?.unwrap_or(0).min(len)
    };
    let per_txn = opts.commitments_per_transaction.max(1);
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(len - start);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} commitments ({per_sec}, ETA {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    // A store empty at the start holds, during this run, only what this
    // run wrote: proofs of earlier journal positions. A later record of
    // the same bytes would then be walked again and stored as a batch of
    // its own, serving the same bytes; so the per-record lookup in the
    // store is needed only for a store that had proofs before.
    let check_store = !store.is_empty()?;
    let mut run = Importer {
        check_store,
        store,
        walker: Walker::new(db, !opts.check_every_node),
        headers: opts.headers,
        sum: Summary {
            start,
            journal: len,
            ..Summary::default()
        },
        pending: Vec::new(),
        pending_n: 0,
        bad,
        first_bad: None,
    };
    let mut last_write = Instant::now();
    let mut ahead = Ahead {
        journal: &journal,
        next: start,
        end: len,
        records: VecDeque::new(),
        leaves: Vec::new(),
    };
    while ahead.next < len {
        let Some(record) = ahead.get(0)? else {
            break;
        };
        let position = ahead.next;
        let used = run.one(position, record, &mut ahead)?;
        ahead.advance(used);
        let pos = ahead.next;
        if run.pending_n >= per_txn
            || (!run.pending.is_empty() && last_write.elapsed() >= WRITE_INTERVAL)
        {
            run.write(pos)?;
            last_write = Instant::now();
        }
        if used > 1 || pos % READ_CHUNK as u64 == 0 {
            bar.set_position(pos - start);
            bar.set_message(format!("{} bad", run.sum.bad));
        }
    }
    let pos = ahead.next;
    while let Some(group) = run.walker.pop_oldest() {
        run.close(group)?;
    }
    run.write(pos)?;
    bar.finish_and_clear();
    if run.sum.imported > 0 {
        // Many transactions leave free pages behind (copy on write): give
        // them back, so that the store's size is its content's. Nobody else
        // has the store open (redb's lock), as compacting needs.
        run.store
            .compact()
            .context("compacting the store after the import")?;
    }
    let mut sum = run.sum;
    sum.elapsed = t0.elapsed();
    Ok(sum)
}

/// One run's state.
struct Importer<'a, 'b> {
    /// Whether each record is first looked up in the store.
    check_store: bool,
    store: Store,
    walker: Walker,
    headers: Option<&'a mut dyn Headers>,
    sum: Summary,
    /// Checked batches not yet written, and their commitments.
    pending: Vec<CompletedBatch>,
    pending_n: usize,
    bad: &'b mut dyn FnMut(&BadEntry),
    /// The journal position of the first bad entry of this run.
    first_bad: Option<u64>,
}

impl Importer<'_, '_> {
    /// The journal record at `position` (and, when it starts a batch found
    /// whole, the rest of that batch): how many records it took.
    fn one(
        &mut self,
        position: u64,
        record: Commitment,
        ahead: &mut dyn Lookahead,
    ) -> anyhow::Result<u64> {
        if self.check_store && in_store(&self.store, &record)? {
            self.sum.already += 1;
            return Ok(1);
        }
        let mut used = 1;
        match self.walker.walk(position, record) {
            Ok(Walked::NotInDb) => self.sum.not_in_db += 1,
            Ok(Walked::Duplicate) => self.sum.duplicates += 1,
            Ok(Walked::Grouped) => {}
            Ok(Walked::Starts(start)) => match self.walker.start(start, ahead)? {
                Started::Whole(group) => {
                    used = group.members.len() as u64;
                    self.close(group)?;
                }
                Started::Open => {}
            },
            Err(e) => self.report(BadEntry {
                position,
                commitment: commitment_bytes(&record).to_vec(),
                reason: e.to_string(),
            }),
        }
        while self.walker.should_close() {
            let Some(group) = self.walker.pop_oldest() else {
                break;
            };
            self.close(group)?;
        }
        Ok(used)
    }

    fn report(&mut self, entry: BadEntry) {
        self.sum.bad += 1;
        self.first_bad = Some(
            self.first_bad
                .map_or(entry.position, |b| b.min(entry.position)),
        );
        tracing::debug!(
            position = entry.position,
            commitment = %hex::encode(&entry.commitment),
            reason = %entry.reason,
            "import-reference: bad entry, not imported"
        );
        (self.bad)(&entry);
    }

    /// Checks a closed batch: queued for the store, or its commitments
    /// reported.
    fn close(&mut self, group: groups::Group) -> anyhow::Result<()> {
        let headers = self.headers.as_mut().map(|h| &mut **h as &mut dyn Headers);
        match self.walker.check(group, headers)? {
            Ok(Checked { batch }) => {
                self.pending_n += batch.commitments.len();
                self.pending.push(batch);
            }
            Err(Rejected { members, reason }) => {
                for (position, record) in members {
                    self.report(BadEntry {
                        position,
                        commitment: commitment_bytes(&record).to_vec(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the queued batches and the cursor in one transaction; `next`
    /// is the first journal position not yet read.
    fn write(&mut self, next: u64) -> anyhow::Result<()> {
        // Never past a bad entry: the next run checks it again (and
        // reports it while it is still bad).
        let cursor = self
            .walker
            .first_open()
            .unwrap_or(next)
            .min(next)
            .min(self.first_bad.unwrap_or(u64::MAX));
        self.sum.batches += self.pending.len() as u64;
        self.sum.imported += self.pending_n as u64;
        self.store
            .add_batches(std::mem::take(&mut self.pending), &[(CURSOR_KEY, cursor)])
            .context("writing imported batches to the store")?;
        self.pending_n = 0;
        Ok(())
    }
}

/// The journal from the next record to import on, read ahead for the
/// batches found whole, with their leaves.
struct Ahead<'j> {
    journal: &'j JournalReader,
    /// The journal position of `records[0]`.
    next: u64,
    /// The journal's length.
    end: u64,
    records: VecDeque<Commitment>,
    /// `leaf(records[i])`, for a prefix of `records`.
    leaves: Vec<[u8; 32]>,
}

impl Ahead<'_> {
    /// The record `i` places after the next; `None` past the journal's end.
    fn get(&mut self, i: usize) -> anyhow::Result<Option<Commitment>> {
        while self.records.len() <= i {
            let at = self.next + self.records.len() as u64;
            if at >= self.end {
                return Ok(None);
            }
            let want = READ_CHUNK.max(i + 1 - self.records.len());
            let more = self
                .journal
                .read_range(at, want.min((self.end - at) as usize))
                .context("reading the journal")?;
            if more.is_empty() {
                return Ok(None);
            }
            self.records.extend(more);
        }
        Ok(Some(self.records[i]))
    }

    /// Moves past `n` records.
    fn advance(&mut self, n: u64) {
        let n = (n as usize).min(self.records.len());
        self.records.drain(..n);
        self.leaves.drain(..n.min(self.leaves.len()));
        self.next += n as u64;
    }
}

impl shape::Leaves for Ahead<'_> {
    fn leaf(&mut self, i: usize) -> anyhow::Result<Option<[u8; 32]>> {
        if i > shape::MAX_BATCH {
            return Ok(None);
        }
        while self.leaves.len() <= i {
            let j = self.leaves.len();
            let Some(r) = self.get(j)? else {
                return Ok(None);
            };
            self.leaves.push(crate::store::leaf(&r));
        }
        Ok(Some(self.leaves[i]))
    }
}

impl Lookahead for Ahead<'_> {
    fn records(&mut self, n: usize) -> anyhow::Result<Vec<Commitment>> {
        if n > 0 {
            self.get(n - 1)?;
        }
        Ok(self.records.iter().take(n).copied().collect())
    }
}

/// Whether our store already serves `record` (the index says so and the
/// proof is there: an index key shared by another commitment is not it).
fn in_store(store: &Store, record: &Commitment) -> anyhow::Result<bool> {
    let c = commitment_bytes(record);
    Ok(store.contains(c)? && store.get_serialized(c)?.is_some())
}

/// Block headers from a file of `HEIGHT HEADER_HEX` lines (the fixture's
/// `headers.txt`, or any dump of the chain's headers).
pub struct HeadersFile(std::collections::HashMap<u64, [u8; 32]>);

/// Bytes of a block header.
const HEADER_LEN: usize = 80;
/// Where a header holds its merkle root.
const MERKLE_ROOT_AT: std::ops::Range<usize> = 36..68;

impl HeadersFile {
    /// Reads `path`.
    pub fn open(path: &Path) -> anyhow::Result<HeadersFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading headers from {}", path.display()))?;
        let mut map = std::collections::HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = || format!("{} line {}: not `HEIGHT HEADER_HEX`", path.display(), i + 1);
            let (h, hex_) = line.split_once(' ').with_context(bad)?;
            let height: u64 = h.parse().with_context(bad)?;
            let header = hex::decode(hex_.trim()).with_context(bad)?;
            if header.len() != HEADER_LEN {
                anyhow::bail!(bad());
            }
            let mut root = [0u8; 32];
            root.copy_from_slice(&header[MERKLE_ROOT_AT]);
            map.insert(height, root);
        }
        Ok(HeadersFile(map))
    }
}

impl Headers for HeadersFile {
    fn merkle_root(&mut self, height: u64) -> anyhow::Result<Option<[u8; 32]>> {
        Ok(self.0.get(&height).copied())
    }
}

/// Block headers from a Bitcoin node (`getblockhash`, `getblockheader`),
/// one request pair per height, cached.
pub struct NodeHeaders {
    client: ots_bitcoin::RpcClient,
    runtime: tokio::runtime::Runtime,
    cache: std::collections::HashMap<u64, Option<[u8; 32]>>,
}

impl NodeHeaders {
    /// A client of the node at `rpc`.
    pub fn new(rpc: ots_bitcoin::RpcConfig) -> anyhow::Result<NodeHeaders> {
        Ok(NodeHeaders {
            client: ots_bitcoin::RpcClient::new(rpc).context("the Bitcoin node's settings")?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime")?,
            cache: std::collections::HashMap::new(),
        })
    }
}

impl Headers for NodeHeaders {
    fn merkle_root(&mut self, height: u64) -> anyhow::Result<Option<[u8; 32]>> {
        if let Some(root) = self.cache.get(&height) {
            return Ok(*root);
        }
        let client = &self.client;
        let root = self.runtime.block_on(async {
            let Some(hash) = client.block_hash(height).await? else {
                return Ok::<_, ots_bitcoin::RpcError>(None);
            };
            Ok(client
                .block_header(&hash)
                .await?
                .map(|h| bitcoin::hashes::Hash::to_byte_array(h.merkle_root)))
        });
        let root = root.with_context(|| format!("asking the node for block {height}"))?;
        self.cache.insert(height, root);
        Ok(root)
    }
}
