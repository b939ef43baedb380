#!/usr/bin/env python3
"""Stress benchmarks of pmdaemond (see bench/README.md, "Stress"):

  scale    N apps (default 1000), each writing a line to stdout and one to
           stderr every second, started from one ecosystem file by a daemon
           and a pmd whose soft open-file limit is 1024: time until all are
           online, `pmd list` latency, daemon RSS, CPU per 30 s and open
           descriptors, and whether any line is missing from the log files.
  hostile  90 bad or oversized requests from 10 concurrent gRPC clients:
           daemon RSS before, at its peak and after; needs grpcio and
           grpcio-tools (pip install grpcio grpcio-tools).

It reuses run.py's helpers (build, daemon spawn and cleanup) and never
fails a build: it prints what it measured.
"""

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py)

SOFT_NOFILE = 1024


def soft_nofile_limit():
    """preexec_fn: the soft open-file limit most login shells give."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_NOFILE, hard))


class LimitedBench(run.Bench):
    """run.Bench whose daemons and pmd runs start under `ulimit -Sn 1024`."""

    def spawn_daemon(self, home, *args):
        os.makedirs(home, exist_ok=True)
        err = open(os.path.join(home, "daemon-stderr.txt"), "ab")
        proc = subprocess.Popen(
            [self.bins["pmdaemond"], *args], env=self.env(home), cwd=home,
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, preexec_fn=soft_nofile_limit,
        )
        err.close()
        self.daemons.append(proc)
        return proc

    def pmd(self, home, *args, check=True, stdout=subprocess.DEVNULL):
        return subprocess.run(
            [self.bins["pmd"], *args], env=self.env(home), cwd=home, preexec_fn=soft_nofile_limit,
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, check=check,
        )


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def missing_lines(path, kind):
    """Numbers missing from a `helper tick` log between its first and last
    line, and the number of lines read."""
    seen = []
    with open(path, "rb") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[1] == kind.encode():
                seen.append(int(parts[0]))
    if not seen:
        return 0, 0
    return (seen[-1] - seen[0] + 1) - len(set(seen)), len(seen)


def scale(b, root, helper, apps, window):
    home = os.path.join(root, "scale")
    eco = os.path.join(root, "scale.yaml")
    with open(eco, "w") as f:
        f.write("apps:\n")
        for i in range(apps):
            f.write(f"  - name: t{i:04}\n    script: {helper}\n    args: [tick]\n")
    daemon = b.spawn_daemon(home)
    b.wait_ping(home, daemon)
    time.sleep(1.0)
    rss_idle = run.vm_rss_kib(daemon.pid)
    fds_idle = fd_count(daemon.pid)

    run.log(f"scale: starting {apps} apps from one file")
    t0 = time.perf_counter()
    b.pmd(home, "start", eco)
    started = time.perf_counter() - t0

    def all_online():
        listed = b.list_json(home)
        return len(listed) == apps and all(a["status"] == "online" for a in listed)

    run.wait_until(f"{apps} apps online", all_online, timeout=600.0, pause=0.2)
    online = time.perf_counter() - t0

    time.sleep(2.0)
    run.log(f"scale: {window:g} s CPU window")
    cpu0 = run.cpu_time_ms(daemon.pid)
    sched0 = run.threads_cpu_ns(daemon.pid)
    time.sleep(window)
    cpu = (run.cpu_time_ms(daemon.pid) - cpu0) * 30.0 / window
    sched = (run.threads_cpu_ns(daemon.pid) - sched0) / 1e6 * 30.0 / window
    rss = run.vm_rss_kib(daemon.pid)
    fds = fd_count(daemon.pid)
    lists = [b.timed_pmd(home, "list") for _ in range(20)]

    listed = b.list_json(home)
    restarts = sum(a.get("restarts", 0) for a in listed)
    still_online = sum(1 for a in listed if a["status"] == "online")
    b.pmd(home, "stop", "all")
    lost = 0
    lines = 0
    logs = os.path.join(home, "logs")
    for i in range(apps):
        for kind in ("out", "err"):
            path = os.path.join(logs, f"t{i:04}-{i}-{kind}.log")
            try:
                missing, read = missing_lines(path, kind)
            except FileNotFoundError:
                missing, read = 1, 0
            lost += missing
            lines += read
    b.stop_daemon(daemon)
    return {
        "apps": apps,
        "pmd start FILE (s)": f"{started:.2f}",
        "all online (s)": f"{online:.2f}",
        "online at the end": still_online,
        "restarts": restarts,
        "pmd list median (ms)": f"{statistics.median(lists) / 1e6:.1f}",
        "daemon RSS idle / with apps (MiB)": f"{rss_idle / 1024:.1f} / {rss / 1024:.1f}",
        "daemon CPU per 30 s (ms, ticks / schedstat)": f"{cpu:.0f} / {sched:.0f}",
        "daemon fds idle / with apps": f"{fds_idle} / {fds}",
        "log lines read / missing": f"{lines} / {lost}",
    }


HOSTILE_KINDS = ("bigname", "oversize", "badtarget", "manyargs", "bigenv")


def hostile(b, root, per_kind):
    try:
        import grpc
        from grpc_tools import protoc
    except ImportError:
        return {"skipped": "needs grpcio and grpcio-tools: pip install grpcio grpcio-tools"}
    stubs = os.path.join(root, "stubs")
    os.makedirs(stubs)
    proto = os.path.join(run.REPO, "proto")
    rc = protoc.main(["protoc", f"-I{proto}", f"-I{os.path.dirname(protoc.__file__)}/_proto",
                      f"--python_out={stubs}", f"--grpc_python_out={stubs}",
                      "pmdaemon/v1/process_manager.proto", "pmdaemon/v1/access.proto",
                      "google/api/annotations.proto",
                      "google/api/http.proto"])
    if rc != 0:
        raise RuntimeError("protoc failed on proto/")
    sys.path.insert(0, stubs)
    from pmdaemon.v1 import process_manager_pb2 as pb
    from pmdaemon.v1 import process_manager_pb2_grpc as rpc
    from concurrent.futures import ThreadPoolExecutor

    home = os.path.join(root, "hostile")
    daemon = b.spawn_daemon(home)
    b.wait_ping(home, daemon)
    time.sleep(1.0)
    before = run.vm_rss_kib(daemon.pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], run.vm_rss_kib(daemon.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    channel = grpc.insecure_channel(
        "unix://" + os.path.join(home, "pmd.sock"),
        options=[("grpc.default_authority", "localhost"), ("grpc.max_send_message_length", 64 << 20)])
    stub = rpc.ProcessManagerStub(channel)
    work = os.path.join(home, "work")
    os.makedirs(work, exist_ok=True)

    def one(args):
        kind, i = args
        try:
            if kind == "bigname":  # 3 MiB name: refused by the name rule
                stub.StartProcess(pb.StartProcessRequest(
                    caller_cwd=work, spec=pb.AppSpec(name="x" * (3 << 20), script="sleep")))
            elif kind == "oversize":  # over the 4 MiB message limit
                stub.StartProcess(pb.StartProcessRequest(spec=pb.AppSpec(name="y", script="z" * (8 << 20))))
            elif kind == "badtarget":  # 2 MiB of control characters as a target
                stub.StopProcess(pb.StopProcessRequest(target="\x01" * (2 << 20)))
            elif kind == "manyargs":  # half a million tiny strings in one message
                stub.StartProcess(pb.StartProcessRequest(
                    caller_cwd=work, spec=pb.AppSpec(name=f"m{i}", script="/nonexistent", args=["1"] * 500_000)))
            elif kind == "bigenv":  # 3000 variables of 1 KB
                env = {f"K{j}": "v" * 1000 for j in range(3000)}
                stub.StartProcess(pb.StartProcessRequest(
                    caller_cwd=work, spec=pb.AppSpec(name=f"e{i}", script="/nonexistent", env=env)))
        except grpc.RpcError as e:
            return e.code().name
        return "OK"

    codes = {}
    with ThreadPoolExecutor(10) as pool:
        for kind in HOSTILE_KINDS:
            got = list(pool.map(one, [(kind, i) for i in range(per_kind)]))
            codes[kind] = ",".join(sorted(set(got)))
    channel.close()
    time.sleep(6.0)  # the daemon trims its allocator every 5 s
    stop.set()
    sampler.join()
    after = run.vm_rss_kib(daemon.pid)
    b.stop_daemon(daemon)
    return {
        "requests": per_kind * len(HOSTILE_KINDS),
        "answers": "; ".join(f"{k}: {v}" for k, v in codes.items()),
        "daemon RSS before / peak / 6 s after (MiB)":
            f"{before / 1024:.1f} / {peak[0] / 1024:.1f} / {after / 1024:.1f}",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["scale", "hostile", "all"])
    parser.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--cpu-window", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--per-kind", type=int, default=18, help="hostile requests of each kind")
    args = parser.parse_args()

    bins = run.build(args.no_build)
    root = tempfile.mkdtemp(prefix="pmd-stress-")
    b = LimitedBench(bins, root)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = {}
    try:
        if args.what in ("scale", "all"):
            helper = os.path.join(root, "helper")
            subprocess.run(["rustc", "-O", "--edition", "2021", os.path.join(run.REPO, "bench", "helper.rs"),
                            "-o", helper], check=True)
            results["scale"] = scale(b, root, helper, args.apps, args.cpu_window)
        if args.what in ("hostile", "all"):
            results["hostile"] = hostile(b, root, args.per_kind)
    except KeyboardInterrupt as e:
        run.log(f"interrupted ({e}); cleaning up")
        sys.exit(130)
    finally:
        b.cleanup()
    for name, rows in results.items():
        print(f"## {name} (daemon and pmd under ulimit -Sn {SOFT_NOFILE})")
        for key, value in rows.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
