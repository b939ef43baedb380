#!/usr/bin/env python3
"""The idle resident size of pmdaemond, and where it lies (see bench/README.md,
"Idle RSS and the binary's layout").

For each binary (this tree's release build, and optionally another one given
with --against, e.g. an older commit built elsewhere) and each listener
setting (off; on: --listen 127.0.0.1:PORT), it starts fresh daemons, each on
its own temporary PMDAEMON_HOME with no app, waits until one answers a gRPC
Ping, waits --settle seconds (default 1) and reads /proc/PID/status and
/proc/PID/smaps:

  VmRSS     everything resident
  RssAnon   the daemon's own memory (heap, stacks, relocated and written data)
  RssFile   pages of the binary file itself (shared with the page cache):
            text, read-only data, relocations, unwind tables

and, from smaps, RssFile split by the binary's mappings: `ro` (.rodata,
.eh_frame, relocations: the first read-only segment), `text` (.text) and
`data` (the file-backed part of the writable segments). Medians of --runs
daemons (default 3); the binaries and settings alternate so that a change
in the machine's state hits both alike.

Text is mapped in 64 KiB fault-around blocks around every page touched, so
RssFile follows how the code the daemon runs is spread over the binary,
not only how much of it runs.

It reuses run.py's helpers (build, daemon spawn and cleanup) and never
fails a build: it prints what it measured.
"""

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py)

STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile")


def status_kib(pid):
    """VmRSS, RssAnon and RssFile of `pid` in KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in STATUS_FIELDS:
                found[key] = int(value.split()[0])
    return found


def mapping_kib(pid, binary):
    """Rss in KiB of each mapping of `binary` in `pid`, by permission:
    r--p is `ro`, r-xp `text`, rw-p `data` (its resident pages are file
    pages until written; written ones count as anonymous in smaps, so only
    the file-backed rest is here)."""
    real = os.path.realpath(binary)
    out = {"ro": 0, "text": 0, "data": 0}
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 5)
            if len(first) >= 5 and "-" in first[0] and ":" in first[3]:
                path = first[5].strip() if len(first) == 6 else ""
                perms = first[1]
                current = None
                if path.startswith("/") and os.path.realpath(path) == real:
                    current = {"r--p": "ro", "r-xp": "text", "rw-p": "data"}.get(perms)
            elif current and line.startswith("Rss:"):
                rss = int(line.split()[1])
                out[current] += rss
            elif current == "data" and line.startswith("Anonymous:"):
                out["data"] -= int(line.split()[1])
    return out


def measure(b, home, args, settle, binary):
    daemon = b.spawn_daemon(home, *args)
    try:
        b.wait_ping(home, daemon)
    except RuntimeError as e:
        b.stop_daemon(daemon)
        # The home goes with the cleanup: keep what the daemon said.
        with open(os.path.join(home, "daemon-stderr.txt"), errors="replace") as f:
            said = " ".join(f.read().split())[:300]
        return None, f"{e.args[0].split(';')[0]}: {said}" if said else str(e)
    time.sleep(settle)
    sample = status_kib(daemon.pid)
    sample.update(mapping_kib(daemon.pid, binary))
    b.stop_daemon(daemon)
    return sample, None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the existing release binary")
    parser.add_argument("--against", metavar="PATH",
                        help="another pmdaemond binary measured the same way, alternating with this one")
    parser.add_argument("--runs", type=int, default=3, help="fresh daemons per binary and setting (default 3)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds between the first answer and the reading (default 1)")
    parser.add_argument("--listener", choices=("off", "on", "both"), default="both",
                        help="which settings to measure (default both)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.against and not os.access(args.against, os.X_OK):
        parser.error(f"--against: {args.against} is not an executable file")

    bins = {"this": run.build(args.no_build)["pmdaemond"]}
    if args.against:
        bins["against"] = os.path.abspath(args.against)
    root = tempfile.mkdtemp(prefix="pmd-idle-rss-")
    benches = {label: run.Bench({"pmdaemond": path}, root) for label, path in bins.items()}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    port = run.free_port_block(1)
    settings = {"off": (), "on": ("--listen", f"127.0.0.1:{port}")}
    if args.listener != "both":
        settings = {args.listener: settings[args.listener]}
    samples = {(label, s): [] for label in bins for s in settings}
    failures = {}
    try:
        for i in range(args.runs):
            for setting, flags in settings.items():
                for label, path in bins.items():
                    if (label, setting) in failures:
                        continue
                    run.log(f"run {i + 1}/{args.runs}: {label}, listener {setting}")
                    home = os.path.join(root, f"{label}-{setting}-{i}")
                    sample, err = measure(benches[label], home, flags, args.settle, path)
                    if sample is None:
                        failures[(label, setting)] = err
                    else:
                        samples[(label, setting)].append(sample)
    except KeyboardInterrupt as e:
        run.log(f"interrupted ({e}); cleaning up")
        sys.exit(130)
    finally:
        for bench in benches.values():
            bench.cleanup()

    print(f"## idle RSS, KiB (median of {args.runs} fresh daemons, {args.settle:g} s after the first answer)")
    for label, path in bins.items():
        print(f"{label}: {path} ({os.path.getsize(path)} bytes)")
    columns = ("VmRSS", "RssAnon", "RssFile", "ro", "text", "data")
    print(f"{'binary':8} {'listener':8} " + " ".join(f"{c:>8}" for c in columns))
    for (label, setting), rows in samples.items():
        if (label, setting) in failures:
            print(f"{label:8} {setting:8} failed: {failures[(label, setting)]}")
            continue
        medians = [statistics.median(r[c] for r in rows) for c in columns]
        print(f"{label:8} {setting:8} " + " ".join(f"{m:8.0f}" for m in medians))


if __name__ == "__main__":
    main()
