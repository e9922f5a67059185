//! The spool's on-disk record: a frame with its length and CRC, so that a torn tail (a crash in
//! the middle of a write) is recognised and cut, never read as a message.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "CSR1"
//! 4       4     payload length, u32 little-endian
//! 8       4     CRC-32C of the payload, u32 little-endian
//! 12      ...   payload:
//!                 8  spooled at, Unix milliseconds, u64 little-endian
//!                 1  routing key length
//!                 n  routing key
//!                 4  properties length, u32 little-endian
//!                 m  AMQP basic properties (the wire encoding: flags, then each field)
//!                 …  body, byte for byte, to the end of the payload
//! ```

use std::io::{self, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::protocol::basic::{gen_properties, parse_properties};
use lapin::types::ShortString;

pub const MAGIC: [u8; 4] = *b"CSR1";
pub const FRAME_HEADER: usize = 12;
/// The largest payload a record may declare: RabbitMQ's own message ceiling is below it.
pub const MAX_PAYLOAD: usize = 1 << 30;

const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// A message as the broker would have taken it.
#[derive(Debug, Clone)]
pub struct Message {
    pub routing_key: ShortString,
    pub properties: BasicProperties,
    pub body: Bytes,
}

/// A record ready to be written: its frame header and metadata, then the body (not copied).
pub struct Encoded {
    pub head: Vec<u8>,
    pub body: Bytes,
    pub spooled_at: SystemTime,
}

impl Encoded {
    /// Bytes the record takes on disk.
    pub fn disk_len(&self) -> u64 {
        (self.head.len() + self.body.len()) as u64
    }
}

/// Why a message cannot be written as a record.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the message's properties cannot be encoded: {0}")]
    Properties(String),
    #[error("the message is larger than a spool record may be")]
    TooLarge,
}

pub fn encode(message: &Message, spooled_at: SystemTime) -> Result<Encoded, EncodeError> {
    let properties = cookie_factory::gen_simple(gen_properties(&message.properties), Vec::new())
        .map_err(|e| EncodeError::Properties(e.to_string()))?;
    let key = message.routing_key.as_str().as_bytes();
    let key_len = u8::try_from(key.len()).map_err(|_| EncodeError::TooLarge)?;
    let properties_len = u32::try_from(properties.len()).map_err(|_| EncodeError::TooLarge)?;
    let payload_len = 8 + 1 + key.len() + 4 + properties.len() + message.body.len();
    if payload_len > MAX_PAYLOAD {
        return Err(EncodeError::TooLarge);
    }
    let millis = spooled_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));

    let mut head = Vec::with_capacity(FRAME_HEADER + 13 + key.len() + properties.len());
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&(payload_len as u32).to_le_bytes());
    head.extend_from_slice(&[0; 4]); // the CRC, once the payload is known
    head.extend_from_slice(&millis.to_le_bytes());
    head.push(key_len);
    head.extend_from_slice(key);
    head.extend_from_slice(&properties_len.to_le_bytes());
    head.extend_from_slice(&properties);
    let mut digest = CRC.digest();
    digest.update(&head[FRAME_HEADER..]);
    digest.update(&message.body);
    head[8..12].copy_from_slice(&digest.finalize().to_le_bytes());
    Ok(Encoded {
        head,
        body: message.body.clone(),
        spooled_at,
    })
}

/// One record read back.
#[derive(Debug)]
pub struct Record {
    pub message: Message,
    pub spooled_at: SystemTime,
    /// Bytes the record takes in its segment, frame included.
    pub len: u64,
}

/// What is at an offset of a segment.
#[derive(Debug)]
pub enum Next {
    Record(Box<Record>),
    /// Nothing more: the segment ends exactly here.
    End,
    /// Bytes that are not a whole, intact record (a torn or corrupt tail): cut them.
    Torn(&'static str),
}

/// Reads the record at the reader's position. Reads at most the declared payload, and only after
/// the frame header is valid.
pub fn read(reader: &mut impl Read) -> io::Result<Next> {
    let mut frame = [0u8; FRAME_HEADER];
    match read_full(reader, &mut frame)? {
        0 => return Ok(Next::End),
        n if n < FRAME_HEADER => return Ok(Next::Torn("a partial frame header")),
        _ => {}
    }
    if frame[..4] != MAGIC {
        return Ok(Next::Torn("no record magic"));
    }
    let payload_len = u32::from_le_bytes(frame[4..8].try_into().unwrap()) as usize;
    if !(13..=MAX_PAYLOAD).contains(&payload_len) {
        return Ok(Next::Torn("an impossible record length"));
    }
    let crc = u32::from_le_bytes(frame[8..12].try_into().unwrap());
    let mut payload = vec![0u8; payload_len];
    if read_full(reader, &mut payload)? < payload_len {
        return Ok(Next::Torn("a partial record"));
    }
    if CRC.checksum(&payload) != crc {
        return Ok(Next::Torn("a record whose CRC does not match"));
    }
    match decode(Bytes::from(payload)) {
        Some((message, spooled_at)) => Ok(Next::Record(Box::new(Record {
            message,
            spooled_at,
            len: (FRAME_HEADER + payload_len) as u64,
        }))),
        None => Ok(Next::Torn("a record that does not decode")),
    }
}

fn decode(payload: Bytes) -> Option<(Message, SystemTime)> {
    let millis = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let key_len = usize::from(*payload.get(8)?);
    let key = std::str::from_utf8(payload.get(9..9 + key_len)?).ok()?;
    let at = 9 + key_len;
    let properties_len = u32::from_le_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
    let properties_bytes = payload.get(at + 4..at + 4 + properties_len)?;
    let (rest, properties) = parse_properties(properties_bytes).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let message = Message {
        routing_key: ShortString::from(key),
        properties,
        body: payload.slice(at + 4 + properties_len..),
    };
    Some((message, UNIX_EPOCH + Duration::from_millis(millis)))
}

/// Like `read_exact`, but says how many bytes there were when the input ends early.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use lapin::types::{AMQPValue, FieldTable, LongString};

    use super::*;

    fn message(body: &[u8]) -> Message {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-source".into(),
            AMQPValue::LongString(LongString::from("acme")),
        );
        Message {
            routing_key: ShortString::from("taktikal.acme.AllSigned"),
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id("id-1".into())
                .with_timestamp(1_700_000_000)
                .with_content_type("application/json".into())
                .with_headers(headers),
            body: Bytes::copy_from_slice(body),
        }
    }

    fn bytes_of(encoded: &Encoded) -> Vec<u8> {
        [&encoded.head[..], &encoded.body[..]].concat()
    }

    #[test]
    fn a_record_reads_back_byte_for_byte() {
        let original = message(b"{\"Id\":\"1\"}\r\n\0\xff");
        let at = UNIX_EPOCH + Duration::from_millis(1_763_900_000_123);
        let encoded = encode(&original, at).unwrap();
        let bytes = bytes_of(&encoded);
        assert_eq!(encoded.disk_len(), bytes.len() as u64);
        let Next::Record(record) = read(&mut &bytes[..]).unwrap() else {
            panic!("a record")
        };
        assert_eq!(record.message.body, original.body);
        assert_eq!(record.message.routing_key, original.routing_key);
        assert_eq!(record.message.properties, original.properties);
        assert_eq!(record.spooled_at, at);
        assert_eq!(record.len, bytes.len() as u64);
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_torn_never_a_record() {
        let encoded = encode(&message(b"{\"a\":1}"), SystemTime::now()).unwrap();
        let bytes = bytes_of(&encoded);
        assert!(matches!(read(&mut &bytes[..0]).unwrap(), Next::End));
        for cut in 1..bytes.len() {
            let outcome = read(&mut &bytes[..cut]).unwrap();
            assert!(
                matches!(outcome, Next::Torn(_)),
                "cut at {cut}: {outcome:?}"
            );
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            let outcome = read(&mut &flipped[..]).unwrap();
            assert!(
                !matches!(outcome, Next::Record(_)),
                "byte {at} flipped still reads as a record"
            );
        }
    }

    #[test]
    fn zeros_after_a_crash_are_torn() {
        let zeros = [0u8; 64];
        assert!(matches!(read(&mut &zeros[..]).unwrap(), Next::Torn(_)));
    }
}
