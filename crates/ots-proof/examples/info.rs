//! `ots info` for detached proof files, with ots-proof alone:
//! `cargo run -p ots-proof --example info -- FILE.ots [--header HEX_FILE]`.
//!
//! Prints each proof as the reference client does; with `--header`, also
//! checks every Bitcoin attestation against that 80-byte block header.

use std::process::ExitCode;

use ots_proof::display::info;
use ots_proof::verify::verify_bitcoin_header_bytes;
use ots_proof::{Attestation, DetachedTimestampFile};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut files = Vec::new();
    let mut header = None;
    while let Some(arg) = args.next() {
        if arg == "--header" {
            header = args.next();
        } else {
            files.push(arg);
        }
    }
    if files.is_empty() {
        eprintln!("usage: info FILE.ots... [--header BLOCK_HEADER_HEX_FILE]");
        return ExitCode::from(2);
    }
    let header = match header.map(|path| std::fs::read_to_string(&path).map(|s| (path, s))) {
        None => None,
        Some(Ok((path, text))) => match hex::decode(text.trim()) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                eprintln!("{path}: not hex: {e}");
                return ExitCode::FAILURE;
            }
        },
        Some(Err(e)) => {
            eprintln!("cannot read header: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut status = ExitCode::SUCCESS;
    for path in files {
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| DetachedTimestampFile::deserialize(&b).map_err(|e| e.to_string()));
        let file = match parsed {
            Ok(file) => file,
            Err(e) => {
                eprintln!("{path}: invalid timestamp file: {e}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        print!("{}", info(&file, false));
        let Some(header) = &header else { continue };
        for (msg, attestation) in file.timestamp().all_attestations() {
            if let Attestation::Bitcoin { height } = attestation {
                match verify_bitcoin_header_bytes(msg, header) {
                    Ok(time) => {
                        println!("Bitcoin block {height} attests existence as of unix time {time}")
                    }
                    Err(e) => println!("Bitcoin block {height}: {e}"),
                }
            }
        }
    }
    status
}
