"""The test harness's own promises: a missing service fails the run loudly, and parallel
workers never hand out the same port."""

from __future__ import annotations

import pytest

from tests import conftest


def test_a_missing_binary_fails_the_test_unless_a_skip_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("SG_ALLOW_MISSING", raising=False)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y no-such-package"):
        conftest.require_binary("no-such-binary", "no-such-package", extra_dirs=())
    monkeypatch.setenv("SG_ALLOW_MISSING", "1")
    with pytest.raises(pytest.skip.Exception):
        conftest.require_binary("no-such-binary", "no-such-package", extra_dirs=())


def test_ports_come_from_the_workers_own_slice_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        r = conftest._port_range()
        assert r.stop <= 32768
        ports = {conftest.free_port() for _ in range(20)}
        assert len(ports) == 20 and all(p in r for p in ports)
        slices.append(set(r))
    assert not (slices[0] & slices[1]) and not (slices[1] & slices[2])
