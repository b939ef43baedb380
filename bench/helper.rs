//! Tiny app used by `bench/run.py`, compiled with plain `rustc -O` (no
//! dependencies) so that its start-up cost is a few hundred microseconds,
//! far below a shell's or an interpreter's.
//!
//! Modes:
//! - `helper stamp`: print the wall-clock time (ns since the epoch) as the
//!   first thing in `main`, then exit 0. Measures exec → main latency.
//! - `helper respawn FILE`: append `S <ns>` to FILE as the first thing in
//!   `main`, then `E <ns>` right before exiting with status 1.
//! - `helper flood LINES FILE`: append `S <ns>` to FILE right before the
//!   first write, write LINES lines of exactly 100 bytes (`%08d` line number,
//!   a space, 90 `x`, newline) to stdout, append `E <ns>`, then sleep.
//! - `helper tick`: every second, write `%08d out` to stdout and `%08d err`
//!   to stderr, numbered from 0 (the app of the 1000-app benchmark, which
//!   checks that no number is missing from the log files).
//! - `helper serve`: listen on `127.0.0.1:$PORT`, read each connection's
//!   request head (up to a blank line, EOF, 1 s or 8 KiB) and answer with a
//!   minimal `HTTP/1.0 200` (the app of the reload benchmark, ready as soon
//!   as it listens, and of the health-check CPU benchmark).
//! - `helper stamped COUNT PERIOD_US BURST GO_FILE`: print `READY`, wait
//!   until GO_FILE exists, then write COUNT lines `T <seq> <ns> steady`, one
//!   every PERIOD_US microseconds, a 500 ms pause, BURST lines `T <seq> <ns>
//!   burst` back to back, then `END`, and sleep. `<ns>` is the wall clock
//!   (CLOCK_REALTIME) just before the line's own write(2) (the latency
//!   benchmark of `bench/remote.py`).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

fn append(path: &str, line: String) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open stamp file");
    f.write_all(line.as_bytes()).expect("write stamp");
}

/// Reads from `stream` until the end of an HTTP request head, EOF, an
/// error, 1 s without data or 8 KiB, whichever comes first.
fn read_head(stream: &mut std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

fn main() {
    let start = now_ns();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("stamp") => println!("{start}"),
        Some("respawn") => {
            append(&args[2], format!("S {start}\n"));
            append(&args[2], format!("E {}\n", now_ns()));
            std::process::exit(1);
        }
        Some("flood") => {
            let lines: u64 = args[2].parse().expect("line count");
            let mut payload = Vec::with_capacity(100);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            append(&args[3], format!("S {}\n", now_ns()));
            for i in 0..lines {
                payload.clear();
                write!(payload, "{i:08} ").unwrap();
                payload.extend_from_slice(&[b'x'; 90]);
                payload.push(b'\n');
                out.write_all(&payload).expect("write line");
            }
            out.flush().expect("flush");
            append(&args[3], format!("E {}\n", now_ns()));
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Some("tick") => {
            for i in 0u64.. {
                // Unbuffered, one write(2) per line, as a typical app's
                // line-buffered logging does.
                let _ = std::io::stdout().write_all(format!("{i:08} out\n").as_bytes());
                let _ = std::io::stderr().write_all(format!("{i:08} err\n").as_bytes());
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Some("serve") => {
            let port: u16 = std::env::var("PORT").expect("PORT").parse().expect("PORT is a port");
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
            for stream in listener.incoming() {
                if let Ok(mut stream) = stream {
                    // Read the request head first: closing a socket with
                    // unread input sends a reset, which may destroy the
                    // response before a health check reads it.
                    read_head(&mut stream);
                    let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                }
            }
        }
        Some("stamped") => {
            let count: u64 = args[2].parse().expect("line count");
            let period = Duration::from_micros(args[3].parse().expect("period in µs"));
            let burst: u64 = args[4].parse().expect("burst count");
            let go = std::path::Path::new(&args[5]);
            // One write(2) per line, each stamped just before it.
            let write = |line: &str| {
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            };
            write("READY\n");
            while !go.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut next = std::time::Instant::now();
            for seq in 0..count {
                write(&format!("T {seq} {} steady\n", now_ns()));
                // A steady rate, not PERIOD plus the time of the write.
                next += period;
                if let Some(left) = next.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(left);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
            for seq in 0..burst {
                write(&format!("T {seq} {} burst\n", now_ns()));
            }
            write("END\n");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => {
            eprintln!(
                "usage: helper stamp | respawn FILE | flood LINES FILE | tick | serve | stamped COUNT PERIOD_US BURST GO_FILE"
            );
            std::process::exit(2);
        }
    }
}
