//! The spool's quarantine: spooled messages the broker refuses every time they are sent, moved
//! aside so that the records behind them keep draining in order.
//!
//! A record lands here when it cannot fit the broker's frame at all (its header frame is larger
//! than the negotiated `frame_max`: sending it would close the connection), or when, published
//! alone, it failed [`POISON_TRIES`] times in a row with the connection or channel closed on
//! that very publish while the broker was otherwise up (a `PRECONDITION_FAILED` on its
//! properties, a message over the broker's `max_message_size`, …). Broker-wide trouble — no
//! connection, a resource alarm, nacks, a confirm timeout — never counts against a record.
//!
//! # Storage
//!
//! `<spool dir>/quarantine/<id>.rec` holds the record as the spool wrote it (the same framing and
//! CRC), `<id>.json` why it is here. Each file is written under a temporary name, fsync'd and
//! renamed, and the directory fsync'd, before the drainer moves past the record: a crash in
//! between drains the segment again and quarantines the same record under the same id. The id
//! is `<spooled at, ms>-<segment>-<offset>`: stable for a record, unique across segments.
//!
//! The operator lists, shows and re-drives them with `countersign-ingester spool quarantine …`;
//! the gauge `countersign_ingester_spool_quarantined` counts them.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::record::{self, Message, Next};
use super::sync_dir;

/// The quarantine's directory inside the spool's.
pub const DIR: &str = "quarantine";
/// Publishes of one record alone, each failing with the channel or connection closed on it,
/// before it is quarantined.
pub const POISON_TRIES: u32 = 5;

const RECORD_SUFFIX: &str = ".rec";
const REASON_SUFFIX: &str = ".json";

/// A quarantined message and why it is there.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub message: Message,
    pub spooled_at: SystemTime,
    /// Why (one line), how often it was tried, when it was set aside (RFC 3339); what the
    /// reason file says, or `unknown` where it is missing.
    pub reason: String,
    pub tries: u64,
    pub quarantined_at: String,
}

pub fn dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join(DIR)
}

/// The id of a record: stable for the same record read again, unique across segments.
pub fn id_of(spooled_at: SystemTime, segment: u64, offset: u64) -> String {
    let millis = spooled_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis:013}-{segment:020}-{offset:012}")
}

/// Writes `message` into the quarantine with its reason, durably, before the caller moves past
/// it. Returns its id.
pub fn put(
    spool_dir: &Path,
    message: &Message,
    spooled_at: SystemTime,
    (segment, offset): (u64, u64),
    reason: &str,
    tries: u32,
) -> io::Result<String> {
    let dir = dir(spool_dir);
    fs::create_dir_all(&dir)?;
    let id = id_of(spooled_at, segment, offset);
    let encoded = record::encode(message, spooled_at).map_err(io::Error::other)?;
    let about = serde_json::json!({
        "reason": reason,
        "tries": tries,
        "quarantined_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "segment": segment,
        "offset": offset,
    });
    write_durably(
        &dir.join(format!("{id}{REASON_SUFFIX}")),
        &[about.to_string().as_bytes(), b"\n"],
    )?;
    write_durably(
        &dir.join(format!("{id}{RECORD_SUFFIX}")),
        &[&encoded.head, &encoded.body],
    )?;
    sync_dir(&dir)?;
    Ok(id)
}

/// Writes `parts` to `path` through a temporary file, fsync'd, then renamed into place.
fn write_durably(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_all()?;
    fs::rename(&temporary, path)
}

/// The ids in the quarantine, oldest first.
pub fn ids(spool_dir: &Path) -> io::Result<Vec<String>> {
    let mut ids: Vec<String> = match fs::read_dir(dir(spool_dir)) {
        Ok(entries) => entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                Some(name.to_str()?.strip_suffix(RECORD_SUFFIX)?.to_owned())
            })
            .collect(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    ids.sort_unstable();
    Ok(ids)
}

/// How many messages the quarantine holds (0 when it cannot be read: the gauge is a hint, the
/// listing says why).
pub fn count(spool_dir: &Path) -> usize {
    ids(spool_dir).map_or(0, |ids| ids.len())
}

/// One quarantined message. An id is only ever one of [`ids`]: never a path.
pub fn read(spool_dir: &Path, id: &str) -> io::Result<Entry> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{id:?} is not a quarantine id"),
        ));
    }
    let dir = dir(spool_dir);
    let file = File::open(dir.join(format!("{id}{RECORD_SUFFIX}")))?;
    let record = match record::read(&mut io::BufReader::new(file))? {
        Next::Record(record) => record,
        Next::End | Next::Torn(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("quarantined record {id} does not read back"),
            ));
        }
    };
    let about: serde_json::Value = fs::read(dir.join(format!("{id}{REASON_SUFFIX}")))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or_default();
    Ok(Entry {
        id: id.to_owned(),
        message: record.message,
        spooled_at: record.spooled_at,
        reason: about["reason"].as_str().unwrap_or("unknown").to_owned(),
        tries: about["tries"].as_u64().unwrap_or_default(),
        quarantined_at: about["quarantined_at"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
    })
}

/// Removes a message from the quarantine (after it was re-driven).
pub fn remove(spool_dir: &Path, id: &str) -> io::Result<()> {
    let dir = dir(spool_dir);
    fs::remove_file(dir.join(format!("{id}{RECORD_SUFFIX}")))?;
    match fs::remove_file(dir.join(format!("{id}{REASON_SUFFIX}"))) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    sync_dir(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use lapin::BasicProperties;

    #[test]
    fn a_quarantined_message_reads_back_with_its_reason_and_goes_away() {
        let spool = tempfile::tempdir().unwrap();
        assert_eq!(ids(spool.path()).unwrap(), Vec::<String>::new());
        let message = Message {
            routing_key: "taktikal.acme.Signed".into(),
            properties: BasicProperties::default().with_message_id("evt-1".into()),
            body: Bytes::from_static(b"{\"genuine\": true}"),
        };
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_765_000_000_123);
        let id = put(spool.path(), &message, at, (7, 4096), "frame_too_large", 0).unwrap();
        assert_eq!(id, id_of(at, 7, 4096));
        // Again (a crash before the drainer moved on): the same id, still one entry.
        put(spool.path(), &message, at, (7, 4096), "frame_too_large", 0).unwrap();
        assert_eq!(ids(spool.path()).unwrap(), std::slice::from_ref(&id));
        assert_eq!(count(spool.path()), 1);
        let entry = read(spool.path(), &id).unwrap();
        assert_eq!(entry.message.body, message.body);
        assert_eq!(entry.message.routing_key, message.routing_key);
        assert_eq!(
            entry
                .message
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .as_str(),
            "evt-1"
        );
        assert_eq!(entry.spooled_at, at);
        assert_eq!(entry.reason, "frame_too_large");
        assert!(read(spool.path(), "../lock").is_err(), "never a path");
        remove(spool.path(), &id).unwrap();
        assert_eq!(count(spool.path()), 0);
    }
}
