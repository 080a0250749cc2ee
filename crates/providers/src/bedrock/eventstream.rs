//! The `application/vnd.amazon.eventstream` binary framing ConverseStream answers in.
//!
//! From the AWS event stream encoding specification (as documented for Transcribe, Lex and
//! Bedrock, and implemented by `awslabs/aws-c-event-stream`), every message is, big-endian:
//!
//! ```text
//! total length (u32) | headers length (u32) | prelude CRC32 (u32, of the 8 bytes before)
//! headers | payload | message CRC32 (u32, of every byte before it)
//! ```
//!
//! A header is `name length (u8) | name | value type (u8) | value`, the value being: 0 true, 1
//! false (no bytes), 2 byte, 3 i16, 4 i32, 5 i64, 6 bytes (u16 length), 7 string (u16 length),
//! 8 timestamp (i64 milliseconds), 9 UUID (16 bytes). CRCs are CRC-32 (IEEE, as in gzip).
//!
//! The [`Decoder`] is incremental and total: it takes bytes in any split, returns whole messages,
//! checks both CRCs and every length, and never panics on any input. After an error the stream
//! cannot be resynchronised, so the decoder keeps returning that error. This module knows no
//! Bedrock event and does no IO.

use std::fmt;

/// Bytes of the prelude (two lengths and the prelude CRC) and of the trailing message CRC.
const PRELUDE: usize = 12;
const OVERHEAD: usize = 16;
/// The specification's limits: 16 MiB per message, 128 KiB of headers.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
pub const MAX_HEADERS: usize = 128 * 1024;

/// A header value, by its wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

impl Header {
    /// A string header, the only kind Bedrock sends.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Header {
        Header {
            name: name.into(),
            value: HeaderValue::String(value.into()),
        }
    }
}

/// One message: headers and payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<Header>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of a string header.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| match &h.value {
            HeaderValue::String(s) if h.name == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// `:message-type`: `event`, `exception` or `error`.
    pub fn message_type(&self) -> Option<&str> {
        self.header_str(":message-type")
    }

    /// `:event-type` of an event (`messageStart`, `contentBlockDelta`, ...).
    pub fn event_type(&self) -> Option<&str> {
        self.header_str(":event-type")
    }

    /// `:exception-type` of an exception (`throttlingException`, ...).
    pub fn exception_type(&self) -> Option<&str> {
        self.header_str(":exception-type")
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header_str(":content-type")
    }
}

/// Why a byte stream is not a valid event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The prelude's CRC does not match its lengths.
    PreludeCrc { expected: u32, actual: u32 },
    /// The message's CRC does not match its bytes.
    MessageCrc { expected: u32, actual: u32 },
    /// A length in the prelude is impossible or over the specification's limits.
    Length { total: u32, headers: u32 },
    /// A header runs past the headers section, has an unknown type or a name that is not UTF-8.
    Header(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PreludeCrc { expected, actual } => write!(
                f,
                "event stream prelude CRC mismatch: expected {expected:#010x}, computed {actual:#010x}"
            ),
            Error::MessageCrc { expected, actual } => write!(
                f,
                "event stream message CRC mismatch: expected {expected:#010x}, computed {actual:#010x}"
            ),
            Error::Length { total, headers } => write!(
                f,
                "event stream message has impossible lengths: total {total}, headers {headers}"
            ),
            Error::Header(problem) => write!(f, "event stream header: {problem}"),
        }
    }
}

impl std::error::Error for Error {}

/// Cuts a byte stream into messages, incrementally.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the unread bytes start in `buf`.
    start: usize,
    failed: Option<Error>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends bytes read from the upstream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed, or the error that makes
    /// the rest of the stream unreadable (returned again on every later call).
    pub fn next_message(&mut self) -> Result<Option<Message>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match decode_one(&self.buf[self.start..]) {
            Ok(Some((message, used))) => {
                self.start += used;
                Ok(Some(message))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Bytes received that do not (yet) form a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Encodes one message.
///
/// Header names longer than 255 bytes and byte or string values longer than 65535 bytes do not
/// fit the format and are cut to those lengths.
pub fn encode(headers: &[Header], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::with_capacity(64);
    for h in headers {
        let name = &h.name.as_bytes()[..h.name.len().min(255)];
        head.push(name.len() as u8);
        head.extend_from_slice(name);
        match &h.value {
            HeaderValue::Bool(true) => head.push(0),
            HeaderValue::Bool(false) => head.push(1),
            HeaderValue::Byte(v) => {
                head.push(2);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                head.push(3);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int(v) => {
                head.push(4);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                head.push(5);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => {
                head.push(6);
                push_sized(&mut head, v);
            }
            HeaderValue::String(v) => {
                head.push(7);
                push_sized(&mut head, v.as_bytes());
            }
            HeaderValue::Timestamp(v) => {
                head.push(8);
                head.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                head.push(9);
                head.extend_from_slice(v);
            }
        }
    }
    let total = OVERHEAD + head.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32(&out).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32(&out).to_be_bytes());
    out
}

/// An event message as Bedrock sends one: `:event-type`, `:content-type: application/json`,
/// `:message-type: event`, and a JSON payload.
pub fn event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            Header::string(":event-type", event_type),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ],
        payload,
    )
}

/// An exception message: `:exception-type`, `:content-type: application/json`,
/// `:message-type: exception`, and a `{"message": ...}` payload.
pub fn exception(exception_type: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            Header::string(":exception-type", exception_type),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "exception"),
        ],
        payload,
    )
}

fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// One message from the front of `buf` and the bytes it used, or `None` if `buf` is short.
fn decode_one(buf: &[u8]) -> Result<Option<(Message, usize)>, Error> {
    if buf.len() < PRELUDE {
        return Ok(None);
    }
    let total = be32(&buf[0..4]);
    let headers_len = be32(&buf[4..8]);
    let expected = be32(&buf[8..12]);
    let actual = crc32(&buf[0..8]);
    if expected != actual {
        return Err(Error::PreludeCrc { expected, actual });
    }
    let (total_n, headers_n) = (total as usize, headers_len as usize);
    if !(OVERHEAD..=MAX_MESSAGE).contains(&total_n)
        || headers_n > MAX_HEADERS
        || headers_n > total_n - OVERHEAD
    {
        return Err(Error::Length {
            total,
            headers: headers_len,
        });
    }
    if buf.len() < total_n {
        return Ok(None);
    }
    let body_end = total_n - 4;
    let expected = be32(&buf[body_end..total_n]);
    let actual = crc32(&buf[..body_end]);
    if expected != actual {
        return Err(Error::MessageCrc { expected, actual });
    }
    let headers = decode_headers(&buf[PRELUDE..PRELUDE + headers_n])?;
    let payload = buf[PRELUDE + headers_n..body_end].to_vec();
    Ok(Some((Message { headers, payload }, total_n)))
}

fn decode_headers(mut rest: &[u8]) -> Result<Vec<Header>, Error> {
    let mut headers = Vec::new();
    while !rest.is_empty() {
        let name_len = usize::from(rest[0]);
        let name = take(&mut rest, 1, name_len, "name")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::Header("a name is not UTF-8".into()))?
            .to_string();
        let kind = take(&mut rest, 0, 1, "type")?[0];
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(fixed(&mut rest)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(fixed(&mut rest)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(fixed(&mut rest)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(fixed(&mut rest)?)),
            6 | 7 => {
                let len = usize::from(u16::from_be_bytes(fixed(&mut rest)?));
                let bytes = take(&mut rest, 0, len, "value")?.to_vec();
                if kind == 6 {
                    HeaderValue::Bytes(bytes)
                } else {
                    HeaderValue::String(String::from_utf8(bytes).map_err(|_| {
                        Error::Header(format!("the value of `{name}` is not UTF-8"))
                    })?)
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(fixed(&mut rest)?)),
            9 => HeaderValue::Uuid(fixed(&mut rest)?),
            other => return Err(Error::Header(format!("unknown value type {other}"))),
        };
        headers.push(Header { name, value });
    }
    Ok(headers)
}

/// Skips `skip` bytes, then takes `len`.
fn take<'a>(rest: &mut &'a [u8], skip: usize, len: usize, what: &str) -> Result<&'a [u8], Error> {
    let end = skip
        .checked_add(len)
        .filter(|end| *end <= rest.len())
        .ok_or_else(|| Error::Header(format!("a {what} runs past the headers")))?;
    let taken = &rest[skip..end];
    *rest = &rest[end..];
    Ok(taken)
}

fn fixed<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], Error> {
    let bytes = take(rest, 0, N, "value")?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

fn be32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(b)
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as gzip computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn truncated_headers_are_errors_not_panics() {
        // A header section claiming a 200-byte name in a 3-byte section.
        let mut msg = encode(&[Header::string("a", "b")], b"");
        msg[PRELUDE] = 200;
        let end = msg.len() - 4;
        let crc = crc32(&msg[..end]);
        msg[end..].copy_from_slice(&crc.to_be_bytes());
        let mut d = Decoder::new();
        d.push(&msg);
        assert!(matches!(d.next_message(), Err(Error::Header(_))));
    }
}
