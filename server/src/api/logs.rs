//! StreamLogs and FlushLogs.
//!
//! A stream is produced by one task per request that writes into a bounded
//! mpsc channel (the response body); it stops when a send fails (client
//! gone), when the daemon shuts down, or after the history when not
//! following. Race-free hand-over from history to live lines: the task
//! subscribes to the hub's broadcast *before* reading each file's tail, and
//! `tail` returns the sequence number of the last line already in the file,
//! so live lines at or below it are dropped as duplicates.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use pmdaemon_proto::{Target, v1};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use bytes::Bytes;

use super::convert::parse_target;
use crate::logs::{LogLine, MAX_LINE_BYTES, Stream};
use crate::supervisor::Supervisor;
use crate::supervisor::events::EventKind;

/// The response stream of StreamLogs.
pub type LogStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::StreamLogsResponse, Status>> + Send>>;

/// Most history lines a request may ask for per file.
const MAX_HISTORY_LINES: u32 = pmdaemon_proto::MAX_LOG_HISTORY_LINES;
/// Lines per response message: batching keeps a fast producer cheap.
const BATCH: usize = 512;
/// And at most this many bytes of line data per message: clients refuse
/// messages above 4 MiB by default.
const BATCH_BYTES: usize = 1 << 20;

fn stream_to_proto(s: Stream) -> i32 {
    match s {
        Stream::Out => v1::LogStream::Stdout as i32,
        Stream::Err => v1::LogStream::Stderr as i32,
    }
}

fn live_line(l: &LogLine) -> v1::LogLine {
    v1::LogLine {
        seq: l.seq,
        id: l.id,
        name: l.name.to_string(),
        stream: stream_to_proto(l.stream),
        data: l.data.to_vec(),
        timestamp_ms: l.timestamp_ms,
    }
}

pub async fn stream(
    sup: &Supervisor,
    req: v1::StreamLogsRequest,
    mut shutdown: watch::Receiver<bool>,
) -> Result<LogStream, Status> {
    let target = if req.target.is_empty() {
        Target::All
    } else {
        parse_target(&req.target)?
    };
    let wanted = match v1::LogStream::try_from(req.stream) {
        Ok(v1::LogStream::Unspecified) => None,
        Ok(v1::LogStream::Stdout) => Some(Stream::Out),
        Ok(v1::LogStream::Stderr) => Some(Stream::Err),
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "stream: {} is not a log stream",
                req.stream
            )));
        }
    };
    if req.lines > MAX_HISTORY_LINES {
        return Err(Status::invalid_argument(format!(
            "lines: {} is more than the {MAX_HISTORY_LINES} maximum",
            req.lines
        )));
    }
    // Before the sinks are listed: a delete right after must not be missed.
    let mut events = sup.subscribe_events();
    let sinks: Vec<_> = sup
        .sinks(&target)?
        .into_iter()
        .filter(|(_, _, s, _)| wanted.is_none_or(|w| w == *s))
        .collect();
    // Only these ids are followed, except for `all`, which also follows
    // apps created later.
    let ids: Option<Vec<u32>> = match target {
        Target::All => None,
        _ => Some(sinks.iter().map(|(id, ..)| *id).collect()),
    };
    let mut live = sup.logs().subscribe();
    let sup = sup.clone();
    let what = target.to_string();
    let (tx, rx) = mpsc::channel::<Result<v1::StreamLogsResponse, Status>>(16);
    let follow = req.follow;
    let lines = req.lines as usize;
    let after_seq = req.after_seq;

    tokio::spawn(async move {
        // Last seq already sent per (id, is_stderr).
        let mut seen: HashMap<(u32, bool), u64> = HashMap::new();
        // Instances of an app with merge_logs write one file: its history
        // is read once, by the first of them. The others' last lines are
        // noted before that read, so a line of theirs written meanwhile
        // comes twice (file and live) rather than never.
        let mut shared = vec![false; sinks.len()];
        if after_seq.is_none() {
            for i in 0..sinks.len() {
                if sinks[..i]
                    .iter()
                    .any(|(.., s)| s.shares_file_with(&sinks[i].3))
                {
                    shared[i] = true;
                    let (id, _, stream, sink) = &sinks[i];
                    seen.insert((*id, *stream == Stream::Err), sink.last_seq());
                }
            }
        }
        for ((id, name, stream, sink), shared) in sinks.into_iter().zip(shared) {
            let history: Vec<v1::LogLine> = if shared {
                Vec::new()
            } else if let Some(after) = after_seq {
                let retained = sink.retained_after(after);
                seen.insert(
                    (id, stream == Stream::Err),
                    retained.last().map(|l| l.seq).unwrap_or(after),
                );
                retained.iter().map(|l| live_line(l)).collect()
            } else {
                let sink2 = sink.clone();
                let read = tokio::task::spawn_blocking(move || sink2.tail(lines)).await;
                let (data, last_seq) = match read {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        let _ = tx
                            .send(Err(Status::internal(format!(
                                "cannot read {}: {e}",
                                sink.path().display()
                            ))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                seen.insert((id, stream == Stream::Err), last_seq);
                data.into_iter()
                    .map(|d| v1::LogLine {
                        seq: 0,
                        id,
                        name: name.to_string(),
                        stream: stream_to_proto(stream),
                        data: d.to_vec(),
                        timestamp_ms: 0,
                    })
                    .collect()
            };
            // A line from a file may be far longer than a live piece: it
            // is sent in pieces of at most MAX_LINE_BYTES, like live ones.
            let pieces = history.into_iter().flat_map(|line| {
                let data = Bytes::from(line.data.clone());
                let starts: Vec<usize> = (0..data.len().max(1)).step_by(MAX_LINE_BYTES).collect();
                starts.into_iter().map(move |start| v1::LogLine {
                    data: data
                        .slice(start..(start + MAX_LINE_BYTES).min(data.len()))
                        .to_vec(),
                    ..line.clone()
                })
            });
            let mut batch: Vec<v1::LogLine> = Vec::new();
            let mut bytes = 0;
            for piece in pieces {
                if !batch.is_empty()
                    && (batch.len() == BATCH || bytes + piece.data.len() > BATCH_BYTES)
                {
                    let lines = std::mem::take(&mut batch);
                    bytes = 0;
                    let msg = v1::StreamLogsResponse {
                        lines,
                        missed_lines: 0,
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                bytes += piece.data.len();
                batch.push(piece);
            }
            if !batch.is_empty() {
                let msg = v1::StreamLogsResponse {
                    lines: batch,
                    missed_lines: 0,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        }
        if !follow {
            return;
        }
        let wants = |l: &LogLine| {
            ids.as_ref().is_none_or(|ids| ids.contains(&l.id))
                && wanted.is_none_or(|w| w == l.stream)
                && l.seq
                    > seen
                        .get(&(l.id, l.stream == Stream::Err))
                        .copied()
                        .unwrap_or(0)
        };
        // Followed ids still there; when the last is deleted the stream
        // ends, saying so (nothing more can come).
        let mut remaining: Vec<u32> = ids.clone().unwrap_or_default();
        loop {
            if ids.is_some() && remaining.is_empty() {
                let gone = Status::not_found(format!("{what} was deleted: no more logs to follow"));
                let _ = tx.send(Err(gone)).await;
                return;
            }
            let first = tokio::select! {
                // Pending lines first: an app's last words at shutdown
                // reach followers before the stream ends.
                biased;
                r = live.recv() => r,
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
                e = events.recv(), if ids.is_some() => {
                    match e {
                        Ok(e) if e.kind == EventKind::Deleted => remaining.retain(|&id| id != e.id),
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            remaining.retain(|&id| sup.views(&Target::Id(id)).is_ok());
                        }
                        _ => {}
                    }
                    continue;
                }
            };
            let mut batch = Vec::new();
            let mut missed = 0u64;
            let mut bytes = 0usize;
            let mut closed = absorb(first, &wants, &mut batch, &mut bytes, &mut missed);
            while batch.len() < BATCH && bytes < BATCH_BYTES && !closed {
                let next = match live.try_recv() {
                    Ok(l) => Ok(l),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        Err(broadcast::error::RecvError::Closed)
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                };
                closed = absorb(next, &wants, &mut batch, &mut bytes, &mut missed);
            }
            if !batch.is_empty() || missed > 0 {
                let msg = v1::StreamLogsResponse {
                    lines: batch,
                    missed_lines: missed,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            if closed {
                return;
            }
        }
    });
    let stream = ReceiverStream::new(rx);
    Ok(Box::pin(stream))
}

/// Adds one broadcast result to the batch being built; true when the
/// broadcast is closed (daemon going away).
fn absorb(
    r: Result<Arc<LogLine>, broadcast::error::RecvError>,
    wants: &impl Fn(&LogLine) -> bool,
    batch: &mut Vec<v1::LogLine>,
    bytes: &mut usize,
    missed: &mut u64,
) -> bool {
    match r {
        Ok(l) if wants(&l) => {
            *bytes += l.data.len();
            batch.push(live_line(&l));
        }
        Ok(_) => {}
        Err(broadcast::error::RecvError::Lagged(n)) => *missed += n,
        Err(broadcast::error::RecvError::Closed) => return true,
    }
    false
}

pub async fn flush(
    sup: &Supervisor,
    req: v1::FlushLogsRequest,
) -> Result<v1::FlushLogsResponse, Status> {
    let target = if req.target.is_empty() {
        Target::All
    } else {
        parse_target(&req.target)?
    };
    let sinks = sup.sinks(&target)?;
    let files = tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        for (_, _, _, sink) in sinks {
            sink.flush().map_err(|e| {
                Status::internal(format!("cannot flush {}: {e}", sink.path().display()))
            })?;
            files.push(sink.path().display().to_string());
        }
        Ok::<_, Status>(files)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))??;
    Ok(v1::FlushLogsResponse { files })
}
