//! The payloads the loadtest sends and checks: a JSON string carrying who sent it, its
//! sequence number and its intended send time, padded to the requested size with a pattern
//! that depends on the sequence number, so a corrupted or mixed-up payload is caught. The
//! padding is a 36-byte cycle by default (which DEFLATE shrinks ~30-fold), or with
//! `--text-padding` text that compresses like chat messages or JSON (words and numbers).
//! Pure: no I/O, no allocation beyond the caller's buffers (the text variants are made once).

use std::sync::OnceLock;

use crate::wire::parse_decimal;

/// `--text-padding`: padding texts, one picked per (sender, seq), made once at start. Enough of
/// them that two messages within DEFLATE's 32 KiB window rarely share one (a server that keeps
/// its compression context would otherwise find whole repeats, which real traffic lacks).
static TEXT: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
const TEXT_VARIANTS: u64 = 1024;
const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "message", "room", "user", "score",
    "online", "typing",
];

/// Pads with text instead of the cycle from now on, for payloads up to `max` bytes. Fields,
/// words and numbers drawn by a fixed generator per variant: DEFLATE gets it about 3:1, as it
/// does a real JSON message, not the cycle's 30:1.
pub fn use_text_padding(max: usize) {
    TEXT.get_or_init(|| {
        (0..TEXT_VARIANTS)
            .map(|variant| {
                let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (variant + 1).wrapping_mul(0xff51_afd7);
                let mut next = move || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                let mut text = Vec::with_capacity(max + 128);
                while text.len() < max {
                    let word = |n: u64| WORDS[(n % WORDS.len() as u64) as usize];
                    let record = format!(
                        "id={} user={}{} score={} text={} {} {};",
                        next() % 100_000,
                        word(next()),
                        next() % 1000,
                        next() % 10_000,
                        word(next()),
                        word(next()),
                        word(next()),
                    );
                    text.extend_from_slice(record.as_bytes());
                }
                text
            })
            .collect()
    });
}

/// The text padding of (`sender`, `seq`), when `--text-padding` is on and it is long enough.
fn text_padding(sender: u32, seq: u64, len: usize) -> Option<&'static [u8]> {
    let mixed = (seq ^ u64::from(sender).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    TEXT.get()?
        .get(((mixed >> 32) % TEXT_VARIANTS) as usize)?
        .get(..len)
}

const PATTERN: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// The pattern twice, so that any rotation of it is one slice.
const DOUBLED: &[u8; 72] =
    b"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789";

/// A decoded payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publisher (fanout) or client (echo) that sent it.
    pub sender: u32,
    pub seq: u64,
    /// Nanoseconds since the run's epoch at which the message was meant to leave.
    pub sent_ns: u64,
}

/// Appends the JSON string `"<sender>:<seq>:<sent_ns>:<padding>"` whose content is `size`
/// bytes long (longer if the header alone needs more).
pub fn put(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    out.push(b'"');
    let start = out.len();
    crate::wire::put_decimal(out, u64::from(stamp.sender));
    out.push(b':');
    crate::wire::put_decimal(out, stamp.seq);
    out.push(b':');
    crate::wire::put_decimal(out, stamp.sent_ns);
    out.push(b':');
    let header = out.len() - start;
    let pad = size.saturating_sub(header);
    if let Some(text) = text_padding(stamp.sender, stamp.seq, pad) {
        out.extend_from_slice(text);
        out.push(b'"');
        return;
    }
    let offset = (stamp.seq % PATTERN.len() as u64) as usize;
    out.extend((0..pad).map(|i| PATTERN[(offset + i) % PATTERN.len()]));
    out.push(b'"');
}

/// Why a received payload is not one the loadtest sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    Shape,
    Padding,
}

/// Checks and decodes the content of a payload string (without its quotes).
pub fn check(content: &[u8]) -> Result<Stamp, Corrupt> {
    let mut fields = content.splitn(4, |&b| b == b':');
    let mut number = || fields.next().and_then(parse_decimal).ok_or(Corrupt::Shape);
    let sender = u32::try_from(number()?).map_err(|_| Corrupt::Shape)?;
    let seq = number()?;
    let sent_ns = number()?;
    let pad = fields.next().ok_or(Corrupt::Shape)?;
    if let Some(text) = text_padding(sender, seq, pad.len()) {
        if pad != text {
            return Err(Corrupt::Padding);
        }
        return Ok(Stamp {
            sender,
            seq,
            sent_ns,
        });
    }
    // Every run of PATTERN.len() bytes starts at the same phase: compare whole runs against
    // the pattern rotated once (a memcmp each) rather than byte by byte.
    let offset = (seq % PATTERN.len() as u64) as usize;
    let rotated = &DOUBLED[offset..offset + PATTERN.len()];
    let intact = pad
        .chunks(PATTERN.len())
        .all(|run| run == &rotated[..run.len()]);
    if !intact {
        return Err(Corrupt::Padding);
    }
    Ok(Stamp {
        sender,
        seq,
        sent_ns,
    })
}

/// The longest offset a stored event may carry (ringcast's are under 32 bytes; Node's yeast ids
/// under 16).
const MAX_OFFSET: usize = 64;

/// The payload of a `message` event: `["message","<content>"]` (or with a trailing offset) ->
/// content.
pub fn message_content(event: &[u8]) -> Option<&[u8]> {
    let inner = event
        .strip_prefix(b"[\"message\",\"")?
        .strip_suffix(b"\"]")?;
    // A server with connection state recovery appends the event's offset as one more string
    // argument; a JSON string holds no bare `","`, so the last one ends the content. Offsets
    // are short: only the tail is searched, so a large payload costs no scan.
    let tail = inner.len().saturating_sub(MAX_OFFSET + 3);
    match inner[tail..].windows(3).rposition(|w| w == b"\",\"") {
        Some(end) => Some(&inner[..tail + end]),
        None => Some(inner),
    }
}

/// The payload of an echo ack: `["<content>"]` -> content.
pub fn ack_content(args: &[u8]) -> Option<&[u8]> {
    args.strip_prefix(b"[\"")?.strip_suffix(b"\"]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_size() {
        let stamp = Stamp {
            sender: 42,
            seq: 123_456,
            sent_ns: 9_876_543_210,
        };
        for size in [0, 10, 26, 100, 1000] {
            let mut out = Vec::new();
            put(&mut out, stamp, size);
            let content = &out[1..out.len() - 1];
            assert!(content.len() >= size);
            assert_eq!(check(content), Ok(stamp));
        }
    }

    #[test]
    fn a_trailing_offset_is_not_content() {
        assert_eq!(message_content(br#"["message","abc"]"#), Some(&b"abc"[..]));
        assert_eq!(
            message_content(br#"["message","abc","1f.0"]"#),
            Some(&b"abc"[..])
        );
        assert_eq!(message_content(br#"["other","abc"]"#), None);
    }

    #[test]
    fn catches_damage() {
        let stamp = Stamp {
            sender: 1,
            seq: 7,
            sent_ns: 5,
        };
        let mut out = Vec::new();
        put(&mut out, stamp, 100);
        let mut content = out[1..out.len() - 1].to_vec();
        let last = content.len() - 1;
        content[last] ^= 1;
        assert_eq!(check(&content), Err(Corrupt::Padding));
        assert_eq!(check(b"1:2"), Err(Corrupt::Shape));
        assert_eq!(check(b"x:2:3:"), Err(Corrupt::Shape));
        // The padding depends on the sequence number: a payload relabelled as another is caught.
        let mut relabelled = b"1:8:5:".to_vec();
        relabelled.extend_from_slice(&out[7..out.len() - 1]);
        assert_eq!(check(&relabelled), Err(Corrupt::Padding));
    }

    #[test]
    fn text_padding_round_trips_and_catches_damage() {
        // Process-wide once set: the other tests hold with either padding.
        use_text_padding(4096);
        let stamp = Stamp {
            sender: 3,
            seq: 77,
            sent_ns: 1,
        };
        let mut out = Vec::new();
        put(&mut out, stamp, 2048);
        let content = &out[1..out.len() - 1];
        assert_eq!(content.len(), 2048);
        assert!(content.contains(&b' '), "text, not the cycle");
        assert_eq!(check(content), Ok(stamp));
        let mut damaged = content.to_vec();
        damaged[2000] ^= 1;
        assert_eq!(check(&damaged), Err(Corrupt::Padding));
    }

    #[test]
    fn extracts_contents() {
        assert_eq!(message_content(b"[\"message\",\"a:b\"]"), Some(&b"a:b"[..]));
        assert_eq!(message_content(b"[\"other\",\"a\"]"), None);
        assert_eq!(ack_content(b"[\"x\"]"), Some(&b"x"[..]));
        assert_eq!(ack_content(b"[]"), None);
    }
}
