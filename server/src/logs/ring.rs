//! The bounded in-memory ring of a sink's recent lines, for resuming a
//! follow by sequence number. Guarded by the sink's lock.
//!
//! Line data lives in one circular byte buffer, so keeping a line costs a
//! copy and no allocation, and the memory per sink is bounded: at most
//! [`RING_MAX_BYTES`] of data plus [`RING_MAX_LINES`] small entries. The
//! buffer starts at [`RING_MIN_BYTES`] and doubles only when the lines it
//! must keep do not fit: an app that prints a short line now and then
//! keeps a few KiB, not 64 (with 1000 such apps, 2 streams each, that was
//! 128 MB of zeroed buffers). The `LogLine`s are built only when someone
//! resumes.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use memchr::memrchr;

use super::{LogLine, MAX_LINE_BYTES, RING_MAX_BYTES, RING_MAX_LINES};

// Any line piece fits once the older lines are evicted.
const _: () = assert!(MAX_LINE_BYTES <= RING_MAX_BYTES);

/// The first size of a ring's buffer.
const RING_MIN_BYTES: usize = 4096;

#[derive(Default)]
pub(super) struct Ring {
    /// Empty until the first line arrives (a stream that never writes
    /// costs nothing), then a power of two from [`RING_MIN_BYTES`] to
    /// [`RING_MAX_BYTES`].
    buf: Box<[u8]>,
    /// Offset of the oldest line's first byte.
    head: usize,
    /// Bytes held, from `head` on, wrapping at the end of `buf`.
    used: usize,
    /// One per line in seq order; their data follows each other from
    /// `head` on.
    entries: VecDeque<Entry>,
}

struct Entry {
    seq: u64,
    timestamp_ms: i64,
    len: usize,
}

impl Ring {
    /// Keeps a copy of `data`, evicting the oldest lines beyond the bounds.
    pub(super) fn push(&mut self, seq: u64, timestamp_ms: i64, data: &[u8]) {
        debug_assert!(data.len() <= RING_MAX_BYTES);
        debug_assert!(self.entries.back().is_none_or(|last| last.seq < seq));
        while self.entries.len() >= RING_MAX_LINES && self.evict_oldest() {}
        if self.buf.is_empty() || self.used + data.len() > self.buf.len() {
            self.grow(self.used + data.len());
        }
        while self.used + data.len() > self.buf.len() && self.evict_oldest() {}
        let cap = self.buf.len();
        let tail = (self.head + self.used) % cap;
        let first = data.len().min(cap - tail);
        self.buf[tail..tail + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
        self.used += data.len();
        self.entries.push_back(Entry {
            seq,
            timestamp_ms,
            len: data.len(),
        });
    }

    /// Lines with `seq > after`, oldest first, built by `line(seq,
    /// timestamp_ms, data)`.
    pub(super) fn after(
        &self,
        after: u64,
        line: impl Fn(u64, i64, Bytes) -> Arc<LogLine>,
    ) -> Vec<Arc<LogLine>> {
        let from = self.entries.partition_point(|e| e.seq <= after);
        let cap = self.buf.len();
        let mut at = self.head;
        let mut lines = Vec::with_capacity(self.entries.len() - from);
        for (i, entry) in self.entries.iter().enumerate() {
            if i >= from {
                let first = entry.len.min(cap - at);
                let mut data = Vec::with_capacity(entry.len);
                data.extend_from_slice(&self.buf[at..at + first]);
                data.extend_from_slice(&self.buf[..entry.len - first]);
                lines.push(line(entry.seq, entry.timestamp_ms, Bytes::from(data)));
            }
            at = (at + entry.len) % cap;
        }
        lines
    }

    /// Drops the oldest line; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.entries.pop_front() else {
            return false;
        };
        self.head = (self.head + old.len) % self.buf.len();
        self.used -= old.len;
        true
    }

    /// Makes room for `needed` bytes (up to [`RING_MAX_BYTES`]), moving
    /// the kept lines to the front of the new buffer.
    fn grow(&mut self, needed: usize) {
        let cap = self.buf.len();
        let new_cap = needed
            .next_power_of_two()
            .clamp(RING_MIN_BYTES, RING_MAX_BYTES)
            .max(cap);
        if new_cap == cap {
            return;
        }
        let mut buf = vec![0; new_cap].into_boxed_slice();
        let first = self.used.min(cap - self.head);
        buf[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        buf[first..self.used].copy_from_slice(&self.buf[..self.used - first]);
        self.buf = buf;
        self.head = 0;
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.head = 0;
        self.used = 0;
    }
}

/// Where the newest lines of `body` that would survive in a ring bounded by
/// `max_lines` and `max_bytes` start, and how many they are: the lines
/// before them would be evicted by the time the chunk is in, so they are
/// not copied at all. `body` holds lines ending with `\n`, the last one
/// possibly without.
pub(super) fn newest_fitting(body: &[u8], max_lines: usize, max_bytes: usize) -> (usize, u64) {
    let mut from = body.len();
    let mut kept = 0;
    let mut bytes = 0;
    // Exclusive end of the data of the line being considered.
    let mut end = match body.last() {
        None => return (from, 0),
        Some(b'\n') => body.len() - 1,
        Some(_) => body.len(),
    };
    loop {
        let start = memrchr(b'\n', &body[..end]).map_or(0, |nl| nl + 1);
        let len = end - start;
        if kept == max_lines || (kept > 0 && bytes + len > max_bytes) {
            break;
        }
        kept += 1;
        bytes += len;
        from = start;
        if start == 0 {
            break;
        }
        end = start - 1;
    }
    (from, kept as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Stream;

    fn line(seq: u64, timestamp_ms: i64, data: Bytes) -> Arc<LogLine> {
        Arc::new(LogLine {
            seq,
            id: 0,
            name: Arc::from("r"),
            stream: Stream::Out,
            data,
            timestamp_ms,
        })
    }

    /// Lines that wrap around the end of the buffer come back whole.
    #[test]
    fn wrapped_lines_come_back_whole() {
        let mut ring = Ring::default();
        let mut seq = 0;
        for round in 0..50u8 {
            for len in [1000, 7000, 0, 30_000, 64 * 1024] {
                seq += 1;
                ring.push(seq, i64::from(round), &vec![round; len]);
                let lines = ring.after(0, line);
                let last = lines.last().unwrap();
                assert_eq!((last.seq, last.data.len()), (seq, len));
                assert!(last.data.iter().all(|&b| b == round));
                assert!(lines.iter().map(|l| l.data.len()).sum::<usize>() <= RING_MAX_BYTES);
                assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));
            }
        }
        assert_eq!(ring.buf.len(), RING_MAX_BYTES);
        ring.clear();
        assert!(ring.after(0, line).is_empty());
        ring.push(seq + 1, 0, b"again");
        assert_eq!(&ring.after(seq, line)[0].data[..], b"again");
    }

    /// Short lines keep the buffer small; growing keeps every line, in
    /// order, including lines that wrapped before the growth.
    #[test]
    fn the_buffer_grows_only_as_needed() {
        let mut ring = Ring::default();
        assert_eq!(ring.buf.len(), 0);
        for seq in 1..=1000u64 {
            ring.push(seq, 0, format!("{seq:08} out\n").as_bytes());
        }
        assert_eq!(ring.buf.len(), RING_MIN_BYTES);
        let kept = ring.after(0, line);
        assert_eq!(kept.len(), RING_MAX_LINES);
        assert_eq!(&kept[0].data[..], b"00000801 out\n");
        for (seq, len) in (1001..).zip([3000, 5000, 20_000]) {
            ring.push(seq, 0, &vec![b'x'; len]);
        }
        let kept = ring.after(0, line);
        // Only the count bound evicted (three lines): 200 lines, 30 KB.
        assert_eq!(ring.buf.len(), 32 * 1024);
        assert!(kept.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        assert_eq!(kept.last().unwrap().data.len(), 20_000);
        assert_eq!(&kept[0].data[..], b"00000804 out\n");
    }

    #[test]
    fn newest_fitting_counts_from_the_end() {
        assert_eq!(newest_fitting(b"a\nbb\nccc\n", 2, 100), (2, 2));
        assert_eq!(newest_fitting(b"a\nbb\nccc\n", 10, 5), (2, 2));
        assert_eq!(newest_fitting(b"a\nbb\nccc\n", 10, 100), (0, 3));
        assert_eq!(newest_fitting(b"a\npiece", 10, 100), (0, 2));
        assert_eq!(newest_fitting(b"\n", 10, 100), (0, 1));
        assert_eq!(newest_fitting(b"", 10, 100), (0, 0));
    }
}
