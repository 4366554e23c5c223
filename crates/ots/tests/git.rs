//! The git integration end to end, with real `git` and `gpg`: a throwaway
//! key in a temp GNUPGHOME, a temp repository whose `gpg.program` is a
//! script running `ots git-gpg-wrapper` against a real `otsd --dev`; the
//! signed commit's timestamp is upgraded from the calendar and verified by
//! `git log --show-signature` once devchain has mined it, and
//! `ots git-extract` gives one file's proof, which `ots upgrade` and
//! `ots verify` complete and check. When `OTS_REFERENCE_CLIENT` is set,
//! the reference's `ots-git-gpg-wrapper` (beside it) verifies our commit,
//! its `git-extract` gives the same proof bytes as ours, and our wrapper
//! verifies a commit the reference's signed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{has_line, ots, reference_client, stderr, DevCalendar, REFERENCE_SKIPPED};

/// How long a commit's timestamp may take to be complete on --dev.
const COMPLETE_LIMIT: Duration = Duration::from_secs(120);
/// The test key's user id.
const KEY_UID: &str = "OTS Test <ots-test@example.org>";

struct Repo {
    dir: PathBuf,
    gnupg: PathBuf,
}

impl Repo {
    fn git(&self, args: &[&str], cwd: &Path) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GNUPGHOME", &self.gnupg)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.dir.parent().unwrap())
            .env_remove("GIT_DIR")
            .output()
            .unwrap()
    }

    fn git_ok(&self, args: &[&str]) -> String {
        let out = self.git(args, &self.dir);
        assert!(
            out.status.success(),
            "git {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `git log --show-signature -1 REV` with `gpg.program` set to `script`:
    /// everything it printed.
    fn show_signature(&self, script: &Path, rev: &str) -> String {
        let program = format!("gpg.program={}", script.display());
        let out = self.git(
            &["-c", &program, "log", "--show-signature", "-1", rev],
            &self.dir,
        );
        format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    }
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A temp dir with a GNUPGHOME holding a fresh key without passphrase,
/// and a repository with three files in two directories.
fn setup(top: &Path) -> Repo {
    let gnupg = top.join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new("gpg")
        .args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            KEY_UID,
            "future-default",
            "default",
            "never",
        ])
        .env("GNUPGHOME", &gnupg)
        .output()
        .unwrap();
    assert!(out.status.success(), "gpg: {}", stderr(&out));
    let dir = top.join("repo");
    std::fs::create_dir_all(dir.join("dir")).unwrap();
    let repo = Repo { dir, gnupg };
    repo.git_ok(&["init", "-q"]);
    repo.git_ok(&["config", "user.name", "OTS Test"]);
    repo.git_ok(&["config", "user.email", "ots-test@example.org"]);
    repo.git_ok(&["config", "user.signingkey", "ots-test@example.org"]);
    std::fs::write(repo.dir.join("a.txt"), b"file a\n").unwrap();
    std::fs::write(repo.dir.join("dir/b.txt"), b"file b\n").unwrap();
    std::fs::write(repo.dir.join("dir/c.txt"), b"file c\n").unwrap();
    std::os::unix::fs::symlink("a.txt", repo.dir.join("link")).unwrap();
    repo.git_ok(&["add", "."]);
    repo
}

/// Polls `git log --show-signature` until the timestamp verifies.
fn until_good_timestamp(repo: &Repo, script: &Path, rev: &str) -> String {
    let started = Instant::now();
    loop {
        let shown = repo.show_signature(script, rev);
        if shown.contains("Good timestamp") {
            return shown;
        }
        assert!(
            shown.contains("Could not verify timestamp!"),
            "neither good nor pending: {shown}"
        );
        assert!(
            started.elapsed() < COMPLETE_LIMIT,
            "no good timestamp within {COMPLETE_LIMIT:?}: {shown}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn git_commits_are_signed_timestamped_verified_and_extracted() {
    let cal = DevCalendar::start();
    let top = tempfile::tempdir().unwrap();
    let repo = setup(top.path());
    let ots_exe = env!("CARGO_BIN_EXE_ots");
    let ours = top.path().join("ots-wrapper.sh");
    write_script(
        &ours,
        &format!(
            "exec {ots_exe} --no-cache -l {url} --btc-regtest --bitcoin-node {rpc} git-gpg-wrapper -c {url} -m 1 -- \"$@\"",
            url = cal.url,
            rpc = cal.rpc_url
        ),
    );
    let program = format!("gpg.program={}", ours.display());
    repo.git_ok(&["-c", &program, "commit", "-q", "-S", "-m", "timestamped"]);
    let object = repo.git_ok(&["cat-file", "commit", "HEAD"]);
    assert!(object.contains("-----BEGIN PGP SIGNATURE-----"), "{object}");
    assert!(
        object.contains(" -----BEGIN OPENTIMESTAMPS GIT TIMESTAMP-----"),
        "{object}"
    );

    // The file's proof, extracted before the calendar completes it.
    let out = ots(&["git-extract", "dir/b.txt"], &repo.dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // From a subdirectory, a path relative to it, to a named file.
    let out = ots(
        &["git-extract", "c.txt", "../c.txt.ots", "HEAD"],
        &repo.dir.join("dir"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let b_proof = std::fs::read(repo.dir.join("dir/b.txt.ots")).unwrap();

    let shown = until_good_timestamp(&repo, &ours, "HEAD");
    assert!(shown.contains("Good signature from \"OTS Test"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("Success! Bitcoin block ")),
        "{shown}"
    );

    // The extracted proofs upgrade from the calendar and verify against
    // the files.
    for (proof, cwd) in [
        ("dir/b.txt.ots", repo.dir.clone()),
        ("c.txt.ots", repo.dir.clone()),
    ] {
        let out = ots(&["-l", &cal.url, "upgrade", proof], &cwd);
        assert_eq!(out.status.code(), Some(0), "{proof}: {}", stderr(&out));
    }
    let out = ots(
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            "dir/b.txt.ots",
        ],
        &repo.dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ots(
        &[
            "--btc-regtest",
            "--bitcoin-node",
            &cal.rpc_url,
            "verify",
            "-f",
            "dir/c.txt",
            "c.txt.ots",
        ],
        &repo.dir,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Another file's content does not verify with it.
    let out = ots(
        &["--no-bitcoin", "verify", "-f", "a.txt", "c.txt.ots"],
        &repo.dir,
    );
    assert!(
        has_line(&stderr(&out), "File does not match original!"),
        "{}",
        stderr(&out)
    );

    // Errors in the reference's words.
    let out = ots(&["git-extract", "nope.txt", "x.ots"], &repo.dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        has_line(&stderr(&out), "Path \"nope.txt\" not found"),
        "{}",
        stderr(&out)
    );
    let out = ots(&["git-extract", "dir", "x.ots"], &repo.dir);
    assert!(
        has_line(&stderr(&out), "Path \"dir\" is not a blob"),
        "{}",
        stderr(&out)
    );
    let out = ots(&["git-extract", "link", "x.ots"], &repo.dir);
    assert!(
        has_line(&stderr(&out), "\"link\" is a symlink; see --annex"),
        "{}",
        stderr(&out)
    );
    let out = ots(&["git-extract", "../outside", "x.ots"], &repo.dir);
    assert!(
        has_line(&stderr(&out), "\"../outside\" is outside repository"),
        "{}",
        stderr(&out)
    );
    repo.git_ok(&[
        "commit",
        "-q",
        "--allow-empty",
        "--no-gpg-sign",
        "-m",
        "unsigned",
    ]);
    let out = ots(&["git-extract", "a.txt", "x.ots"], &repo.dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        has_line(&stderr(&out), "HEAD is not signed"),
        "{}",
        stderr(&out)
    );

    let Some(reference) = reference_client() else {
        eprintln!("{REFERENCE_SKIPPED}");
        return;
    };
    let wrapper = reference.with_file_name("ots-git-gpg-wrapper");
    let gpg = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v gpg"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let theirs = top.path().join("reference-wrapper.sh");
    write_script(
        &theirs,
        &format!(
            "exec {} --no-cache -l {url} --btc-regtest --bitcoin-node {rpc} --gpg-program {gpg} -c {url} -m 1 -- \"$@\"",
            wrapper.display(),
            url = cal.url,
            rpc = cal.rpc_url,
            gpg = gpg.trim()
        ),
    );
    // The reference's wrapper verifies our commit.
    let shown = until_good_timestamp(&repo, &theirs, "HEAD~1");
    assert!(shown.contains("Good signature from \"OTS Test"), "{shown}");
    // Its git-extract makes the very proof ours made.
    let out = common::reference(
        &reference,
        &["git-extract", "dir/b.txt", "ref-b.ots", "HEAD~1"],
        &repo.dir,
    );
    assert!(
        out.status.success(),
        "reference git-extract: {}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(repo.dir.join("ref-b.ots")).unwrap(), b_proof);
    // A commit the reference's wrapper signed: ours verifies it and
    // extracts from it.
    std::fs::write(repo.dir.join("a.txt"), b"file a, changed\n").unwrap();
    repo.git_ok(&["add", "."]);
    let program = format!("gpg.program={}", theirs.display());
    repo.git_ok(&[
        "-c",
        &program,
        "commit",
        "-q",
        "-S",
        "-m",
        "by the reference",
    ]);
    let shown = until_good_timestamp(&repo, &ours, "HEAD");
    assert!(shown.contains("Good signature from \"OTS Test"), "{shown}");
    let out = ots(&["git-extract", "a.txt", "a-ref.ots"], &repo.dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = common::reference(
        &reference,
        &["git-extract", "a.txt", "a-ref2.ots"],
        &repo.dir,
    );
    assert!(
        out.status.success(),
        "reference git-extract: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(repo.dir.join("a-ref.ots")).unwrap(),
        std::fs::read(repo.dir.join("a-ref2.ots")).unwrap()
    );
}
