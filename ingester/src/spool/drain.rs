//! Publishing what the spool holds, oldest first, forgetting each record only after the broker's
//! confirm.

use std::fs::{self, File};
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::quarantine::{self, POISON_TRIES};
use super::record::{self, Next, Record};
use super::{Shared, Spool};
use crate::broker::{Broker, PublishError};

/// Records published together (their confirms pipeline), and their bytes at most.
const BATCH_RECORDS: usize = 256;
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the broker is looked at while it is away.
const BROKER_POLL: Duration = Duration::from_millis(200);

/// The record the drainer suspects: after a failed batch it is published alone, and counted
/// when it fails so.
struct Suspect {
    segment: u64,
    offset: u64,
    /// Failures of this record published alone, the channel or connection closed on it.
    tries: u32,
}

impl Suspect {
    /// The failures counted against the record at `offset` of `segment` after a publish failed
    /// with `error` (`alone`: it was published alone, as the suspect).
    fn count(
        suspect: &mut Option<Suspect>,
        alone: bool,
        error: &PublishError,
        segment: u64,
        offset: u64,
    ) -> u32 {
        match suspect {
            // Published alone, and the channel or connection closed on it: counted. Other
            // failures (no connection, alarm, nack, timeout) are the broker's, not the
            // record's.
            Some(s) if alone && matches!(error, PublishError::Channel(_)) => {
                s.tries += 1;
                s.tries
            }
            // Not the record's doing: neither counted nor forgotten.
            Some(s) if alone => s.tries,
            _ => {
                *suspect = Some(Suspect {
                    segment,
                    offset,
                    tries: 0,
                });
                0
            }
        }
    }
}

impl Spool {
    /// Drains the spool into the broker until `stop` is cancelled. Run it as a task.
    ///
    /// After a batch fails, its first unconfirmed record is published alone until it is
    /// confirmed; if the broker closes the channel or connection on it [`POISON_TRIES`] times in
    /// a row, or it cannot fit the broker's frame at all, it is quarantined and draining goes on
    /// behind it.
    pub async fn drain(self: Arc<Self>, broker: Arc<Broker>, stop: CancellationToken) {
        let shared = self.shared.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut suspect: Option<Suspect> = None;
        loop {
            let Some((id, from, to)) = shared.next_span() else {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = shared.appended.notified() => {}
                    // Also picks up the deletion of a segment the writer has left.
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            if !broker.is_ready() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(BROKER_POLL) => {}
                }
                continue;
            }
            let alone = suspect
                .as_ref()
                .is_some_and(|s| s.segment == id && s.offset == from);
            if !alone {
                suspect = None;
            }
            let limit = if alone { 1 } else { BATCH_RECORDS };
            let Some(records) = shared.read(id, from, to, limit).await else {
                continue;
            };
            let Some(records) = shared.fitting(&broker, id, from, records).await else {
                continue;
            };
            let outcomes = futures_util::future::join_all(records.iter().map(|r| {
                broker.publish_raw(
                    r.message.routing_key.clone(),
                    &r.message.body,
                    r.message.properties.clone(),
                )
            }))
            .await;
            let confirmed = outcomes.iter().take_while(|o| o.is_ok()).count();
            let failure = outcomes.iter().find_map(|o| o.as_ref().err());
            shared.advance(id, from, &records, confirmed);
            let Some(error) = failure else {
                backoff = FIRST_BACKOFF;
                suspect = None;
                continue;
            };
            let offset = from + records[..confirmed].iter().map(|r| r.len).sum::<u64>();
            let tries = Suspect::count(&mut suspect, alone, error, id, offset);
            if tries >= POISON_TRIES {
                let reason = format!(
                    "refused on each of {tries} publishes alone, the broker closing the channel or connection: {error}"
                );
                shared
                    .quarantine_record(id, offset, &records[confirmed], &reason, tries)
                    .await;
                suspect = None;
                backoff = FIRST_BACKOFF;
                continue;
            }
            tracing::warn!(error = %error, tries, retry_in = ?backoff, "spool: the broker did not confirm a spooled message; retrying");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

impl Shared {
    /// Up to `limit` records of segment `id` between `from` and `to`; `None` when they cannot
    /// be read (a segment that does not read back is set aside, with the reason logged).
    async fn read(&self, id: u64, from: u64, to: u64, limit: usize) -> Option<Vec<Record>> {
        let path = self.segment_path(id);
        match tokio::task::spawn_blocking(move || read_span(path, from, to, limit)).await {
            Ok(Ok(records)) => Some(records),
            Ok(Err(error)) => {
                self.set_aside(id, &error);
                None
            }
            Err(error) => {
                tracing::error!(error = %error, "spool: reading a segment failed");
                None
            }
        }
    }

    /// `records` up to the first one the broker's frame cannot hold: such a record would close
    /// the connection each time it is sent. When it is the first, it is quarantined and `None`
    /// returned (the drain goes on behind it).
    async fn fitting(
        self: &Arc<Self>,
        broker: &Broker,
        id: u64,
        from: u64,
        mut records: Vec<Record>,
    ) -> Option<Vec<Record>> {
        let unfit = records
            .iter()
            .position(|r| broker.check_fits(&r.message.properties).is_err());
        match unfit {
            Some(0) => {
                let reason = broker
                    .check_fits(&records[0].message.properties)
                    .err()
                    .map_or_else(String::new, |e| format!("frame_too_large: {e}"));
                self.quarantine_record(id, from, &records[0], &reason, 0)
                    .await;
                None
            }
            Some(unfit) => {
                records.truncate(unfit);
                Some(records)
            }
            None => Some(records),
        }
    }

    /// The oldest undrained span `(segment, from, to)`; deletes the segments drained out on the
    /// way (the writer's own only while it is not writing).
    fn next_span(&self) -> Option<(u64, u64, u64)> {
        let mut state = self.state.lock().unwrap();
        loop {
            let writing = state.writing;
            let front = state.segments.front_mut()?;
            if front.drained_to < front.len {
                return Some((front.id, front.drained_to, front.len));
            }
            if !front.sealed {
                if writing {
                    return None;
                }
                front.sealed = true;
            }
            let segment = state.segments.pop_front().expect("looked at above");
            if let Err(error) = fs::remove_file(self.segment_path(segment.id)) {
                tracing::error!(error = %error, segment = segment.id, "spool: cannot delete a drained segment (its messages will be sent again after a restart)");
            }
            state.bytes = state.bytes.saturating_sub(segment.len);
            state.failing = None;
            self.publish_gauges_locked(&state);
        }
    }

    /// Moves segment `id` past the first `confirmed` of `records` (read from `from`).
    fn advance(&self, id: u64, from: u64, records: &[Record], confirmed: usize) {
        self.move_past(id, from, records, confirmed);
        self.metrics.spool_drained.inc_by(confirmed as u64);
    }

    /// Moves segment `id` past the first `count` of `records` (read from `from`), whether the
    /// broker confirmed them or they went to the quarantine.
    fn move_past(&self, id: u64, from: u64, records: &[Record], confirmed: usize) {
        let mut state = self.state.lock().unwrap();
        let Some(segment) = state.segments.iter_mut().find(|s| s.id == id) else {
            return;
        };
        segment.drained_to = from + records[..confirmed].iter().map(|r| r.len).sum::<u64>();
        // The next record's time when it was read, else the last drained one's (a little older
        // than the truth: the age bound errs on the safe side).
        let next = records
            .get(confirmed)
            .or(confirmed.checked_sub(1).and_then(|i| records.get(i)));
        if let Some(record) = next {
            segment.oldest = Some(record.spooled_at);
        }
        state.messages = state.messages.saturating_sub(confirmed as u64);
        if state.messages == 0
            && let Some((since, count)) = state.episode.take()
        {
            tracing::info!(
                messages = count,
                elapsed_ms = since.elapsed().as_millis() as u64,
                "spool drained: every spooled webhook is now confirmed by the broker"
            );
        }
        self.publish_gauges_locked(&state);
    }

    /// Moves `record` (at `offset` of segment `id`) into the quarantine, durably, then past it;
    /// if the quarantine cannot be written, the record stays where it is and is tried again.
    async fn quarantine_record(
        self: &Arc<Self>,
        id: u64,
        offset: u64,
        record: &Record,
        reason: &str,
        tries: u32,
    ) {
        let (dir, message, spooled_at) =
            (self.dir.clone(), record.message.clone(), record.spooled_at);
        let why = reason.to_owned();
        let written = tokio::task::spawn_blocking(move || {
            quarantine::put(&dir, &message, spooled_at, (id, offset), &why, tries)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        let message_id = record
            .message
            .properties
            .message_id()
            .as_ref()
            .map(|m| countersign::telemetry::Escaped(m.as_str()).to_string())
            .unwrap_or_default();
        match written {
            Ok(quarantine_id) => {
                tracing::error!(
                    quarantine_id,
                    message_id,
                    routing_key = %countersign::telemetry::Escaped(record.message.routing_key.as_str()),
                    reason,
                    "spool: a message the broker refuses every time was moved to the quarantine; the rest drains behind it (countersign-ingester spool quarantine show {quarantine_id})"
                );
                self.move_past(id, offset, std::slice::from_ref(record), 1);
                self.metrics.spool_quarantined_total.inc();
                self.metrics
                    .spool_quarantined
                    .set(i64::try_from(quarantine::count(&self.dir)).unwrap_or(i64::MAX));
            }
            Err(error) => {
                tracing::error!(error = %error, message_id, "spool: cannot write the quarantine; the message stays in the spool");
                tokio::time::sleep(MAX_BACKOFF).await;
            }
        }
    }

    /// A segment whose durable bytes do not read back: kept aside for a person, not drained.
    fn set_aside(&self, id: u64, error: &io::Error) {
        let mut state = self.state.lock().unwrap();
        let path = self.segment_path(id);
        let aside = path.with_extension("seg.corrupt");
        tracing::error!(error = %error, segment = %path.display(), kept_as = %aside.display(), "spool: a segment does not read back; set aside, not drained — inspect it by hand");
        if let Err(error) = fs::rename(&path, &aside) {
            tracing::error!(error = %error, "spool: cannot set the segment aside");
        }
        if let Some(index) = state.segments.iter().position(|s| s.id == id) {
            let segment = state.segments.remove(index).expect("found");
            state.bytes = state.bytes.saturating_sub(segment.len);
        }
        self.publish_gauges_locked(&state);
    }
}

/// Reads the records of `path` in `[from, to)`, up to a batch of at most `limit`.
fn read_span(path: PathBuf, from: u64, to: u64, limit: usize) -> io::Result<Vec<Record>> {
    let mut file = File::open(&path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut records, mut at, mut bytes) = (Vec::new(), from, 0u64);
    while at < to && records.len() < limit.min(BATCH_RECORDS) && bytes < BATCH_BYTES {
        match record::read(&mut reader)? {
            Next::Record(record) => {
                at += record.len;
                bytes += record.len;
                records.push(*record);
            }
            Next::End | Next::Torn(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("no intact record at offset {at} of {to} durable bytes"),
                ));
            }
        }
    }
    if at > to {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a record runs past the durable end ({at} > {to})"),
        ));
    }
    Ok(records)
}
