//! Specs of log capture, with real files and real pipes.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::files::{rotated_path, tail_lines};
use super::*;

const ROOMY: LogConfig = LogConfig {
    max_bytes: 10 * 1024 * 1024,
    max_files: 3,
    format: LineFormat::Plain,
    merged: false,
};

fn hub() -> (TempDir, LogHub) {
    let dir = tempfile::tempdir().unwrap();
    let hub = LogHub::new(dir.path().join("logs")).unwrap();
    (dir, hub)
}

/// Runs `sh -c script` with its stdout captured into `sink`, and waits for
/// both the child and the capture (bounded, so a stuck pipe fails the test
/// instead of hanging it).
async fn run_sh(sink: &Arc<LogSink>, script: &str) {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let task = capture(child.stdout.take().unwrap(), Arc::clone(sink));
    tokio::time::timeout(Duration::from_secs(30), async {
        task.await.unwrap();
        assert!(child.wait().await.unwrap().success());
    })
    .await
    .expect("capture did not finish");
}

/// Feeds `writes` through an in-memory pipe, one write each, then closes it.
async fn run_writes(sink: &Arc<LogSink>, writes: &[&[u8]]) {
    let (mut tx, rx) = tokio::io::duplex(1024);
    let task = capture(rx, Arc::clone(sink));
    for write in writes {
        tx.write_all(write).await.unwrap();
        tokio::task::yield_now().await;
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("capture did not finish")
        .unwrap();
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn received(rx: &mut broadcast::Receiver<Arc<LogLine>>) -> Vec<Arc<LogLine>> {
    let mut lines = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(line) => lines.push(line),
            Err(TryRecvError::Empty) => return lines,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

fn data(lines: &[Arc<LogLine>]) -> Vec<&[u8]> {
    lines.iter().map(|line| &line.data[..]).collect()
}

fn strs(lines: &[&'static str]) -> Vec<Bytes> {
    lines
        .iter()
        .map(|l| Bytes::from_static(l.as_bytes()))
        .collect()
}

fn numbered(range: std::ops::RangeInclusive<u32>) -> Vec<Vec<u8>> {
    range.map(|i| i.to_string().into_bytes()).collect()
}

/// Lines land in `NAME-ID-STREAM.log`, and a second run of the instance
/// (a new capture on the same sink) and a new daemon (a new sink on the
/// same file) append instead of truncating.
#[tokio::test]
async fn lines_land_in_the_file_and_runs_append() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("web", 3, Stream::Out, None, ROOMY).unwrap();
    assert_eq!(sink.path(), hub.dir().join("web-3-out.log"));
    assert_eq!(
        hub.path("web", 3, Stream::Err),
        hub.dir().join("web-3-err.log")
    );

    run_sh(&sink, "printf 'a\\nb\\n'").await;
    run_sh(&sink, "echo c").await;
    assert_eq!(read(sink.path()), b"a\nb\nc\n");

    drop(sink);
    let sink = hub.open_sink("web", 3, Stream::Out, None, ROOMY).unwrap();
    run_sh(&sink, "echo d").await;
    assert_eq!(read(sink.path()), b"a\nb\nc\nd\n");
}

/// A line split across reads is joined, and a last line without a
/// newline is emitted at EOF (the file gets the newline).
#[tokio::test]
async fn partial_lines_are_carried_over_and_flushed_at_eof() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("app", 0, Stream::Out, None, ROOMY).unwrap();
    let mut rx = hub.subscribe();
    run_writes(&sink, &[b"one\ntw", b"o", b"\nthr", b"ee"]).await;
    // The last line has no newline, and the file says so.
    assert_eq!(read(sink.path()), b"one\ntwo\nthree");
    let lines = received(&mut rx);
    assert_eq!(data(&lines), [&b"one"[..], b"two", b"three"]);
}

/// A run that ends in the middle of a line leaves the file as it wrote it;
/// the next run (also of a later daemon, which opens the file anew) starts
/// on a line of its own.
#[tokio::test]
async fn runs_never_share_a_line() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("runs", 0, Stream::Out, None, ROOMY).unwrap();
    run_writes(&sink, &[b"first\nno newline"]).await;
    assert_eq!(read(sink.path()), b"first\nno newline");
    run_writes(&sink, &[b"second\nagain no newline"]).await;
    assert_eq!(
        read(sink.path()),
        b"first\nno newline\nsecond\nagain no newline"
    );
    let reopened = hub.open_sink("runs", 0, Stream::Out, None, ROOMY).unwrap();
    run_writes(&reopened, &[b"third\n"]).await;
    assert_eq!(
        read(sink.path()),
        b"first\nno newline\nsecond\nagain no newline\nthird\n"
    );
}

/// An unfinished line (a prompt) is written and sent once it has waited
/// PARTIAL_LINE_WAIT for its newline, not held until the newline comes;
/// the rest of the line follows on the same line of the file.
#[tokio::test]
async fn an_unfinished_line_is_written_after_a_short_wait() {
    let (_dir, hub) = hub();
    let sink = hub
        .open_sink("prompt", 0, Stream::Out, None, ROOMY)
        .unwrap();
    let mut rx = hub.subscribe();
    let (mut tx, pipe) = tokio::io::duplex(1024);
    let task = capture(pipe, Arc::clone(&sink));
    tx.write_all(b"prompt> ").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the prompt was held back")
        .unwrap();
    assert_eq!(&seen.data[..], b"prompt> ");
    assert_eq!(read(sink.path()), b"prompt> ");
    tx.write_all(b"done\n").await.unwrap();
    drop(tx);
    task.await.unwrap();
    assert_eq!(read(sink.path()), b"prompt> done\n");
}

/// A default log file is created by the first write, not before: an app
/// that never writes to a stream leaves no empty file (and costs no inode).
#[tokio::test]
async fn a_default_log_file_is_created_by_the_first_write() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("lazy", 0, Stream::Out, None, ROOMY).unwrap();
    assert!(!sink.path().exists());
    let (lines, _) = sink.tail(10).unwrap();
    assert!(lines.is_empty());
    run_writes(&sink, &[b"first\n"]).await;
    assert_eq!(read(sink.path()), b"first\n");
}

/// Bytes that are not UTF-8, `\r` and NUL pass through untouched.
#[tokio::test]
async fn non_utf8_output_is_kept_byte_for_byte() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("bin", 1, Stream::Err, None, ROOMY).unwrap();
    let mut rx = hub.subscribe();
    run_writes(&sink, &[b"\xff\xfe ok\r\n\x80\x00tail"]).await;
    assert_eq!(read(sink.path()), b"\xff\xfe ok\r\n\x80\x00tail");
    let lines = received(&mut rx);
    assert_eq!(data(&lines), [&b"\xff\xfe ok\r"[..], b"\x80\x00tail"]);
    assert!(lines.iter().all(|l| l.stream == Stream::Err && l.id == 1));
    assert_eq!(&*lines[0].name, "bin");
}

/// With `time`, each line in the file starts with an RFC 3339 UTC
/// timestamp with milliseconds and a space; followers get the bare line.
#[tokio::test]
async fn time_prefixes_each_line_in_the_file() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        format: LineFormat::Rfc3339,
        merged: false,
        ..ROOMY
    };
    let sink = hub
        .open_sink("t", 0, Stream::Out, None, config.clone())
        .unwrap();
    let mut rx = hub.subscribe();
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    run_sh(&sink, "printf 'hello\\n\\nworld\\n'").await;
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

    let file = read(sink.path());
    let lines: Vec<&[u8]> = file
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(lines.len(), 3);
    for (line, want) in lines.iter().zip([&b"hello"[..], b"", b"world"]) {
        // 2026-11-26T04:26:30.123Z
        let stamp = &line[..24];
        for (at, byte) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            assert_eq!(stamp[at], byte, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(stamp[23], b'Z');
        let (ms, rest) = split_time_prefix(line).unwrap();
        assert_eq!(rest, want);
        assert!(ms >= before.as_millis() as i64 && ms <= after.as_millis() as i64);
    }
    assert_eq!(data(&received(&mut rx)), [&b"hello"[..], b"", b"world"]);
    assert_eq!(split_time_prefix(b"hello world"), None);

    let (tail, _) = sink.tail(1).unwrap();
    assert_eq!(split_time_prefix(&tail[0]).unwrap().1, b"world");
}

/// Size-and-count rotation: `X.log` -> `X.log.1` -> `X.log.2`, the oldest
/// dropped, every file at most `max_bytes`, no line split across files.
#[tokio::test]
async fn rotation_bounds_file_sizes_and_count() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 100,
        max_files: 2,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("rot", 0, Stream::Out, None, config.clone())
        .unwrap();
    // 100 lines of 10 bytes: one chunk, ten files' worth.
    run_sh(
        &sink,
        "for i in $(seq 1 100); do printf 'line-%04d\\n' $i; done",
    )
    .await;
    let expect = |from: u32, to: u32| -> Vec<u8> {
        (from..=to)
            .flat_map(|i| format!("line-{i:04}\n").into_bytes())
            .collect()
    };
    assert_eq!(read(sink.path()), expect(91, 100));
    assert_eq!(read(&rotated_path(sink.path(), 1)), expect(81, 90));
    assert_eq!(read(&rotated_path(sink.path(), 2)), expect(71, 80));
    assert!(!rotated_path(sink.path(), 3).exists());

    // Again line by line (one chunk each): same bounds.
    run_writes(&sink, &[b"x\n", b"y\n", b"z\n"]).await;
    assert_eq!(read(sink.path()), b"x\ny\nz\n");
    assert_eq!(read(&rotated_path(sink.path(), 1)), expect(91, 100));
    assert_eq!(read(&rotated_path(sink.path(), 2)), expect(81, 90));
    assert_eq!(std::fs::read_dir(hub.dir()).unwrap().count(), 3);
}

/// Output without newlines is cut at twice `max_bytes`: every file stays
/// within that bound and, read oldest first, the files hold every byte.
#[tokio::test]
async fn output_without_newlines_is_cut_at_twice_max_bytes() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 100,
        max_files: 20,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("bar", 0, Stream::Out, None, config.clone())
        .unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let writes: Vec<&[u8]> = data.chunks(70).collect();
    run_writes(&sink, &writes).await;
    let mut files = vec![sink.path().to_path_buf()];
    files.extend((1..=20).map(|n| rotated_path(sink.path(), n)));
    let mut joined = Vec::new();
    for path in files.iter().rev().filter(|p| p.exists()) {
        let bytes = read(path);
        assert!(
            bytes.len() <= 200,
            "{} holds {} bytes",
            path.display(),
            bytes.len()
        );
        joined.extend(bytes);
    }
    assert_eq!(joined, data);
}

/// A line longer than `max_bytes` (up to twice it) is written whole, in a
/// file of its own.
#[tokio::test]
async fn a_line_longer_than_max_bytes_gets_a_fresh_file() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 100,
        max_files: 2,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("long", 0, Stream::Out, None, config.clone())
        .unwrap();
    let long = [b'x'; 150];
    run_writes(&sink, &[b"short\n", &long, b"\nafter\n"]).await;
    assert_eq!(read(sink.path()), b"after\n");
    assert_eq!(
        read(&rotated_path(sink.path(), 1)),
        [&long[..], b"\n"].concat()
    );
    assert_eq!(read(&rotated_path(sink.path(), 2)), b"short\n");
}

/// `max_files == 0` keeps no rotated file: the file starts over.
#[tokio::test]
async fn max_files_zero_truncates_in_place() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 100,
        max_files: 0,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("zero", 0, Stream::Out, None, config.clone())
        .unwrap();
    run_sh(
        &sink,
        "for i in $(seq 1 95); do printf 'line-%04d\\n' $i; done",
    )
    .await;
    let expect: Vec<u8> = (91..=95)
        .flat_map(|i| format!("line-{i:04}\n").into_bytes())
        .collect();
    assert_eq!(read(sink.path()), expect);
    assert_eq!(std::fs::read_dir(hub.dir()).unwrap().count(), 1);
}

/// Lines longer than `MAX_LINE_BYTES` reach the file whole and followers
/// in pieces; memory stays bounded and no empty line is invented.
#[tokio::test]
async fn over_long_lines_are_whole_in_the_file_and_pieces_for_followers() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        format: LineFormat::Rfc3339,
        merged: false,
        ..ROOMY
    };
    let sink = hub
        .open_sink("huge", 0, Stream::Out, None, config.clone())
        .unwrap();
    let mut rx = hub.subscribe();
    let long = vec![b'a'; 200_000];
    let exact = vec![b'b'; 2 * MAX_LINE_BYTES];
    let unterminated = vec![b'c'; MAX_LINE_BYTES];
    run_writes(&sink, &[&long, b"\nend\n", &exact, b"\n"]).await;
    run_writes(&sink, &[&unterminated]).await;

    let file = read(sink.path());
    // The last line ended without a newline, as the app wrote it.
    let lines: Vec<&[u8]> = file.split(|&b| b == b'\n').collect();
    let bare: Vec<&[u8]> = lines
        .iter()
        .map(|l| split_time_prefix(l).unwrap().1)
        .collect();
    assert_eq!(bare, [&long[..], b"end", &exact, &unterminated]);

    let pieces = received(&mut rx);
    assert!(
        pieces
            .iter()
            .all(|p| !p.data.is_empty() && p.data.len() <= MAX_LINE_BYTES)
    );
    let joined: Vec<u8> = pieces.iter().flat_map(|p| p.data.to_vec()).collect();
    assert_eq!(joined, [&long[..], b"end", &exact, &unterminated].concat());
    assert!(pieces.iter().any(|p| &p.data[..] == b"end"));
    assert!(pieces.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// `tail(n)` gives the last n lines, oldest first, and the seq of the last
/// line written; reaching into `.1` after a rotation.
#[tokio::test]
async fn tail_returns_the_last_lines_and_the_last_seq() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("tail", 0, Stream::Out, None, ROOMY).unwrap();
    assert_eq!(sink.tail(5).unwrap(), (vec![], 0));

    let mut rx = hub.subscribe();
    run_sh(&sink, "seq 1 10").await;
    let last = received(&mut rx).last().unwrap().seq;
    let (lines, seq) = sink.tail(3).unwrap();
    assert_eq!(lines, numbered(8..=10));
    assert_eq!(seq, last);
    assert_eq!(sink.tail(100).unwrap().0, numbered(1..=10));
    assert_eq!(sink.tail(0).unwrap(), (vec![], last));

    let config = LogConfig {
        max_bytes: 30,
        max_files: 1,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("tail", 1, Stream::Out, None, config.clone())
        .unwrap();
    run_sh(&sink, "for i in $(seq 1 10); do printf 'l%02d\\n' $i; done").await;
    // .1 holds l01..l07 (28 bytes), the current file l08..l10.
    let (lines, _) = sink.tail(5).unwrap();
    assert_eq!(lines, strs(&["l06", "l07", "l08", "l09", "l10"]));
}

/// The backwards read is bounded; a line cut by the bound is left out.
#[test]
fn tail_read_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.log");
    std::fs::write(&path, "aaaa\nbbbb\ncccc\n").unwrap();
    let mut budget = 7;
    let (lines, whole) = tail_lines(std::fs::File::open(&path).ok(), 3, &mut budget).unwrap();
    assert_eq!(
        (lines, whole, budget),
        (vec![Bytes::from_static(b"cccc")], false, 0)
    );

    let mut budget = 1 << 20;
    let (lines, whole) = tail_lines(std::fs::File::open(&path).ok(), 3, &mut budget).unwrap();
    assert_eq!(lines, strs(&["aaaa", "bbbb", "cccc"]));
    assert!(whole);

    std::fs::write(&path, "\n\nlast").unwrap();
    let (lines, _) = tail_lines(std::fs::File::open(&path).ok(), 10, &mut budget).unwrap();
    assert_eq!(lines, strs(&["", "", "last"]));
}

/// A follower that subscribes, then tails, then drops followed lines with
/// seq <= the tail's seq sees every line exactly once. (The lines are read
/// after the writer is done, so they stay under BROADCAST_CAPACITY.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_then_follow_has_no_gap_and_no_duplicate() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("live", 0, Stream::Out, None, ROOMY).unwrap();
    let mut rx = hub.subscribe();
    let writer = {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            run_sh(&sink, "for i in $(seq 1 900); do echo $i; done").await;
        })
    };
    // Tail once the app is under way.
    let first = rx.recv().await.unwrap();
    let (mut seen, after) = sink.tail(1_000_000).unwrap();
    writer.await.unwrap();
    let mut followed = vec![first];
    followed.extend(received(&mut rx));
    seen.extend(
        followed
            .iter()
            .filter(|l| l.seq > after)
            .map(|l| l.data.clone()),
    );
    assert_eq!(seen, numbered(1..=900));
}

/// Every line is broadcast; seq increases within a sink and is unique
/// daemon-wide, with two sinks writing at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_every_line_in_seq_order() {
    let (_dir, hub) = hub();
    let out = hub.open_sink("two", 0, Stream::Out, None, ROOMY).unwrap();
    let err = hub.open_sink("two", 0, Stream::Err, None, ROOMY).unwrap();
    let mut rx = hub.subscribe();
    tokio::join!(run_sh(&out, "seq 1 450"), run_sh(&err, "seq 1 450"));

    let lines = received(&mut rx);
    for stream in [Stream::Out, Stream::Err] {
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| l.stream == stream)
            .cloned()
            .collect();
        let want = numbered(1..=450);
        assert_eq!(
            data(&mine),
            want.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        assert!(mine.windows(2).all(|w| w[0].seq < w[1].seq));
    }
    let mut seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 900);
}

/// The ring keeps the newest lines within its bounds and serves resumes.
#[tokio::test]
async fn retained_after_serves_the_newest_lines() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("ring", 0, Stream::Out, None, ROOMY).unwrap();
    assert!(sink.retained_after(0).is_empty());
    run_sh(&sink, "seq 1 300").await;
    run_writes(&sink, &[b"301\n", b"302\n"]).await;

    let all = sink.retained_after(0);
    assert_eq!(all.len(), RING_MAX_LINES);
    let want = numbered(103..=302);
    assert_eq!(
        data(&all),
        want.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let at_250 = all.iter().find(|l| &l.data[..] == b"250").unwrap().seq;
    let rest = sink.retained_after(at_250);
    assert_eq!(rest.len(), 52);
    assert_eq!(&rest[0].data[..], b"251");
    assert!(sink.retained_after(all.last().unwrap().seq).is_empty());
    assert_eq!(sink.tail(1).unwrap().1, all.last().unwrap().seq);

    // The byte bound: 1000-byte lines, as many as fit in RING_MAX_BYTES.
    run_sh(
        &sink,
        "for i in $(seq 1 100); do printf '%01000d\\n' $i; done",
    )
    .await;
    let big = sink.retained_after(0);
    assert_eq!(big.len(), RING_MAX_BYTES / 1000);
    assert_eq!(big.last().unwrap().data.len(), 1000);
}

/// Flush empties the file, removes rotated ones and the ring; later writes
/// land at the start of the file.
#[tokio::test]
async fn flush_empties_and_later_writes_still_land() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 50,
        max_files: 5,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("fl", 0, Stream::Out, None, config.clone())
        .unwrap();
    run_sh(&sink, "seq 1 100").await;
    assert!(rotated_path(sink.path(), 2).exists());
    let before = sink.tail(1).unwrap().1;

    sink.flush().unwrap();
    assert_eq!(read(sink.path()), b"");
    assert!(!rotated_path(sink.path(), 1).exists());
    assert!(sink.retained_after(0).is_empty());
    assert_eq!(sink.tail(10).unwrap(), (vec![], before));

    run_sh(&sink, "echo new").await;
    assert_eq!(read(sink.path()), b"new\n");
    assert_eq!(data(&sink.retained_after(0)), [b"new"]);
    assert!(sink.tail(1).unwrap().1 > before);
}

/// Deleting an app removes both streams' files, rotated ones included,
/// and nothing else; missing files are fine.
#[tokio::test]
async fn remove_files_removes_only_that_instance() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 20,
        max_files: 3,
        format: LineFormat::Plain,
        merged: false,
    };
    for (name, id) in [("web", 1), ("web", 10), ("web-1", 0)] {
        for stream in [Stream::Out, Stream::Err] {
            let sink = hub
                .open_sink(name, id, stream, None, config.clone())
                .unwrap();
            run_sh(&sink, "seq 1 30").await;
        }
    }
    assert_eq!(std::fs::read_dir(hub.dir()).unwrap().count(), 24);
    hub.remove_files("web", 1).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(hub.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left.len(), 16);
    assert!(
        left.iter()
            .all(|n| n.starts_with("web-10-") || n.starts_with("web-1-0-"))
    );
    hub.remove_files("web", 1).unwrap();
    hub.remove_files("never", 7).unwrap();
}

/// Lowering `max_files` removes the rotated files beyond it.
#[tokio::test]
async fn set_config_drops_extra_rotated_files() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 20,
        max_files: 4,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("cfg", 0, Stream::Out, None, config.clone())
        .unwrap();
    run_sh(&sink, "seq 1 40").await;
    assert!(rotated_path(sink.path(), 4).exists());
    sink.set_config(LogConfig {
        max_files: 1,
        ..config
    })
    .unwrap();
    assert_eq!(sink.config().1, 1);
    assert!(rotated_path(sink.path(), 1).exists());
    assert!(!rotated_path(sink.path(), 2).exists());
    assert!(!rotated_path(sink.path(), 4).exists());
}

/// A file that cannot be written (disk full) neither stops the capture nor
/// blocks the app: the pipe is drained and lines still reach the ring.
#[tokio::test]
async fn write_errors_do_not_stop_the_capture() {
    let (_dir, hub) = hub();
    // /dev/full fails every write with ENOSPC. Named as the app's own
    // file: a symbolic link to it at the default path would be refused.
    let full = std::path::PathBuf::from("/dev/full");
    let sink = hub
        .open_sink("full", 0, Stream::Out, Some(full), ROOMY)
        .unwrap();
    // Far more than a pipe buffer: the app would block if we stopped reading.
    run_sh(&sink, "seq 1 200000").await;
    assert_eq!(&sink.retained_after(0).last().unwrap().data[..], b"200000");
    assert!(sink.tail(1).unwrap().1 > 0);
}

/// Lots of output through a real pipe: nothing lost, nothing reordered.
#[tokio::test]
async fn bulk_output_is_complete() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("bulk", 0, Stream::Out, None, ROOMY).unwrap();
    run_sh(&sink, "seq 1 200000").await;
    let want: Vec<u8> = (1..=200_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    assert_eq!(read(sink.path()), want);
    assert_eq!(sink.tail(2).unwrap().0, numbered(199_999..=200_000));
}

/// A file not written for a while is closed, and the next write reopens
/// it through the directory handle: the lines land in the same file.
#[tokio::test]
async fn idle_files_are_closed_and_reopened_on_the_next_write() {
    let (_dir, hub) = hub();
    let sink = hub.open_sink("idle", 0, Stream::Out, None, ROOMY).unwrap();
    run_sh(&sink, "echo one").await;
    assert_eq!(hub.open_files(), 1);
    hub.close_idle(Duration::ZERO);
    assert_eq!(hub.open_files(), 0);
    run_sh(&sink, "echo two").await;
    assert_eq!(hub.open_files(), 1);
    assert_eq!(read(sink.path()), b"one\ntwo\n");
}

/// Past the budget of open files, the least recently written is closed.
#[tokio::test]
async fn at_most_the_budget_of_files_stays_open() {
    let (_dir, hub) = hub();
    let budget = crate::fds::log_file_budget();
    let sinks: Vec<_> = (0..budget as u32 + 5)
        .map(|id| hub.open_sink("many", id, Stream::Out, None, ROOMY).unwrap())
        .collect();
    for sink in &sinks {
        sink.append(b"x\n");
    }
    assert!(hub.open_files() <= budget, "{} open", hub.open_files());
    // Every file got its line, reopened or not.
    sinks[0].append(b"y\n");
    assert_eq!(read(sinks[0].path()), b"x\ny\n");
}

/// The directory is held: a logs directory swapped for a link after the
/// sink opened it changes nothing, rotation and flush included.
#[tokio::test]
async fn a_swapped_directory_is_never_followed() {
    let (dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 8,
        max_files: 1,
        format: LineFormat::Plain,
        merged: false,
    };
    let sink = hub
        .open_sink("held", 0, Stream::Out, None, config.clone())
        .unwrap();
    sink.append(b"1234567\n");
    let moved = dir.path().join("moved");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("held-0-out.log"), b"precious\n").unwrap();
    std::fs::rename(hub.dir(), &moved).unwrap();
    std::os::unix::fs::symlink(&elsewhere, hub.dir()).unwrap();
    hub.close_idle(Duration::ZERO);
    sink.append(b"abc\n"); // rotates, reopens
    sink.flush().unwrap();
    sink.append(b"def\n");
    assert_eq!(read(&elsewhere.join("held-0-out.log")), b"precious\n");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        1,
        "nothing new appeared in the link's target"
    );
    assert_eq!(read(&moved.join("held-0-out.log")), b"def\n");
}

mod placement {
    use super::super::paths::{LogPathError, place_custom, taken_by};
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &std::path::Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A directory others may write without the sticky bit is refused; with
    /// it (like /tmp) it is allowed, but a stranger's file in it is not.
    #[test]
    fn directories_open_to_others_need_the_sticky_bit() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let err = place_custom(&open.join("a.log"), &home).unwrap_err();
        assert!(matches!(err, LogPathError::OpenToOthers { .. }), "{err}");
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        chmod(&open, 0o1777);
        place_custom(&open.join("a.log"), &home).unwrap();
        if nix::unistd::geteuid().is_root() {
            let theirs = open.join("theirs.log");
            std::fs::write(&theirs, b"").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = place_custom(&theirs, &home).unwrap_err();
            assert!(matches!(err, LogPathError::ForeignFile { .. }), "{err}");
            // Another user's directory (root only: chown).
            let foreign = dir.path().join("foreign");
            std::fs::create_dir(&foreign).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            let err = place_custom(&foreign.join("a.log"), &home).unwrap_err();
            assert!(
                matches!(err, LogPathError::ForeignOwner { uid: 65534, .. }),
                "{err}"
            );
        }
    }

    /// Missing directories are made, 0750, one level at a time; below a
    /// directory others may write (no sticky bit), nothing is made at all,
    /// and a link planted where a level would be is not followed.
    #[test]
    fn missing_directories_are_made_only_where_the_rules_allow() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let placed = place_custom(&dir.path().join("a/b/c/x.log"), &home).unwrap();
        assert_eq!(placed.name, "x.log");
        for sub in ["a", "a/b", "a/b/c"] {
            let mode = std::fs::metadata(dir.path().join(sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o750 & !umask(), "{sub}");
        }
        assert!(
            !dir.path().join("a/b/c/x.log").exists(),
            "the file is not made"
        );

        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = place_custom(&open.join("new/x.log"), &home).unwrap_err();
        assert!(matches!(err, LogPathError::OpenToOthers { .. }), "{err}");
        assert!(!open.join("new").exists());

        // A link to elsewhere where a directory was to be made: the path
        // rules follow a link of the daemon's user only where it leads to
        // an allowed directory; here the target is the open one.
        let planted = dir.path().join("planted");
        std::os::unix::fs::symlink(&open, &planted).unwrap();
        let err = place_custom(&planted.join("sub/x.log"), &home).unwrap_err();
        assert!(matches!(err, LogPathError::OpenToOthers { .. }), "{err}");
        assert!(!open.join("sub").exists(), "nothing made through the link");
    }

    fn umask() -> u32 {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }

    /// The daemon's home is recognised through a link, and so is a file
    /// another app writes.
    #[test]
    fn the_resolved_path_is_compared() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let link = dir.path().join("link-to-home");
        std::os::unix::fs::symlink(&home, &link).unwrap();
        let err = place_custom(&link.join("state.json"), &home).unwrap_err();
        assert!(matches!(err, LogPathError::InHome { .. }), "{err}");

        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        let taken = vec![(real.join("a.log"), "app web (id 0)".to_owned())];
        let placed = place_custom(&alias.join("a.log"), &home).unwrap();
        assert_eq!(taken_by(&placed, &taken), Some("app web (id 0)"));
        let placed = place_custom(&alias.join("b.log"), &home).unwrap();
        assert_eq!(taken_by(&placed, &taken), None);
        // A hard link of a file in use is the same file.
        std::fs::write(real.join("a.log"), b"").unwrap();
        std::fs::hard_link(real.join("a.log"), real.join("c.log")).unwrap();
        let placed = place_custom(&real.join("c.log"), &home).unwrap();
        assert_eq!(taken_by(&placed, &taken), Some("app web (id 0)"));
    }
}

fn merged() -> LogConfig {
    LogConfig {
        merged: true,
        ..ROOMY
    }
}

/// PM2's merge_logs: two instances of one app write one file, through one
/// shared writer state; each writes whole lines, so however their chunks
/// alternate, no line of the file mixes the two.
#[tokio::test]
async fn merged_instances_share_one_file_and_never_mix_inside_a_line() {
    let (_dir, hub) = hub();
    let targets = SinkTargets {
        file: LogTarget::Default,
        combined: None,
    };
    let a = hub
        .open_sink_with("api", 0, Stream::Out, &targets, merged())
        .unwrap();
    let b = hub
        .open_sink_with("api", 1, Stream::Out, &targets, merged())
        .unwrap();
    assert_eq!(a.path(), hub.dir().join("api-out.log"));
    assert_eq!(a.path(), b.path());
    assert!(a.shares_file_with(&b));
    let script =
        |who: &str| format!("for i in $(seq 1 2000); do echo {who}-$i-xxxxxxxxxxxxxxxx; done");
    let (script_a, script_b) = (script("a"), script("b"));
    tokio::join!(run_sh(&a, &script_a), run_sh(&b, &script_b));
    let text = String::from_utf8(read(a.path())).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4000);
    for line in lines {
        let (who, rest) = line.split_once('-').unwrap();
        assert!(who == "a" || who == "b", "{line:?}");
        assert!(rest.ends_with("-xxxxxxxxxxxxxxxx"), "{line:?}");
    }
}

/// A line one writer left open (a prompt) is ended before another
/// writer's line goes in; the first writer's rest then starts a line of
/// its own. No line holds the text of two writers.
#[test]
fn an_open_line_is_ended_before_another_writer_writes() {
    let (_dir, hub) = hub();
    let targets = SinkTargets {
        file: LogTarget::Default,
        combined: None,
    };
    let a = hub
        .open_sink_with("api", 0, Stream::Out, &targets, merged())
        .unwrap();
    let b = hub
        .open_sink_with("api", 1, Stream::Out, &targets, merged())
        .unwrap();
    a.append(b"prompt> ");
    a.append(b"still a\n");
    b.append(b"from b\n");
    a.append(b"open again");
    b.append(b"b cuts in\n");
    a.append(b" and the end\n");
    assert_eq!(
        String::from_utf8(read(a.path())).unwrap(),
        "prompt> still a\nfrom b\nopen again\nb cuts in\n and the end\n"
    );
}

/// Another app cannot write a file an app already writes (two apps whose
/// default merged names meet, or one's name is another's NAME-ID).
#[test]
fn another_apps_file_is_refused() {
    let (_dir, hub) = hub();
    let targets = SinkTargets {
        file: LogTarget::Default,
        combined: None,
    };
    let _x = hub.open_sink("x", 1, Stream::Out, None, ROOMY).unwrap();
    let err = hub
        .open_sink_with("x-1", 0, Stream::Out, &targets, merged())
        .unwrap_err();
    assert!(
        err.to_string().contains("already the log file of app x"),
        "{err}"
    );
}

/// PM2's log_file: both streams of an instance also go to one combined
/// file, whole lines each, and it rotates like the others.
#[test]
fn the_combined_file_gets_both_streams_and_rotates() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        max_bytes: 40,
        max_files: 2,
        ..ROOMY
    };
    let targets = SinkTargets {
        file: LogTarget::Default,
        combined: Some(LogTarget::Default),
    };
    let out = hub
        .open_sink_with("web", 4, Stream::Out, &targets, config.clone())
        .unwrap();
    let err = hub
        .open_sink_with("web", 4, Stream::Err, &targets, config)
        .unwrap();
    let combined = hub.dir().join("web-4.log");
    assert_eq!(out.combined_path(), Some(combined.as_path()));
    out.append(b"out 1\n");
    err.append(b"err 1\n");
    out.append(b"out 2\n");
    assert_eq!(read(&combined), b"out 1\nerr 1\nout 2\n");
    assert_eq!(read(out.path()), b"out 1\nout 2\n");
    assert_eq!(read(err.path()), b"err 1\n");
    for i in 0..10 {
        err.append(format!("err line {i:02}\n").as_bytes());
    }
    assert_eq!(read(&combined), b"err line 07\nerr line 08\nerr line 09\n");
    assert_eq!(
        read(&rotated_path(&combined, 1)),
        b"err line 04\nerr line 05\nerr line 06\n"
    );
    assert!(rotated_path(&combined, 2).exists());
    assert!(!rotated_path(&combined, 3).exists());
}

/// A discarded stream opens no file; its lines still reach followers.
#[tokio::test]
async fn a_discarded_stream_has_no_file_but_followers_get_its_lines() {
    let (_dir, hub) = hub();
    let targets = SinkTargets {
        file: LogTarget::Discard,
        combined: None,
    };
    let sink = hub
        .open_sink_with("quiet", 0, Stream::Out, &targets, ROOMY)
        .unwrap();
    assert_eq!(sink.path(), Path::new("/dev/null"));
    let mut rx = hub.subscribe();
    sink.append(b"to nobody\n");
    assert_eq!(&rx.recv().await.unwrap().data[..], b"to nobody");
    assert_eq!(std::fs::read_dir(hub.dir()).unwrap().count(), 0);
    assert_eq!(hub.open_files(), 0);
    assert!(sink.tail(10).unwrap().0.is_empty());
}

/// PM2's log_type json in the file, the text back from `tail`.
#[test]
fn json_files_hold_objects_and_tail_gives_the_text() {
    let (_dir, hub) = hub();
    let config = LogConfig {
        format: LineFormat::Json(None),
        ..ROOMY
    };
    let sink = hub.open_sink("j", 2, Stream::Err, None, config).unwrap();
    sink.append(b"hello \"you\"\n");
    let text = String::from_utf8(read(sink.path())).unwrap();
    let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(value["message"], "hello \"you\"\n");
    assert_eq!(value["type"], "err");
    assert_eq!(value["process_id"], 2);
    assert_eq!(value["app_name"], "j");
    let stamp = value["timestamp"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
    assert_eq!(
        sink.tail(5).unwrap().0,
        vec![Bytes::from_static(b"hello \"you\"")]
    );
}
