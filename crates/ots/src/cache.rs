//! The local cache of calendar replies, in the reference client's layout so
//! that both clients share it: `<dir>/version` holds `1.0`, and the
//! timestamp of a commitment `c` lives in `<dir>/c0/c1/c2/c3/<hex c>` (one
//! directory level per leading byte), serialized bare.
//!
//! The cache is an optimisation: a missing or unreadable entry is a miss,
//! never an error, and writes are atomic (temporary file, then rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use ots_proof::Timestamp;

/// Version written to, and required in, `<dir>/version`.
pub const CACHE_VERSION: &str = "1.0";
/// Shortest commitment the layout can hold (four directory levels).
const MIN_KEY_LEN: usize = 4;
/// Longer commitments are not cached (file name length).
const MAX_KEY_LEN: usize = 64;

/// The cache, or none.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
}

/// The reference client's default: `$XDG_CACHE_HOME/ots` or `~/.cache/ots`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("ots"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("ots"))
}

impl Cache {
    /// No cache.
    pub fn disabled() -> Self {
        Cache { dir: None }
    }

    /// The cache in `dir`, created if needed. An existing cache of another
    /// major version is an error: we will not write into a layout we do
    /// not know.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let version_file = dir.join("version");
        match std::fs::read_to_string(&version_file) {
            Ok(v) => {
                if v.trim().split('.').next() != Some("1") {
                    return Err(format!(
                        "unknown timestamp cache version {:?} in {}",
                        v.trim(),
                        version_file.display()
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&version_file, format!("{CACHE_VERSION}\n")))
                    .map_err(|e| format!("cannot create cache {}: {e}", dir.display()))?;
            }
            Err(e) => return Err(format!("cannot read {}: {e}", version_file.display())),
        }
        Ok(Cache {
            dir: Some(dir.to_path_buf()),
        })
    }

    fn path(&self, commitment: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&commitment.len()) {
            return None;
        }
        let mut path = dir.clone();
        for byte in &commitment[..MIN_KEY_LEN] {
            path.push(hex::encode([*byte]));
        }
        path.push(hex::encode(commitment));
        Some(path)
    }

    /// The cached timestamp of `commitment`, if any (and if it decodes).
    pub fn get(&self, commitment: &[u8]) -> Option<Timestamp> {
        let bytes = std::fs::read(self.path(commitment)?).ok()?;
        Timestamp::deserialize(&bytes, commitment).ok()
    }

    /// Merges `timestamp` into the cached entry of its message.
    pub fn merge(&self, timestamp: &Timestamp) -> std::io::Result<()> {
        let Some(path) = self.path(timestamp.msg()) else {
            return Ok(());
        };
        let mut merged = self
            .get(timestamp.msg())
            .unwrap_or_else(|| timestamp.clone());
        // Same message by construction, so merge cannot fail.
        let _ = merged.merge(timestamp.clone());
        let bytes = merged
            .serialize()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".tmp-{}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_proof::Attestation;

    #[test]
    fn round_trip_in_reference_layout() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let commitment = [0xab; 44];
        assert!(cache.get(&commitment).is_none());
        let mut t = Timestamp::new(commitment.to_vec()).unwrap();
        t.add_attestation(Attestation::Bitcoin { height: 5 });
        cache.merge(&t).unwrap();
        assert_eq!(cache.get(&commitment), Some(t.clone()));
        assert!(dir
            .path()
            .join("ab/ab/ab/ab")
            .join(hex::encode(commitment))
            .is_file());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("version")).unwrap(),
            "1.0\n"
        );

        let mut u = Timestamp::new(commitment.to_vec()).unwrap();
        u.add_attestation(Attestation::Bitcoin { height: 6 });
        cache.merge(&u).unwrap();
        assert_eq!(cache.get(&commitment).unwrap().attestations().len(), 2);
    }

    #[test]
    fn foreign_version_is_refused_and_disabled_cache_is_inert() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("version"), "2.0\n").unwrap();
        assert!(Cache::open(dir.path()).is_err());
        let none = Cache::disabled();
        let t = {
            let mut t = Timestamp::new(vec![1; 32]).unwrap();
            t.add_attestation(Attestation::Bitcoin { height: 1 });
            t
        };
        none.merge(&t).unwrap();
        assert!(none.get(&[1; 32]).is_none());
    }
}
