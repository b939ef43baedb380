#!/usr/bin/env python3
"""Remote-access benchmarks of pmdaemond (see bench/README.md, "Remote"):

  rest     `GET /v1/processes` with 50 apps over loopback, through the TCP
           listener (`--listen`), with wrk at a fixed concurrency: requests
           per second and p99 latency (and `GET /healthz`, no token, no RPC,
           as the floor of the HTTP stack). Needs wrk (apt-get install wrk).
  grpc     ListProcesses with 50 apps, over TCP (h2c, bearer token) vs over
           the Unix socket: median and p99 of N sequential calls from one
           grpcio channel each. Needs grpcio and grpcio-tools
           (pip install grpcio grpcio-tools).
  rss      the daemon's idle VmRSS and RssAnon (no app, 1 s after it
           answers) with the listener off and on, each on a fresh daemon;
           and the RSS of the 50-app daemon after the REST load.

It reuses run.py's helpers (build, daemon spawn and cleanup) and never
fails a build: it prints what it measured.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py)


def token_of(home):
    with open(os.path.join(home, "token")) as f:
        return f.read().strip()


def start_apps(b, home, count):
    for i in range(count):
        b.pmd(home, "start", "sleep", "--name", f"s{i:02}", "--", "100000")
    online = sum(1 for a in b.list_json(home) if a["status"] == "online")
    if online != count:
        raise RuntimeError(f"only {online} of {count} apps online")


def wrk(url, token, concurrency, duration):
    """Requests/s and p99 (ms) of `wrk --latency` on `url`; one thread (two
    cores here: the daemon needs the other)."""
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", url]
    if token:
        argv[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk got {errors.group(1)} error answers from {url}:\n{out}")
    return rps, float(p99.group(1)) * scale


def rest(b, home, port, concurrency, duration):
    if shutil.which("wrk") is None:
        return {"skipped": "needs wrk (apt-get install wrk)"}
    token = token_of(home)
    base = f"http://127.0.0.1:{port}"
    wrk(f"{base}/v1/processes", token, concurrency, 1)  # warm up
    rps, p99 = wrk(f"{base}/v1/processes", token, concurrency, duration)
    floor_rps, floor_p99 = wrk(f"{base}/healthz", None, concurrency, duration)
    body = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {token}", f"{base}/v1/processes"],
                          check=True, capture_output=True).stdout
    return {
        f"GET /v1/processes, 50 apps ({len(body)} bytes), {concurrency} connections, {duration} s":
            f"{rps:,.0f} req/s, p99 {p99:.2f} ms",
        "GET /healthz (floor: no token, no RPC)": f"{floor_rps:,.0f} req/s, p99 {floor_p99:.2f} ms",
    }


def grpc_stubs(root):
    try:
        import grpc  # noqa: F401
        from grpc_tools import protoc
    except ImportError:
        return None
    stubs = os.path.join(root, "stubs")
    os.makedirs(stubs, exist_ok=True)
    proto = os.path.join(run.REPO, "proto")
    rc = protoc.main(["protoc", f"-I{proto}", f"-I{os.path.dirname(protoc.__file__)}/_proto",
                      f"--python_out={stubs}", f"--grpc_python_out={stubs}",
                      "pmdaemon/v1/process_manager.proto", "pmdaemon/v1/access.proto",
                      "google/api/annotations.proto", "google/api/http.proto"])
    if rc != 0:
        raise RuntimeError("protoc failed on proto/")
    sys.path.insert(0, stubs)
    return stubs


def grpc_list(b, root, home, port, calls):
    if grpc_stubs(root) is None:
        return {"skipped": "needs grpcio and grpcio-tools: pip install grpcio grpcio-tools"}
    import grpc
    from pmdaemon.v1 import process_manager_pb2 as pb
    from pmdaemon.v1 import process_manager_pb2_grpc as rpc

    def timed(target, metadata):
        channel = grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")])
        stub = rpc.ProcessManagerStub(channel)
        for _ in range(20):  # connect, warm up
            stub.ListProcesses(pb.ListProcessesRequest(), metadata=metadata)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            reply = stub.ListProcesses(pb.ListProcessesRequest(), metadata=metadata)
            times.append(time.perf_counter_ns() - t0)
        channel.close()
        assert len(reply.processes) == 50, len(reply.processes)
        times.sort()
        return statistics.median(times) / 1e3, times[int(len(times) * 0.99)] / 1e3

    unix = timed("unix://" + os.path.join(home, "pmd.sock"), ())
    tcp = timed(f"127.0.0.1:{port}", (("authorization", f"Bearer {token_of(home)}"),))
    return {
        f"ListProcesses, 50 apps, Unix socket (median / p99 of {calls})":
            f"{unix[0]:.0f} / {unix[1]:.0f} µs",
        f"ListProcesses, 50 apps, TCP h2c + token (median / p99 of {calls})":
            f"{tcp[0]:.0f} / {tcp[1]:.0f} µs",
    }


def rss_anon_kib(pid):
    """RssAnon: the daemon's own memory, without the pages of its binary
    (RssFile, shared with the page cache, grows with the binary's size)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError(f"no RssAnon for {pid}")


def idle_rss(b, root, port):
    """(VmRSS, RssAnon) in KiB of a fresh daemon 1 s after it answers,
    listener off and on; medians of 3 daemons."""
    out = {}
    for label, args in (("off", ()), ("on", ("--listen", f"127.0.0.1:{port}"))):
        samples = []
        for i in range(3):
            home = os.path.join(root, f"rss-{label}-{i}")
            daemon = b.spawn_daemon(home, *args)
            b.wait_ping(home, daemon)
            time.sleep(1.0)
            samples.append((run.vm_rss_kib(daemon.pid), rss_anon_kib(daemon.pid)))
            b.stop_daemon(daemon)
        out[label] = (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--calls", type=int, default=2000, help="ListProcesses calls per transport")
    args = parser.parse_args()

    bins = run.build(args.no_build)
    root = tempfile.mkdtemp(prefix="pmd-remote-")
    b = run.Bench(bins, root)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = {}
    try:
        port = run.free_port_block(1)
        run.log("idle RSS, listener off and on")
        rss = idle_rss(b, root, port)
        home = os.path.join(root, "main")
        daemon = b.spawn_daemon(home, "--listen", f"127.0.0.1:{port}")
        b.wait_ping(home, daemon)
        run.log("50 apps")
        start_apps(b, home, 50)
        run.log(f"wrk, {args.concurrency} connections")
        results.update(rest(b, home, port, args.concurrency, args.duration))
        time.sleep(6.0)  # the daemon trims its allocator every 5 s
        rss_after = run.vm_rss_kib(daemon.pid)
        run.log(f"ListProcesses x{args.calls}, socket and TCP")
        results.update(grpc_list(b, root, home, port, args.calls))
        results["daemon idle VmRSS, listener off / on (median of 3 fresh daemons)"] = \
            f"{rss['off'][0] / 1024:.2f} / {rss['on'][0] / 1024:.2f} MiB"
        results["of which RssAnon (the rest is the binary's pages), off / on"] = \
            f"{rss['off'][1] / 1024:.2f} / {rss['on'][1] / 1024:.2f} MiB"
        results["daemon RSS, 50 apps, listener on, 6 s after the REST load"] = f"{rss_after / 1024:.2f} MiB"
    except KeyboardInterrupt as e:
        run.log(f"interrupted ({e}); cleaning up")
        sys.exit(130)
    finally:
        b.cleanup()
    print("## remote")
    for key, value in results.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
