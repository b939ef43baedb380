"""The client against a real daemon, over the Unix socket and over TCP with a
token (the `client` fixture runs each test both ways)."""

import os
import threading

import grpc
import pytest

import pmdaemon
from pmdaemon import pb

from conftest import WAIT, wait_for

# Prints a numbered tick every 100 ms, and the content of $T whenever that
# file appears (then removes it).
TICKER = 'i=0; while :; do i=$((i+1)); echo "tick $i"; if [ -f "$T" ]; then cat "$T"; rm -f "$T"; fi; sleep 0.1; done'


def watchdog(stream, seconds=WAIT):
    """Cancels `stream` after `seconds`, so that a missing line fails the
    test instead of hanging it."""
    timer = threading.Timer(seconds, stream.cancel)
    timer.daemon = True
    timer.start()
    return timer


def test_start_list_logs_wait_ready_stop_delete(client, daemon):
    trigger = os.path.join(daemon.work, "trigger")
    started = client.start("/bin/sh", name="ticker", args=["-c", TICKER], env={"T": trigger}, min_uptime_ms=300)
    assert [p.name for p in started] == ["ticker"]
    app_id = started[0].id

    ready = client.wait_ready(started, timeout=WAIT)
    assert [r.readiness for r in ready] == [pb.READINESS_READY]
    assert ready[0].process.ready

    [listed] = [p for p in client.list() if p.name == "ticker"]
    assert pmdaemon.state_name(listed.state) == "online"
    assert listed.HasField("pid") and listed.pid > 0
    pid = listed.pid
    assert [p.id for p in client.get("ticker")] == [app_id]
    assert [p.name for p in client.get(str(app_id))] == ["ticker"]

    # Follow from now on: a tick proves the stream is live, then a line the
    # app writes only after that must arrive too.
    marker = f"written after the stream began {os.getpid()}"
    with client.logs("ticker", follow=True, lines=0) as lines:
        dog = watchdog(lines)
        first = next(lines)
        assert first.name == "ticker" and first.data.startswith(b"tick ")
        assert first.stream == pb.LOG_STREAM_STDOUT
        with open(trigger + ".tmp", "w") as f:
            f.write(marker + "\n")
        os.rename(trigger + ".tmp", trigger)
        seen = []
        for line in lines:
            seen.append(line.data)
            if line.data == marker.encode():
                break
        else:
            pytest.fail(f"{marker!r} never arrived; got {seen[-5:]}")
        dog.cancel()

    # History without follow: the stream ends on its own.
    history = list(client.logs("ticker", lines=5))
    assert 1 <= len(history) <= 10 and all(line.name == "ticker" for line in history)

    stopped = client.stop("ticker")
    assert [pmdaemon.state_name(p.state) for p in stopped] == ["stopped"]
    [after] = client.get("ticker")
    assert after.state == pb.PROCESS_STATE_STOPPED and not after.HasField("pid")
    wait_for(f"pid {pid} to be gone", lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid))

    restarted = client.start(target="ticker")
    assert restarted and restarted[0].id == app_id
    client.wait_ready("ticker", timeout=WAIT)

    deleted = client.delete("ticker")
    assert [p.id for p in deleted] == [app_id]
    with pytest.raises(pmdaemon.NotFound) as error:
        client.get("ticker")
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert "ticker" in error.value.message
    assert all(p.name != "ticker" for p in client.list())


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_typed_errors(client):
    client.start("/bin/sleep", name="nap", args=["1000"])
    with pytest.raises(pmdaemon.AlreadyExists):
        client.start("/bin/sleep", name="nap", args=["1000"])
    with pytest.raises(pmdaemon.InvalidArgument):
        client.start("/bin/sleep", name="all", args=["1000"])
    with pytest.raises(pmdaemon.NotFound):
        client.stop("nope")
    for error in (pmdaemon.AlreadyExists, pmdaemon.NotFound, pmdaemon.InvalidArgument):
        assert issubclass(error, pmdaemon.PmdaemonError)
    client.delete("nap")


def test_wait_ready_raises_with_the_report_when_the_app_fails(client):
    started = client.start(
        "/bin/sh", name="broken", args=["-c", "echo 'cannot bind port' >&2; exit 3"], autorestart="never"
    )
    with pytest.raises(pmdaemon.NotReady) as error:
        client.wait_ready(started, timeout=WAIT)
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "broken" in error.value.report
    assert "cannot bind port" in error.value.report
    assert error.value.instances and error.value.instances[0].readiness == pb.READINESS_FAILED


def test_wait_ready_times_out(client):
    # min_uptime far above the timeout: online, never ready in time.
    client.start("/bin/sleep", name="slow", args=["1000"], min_uptime_ms=60_000)
    with pytest.raises(pmdaemon.NotReady) as error:
        client.wait_ready("slow", timeout=0.5)
    assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "slow" in error.value.report


def test_events_stream(client):
    with client.events() as events:
        dog = watchdog(events)
        # An event of another app first proves the stream live, so none of
        # the app's own events can come before it.
        client.start("/bin/sleep", name="sync", args=["1000"])
        assert any(event.name == "sync" for event in events)
        client.start("/bin/sleep", name="evented", args=["1000"], min_uptime_ms=200)
        kinds = []
        for event in events:
            if event.name == "evented":
                kinds.append(event.kind)
                if event.kind == pb.EVENT_KIND_READY:
                    break
        dog.cancel()
    assert kinds[0] == pb.EVENT_KIND_STARTED and pb.EVENT_KIND_ONLINE in kinds, kinds
    assert kinds[-1] == pb.EVENT_KIND_READY, kinds
    # The stub is there for everything else.
    reply = client.stub.ScaleProcess(pb.ScaleProcessRequest(name="evented", instances=2))
    assert len(reply.processes) == 2

