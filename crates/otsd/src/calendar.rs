//! The calendar directory (`uri`, `donation_addr`, `hmac-key`) and the
//! calendar commitment: time prefix plus the HMAC of PROTOCOL §2.
//!
//! A commitment is 44 bytes: `t (4 bytes, big-endian unix time) ‖ tip (32) ‖
//! mac (8)`, where `mac = sha256(t ‖ tip ‖ k_t)[..8]` and `k_t` is derived
//! from the secret key by a 32-level binary tree (one level per bit of `t`,
//! most significant first). The tree lets an operator later reveal the keys
//! of a time range without revealing the others; the MAC lets the calendar
//! recognise its own commitments (and detect journal corruption).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ots_proof::op::sha256;
use ots_proof::Attestation;
use rand::RngCore;

/// File holding the calendar's public URI (what goes into
/// `PendingAttestation`).
pub const URI_FILE: &str = "uri";
/// File holding the donation address shown on the info page.
pub const DONATION_ADDR_FILE: &str = "donation_addr";
/// File holding the secret HMAC key. Never served, never logged.
pub const HMAC_KEY_FILE: &str = "hmac-key";
/// Name of the journal file in the calendar directory (the journal module
/// owns its format; the directory's layout is this module's).
pub const JOURNAL_FILE: &str = "journal";
/// Length of a freshly generated HMAC key.
pub const HMAC_KEY_LEN: usize = 32;
/// Length of the time prefix of a commitment.
pub const TIME_LEN: usize = 4;
/// Length of the aggregation tip inside a commitment.
pub const TIP_LEN: usize = 32;
/// Length of the MAC suffix ("if you can make 64-bit hash collisions we'll
/// let you add your junk to our calendar", says the reference).
pub const MAC_LEN: usize = 8;
/// Length of a calendar commitment, and of a journal record.
pub const COMMITMENT_LEN: usize = TIME_LEN + TIP_LEN + MAC_LEN;
/// Number of levels of the key-derivation tree: one per bit of `t`.
pub const KEY_TREE_DEPTH: usize = 32;

/// A calendar commitment: `time ‖ tip ‖ mac`.
pub type Commitment = [u8; COMMITMENT_LEN];

/// Errors opening or initialising a calendar directory.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `init` was asked to overwrite an existing secret key.
    #[error("{0} already exists; refusing to overwrite the calendar's secret key")]
    KeyExists(PathBuf),
    /// `init` on a directory whose journal holds commitments but whose key
    /// is gone: a new key would fail every old record's MAC.
    #[error("{key} is missing but {journal} holds {bytes} bytes of commitments made with the old key; restore hmac-key from a backup (a new key cannot check them), or move the journal away to start a new calendar")]
    KeyLost {
        /// The missing key file.
        key: PathBuf,
        /// The journal.
        journal: PathBuf,
        /// The journal's length.
        bytes: u64,
    },
    /// The URI cannot go into a `PendingAttestation`.
    #[error("invalid calendar uri {uri:?}: {source}")]
    BadUri {
        /// The URI as read.
        uri: String,
        /// Why it is refused.
        source: ots_proof::UriError,
    },
    /// The key file is empty.
    #[error("{0} is empty")]
    EmptyKey(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CalendarError + '_ {
    move |source| CalendarError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The calendar's secret key. `Debug` never shows it.
#[derive(Clone)]
pub struct HmacKey(Vec<u8>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<secret>)")
    }
}

impl HmacKey {
    /// Wraps raw key bytes. Reference calendars read the file as it is, so
    /// any non-empty length is accepted; `init` always writes 32 bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        HmacKey(bytes)
    }

    /// `k_t`, computed from scratch: 32 hashes. See [`KeyDeriver`] for the
    /// incremental version used on the hot path.
    pub fn derive(&self, t: u32) -> [u8; 32] {
        let mut deriver = KeyDeriver::new(self.clone());
        deriver.key_for(t)
    }
}

/// Derives `k_t` for successive times, reusing the shared prefix of the
/// derivation path: consecutive times differ in their low bits only, so a
/// round usually costs a handful of hashes instead of 32, and verifying a
/// whole journal at start-up stays cheap.
#[derive(Debug, Clone)]
pub struct KeyDeriver {
    key: HmacKey,
    /// `path[i]` is the key after the `i` most significant bits of `last`.
    path: Vec<[u8; 32]>,
    last: Option<u32>,
}

impl KeyDeriver {
    /// A deriver for `key`.
    pub fn new(key: HmacKey) -> Self {
        KeyDeriver {
            key,
            path: Vec::with_capacity(KEY_TREE_DEPTH + 1),
            last: None,
        }
    }

    /// `k_t`: for each bit of `t` from the most significant,
    /// `k = sha256(k ‖ 0xff)` if the bit is 1, else `sha256(k ‖ 0x00)`.
    pub fn key_for(&mut self, t: u32) -> [u8; 32] {
        // Levels shared with the previous time are kept.
        let keep = match self.last {
            Some(last) => (last ^ t).leading_zeros() as usize,
            None => 0,
        };
        self.path.truncate(keep.min(self.path.len()));
        let mut buf = Vec::with_capacity(self.key.0.len().max(32) + 1);
        for level in self.path.len()..KEY_TREE_DEPTH {
            buf.clear();
            match level {
                0 => buf.extend_from_slice(&self.key.0),
                _ => buf.extend_from_slice(&self.path[level - 1]),
            }
            let bit = (t >> (KEY_TREE_DEPTH - 1 - level)) & 1;
            buf.push(if bit == 1 { 0xff } else { 0x00 });
            self.path.push(sha256(&buf));
        }
        self.last = Some(t);
        self.path[KEY_TREE_DEPTH - 1]
    }

    /// The MAC of `t ‖ tip`: `sha256(t ‖ tip ‖ k_t)[..8]`.
    pub fn mac(&mut self, t: u32, tip: &[u8; TIP_LEN]) -> [u8; MAC_LEN] {
        let k = self.key_for(t);
        let mut buf = [0u8; TIME_LEN + TIP_LEN + 32];
        buf[..TIME_LEN].copy_from_slice(&t.to_be_bytes());
        buf[TIME_LEN..TIME_LEN + TIP_LEN].copy_from_slice(tip);
        buf[TIME_LEN + TIP_LEN..].copy_from_slice(&k);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&sha256(&buf)[..MAC_LEN]);
        mac
    }

    /// The commitment of `tip` at time `t`.
    pub fn commitment(&mut self, t: u32, tip: &[u8; TIP_LEN]) -> Commitment {
        let mac = self.mac(t, tip);
        let mut c = [0u8; COMMITMENT_LEN];
        c[..TIME_LEN].copy_from_slice(&t.to_be_bytes());
        c[TIME_LEN..TIME_LEN + TIP_LEN].copy_from_slice(tip);
        c[TIME_LEN + TIP_LEN..].copy_from_slice(&mac);
        c
    }

    /// Whether the record's MAC is right. A record whose MAC is all zeros
    /// is a reference-format record without MAC (early journals, or the
    /// zero padding the reference writes after a torn tail): it cannot be
    /// checked, so the caller counts it instead.
    pub fn verify(&mut self, record: &Commitment) -> bool {
        let (t, tip, mac) = split(record);
        self.mac(t, tip) == *mac
    }
}

/// The parts of a commitment: time, tip, mac.
pub fn split(c: &Commitment) -> (u32, &[u8; TIP_LEN], &[u8; MAC_LEN]) {
    let (t, rest) = c.split_at(TIME_LEN);
    let (tip, mac) = rest.split_at(TIP_LEN);
    let t = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
    // The split lengths are constants, so these conversions cannot fail.
    (
        t,
        tip.try_into().expect("tip"),
        mac.try_into().expect("mac"),
    )
}

/// Whether a record carries no MAC (all-zero suffix; see
/// [`KeyDeriver::verify`]).
pub fn has_no_mac(c: &Commitment) -> bool {
    c[TIME_LEN + TIP_LEN..].iter().all(|&b| b == 0)
}

/// An open calendar directory.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The directory.
    pub dir: PathBuf,
    /// The URI that goes into every `PendingAttestation`.
    pub uri: String,
    /// The donation address (empty if the file is absent).
    pub donation_addr: String,
    /// The secret key.
    pub key: HmacKey,
}

impl Calendar {
    /// Creates `dir` with `uri`, `donation_addr` and a fresh random
    /// `hmac-key` (mode 0600). Refuses to overwrite an existing key; `uri`
    /// and `donation_addr` are rewritten.
    pub fn init(dir: &Path, uri: &str, donation_addr: &str) -> Result<(), CalendarError> {
        Attestation::pending(uri).map_err(|source| CalendarError::BadUri {
            uri: uri.to_owned(),
            source,
        })?;
        let key_path = dir.join(HMAC_KEY_FILE);
        let journal = dir.join(JOURNAL_FILE);
        // Checked before anything is written: a refused init leaves the
        // directory as it was (`uri` included).
        if let Ok(meta) = fs::metadata(&journal) {
            if meta.len() > 0 && !key_path.exists() {
                return Err(CalendarError::KeyLost {
                    key: key_path,
                    journal,
                    bytes: meta.len(),
                });
            }
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut key = [0u8; HMAC_KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        // create_new: an existing key, even an empty one, is never replaced.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => CalendarError::KeyExists(key_path.clone()),
                _ => CalendarError::Io {
                    path: key_path.clone(),
                    source: e,
                },
            })?;
        f.write_all(&key).map_err(io_err(&key_path))?;
        f.sync_all().map_err(io_err(&key_path))?;
        write_atomic(&dir.join(URI_FILE), format!("{uri}\n").as_bytes())?;
        write_atomic(
            &dir.join(DONATION_ADDR_FILE),
            format!("{donation_addr}\n").as_bytes(),
        )?;
        sync_dir(dir)
    }

    /// Opens an existing calendar directory.
    pub fn open(dir: &Path) -> Result<Calendar, CalendarError> {
        let uri_path = dir.join(URI_FILE);
        let uri = fs::read_to_string(&uri_path)
            .map_err(io_err(&uri_path))?
            .trim()
            .to_owned();
        Attestation::pending(uri.as_str()).map_err(|source| CalendarError::BadUri {
            uri: uri.clone(),
            source,
        })?;
        let addr_path = dir.join(DONATION_ADDR_FILE);
        let donation_addr = match fs::read_to_string(&addr_path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&addr_path)(e)),
        };
        let key_path = dir.join(HMAC_KEY_FILE);
        let key = fs::read(&key_path).map_err(io_err(&key_path))?;
        if key.is_empty() {
            return Err(CalendarError::EmptyKey(key_path));
        }
        Ok(Calendar {
            dir: dir.to_path_buf(),
            uri,
            donation_addr,
            key: HmacKey::new(key),
        })
    }

    /// The attestation every commitment of this calendar carries.
    pub fn pending_attestation(&self) -> Attestation {
        // `open` checked the URI.
        Attestation::pending(self.uri.as_str()).expect("uri checked at open")
    }
}

/// Replaces `path` atomically: temp file, fsync, rename, fsync the
/// directory. A crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CalendarError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

/// fsyncs a directory, so that a rename or a new file in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), CalendarError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Independent derivation, written from PROTOCOL §2 with another
    /// sha256 implementation and no caching.
    fn reference_key(key: &[u8], t: u32) -> Vec<u8> {
        let mut k = key.to_vec();
        for bit in (0..32).rev() {
            let mut h = Sha256::new();
            h.update(&k);
            h.update([if (t >> bit) & 1 == 1 { 0xff } else { 0x00 }]);
            k = h.finalize().to_vec();
        }
        k
    }

    #[test]
    fn key_derivation_vector() {
        // Vector computed independently (python: hashlib, the reference's
        // derive_key_for_idx) for key = 32 bytes of 0x00 .. 0x1f.
        let key: Vec<u8> = (0u8..32).collect();
        let k = HmacKey::new(key.clone()).derive(1_700_000_000);
        assert_eq!(k.to_vec(), reference_key(&key, 1_700_000_000));
        assert_eq!(
            hex::encode(k),
            "0dd6ae08dcc8172c454ea221df57b3455e6b9f0b6f1212ad40d48772b104a60c"
        );
        // And the MAC of tip = 32 bytes of 0x09 at that time.
        let mut d = KeyDeriver::new(HmacKey::new(key));
        assert_eq!(
            hex::encode(d.mac(1_700_000_000, &[9; 32])),
            "a7af70e8945eed12"
        );
    }

    #[test]
    fn incremental_derivation_matches_from_scratch() {
        let key: Vec<u8> = b"calendar secret".to_vec();
        let mut d = KeyDeriver::new(HmacKey::new(key.clone()));
        for t in [
            0u32,
            1,
            2,
            3,
            1_700_000_000,
            1_700_000_001,
            1_699_999_999,
            u32::MAX,
            5,
        ] {
            assert_eq!(d.key_for(t).to_vec(), reference_key(&key, t), "t={t}");
        }
    }

    #[test]
    fn commitment_layout_and_mac() {
        let key = HmacKey::new(vec![7; 32]);
        let mut d = KeyDeriver::new(key.clone());
        let tip = [9u8; 32];
        let c = d.commitment(0x01020304, &tip);
        assert_eq!(&c[..4], &[1, 2, 3, 4]);
        assert_eq!(&c[4..36], &tip);
        let k = reference_key(&[7; 32], 0x01020304);
        let expect = Sha256::digest([&c[..36], &k[..]].concat());
        assert_eq!(&c[36..], &expect[..8]);
        assert!(d.verify(&c));
        let mut bad = c;
        bad[10] ^= 1;
        assert!(!d.verify(&bad));
    }

    #[test]
    fn init_then_open_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let cal = dir.path().join("cal");
        Calendar::init(&cal, "https://example.org", "bcrt1qexample").unwrap();
        let c = Calendar::open(&cal).unwrap();
        assert_eq!(c.uri, "https://example.org");
        assert_eq!(c.donation_addr, "bcrt1qexample");
        let meta = fs::metadata(cal.join(HMAC_KEY_FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), HMAC_KEY_LEN as u64);
        let key_before = fs::read(cal.join(HMAC_KEY_FILE)).unwrap();
        assert!(matches!(
            Calendar::init(&cal, "https://example.org", "x"),
            Err(CalendarError::KeyExists(_))
        ));
        assert_eq!(fs::read(cal.join(HMAC_KEY_FILE)).unwrap(), key_before);
        assert!(matches!(
            Calendar::init(&dir.path().join("other"), "bad uri!", "x"),
            Err(CalendarError::BadUri { .. })
        ));
    }

    #[test]
    fn init_refuses_a_new_key_over_a_journal_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cal = dir.path().join("cal");
        Calendar::init(&cal, "https://example.org", "").unwrap();
        fs::write(cal.join(JOURNAL_FILE), [7u8; 88]).unwrap();
        fs::remove_file(cal.join(HMAC_KEY_FILE)).unwrap();
        let err = Calendar::init(&cal, "http://127.0.0.1:1", "").unwrap_err();
        assert!(
            matches!(err, CalendarError::KeyLost { bytes: 88, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("restore hmac-key"), "{err}");
        assert!(!cal.join(HMAC_KEY_FILE).exists(), "no new key written");
        assert_eq!(
            fs::read_to_string(cal.join(URI_FILE)).unwrap(),
            "https://example.org\n",
            "uri left as it was"
        );
        // An empty journal holds nothing a new key could orphan.
        fs::write(cal.join(JOURNAL_FILE), []).unwrap();
        Calendar::init(&cal, "http://127.0.0.1:1", "").unwrap();
    }
}
