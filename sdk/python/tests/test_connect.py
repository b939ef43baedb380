"""connect(): where it goes, and what the daemon says of its tokens."""

import os

import pytest

import pmdaemon
from pmdaemon import pb

from conftest import Daemon, free_port


def test_local_socket_from_pmdaemon_home(daemon, monkeypatch):
    monkeypatch.setenv("PMDAEMON_HOME", daemon.home)
    with pmdaemon.connect() as client:
        ping = client.ping()
    assert ping.home == daemon.home
    assert ping.daemon_pid == daemon.process.pid


def test_no_daemon_is_unavailable(tmp_path):
    with pytest.raises(pmdaemon.Unavailable) as error:
        pmdaemon.connect(home=str(tmp_path))
    assert "pmd.sock" in error.value.message


def test_read_only_token_is_refused_on_stop_and_the_app_runs_on(daemon):
    reader_token = daemon.pmd("token", "create", "reader", "--read-only").strip()
    host = f"http://127.0.0.1:{daemon.port}"
    with pmdaemon.connect(host, token=daemon.admin_token) as admin:
        [app] = admin.start("/bin/sleep", name="keep", args=["1000"])
        pid = admin.wait_ready("keep", timeout=30)[0].process.pid
    with pmdaemon.connect(host, token=reader_token) as reader:
        assert [p.name for p in reader.list()] == ["keep"]
        with pytest.raises(pmdaemon.PermissionDenied) as error:
            reader.stop("keep")
        assert error.value.code.name == "PERMISSION_DENIED"
    with pmdaemon.connect(home=daemon.home) as local:
        [after] = local.get("keep")
    assert after.state == pb.PROCESS_STATE_ONLINE and after.pid == pid


@pytest.mark.parametrize("token", [None, "pmd_" + "0" * 64, "not-a-token"])
def test_wrong_or_missing_token_is_unauthenticated(daemon, token, monkeypatch):
    monkeypatch.delenv("PMD_TOKEN", raising=False)
    monkeypatch.delenv("PMD_TOKEN_FILE", raising=False)
    with pmdaemon.connect(f"127.0.0.1:{daemon.port}", token=token, tls=False) as client:
        with pytest.raises(pmdaemon.Unauthenticated):
            client.list()
        with pytest.raises(pmdaemon.Unauthenticated):
            list(client.logs("all", lines=1))


def test_token_from_the_environment(daemon, monkeypatch):
    monkeypatch.setenv("PMD_TOKEN", daemon.admin_token)
    with pmdaemon.connect(f"http://127.0.0.1:{daemon.port}") as client:
        assert client.ping().daemon_pid == daemon.process.pid


def test_remote_relative_script_is_refused(daemon):
    with pmdaemon.connect(f"http://127.0.0.1:{daemon.port}", token=daemon.admin_token) as client:
        with pytest.raises(pmdaemon.InvalidArgument):
            client.start("./app.sh", name="rel")


def test_tls_with_a_ca_file_and_call_credentials(tmp_path):
    """TLS: the token as call credentials, the server verified against
    `ca_cert`; without that CA the handshake fails (Unavailable)."""
    tls = os.environ.get("PMDAEMON_TEST_TLS_DIR")
    if not tls:
        pytest.skip("PMDAEMON_TEST_TLS_DIR unset: the e2e test sdk_python makes a CA and a certificate")
    port = free_port()
    daemon = Daemon(
        str(tmp_path),
        listen_port=port,
        args=["--tls-cert", os.path.join(tls, "cert.pem"), "--tls-key", os.path.join(tls, "key.pem")],
    )
    try:
        ca = os.path.join(tls, "ca.pem")
        with pmdaemon.connect(f"127.0.0.1:{port}", token=daemon.admin_token, ca_cert=ca) as client:
            assert client.address == f"https://127.0.0.1:{port}"
            [app] = client.start("/bin/sleep", name="secure", args=["1000"])
            assert [p.name for p in client.list()] == ["secure"]
            client.stop("secure")
        with pmdaemon.connect(f"https://localhost:{port}", token="pmd_" + "1" * 64, ca_cert=ca) as client:
            with pytest.raises(pmdaemon.Unauthenticated):
                client.list()
        with pmdaemon.connect(f"https://127.0.0.1:{port}", token=daemon.admin_token) as client:
            with pytest.raises(pmdaemon.Unavailable):
                client.ping()
    finally:
        daemon.stop()
