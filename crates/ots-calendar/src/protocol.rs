//! What the calendar protocol fixes for a client: the reply cap, the media
//! type asked for, and how a 404 reason is shown.

/// Longest calendar reply we read, as every reference client caps it.
pub const MAX_REPLY_LEN: usize = 10_000;
/// Most bytes the messages of a reply's nodes may hold together once
/// decoded. An encoding does not carry its messages: 10,000 bytes of
/// `reverse`s on a 4,000-byte message would decode to tens of megabytes.
/// An honest reply holds a few kilobytes, some 40 KB at the most (a
/// transaction's two ~4 KB messages per Bitcoin branch, 32- and 64-byte
/// hash messages for the rest), so the decoder gives up well past that.
pub const MAX_REPLY_MESSAGE_BYTES: usize = 256 << 10;
/// What we ask for; calendars answer with a bare serialized timestamp.
pub const ACCEPT: &str = "application/vnd.opentimestamps.v1";
/// How much of a 404 reason we show.
pub const MAX_REASON_LEN: usize = 160;

/// A calendar's 404 reason as we show it: at most [`MAX_REASON_LEN`]
/// bytes, anything but letters, digits and `#-.,; ` replaced by `_` (no
/// newlines: a second line could pose as our own output).
pub fn sanitise_reason(body: &[u8]) -> String {
    body.iter()
        .take(MAX_REASON_LEN)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"#-.,; ".contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_sanitised() {
        assert_eq!(
            sanitise_reason(b"Pending confirmation in Bitcoin blockchain"),
            "Pending confirmation in Bitcoin blockchain"
        );
        assert_eq!(sanitise_reason(b"a\nFAKE: ok\x1b[1m"), "a_FAKE_ ok__1m");
        assert_eq!(sanitise_reason(&[b'x'; 500]).len(), MAX_REASON_LEN);
    }
}
