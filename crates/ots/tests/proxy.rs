//! `--socks5-proxy` and the environment's proxy variables, end to end:
//! `ots stamp` and `ots upgrade` against a real `otsd --dev` through the
//! SOCKS5 test proxy (test-support), which records every destination it
//! was asked to reach; without the flag (and with no proxy variable) it
//! sees nothing.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{has_line, stderr, DevCalendar};
use test_support::socks5::Socks5Proxy;

/// How long a stamp may take to become a complete proof on --dev.
const COMPLETE_LIMIT: Duration = Duration::from_secs(120);

/// The proxy variables reqwest reads; removed from every run, so the
/// machine's own settings play no part.
const PROXY_VARS: &[&str] = &[
    "ALL_PROXY",
    "all_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUEST_METHOD",
];

/// `ots --no-cache ARGS` in `cwd` with no proxy variable but `env`.
fn ots_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ots"));
    cmd.arg("--no-cache").args(args).current_dir(cwd);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

/// host:port of an http URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

#[test]
fn stamp_and_upgrade_go_through_the_socks5_proxy() {
    let cal = DevCalendar::start();
    let proxy = Socks5Proxy::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let cal_addr = authority(&cal.url);
    let port = cal_addr.rsplit_once(':').unwrap().1.to_string();
    let flag = proxy.host_port();

    // Through the proxy, named by host name: the proxy resolves it
    // (socks5h), so it is asked for "localhost:PORT", not an address.
    std::fs::write(work.join("a.txt"), b"through the proxy").unwrap();
    let by_name = format!("http://localhost:{port}");
    let out = ots_env(
        &["--socks5-proxy", &flag, "stamp", "-c", &by_name, "a.txt"],
        work,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(proxy.destinations(), vec![format!("localhost:{port}")]);

    // Without the flag, straight to the calendar.
    std::fs::write(work.join("b.txt"), b"not through the proxy").unwrap();
    let out = ots_env(&["stamp", "-c", &cal.url, "b.txt"], work, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(proxy.destinations().len(), 1, "the proxy saw no more");

    // The environment's ALL_PROXY is honoured when no flag is given.
    std::fs::write(work.join("c.txt"), b"through ALL_PROXY").unwrap();
    let env_url = format!("socks5h://{flag}");
    let out = ots_env(
        &["stamp", "-c", &cal.url, "c.txt"],
        work,
        &[("ALL_PROXY", &env_url)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(proxy.destinations().len(), 2);
    assert_eq!(proxy.destinations()[1], cal_addr);

    // Upgrade through the proxy until complete: every request went
    // through it.
    let started = Instant::now();
    loop {
        let before = proxy.destinations().len();
        let out = ots_env(
            &[
                "--socks5-proxy",
                &flag,
                "-l",
                &cal.url,
                "upgrade",
                "a.txt.ots",
            ],
            work,
            &[],
        );
        assert!(
            proxy.destinations().len() > before,
            "the upgrade asked through the proxy"
        );
        assert!(proxy.destinations()[before..]
            .iter()
            .all(|d| *d == cal_addr));
        if out.status.success() {
            assert!(has_line(&stderr(&out), "Success! Timestamp complete"));
            break;
        }
        assert!(
            started.elapsed() < COMPLETE_LIMIT,
            "not complete: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Without the flag, the upgrade of b does not touch the proxy.
    let seen = proxy.destinations().len();
    let out = ots_env(&["-l", &cal.url, "upgrade", "b.txt.ots"], work, &[]);
    assert!(has_line(&stderr(&out), "Success! Timestamp complete") || !out.status.success());
    assert_eq!(proxy.destinations().len(), seen);

    // A proxy that is not there: the calendar is unreachable, said so.
    let dead = common::free_port();
    std::fs::write(work.join("d.txt"), b"dead proxy").unwrap();
    let out = ots_env(
        &[
            "--socks5-proxy",
            &format!("127.0.0.1:{dead}"),
            "stamp",
            "-c",
            &cal.url,
            "d.txt",
        ],
        work,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Failed to create timestamp"),
        "{}",
        stderr(&out)
    );
    // A port that is not a number is a usage error.
    let out = ots_env(
        &[
            "--socks5-proxy",
            "127.0.0.1:tor",
            "stamp",
            "-c",
            &cal.url,
            "d.txt",
        ],
        work,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        has_line(
            &stderr(&out),
            "SOCKS5 proxy port must be an integer; got tor"
        ),
        "{}",
        stderr(&out)
    );
}
