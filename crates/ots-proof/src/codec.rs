//! Byte-level encoding shared by every OpenTimestamps structure: varuints,
//! varbytes and a bounds-checked reader that remembers its offset.
//!
//! The format has exactly two variable-length primitives:
//!
//! * **varuint**: an unsigned integer in little-endian base-128 (LEB128): seven
//!   bits per byte, least significant group first, the high bit set on every
//!   byte but the last.
//! * **varbytes**: a varuint length followed by that many bytes. Every
//!   varbytes field in the format has a maximum (and sometimes a minimum)
//!   length, and the reader checks it *before* touching the bytes, so no
//!   length read from input can make us allocate more than the format allows.

use crate::error::{DecodeError, DecodeErrorKind};

/// The largest number of bytes a varuint may take: ten groups of seven bits
/// cover the 64 bits of a `u64`. The reference implementation (Python) has
/// unbounded integers; every integer the format carries (lengths, block
/// heights) fits in a `u64` many times over, so a larger value is an error.
pub const MAX_VARUINT_LEN: usize = 10;

/// Appends `value` as an unsigned LEB128 varuint.
pub fn write_varuint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends `bytes` as varbytes: its length as a varuint, then the bytes.
pub fn write_varbytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varuint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over an input buffer. Every read is bounds-checked and every
/// error carries the offset at which it happened.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The offset of the next byte to be read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been read.
    pub fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// An error of `kind` at the current offset.
    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.pos, kind)
    }

    /// An error of `kind` at an earlier offset `at`.
    pub fn error_at(&self, at: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(at, kind)
    }

    /// Reads exactly `len` bytes.
    pub fn read_bytes(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < len {
            return Err(self.error(DecodeErrorKind::Truncated {
                wanted: len,
                available: self.remaining(),
            }));
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    /// Reads exactly `N` bytes into an array.
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.read_bytes(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.read_bytes(1)?[0])
    }

    /// Reads a varuint. Non-minimal encodings (such as `80 00` for zero) are
    /// accepted, as the reference accepts them; values above `u64::MAX` are
    /// refused.
    pub fn read_varuint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..MAX_VARUINT_LEN {
            let byte = self.read_u8()?;
            let group = u64::from(byte & 0x7f);
            let shift = 7 * i as u32;
            // The tenth byte may only carry the single remaining bit of a u64.
            if shift == 63 && group > 1 {
                return Err(self.error_at(start, DecodeErrorKind::VarUintOverflow));
            }
            value |= group << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error_at(start, DecodeErrorKind::VarUintOverflow))
    }

    /// Reads varbytes whose length must lie in `min..=max`. The length is
    /// checked before the bytes are read. `what` names the field in errors.
    pub fn read_varbytes(
        &mut self,
        what: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let len = self.read_varuint()?;
        if len > max as u64 {
            return Err(self.error_at(start, DecodeErrorKind::TooLong { what, len, max }));
        }
        if len < min as u64 {
            return Err(self.error_at(start, DecodeErrorKind::TooShort { what, len, min }));
        }
        // `len <= max` and `max` is a usize, so the cast is lossless.
        self.read_bytes(len as usize)
    }

    /// Fails with [`DecodeErrorKind::TrailingBytes`] unless every byte has
    /// been read.
    pub fn expect_end(&self) -> Result<(), DecodeError> {
        if self.is_at_end() {
            Ok(())
        } else {
            Err(self.error(DecodeErrorKind::TrailingBytes {
                count: self.remaining(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varuint(&mut out, v);
        out
    }

    #[test]
    fn varuint_known_encodings() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(358391), [0xf7, 0xef, 0x15]);
        assert_eq!(enc(u64::MAX).len(), MAX_VARUINT_LEN);
    }

    #[test]
    fn varuint_round_trips_at_boundaries() {
        for v in [
            0,
            1,
            127,
            128,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let bytes = enc(v);
            let mut r = Reader::new(&bytes);
            assert_eq!(r.read_varuint().unwrap(), v);
            assert!(r.is_at_end());
        }
    }

    #[test]
    fn varuint_accepts_non_minimal_encoding() {
        let mut r = Reader::new(&[0x80, 0x00]);
        assert_eq!(r.read_varuint().unwrap(), 0);
    }

    #[test]
    fn varuint_overflow_is_an_error() {
        let mut bytes = vec![0xff; 9];
        bytes.push(0x02); // 64th bit and beyond
        let err = Reader::new(&bytes).read_varuint().unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::VarUintOverflow);
        let long = [0x80; 11];
        let err = Reader::new(&long).read_varuint().unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::VarUintOverflow);
    }

    #[test]
    fn truncated_varuint_reports_offset() {
        let mut r = Reader::new(&[0x01, 0x80]);
        r.read_u8().unwrap();
        let err = r.read_varuint().unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(matches!(
            err.kind,
            DecodeErrorKind::Truncated {
                wanted: 1,
                available: 0
            }
        ));
    }

    #[test]
    fn varbytes_limits_are_checked_before_reading() {
        // Claims 5000 bytes but carries none: the length check must fire, not
        // a truncation error and certainly not an allocation.
        let mut bytes = Vec::new();
        write_varuint(&mut bytes, 5000);
        let err = Reader::new(&bytes)
            .read_varbytes("argument", 1, 4096)
            .unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(matches!(
            err.kind,
            DecodeErrorKind::TooLong {
                len: 5000,
                max: 4096,
                ..
            }
        ));
        let err = Reader::new(&[0x00])
            .read_varbytes("argument", 1, 4096)
            .unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::TooShort { len: 0, min: 1, .. }
        ));
    }

    #[test]
    fn expect_end_counts_trailing_bytes() {
        let mut r = Reader::new(&[1, 2, 3]);
        r.read_u8().unwrap();
        let err = r.expect_end().unwrap_err();
        assert_eq!(err.offset, 1);
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes { count: 2 });
    }
}
