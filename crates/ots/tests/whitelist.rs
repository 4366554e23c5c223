//! The default calendars and whitelist against the reference client's:
//! the lists themselves (read from its installed python-opentimestamps
//! and otsclient when `OTS_REFERENCE_CLIENT` is set), and which URLs the
//! default whitelist (plus patterns added with `-l`) lets through, asked
//! of the reference's `UrlWhitelist` for every URL below.

mod common;

use std::process::Command;

use common::{reference_client, REFERENCE_SKIPPED};
use ots::whitelist::{Whitelist, DEFAULT_AGGREGATORS, DEFAULT_WHITELIST};

/// URLs a pending attestation might name.
const URLS: &[&str] = &[
    "https://alice.btc.calendar.opentimestamps.org",
    "https://bob.btc.calendar.opentimestamps.org",
    "https://finney.calendar.eternitywall.com",
    "https://btc.calendar.catallaxy.com",
    "https://a.pool.opentimestamps.org",
    "http://alice.btc.calendar.opentimestamps.org",
    "https://calendar.opentimestamps.org",
    "https://alice.btc.calendar.opentimestamps.org.evil.example",
    "https://evil.example/alice.btc.calendar.opentimestamps.org",
    "https://alice.btc.calendar.opentimestamps.org/x",
    "https://alice.btc.calendar.opentimestamps.org?x=1",
    "https://alice.btc.calendar.opentimestamps.org#f",
    "http://127.0.0.1:14788",
    "https://127.0.0.1:14788",
    "http://127.0.0.1:14789",
    "http://localhost:14788/cal",
];

/// Patterns added as with `-l`.
const ADDED: &[&str] = &["127.0.0.1:14788", "http://localhost:14788/cal"];

fn ours() -> Vec<bool> {
    let mut w = Whitelist::default_calendars();
    for p in ADDED {
        w.add(p);
    }
    URLS.iter().map(|u| w.contains(u)).collect()
}

#[test]
fn the_default_whitelist_lets_through_what_it_should() {
    let expected = [
        true, true, true, true, false, false, false, false, false, false, false, false, true, true,
        false, true,
    ];
    assert_eq!(ours(), expected.to_vec());
}

#[test]
fn defaults_and_whitelist_are_the_references() {
    let Some(client) = reference_client() else {
        eprintln!("{REFERENCE_SKIPPED}");
        return;
    };
    let python = client.with_file_name("python");
    let script = r#"
import sys, json
import opentimestamps.calendar as c
import otsclient.cmds, inspect
w = c.UrlWhitelist()
w.update(c.DEFAULT_CALENDAR_WHITELIST)
added, urls = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for a in added:
    w.add(a)
print(json.dumps({
    "whitelist": sorted(p.geturl() for p in c.DEFAULT_CALENDAR_WHITELIST),
    "aggregators": list(c.DEFAULT_AGGREGATORS),
    "stamp_defaults": [l.split("'")[1] for l in inspect.getsource(otsclient.cmds.stamp_command).splitlines() if "args.calendar_urls.append(" in l],
    "contains": [u in w for u in urls],
}))
"#;
    let out = Command::new(&python)
        .args([
            "-c",
            script,
            &serde_json::to_string(ADDED).unwrap(),
            &serde_json::to_string(URLS).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut whitelist: Vec<&str> = DEFAULT_WHITELIST.to_vec();
    whitelist.sort();
    assert_eq!(theirs["whitelist"], serde_json::json!(whitelist));
    assert_eq!(
        theirs["aggregators"],
        serde_json::json!(DEFAULT_AGGREGATORS)
    );
    assert_eq!(
        theirs["stamp_defaults"],
        serde_json::json!(DEFAULT_AGGREGATORS)
    );
    let contains: Vec<bool> = serde_json::from_value(theirs["contains"].clone()).unwrap();
    for ((url, o), t) in URLS.iter().zip(ours()).zip(contains) {
        assert_eq!(o, t, "{url}: ours {o}, the reference {t}");
    }
}
