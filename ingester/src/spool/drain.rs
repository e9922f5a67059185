//! Publishing what the spool holds, oldest first, forgetting each record only after the broker's
//! confirm.

use std::fs::{self, File};
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::record::{self, Next, Record};
use super::{Shared, Spool};
use crate::broker::Broker;

/// Records published together (their confirms pipeline), and their bytes at most.
const BATCH_RECORDS: usize = 256;
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the broker is looked at while it is away.
const BROKER_POLL: Duration = Duration::from_millis(200);

impl Spool {
    /// Drains the spool into the broker until `stop` is cancelled. Run it as a task.
    pub async fn drain(self: Arc<Self>, broker: Arc<Broker>, stop: CancellationToken) {
        let shared = self.shared.clone();
        let mut backoff = FIRST_BACKOFF;
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
            let path = shared.segment_path(id);
            let read = tokio::task::spawn_blocking(move || read_span(path, from, to)).await;
            let records = match read {
                Ok(Ok(records)) => records,
                Ok(Err(error)) => {
                    shared.quarantine(id, &error);
                    continue;
                }
                Err(error) => {
                    tracing::error!(error = %error, "spool: reading a segment failed");
                    continue;
                }
            };
            let outcomes = futures_util::future::join_all(
                records.iter().map(|r| broker.publish_message(&r.message)),
            )
            .await;
            let confirmed = outcomes.iter().take_while(|o| o.is_ok()).count();
            let failure = outcomes.iter().find_map(|o| o.as_ref().err());
            shared.advance(id, from, &records, confirmed);
            match failure {
                None => backoff = FIRST_BACKOFF,
                Some(error) => {
                    tracing::warn!(error = %error, retry_in = ?backoff, "spool: the broker did not confirm a spooled message; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

impl Shared {
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
        self.metrics.spool_drained.inc_by(confirmed as u64);
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

    /// A segment whose durable bytes do not read back: kept aside for a person, not drained.
    fn quarantine(&self, id: u64, error: &io::Error) {
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

/// Reads the records of `path` in `[from, to)`, up to a batch.
fn read_span(path: PathBuf, from: u64, to: u64) -> io::Result<Vec<Record>> {
    let mut file = File::open(&path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut records, mut at, mut bytes) = (Vec::new(), from, 0u64);
    while at < to && records.len() < BATCH_RECORDS && bytes < BATCH_BYTES {
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
