//! The tree as the reference client's `ots info` prints it.
//!
//! One line per operation or attestation; a node with several operations
//! prints each branch as ` -> op` with the branch indented by four spaces.
//! Comment lines are added where the reference adds them:
//!
//! * `# Transaction id <txid>` before the operation leaving a message that
//!   parses as a Bitcoin transaction (with several operations the reference
//!   prints `* Transaction id …` before each branch);
//! * `# Bitcoin block merkle root <hex>` (and the Litecoin equivalent) after
//!   a block header attestation, the message in display (reversed) order.
//!
//! Unknown attestations are printed as the reference prints them, with
//! Python's notation for bytes: `UnknownAttestation(b'<tag>', b'<payload>')`.
//!
//! With `verbose`, each operation line ends in ` == <result hex>`, the
//! argument highlighted in bold (ANSI), as `ots -v info` does.

use std::fmt::Write;

use crate::attestation::Attestation;
use crate::detached::DetachedTimestampFile;
use crate::op::{sha256, Op};
use crate::timestamp::Timestamp;

const BOLD: &str = "\x1b[1m";
const END_BOLD: &str = "\x1b[0m";

/// The full `ots info` output for a detached proof: the file hash line,
/// `Timestamp:`, the tree, and the blank line the reference ends with.
pub fn info(file: &DetachedTimestampFile, verbose: bool) -> String {
    format!(
        "File {} hash: {}\nTimestamp:\n{}\n",
        file.hash_op().name(),
        hex::encode(file.file_digest()),
        tree(file.timestamp(), verbose)
    )
}

/// The tree of `timestamp`, one line per item, each ending in a newline.
pub fn tree(timestamp: &Timestamp, verbose: bool) -> String {
    let mut out = String::new();
    write_node(&mut out, timestamp, 0, verbose);
    out
}

fn write_node(out: &mut String, node: &Timestamp, indent: usize, verbose: bool) {
    // Chains of single operations are printed iteratively (at the same
    // indent), so long linear proofs do not deepen the stack.
    let mut node = node;
    loop {
        let pad = " ".repeat(indent);
        for attestation in node.attestations() {
            let _ = writeln!(out, "{pad}verify {attestation}");
            let chain = match attestation {
                Attestation::Bitcoin { .. } => Some("Bitcoin"),
                Attestation::Litecoin { .. } => Some("Litecoin"),
                _ => None,
            };
            if let Some(chain) = chain {
                let _ = writeln!(
                    out,
                    "{pad}# {chain} block merkle root {}",
                    reversed_hex(node.msg())
                );
            }
        }
        let txid = is_bitcoin_transaction(node.msg()).then(|| txid_hex(node.msg()));
        match node.ops().len() {
            0 => return,
            1 => {
                if let Some(txid) = &txid {
                    let _ = writeln!(out, "{pad}# Transaction id {txid}");
                }
                let Some((op, child)) = node.ops().next() else {
                    return;
                };
                let _ = writeln!(out, "{pad}{op}{}", result_suffix(op, child, verbose));
                node = child;
            }
            _ => {
                for (op, child) in node.ops() {
                    if let Some(txid) = &txid {
                        let _ = writeln!(out, "{pad}* Transaction id {txid}");
                    }
                    let _ = writeln!(out, "{pad} -> {op}{}", result_suffix(op, child, verbose));
                    write_node(out, child, indent + 4, verbose);
                }
                return;
            }
        }
    }
}

/// ` == <result>` in verbose mode, the argument in bold where the reference
/// finds it in the result's hex (its first occurrence).
fn result_suffix(op: &Op, child: &Timestamp, verbose: bool) -> String {
    if !verbose {
        return String::new();
    }
    let result = hex::encode(child.msg());
    let Some(arg) = op.argument() else {
        return format!(" == {result}");
    };
    let arg = hex::encode(arg);
    match result.find(&arg) {
        Some(0) => format!(" == {BOLD}{arg}{END_BOLD}{}", &result[arg.len()..]),
        Some(at) => format!(" == {}{BOLD}{arg}{END_BOLD}", &result[..at]),
        None => format!(" == {result}"),
    }
}

fn reversed_hex(bytes: &[u8]) -> String {
    let mut reversed = bytes.to_vec();
    reversed.reverse();
    hex::encode(reversed)
}

/// A transaction id as Bitcoin shows it: double SHA-256, reversed.
fn txid_hex(tx: &[u8]) -> String {
    reversed_hex(&sha256(&sha256(tx)))
}

/// Whether `msg` parses, exactly and completely, as a Bitcoin transaction
/// under the rules of python-bitcoinlib, which the reference uses to decide
/// where to print `# Transaction id`. Those rules are looser than Bitcoin
/// Core's (a transaction without inputs or outputs parses), so we follow
/// them here rather than a consensus decoder, to print the same lines.
pub fn is_bitcoin_transaction(msg: &[u8]) -> bool {
    parse_transaction(msg).is_some()
}

fn parse_transaction(msg: &[u8]) -> Option<()> {
    let mut r = TxReader { buf: msg, pos: 0 };
    r.take(4)?; // nVersion
                // The reference reads the two bytes after the version before deciding,
                // so they must exist in either form.
    let marker_and_flag = r.peek(2)?;
    let segwit = marker_and_flag == [0x00, 0x01];
    if segwit {
        r.take(2)?;
    }
    let inputs = r.count()?;
    for _ in 0..inputs {
        r.take(36)?; // previous output
        r.bytes()?; // scriptSig
        r.take(4)?; // nSequence
    }
    let outputs = r.count()?;
    for _ in 0..outputs {
        r.take(8)?; // value
        r.bytes()?; // scriptPubKey
    }
    if segwit {
        for _ in 0..inputs {
            let items = r.count()?;
            for _ in 0..items {
                r.bytes()?;
            }
        }
    }
    r.take(4)?; // nLockTime
    (r.pos == msg.len()).then_some(())
}

/// Just enough of Bitcoin's encoding to walk a transaction.
struct TxReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl TxReader<'_> {
    fn peek(&self, n: usize) -> Option<&[u8]> {
        self.buf.get(self.pos..self.pos.checked_add(n)?)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    /// Bitcoin's CompactSize.
    fn compact_size(&mut self) -> Option<u64> {
        let first = self.take(1)?[0];
        let width = match first {
            0xfd => 2,
            0xfe => 4,
            0xff => 8,
            small => return Some(u64::from(small)),
        };
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(self.take(width)?);
        Some(u64::from_le_bytes(le))
    }

    /// An element count; every element takes at least one byte, so a count
    /// above the bytes left cannot parse (and cannot make us loop long).
    fn count(&mut self) -> Option<u64> {
        let n = self.compact_size()?;
        (n <= (self.buf.len() - self.pos) as u64).then_some(n)
    }

    fn bytes(&mut self) -> Option<&[u8]> {
        let len = self.compact_size()?;
        self.take(usize::try_from(len).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_are_recognised() {
        // The transaction of hello-world.txt.ots: txid 7e9f0f7d…cb2ec.
        let tx = hex::decode(concat!(
            "0100000001e482f9d32ecc3ba657b69d898010857b54457a90497982ff56f97c4ec58e6f98010000006b",
            "483045022100b253add1d1cf90844338a475a04ff13fc9e7bd242b07762dea07f5608b2de367022000",
            "b268ca9c3342b3769cdd062891317cdcef87aac310b6855e9d93898ebbe8ec0121020d8e4d107d2b33",
            "9b0050efdd4b4a09245aa056048f125396374ea6a2ab0709c6ffffffff026533e605000000001976a9",
            "140bf057d40fbba6744862515f5b55a2310de5772f88aca0860100000000001976a914",
            "07b4a1bf0ee18fd2fa2a1cbea7cfc3a5b4ed5e4a", // any 20 bytes
            "88ac00000000"
        ))
        .unwrap();
        assert!(is_bitcoin_transaction(&tx));
        assert!(!is_bitcoin_transaction(&tx[..tx.len() - 1]));
        let mut longer = tx.clone();
        longer.push(0);
        assert!(!is_bitcoin_transaction(&longer));
        assert!(!is_bitcoin_transaction(&sha256(b"x")));
        // No inputs, no outputs: parses under the reference's rules.
        assert!(is_bitcoin_transaction(
            &hex::decode("01000000000000000000").unwrap()
        ));
        // Segwit form with one input, one witness item.
        let segwit = hex::decode(
            [
                "02000000",
                "0001",
                "01",
                &"00".repeat(36),
                "00",
                "ffffffff",
                "01",
                "0000000000000000",
                "00",
                "01",
                "01",
                "aa",
                "00000000",
            ]
            .concat(),
        )
        .unwrap();
        assert!(is_bitcoin_transaction(&segwit));
    }

    #[test]
    fn verbose_highlights_argument() {
        let mut t = Timestamp::new(b"\x01".to_vec()).unwrap();
        t.add_op(Op::append(vec![0x02]).unwrap())
            .unwrap()
            .add_attestation(Attestation::Bitcoin { height: 1 });
        let text = tree(&t, true);
        assert_eq!(
            text.lines().next().unwrap(),
            format!("append 02 == 01{BOLD}02{END_BOLD}")
        );
        assert_eq!(tree(&t, false).lines().next().unwrap(), "append 02");
    }
}
