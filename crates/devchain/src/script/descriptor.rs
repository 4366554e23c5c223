//! Output descriptors as Core prints them (BIP380 checksum, `InferDescriptor`
//! for bare scripts), Core's script type names and its script assembly text.

use bitcoin::blockdata::script::Instruction;
use bitcoin::opcodes::all;
use bitcoin::{Address, Network, Script};

const INPUT_CHARSET: &str =
    "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
const CHECKSUM_CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GENERATOR: [u64; 5] = [
    0xf5dee51989,
    0xa9fdca3312,
    0x1bab10e32d,
    0x3706b1677a,
    0x644d626ffd,
];

fn polymod(symbols: &[u64]) -> u64 {
    let mut chk = 1u64;
    for &value in symbols {
        let top = chk >> 35;
        chk = ((chk & 0x7_ffff_ffff) << 5) ^ value;
        for (i, g) in GENERATOR.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// The BIP380 descriptor checksum of `desc` (without `#`); `None` if it
/// contains characters outside the descriptor charset.
pub fn checksum(desc: &str) -> Option<String> {
    let mut symbols = Vec::new();
    let mut groups = Vec::new();
    for c in desc.chars() {
        let v = INPUT_CHARSET.find(c)? as u64;
        symbols.push(v & 31);
        groups.push(v >> 5);
        if groups.len() == 3 {
            symbols.push(groups[0] * 9 + groups[1] * 3 + groups[2]);
            groups.clear();
        }
    }
    match groups.len() {
        1 => symbols.push(groups[0]),
        2 => symbols.push(groups[0] * 3 + groups[1]),
        _ => {}
    }
    symbols.extend([0; 8]);
    let c = polymod(&symbols) ^ 1;
    Some(
        (0..8)
            .map(|i| CHECKSUM_CHARSET[((c >> (5 * (7 - i))) & 31) as usize] as char)
            .collect(),
    )
}

/// `desc#checksum`.
pub fn with_checksum(desc: &str) -> String {
    match checksum(desc) {
        Some(c) => format!("{desc}#{c}"),
        None => desc.to_string(),
    }
}

/// Core's `GetTxnOutputType` names.
pub fn script_type(script: &Script) -> &'static str {
    let b = script.as_bytes();
    if script.is_p2pkh() {
        "pubkeyhash"
    } else if script.is_p2sh() {
        "scripthash"
    } else if script.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if script.is_p2wsh() {
        "witness_v0_scripthash"
    } else if script.is_p2tr() {
        "witness_v1_taproot"
    } else if b == [0x51, 0x02, 0x4e, 0x73] {
        "anchor"
    } else if script.witness_version().is_some() {
        "witness_unknown"
    } else if script.is_op_return() {
        "nulldata"
    } else if script.is_p2pk() {
        "pubkey"
    } else if script.is_multisig() {
        "multisig"
    } else {
        "nonstandard"
    }
}

/// The regtest address of a script, if it has one.
pub fn address_of(script: &Script) -> Option<Address> {
    if script.is_op_return() {
        return None;
    }
    Address::from_script(script, Network::Regtest).ok()
}

/// Core's `InferDescriptor` without key information, with checksum.
pub fn infer(script: &Script) -> String {
    let b = script.as_bytes();
    let body = if script.is_p2tr() {
        format!("rawtr({})", hex::encode(&b[2..34]))
    } else if script.is_p2pk() {
        let len = b[0] as usize;
        format!("pk({})", hex::encode(&b[1..1 + len]))
    } else if let Some(addr) = address_of(script) {
        format!("addr({addr})")
    } else {
        format!("raw({})", hex::encode(b))
    };
    with_checksum(&body)
}

/// Core's `ScriptToAsmStr` (without sighash decoding).
pub fn asm(script: &Script) -> String {
    let mut parts = Vec::new();
    for ins in script.instructions() {
        match ins {
            Ok(Instruction::PushBytes(p)) => {
                let bytes = p.as_bytes();
                if bytes.len() <= 4 {
                    parts.push(script_num(bytes).to_string());
                } else {
                    parts.push(hex::encode(bytes));
                }
            }
            Ok(Instruction::Op(op)) => {
                let code = op.to_u8();
                let name = if op == all::OP_PUSHNUM_NEG1 {
                    "-1".to_string()
                } else if (all::OP_PUSHNUM_1.to_u8()..=all::OP_PUSHNUM_16.to_u8()).contains(&code) {
                    (code - all::OP_PUSHNUM_1.to_u8() + 1).to_string()
                } else if op == all::OP_CLTV {
                    "OP_CHECKLOCKTIMEVERIFY".to_string()
                } else if op == all::OP_CSV {
                    "OP_CHECKSEQUENCEVERIFY".to_string()
                } else {
                    format!("{op:?}")
                };
                parts.push(name);
            }
            Err(_) => {
                parts.push("[error]".to_string());
                break;
            }
        }
    }
    parts.join(" ")
}

/// Decodes a minimally encoded script number of up to four bytes.
fn script_num(bytes: &[u8]) -> i64 {
    if bytes.is_empty() {
        return 0;
    }
    let mut v: i64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        v |= i64::from(*b) << (8 * i);
    }
    let last = bytes[bytes.len() - 1];
    if last & 0x80 != 0 {
        -(v & !(0x80i64 << (8 * (bytes.len() - 1))))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::ScriptBuf;

    #[test]
    fn checksum_matches_bip380_vectors() {
        assert_eq!(checksum("raw(deadbeef)").unwrap(), "89f8spxm");
        assert_eq!(
            with_checksum("addr(mkmZxiEcEd8ZqjQWVZuC6so5dFMKEFpN2j)"),
            "addr(mkmZxiEcEd8ZqjQWVZuC6so5dFMKEFpN2j)#02wpgw69"
        );
    }

    #[test]
    fn asm_matches_core_format() {
        let s = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        assert_eq!(asm(&s), "0 751e76e8199196d454941c45d1b3a323f1433bd6");
        assert_eq!(script_type(&s), "witness_v0_keyhash");
        let p2pkh =
            ScriptBuf::from_hex("76a914751e76e8199196d454941c45d1b3a323f1433bd688ac").unwrap();
        assert_eq!(
            asm(&p2pkh),
            "OP_DUP OP_HASH160 751e76e8199196d454941c45d1b3a323f1433bd6 OP_EQUALVERIFY OP_CHECKSIG"
        );
        let cb = ScriptBuf::from_hex("0165").unwrap();
        assert_eq!(asm(&cb), "101");
    }
}
