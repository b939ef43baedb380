#!/usr/bin/env python3
"""Writes server/link/pmdaemond.order, the symbol ordering file the release
link of pmdaemond gives lld (server/build.rs), or checks it (--check). See
bench/README.md, "Idle RSS and the binary's layout".

Why: the kernel maps a binary's cached text in 64 KiB fault-around blocks
around each page the process touches, so the idle daemon's resident text
follows how widely the code it has run is spread over .text, not only how
much of it runs. Putting the functions that run at start and at idle
together at the front of .text keeps that spread small; the listener,
gateway and TLS code, which an idle daemon without a listener never runs,
stays out of those blocks.

How: it runs the release daemon under valgrind's callgrind (exact: every
function entered is listed, by its mangled symbol name) on a temporary
PMDAEMON_HOME with no app, and dumps callgrind's counters at each phase
boundary; each dump lists the functions that ran since the previous one:

  tier 1  start, until the daemon answers a Ping
  tier 2  idle: --idle seconds with no app
  tier 3  a `pmd list`, an app started, --idle seconds of the metrics
          sampler with the app, `pmd stop`, `pmd delete`
  tier 4  shutdown (SIGTERM)

The file lists tier 1's names, then the new names of tier 2, 3 and 4;
every other function follows in the linker's own order. The names carry
the compiler's hashes, so the file goes stale silently when symbols change
(a dependency bump, another toolchain, renamed code): --check says how
many ordered names the current release binary no longer has. Regenerate
then (a stale name costs nothing but its place; new code is unordered).

Needs valgrind (Debian: apt-get install valgrind) and nm (binutils).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py)

ORDER_FILE = os.path.join(run.REPO, "server", "link", "pmdaemond.order")
# lld reads the file line by line and drops what follows a '#'.
HEADER = """\
# The functions pmdaemond runs at start, at idle and for a first command, in
# that order: the release link puts them first in .text (server/build.rs).
# Written by bench/text_order.py (see bench/README.md, "Idle RSS and the
# binary's layout"); regenerate it, do not edit it.
"""


def callgrind_functions(path):
    """The function names of one callgrind dump, in the order they appear
    (written with --compress-strings=no, so every line names in full)."""
    names = []
    seen = set()
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                name = line.split("=", 1)[1].strip()
                if name and not name.startswith("0x") and name not in seen:
                    seen.add(name)
                    names.append(name)
    return names


def defined_text_symbols(binary):
    """Names of the functions defined in `binary` (nm: t/T/W/i)."""
    out = subprocess.run(["nm", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTWwi":
            names.add(parts[2])
    return names


def read_order(path):
    with open(path) as f:
        return [n for n in (line.split("#", 1)[0].strip() for line in f) if n]


def check(binary):
    ordered = read_order(ORDER_FILE)
    present = defined_text_symbols(binary)
    missing = [n for n in ordered if n not in present]
    print(f"{ORDER_FILE}: {len(ordered)} names, {len(missing)} no longer in {binary}")
    for name in missing[:10]:
        print(f"  missing: {name}")
    if len(missing) > 10:
        print(f"  ... and {len(missing) - 10} more")
    return missing


def wait_for(what, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def record(bins, idle_seconds):
    """The tiers of function names (lists), recorded as the module header
    says."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install valgrind")
    root = tempfile.mkdtemp(prefix="pmd-text-order-")
    home = os.path.join(root, "home")
    os.makedirs(home)
    out = os.path.join(root, "callgrind.out")
    b = run.Bench(bins, root)
    env = b.env(home)
    log = open(os.path.join(root, "valgrind.log"), "wb")
    daemon = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", "--compress-strings=no",
         "--compress-pos=no", f"--callgrind-out-file={out}", bins["pmdaemond"]],
        env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    b.daemons.append(daemon)
    dumps = []

    def dump():
        # Each dump holds what ran since the previous one; callgrind writes
        # out.1, out.2, ... in order.
        subprocess.run(["callgrind_control", "--dump", str(daemon.pid)],
                       check=True, stdout=subprocess.DEVNULL)
        path = f"{out}.{len(dumps) + 1}"
        wait_for(f"{path}", lambda: os.path.exists(path) and os.path.getsize(path) > 0)
        time.sleep(0.2)  # written in full
        dumps.append(path)

    try:
        b.wait_ping(home, daemon, timeout=120)
        dump()
        time.sleep(idle_seconds)
        dump()
        b.pmd(home, "list")
        app = os.path.join(home, "idle.sh")
        with open(app, "w") as f:
            f.write("#!/bin/sh\nexec sleep 1000\n")
        os.chmod(app, 0o755)
        b.pmd(home, "start", app, "--name", "idle")
        wait_for("the app online", lambda: b.list_json(home)[0]["status"] == "online")
        time.sleep(idle_seconds)
        b.pmd(home, "list")
        b.pmd(home, "stop", "idle")
        b.pmd(home, "delete", "idle")
        dump()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
        dumps.append(out)  # the final dump, at exit
        tiers = []
        seen = set()
        for path in dumps:
            names = [n for n in callgrind_functions(path) if n not in seen]
            seen.update(names)
            tiers.append(names)
        return tiers
    finally:
        log.close()
        b.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    parser.add_argument("--check", action="store_true",
                        help="only say how many ordered names the release binary no longer has")
    parser.add_argument("--binary", metavar="PATH",
                        help="with --check: the pmdaemond to check (e.g. one cargo install wrote)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of each idle phase (default 3)")
    args = parser.parse_args()
    if args.binary and not args.check:
        parser.error("--binary goes with --check")
    if args.check and args.binary:
        sys.exit(1 if check(args.binary) else 0)
    bins = run.build(args.no_build)
    if args.check:
        missing = check(bins["pmdaemond"])
        sys.exit(1 if missing else 0)

    # The binary is linked with the current order file; which functions
    # run does not depend on their place, so recording on it is fine.
    tiers = record(bins, args.idle)
    present = defined_text_symbols(bins["pmdaemond"])
    os.makedirs(os.path.dirname(ORDER_FILE), exist_ok=True)
    written = 0
    with open(ORDER_FILE, "w") as f:
        f.write(HEADER)
        for names in tiers:
            for name in names:
                if name in present:
                    f.write(name + "\n")
                    written += 1
    counts = ", ".join(f"tier {i + 1}: {len(t)}" for i, t in enumerate(tiers))
    print(f"wrote {ORDER_FILE}: {written} names ({counts}; names not in the binary's symbol table left out)")


if __name__ == "__main__":
    main()
