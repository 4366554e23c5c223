//! Git commit timestamps in the reference's format (opentimestamps-client's
//! `otsclient/git.py`, `git_gpg_wrapper.py`, and python-opentimestamps'
//! `GitTreeTimestamper`), so commits signed by either wrapper verify with
//! either:
//!
//! * the timestamped message of a signed commit is
//!   `sha256(sha256(commit) ‖ sha256(signature))` ([`hash_signed_commit`]);
//! * the proof is appended to the PGP signature as an ASCII-armored block
//!   ([`ARMOR_HEADER`]…[`ARMOR_FOOTER`]): base64, 64 columns, of two
//!   version bytes (major 1, minor 1 = "tree rehashed") and the
//!   serialized timestamp ([`write_armored`], [`read_armored`]);
//! * with minor version 1 the first step is `append(tree)`, `sha256`, where
//!   `tree` is the commit's tree rehashed with SHA-256 as a Merkle tree
//!   ([`TreeHasher`]), so the timestamp of one file can be extracted
//!   (`ots git-extract`).
//!
//! Objects are read through one `git cat-file --batch` process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use base64::Engine;
use ots_proof::merkle::MerkleTree;
use ots_proof::op::sha256;
use ots_proof::{Op, Timestamp};
use thiserror::Error;

/// First line (and the blank line after it) of the armored timestamp.
pub const ARMOR_HEADER: &[u8] = b"-----BEGIN OPENTIMESTAMPS GIT TIMESTAMP-----\n\n";
/// Last line of the armored timestamp.
pub const ARMOR_FOOTER: &[u8] = b"-----END OPENTIMESTAMPS GIT TIMESTAMP-----\n";
/// The format's major version.
pub const MAJOR_VERSION: u8 = 1;
/// The minor version of timestamps whose first step commits to the
/// rehashed tree (the reference's `--rehash-trees`, its only way now).
pub const MINOR_REHASHED_TREE: u8 = 1;
/// Base64 columns in the armored block.
const ARMOR_COLUMNS: usize = 64;
/// The tag that makes a tree's nonce key unique to this purpose
/// (consensus-critical, from `GitTreeTimestamper`).
const NONCE_KEY_TAG: &[u8] = b"\x01\x89\x08\x0c\xfb\xd0\xe8\x08";
/// Git file modes of a tree and of a submodule (a commit).
const MODE_TREE: &str = "40000";
const MODE_SUBMODULE: &str = "160000";
/// Git file mode of a symbolic link (a blob holding the target).
const MODE_SYMLINK: &str = "120000";
/// Most bytes of one git object read into memory (a blob is hashed as it
/// is read, so this bounds trees and commits only).
pub const MAX_OBJECT_IN_MEMORY: u64 = 64 << 20;

/// What went wrong with git or the timestamp.
#[derive(Debug, Error)]
pub enum GitError {
    /// Running git failed.
    #[error("git: {0}")]
    Io(#[from] std::io::Error),
    /// git said no (an object that does not exist, not a repository).
    #[error("git: {0}")]
    Git(String),
    /// An object git returned could not be parsed.
    #[error("git object {0}: malformed")]
    Malformed(String),
    /// The tree is empty (the reference cannot timestamp one either).
    #[error("empty git tree {0}")]
    EmptyTree(String),
    /// A path that is not in the tree.
    #[error("Path {0:?} not found")]
    NotFound(String),
    /// A path that names a symbolic link (git-annex's are not supported).
    #[error("{0:?} is a symlink; see --annex")]
    Symlink(String),
    /// A path that names a tree or a submodule, not a file.
    #[error("Path {0:?} is not a blob")]
    NotABlob(String),
    /// A proof step beyond the format's limits.
    #[error("{0}")]
    Op(#[from] ots_proof::OpError),
}

/// `sha256(sha256(commit) ‖ sha256(signature))`: hashing each first keeps
/// the message within the protocol's limits however long they are.
pub fn hash_signed_commit(commit: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut both = sha256(commit).to_vec();
    both.extend_from_slice(&sha256(signature));
    sha256(&both)
}

/// The armored block of `timestamp` (its serialization without the
/// message), with version `MAJOR_VERSION.minor`.
pub fn write_armored(timestamp: &Timestamp, minor: u8) -> Result<Vec<u8>, ots_proof::EncodeError> {
    let mut raw = vec![MAJOR_VERSION, minor];
    timestamp.serialize_into(&mut raw)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut out = ARMOR_HEADER.to_vec();
    for line in b64.as_bytes().chunks(ARMOR_COLUMNS) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(ARMOR_FOOTER);
    Ok(out)
}

/// A timestamp found in a signature.
#[derive(Debug)]
pub struct Armored {
    /// The minor version ([`MINOR_REHASHED_TREE`] for a tree-rehashed one).
    pub minor: u8,
    /// The timestamp of [`hash_signed_commit`] of the commit and the PGP
    /// part of the signature.
    pub timestamp: Timestamp,
}

/// Why a signature's timestamp could not be read.
#[derive(Debug, Error)]
pub enum ArmorError {
    /// No armored timestamp in the signature.
    #[error("No timestamp found")]
    Missing,
    /// A major version we do not know.
    #[error("Can't verify timestamp; major version {0} not known")]
    Version(u8),
    /// Not base64, too short, or not a timestamp.
    #[error("Bad timestamp: {0}")]
    Bad(String),
}

/// The timestamp armored into `signature` of `commit` (the commit as it
/// was signed, without its `gpgsig` header).
pub fn read_armored(commit: &[u8], signature: &[u8]) -> Result<Armored, ArmorError> {
    let start = find(signature, ARMOR_HEADER).ok_or(ArmorError::Missing)?;
    let mut footer = b"\n".to_vec();
    footer.extend_from_slice(ARMOR_FOOTER);
    let end = find(signature, &footer).ok_or(ArmorError::Missing)?;
    let body_start = start + ARMOR_HEADER.len();
    if end < body_start {
        return Err(ArmorError::Bad("footer before header".into()));
    }
    let b64: Vec<u8> = signature[body_start..end]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| ArmorError::Bad(e.to_string()))?;
    if raw.len() < 2 {
        return Err(ArmorError::Bad("too short".into()));
    }
    if raw[0] != MAJOR_VERSION {
        return Err(ArmorError::Version(raw[0]));
    }
    let msg = hash_signed_commit(commit, &signature[..start]);
    let timestamp =
        Timestamp::deserialize(&raw[2..], &msg).map_err(|e| ArmorError::Bad(e.to_string()))?;
    Ok(Armored {
        minor: raw[1],
        timestamp,
    })
}

/// A signed commit object split into the commit as signed (without the
/// `gpgsig` header) and the signature (the header's value, with a final
/// newline); `None` when it is not signed.
pub fn split_signed_commit(object: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut unsigned = Vec::with_capacity(object.len());
    let mut sig: Option<Vec<u8>> = None;
    let mut in_sig = false;
    let mut in_headers = true;
    let mut lines = object.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if in_headers {
            if in_sig && line.first() == Some(&b' ') {
                let s = sig.get_or_insert_with(Vec::new);
                s.push(b'\n');
                s.extend_from_slice(&line[1..]);
                continue;
            }
            in_sig = false;
            if line.is_empty() {
                in_headers = false;
            } else if let Some(value) = line.strip_prefix(b"gpgsig ") {
                if sig.is_none() {
                    sig = Some(value.to_vec());
                    in_sig = true;
                    continue;
                }
            }
        }
        unsigned.extend_from_slice(line);
        if !last {
            unsigned.push(b'\n');
        }
    }
    let mut sig = sig?;
    sig.push(b'\n');
    Some((unsigned, sig))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One git object reader: a `git cat-file --batch` process in `dir`.
pub struct Objects {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Objects {
    /// Starts `git cat-file --batch` in `dir`.
    pub fn open(dir: &Path) -> Result<Objects, GitError> {
        let mut child = Command::new("git")
            .args(["cat-file", "--batch"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| GitError::Git("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| GitError::Git("no stdout".into()))?;
        Ok(Objects {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Asks for `name`; returns its type and size, the content next to be
    /// read.
    fn header(&mut self, name: &str) -> Result<(String, u64), GitError> {
        if name.contains(['\n', '\0']) {
            return Err(GitError::Git(format!("bad object name {name:?}")));
        }
        writeln!(self.stdin, "{name}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let line = line.trim_end();
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            [_, kind, size] => {
                let size = size
                    .parse()
                    .map_err(|_| GitError::Malformed(name.to_string()))?;
                Ok((kind.to_string(), size))
            }
            _ => Err(GitError::Git(format!("{name}: {line}"))),
        }
    }

    /// The content of `name`, which must be of type `kind` and at most
    /// [`MAX_OBJECT_IN_MEMORY`] bytes.
    pub fn read(&mut self, name: &str, kind: &str) -> Result<Vec<u8>, GitError> {
        let (actual, size) = self.header(name)?;
        let mut body = Vec::new();
        let limit = size.min(MAX_OBJECT_IN_MEMORY);
        (&mut self.stdout).take(limit).read_to_end(&mut body)?;
        if (body.len() as u64) < size {
            // Leave the process in step before refusing.
            std::io::copy(
                &mut (&mut self.stdout).take(size - body.len() as u64 + 1),
                &mut std::io::sink(),
            )?;
            return Err(GitError::Git(format!(
                "{name}: over {MAX_OBJECT_IN_MEMORY} bytes"
            )));
        }
        let mut newline = [0u8; 1];
        self.stdout.read_exact(&mut newline)?;
        if actual != kind {
            return Err(GitError::Git(format!("{name} is a {actual}, not a {kind}")));
        }
        Ok(body)
    }

    /// The SHA-256 of blob `sha`, hashed as it is read.
    fn blob_sha256(&mut self, sha: &str) -> Result<Vec<u8>, GitError> {
        let (kind, size) = self.header(sha)?;
        let digest = ots_proof::HashOp::Sha256.digest_reader((&mut self.stdout).take(size))?;
        let mut newline = [0u8; 1];
        self.stdout.read_exact(&mut newline)?;
        if kind != "blob" {
            return Err(GitError::Malformed(sha.to_string()));
        }
        Ok(digest)
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        // Closing stdin ends `git cat-file`; wait so no zombie is left.
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One entry of a git tree, in the tree's order.
#[derive(Debug, Clone)]
struct Entry {
    mode: String,
    name: String,
    sha: String,
}

fn parse_tree(sha: &str, raw: &[u8]) -> Result<Vec<Entry>, GitError> {
    let bad = || GitError::Malformed(sha.to_string());
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let nul = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        if nul < space || rest.len() < nul + 21 {
            return Err(bad());
        }
        let mode = String::from_utf8(rest[..space].to_vec()).map_err(|_| bad())?;
        let name = String::from_utf8_lossy(&rest[space + 1..nul]).into_owned();
        let sha = hex::encode(&rest[nul + 1..nul + 21]);
        out.push(Entry { mode, name, sha });
        rest = &rest[nul + 21..];
    }
    Ok(out)
}

/// A tree's nonced leaves and each entry's nonce steps.
type Leaves = (Vec<[u8; 32]>, Vec<[Op; 2]>);

/// A tree rehashed: its entries and each one's message.
struct Hashed {
    entries: Vec<Entry>,
    msgs: Vec<[u8; 32]>,
    msg: [u8; 32],
}

/// Rehashes git trees with SHA-256 as python-opentimestamps'
/// `GitTreeTimestamper` does (consensus-critical): a blob is the SHA-256
/// of its content, a submodule the SHA-256 of its commit id, a tree the
/// Merkle tip of its entries, each first nonced deterministically
/// (`nonce_key = sha256(all entry messages ‖ tag)`, `nonce1 =
/// sha256(msg ‖ key)`, `nonce2 = sha256(nonce1)`, prepended when
/// `nonce1[0]` is odd, appended otherwise, then `sha256`); a tree of one
/// entry is that entry's message.
pub struct TreeHasher {
    objects: Objects,
    memo: HashMap<String, [u8; 32]>,
}

/// A SHA-256 output as an array (every message here is one).
fn array(v: Vec<u8>) -> Result<[u8; 32], GitError> {
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| GitError::Malformed("a digest".into()))
}

/// The nonce steps of an entry with message `msg` under `key`.
fn nonce_ops(msg: &[u8], key: &[u8]) -> Result<[Op; 2], GitError> {
    let mut m = msg.to_vec();
    m.extend_from_slice(key);
    let nonce1 = sha256(&m);
    let nonce2 = sha256(&nonce1).to_vec();
    let side = if nonce1[0] & 1 == 1 {
        Op::prepend(nonce2)?
    } else {
        Op::append(nonce2)?
    };
    Ok([side, Op::Sha256])
}

impl TreeHasher {
    /// A hasher reading the repository in `dir`.
    pub fn open(dir: &Path) -> Result<TreeHasher, GitError> {
        Ok(TreeHasher {
            objects: Objects::open(dir)?,
            memo: HashMap::new(),
        })
    }

    /// The objects reader (for commits).
    pub fn objects(&mut self) -> &mut Objects {
        &mut self.objects
    }

    fn entry_msg(&mut self, entry: &Entry) -> Result<[u8; 32], GitError> {
        if let Some(m) = self.memo.get(&entry.sha) {
            return Ok(*m);
        }
        let msg = match entry.mode.as_str() {
            MODE_TREE => self.hash_tree(&entry.sha)?.msg,
            MODE_SUBMODULE => {
                let id =
                    hex::decode(&entry.sha).map_err(|_| GitError::Malformed(entry.sha.clone()))?;
                sha256(&id)
            }
            _ => array(self.objects.blob_sha256(&entry.sha)?)?,
        };
        self.memo.insert(entry.sha.clone(), msg);
        Ok(msg)
    }

    fn hash_tree(&mut self, sha: &str) -> Result<Hashed, GitError> {
        let raw = self.objects.read(sha, "tree")?;
        let entries = parse_tree(sha, &raw)?;
        if entries.is_empty() {
            return Err(GitError::EmptyTree(sha.to_string()));
        }
        let mut msgs = Vec::with_capacity(entries.len());
        for e in &entries {
            msgs.push(self.entry_msg(e)?);
        }
        let msg = if msgs.len() == 1 {
            msgs[0]
        } else {
            let (leaves, _) = self.leaves(&msgs)?;
            MerkleTree::new(leaves)
                .ok_or_else(|| GitError::EmptyTree(sha.to_string()))?
                .root()
        };
        self.memo.insert(sha.to_string(), msg);
        Ok(Hashed { entries, msgs, msg })
    }

    /// The nonced leaves of a tree of several entries, and each entry's
    /// nonce steps.
    fn leaves(&self, msgs: &[[u8; 32]]) -> Result<Leaves, GitError> {
        let mut sum: Vec<u8> = msgs.concat();
        sum.extend_from_slice(NONCE_KEY_TAG);
        let key = sha256(&sum);
        let mut leaves = Vec::with_capacity(msgs.len());
        let mut steps = Vec::with_capacity(msgs.len());
        for m in msgs {
            let ops = nonce_ops(m, &key)?;
            let leaf = ots_proof::verify::replay(m, &ops)?;
            leaves.push(array(leaf)?);
            steps.push(ops);
        }
        Ok((leaves, steps))
    }

    /// The rehashed message of tree `sha` (the commit's tree).
    pub fn tree_msg(&mut self, sha: &str) -> Result<[u8; 32], GitError> {
        Ok(self.hash_tree(sha)?.msg)
    }

    /// The timestamp of the file at `path` (`/`-separated, from the root of
    /// tree `sha`): from the SHA-256 of its content up to the tree's
    /// rehashed message. Returns it and that message.
    pub fn file_timestamp(
        &mut self,
        sha: &str,
        path: &str,
    ) -> Result<(Timestamp, [u8; 32]), GitError> {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.is_empty() {
            return Err(GitError::NotABlob(path.to_string()));
        }
        // Steps from each level's entry up to its tree, deepest last.
        let mut levels: Vec<Vec<Op>> = Vec::new();
        let mut tree = sha.to_string();
        let mut root = None;
        let mut leaf_msg = None;
        for (depth, part) in parts.iter().enumerate() {
            let hashed = self.hash_tree(&tree)?;
            root.get_or_insert(hashed.msg);
            let index = hashed
                .entries
                .iter()
                .position(|e| e.name == *part)
                .ok_or_else(|| GitError::NotFound(path.to_string()))?;
            let entry = hashed.entries[index].clone();
            let mut ops = Vec::new();
            if hashed.msgs.len() > 1 {
                let (leaves, steps) = self.leaves(&hashed.msgs)?;
                ops.extend(steps[index].iter().cloned());
                let merkle =
                    MerkleTree::new(leaves).ok_or_else(|| GitError::EmptyTree(tree.clone()))?;
                ops.extend(
                    merkle
                        .path(index)
                        .ok_or_else(|| GitError::Malformed(tree.clone()))?,
                );
            }
            levels.push(ops);
            let last = depth + 1 == parts.len();
            match (entry.mode.as_str(), last) {
                (MODE_TREE, false) => tree = entry.sha.clone(),
                (_, false) => return Err(GitError::NotFound(path.to_string())),
                (MODE_TREE | MODE_SUBMODULE, true) => {
                    return Err(GitError::NotABlob(path.to_string()))
                }
                (MODE_SYMLINK, true) => return Err(GitError::Symlink(path.to_string())),
                (_, true) => leaf_msg = Some(hashed.msgs[index]),
            }
        }
        let leaf = leaf_msg.ok_or_else(|| GitError::NotFound(path.to_string()))?;
        let root = root.ok_or_else(|| GitError::NotFound(path.to_string()))?;
        let mut timestamp = Timestamp::new(leaf.to_vec())?;
        let ops: Vec<Op> = levels.into_iter().rev().flatten().collect();
        let end = timestamp.add_path(ops)?;
        if end.msg() != root {
            return Err(GitError::Malformed(sha.to_string()));
        }
        Ok((timestamp, root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armor_round_trips() {
        let commit = b"tree 0000\nauthor x\n\nmsg\n";
        let sig = b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        let mut t = Timestamp::new(hash_signed_commit(commit, sig).to_vec()).unwrap();
        t.add_op(Op::Sha256)
            .unwrap()
            .add_attestation(ots_proof::Attestation::Bitcoin { height: 5 });
        let mut full = sig.to_vec();
        full.extend(write_armored(&t, MINOR_REHASHED_TREE).unwrap());
        let a = read_armored(commit, &full).unwrap();
        assert_eq!(a.minor, 1);
        assert_eq!(a.timestamp, t);
        assert!(matches!(
            read_armored(commit, sig),
            Err(ArmorError::Missing)
        ));
    }

    #[test]
    fn signed_commits_split_like_git_signs_them() {
        let object = b"tree abc\nparent def\nauthor a\ncommitter c\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n xyz\n -----END PGP SIGNATURE-----\n\nmessage\n\nbody\n";
        let (unsigned, sig) = split_signed_commit(object).unwrap();
        assert_eq!(
            unsigned,
            b"tree abc\nparent def\nauthor a\ncommitter c\n\nmessage\n\nbody\n".to_vec()
        );
        assert_eq!(
            sig,
            b"-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n".to_vec()
        );
        assert!(split_signed_commit(b"tree abc\n\nmsg\n").is_none());
    }
}
