"""How a process tells that its cache went and came back: one warning, then at most
one every WARN_EVERY while it stays away; the cache tried again only when due."""

from __future__ import annotations

import time

import pytest

from app.metrics import Metrics
from app.proxy import singleflight
from app.proxy.singleflight import CacheOutage
from tests.waiting import until


async def test_warnings_are_rate_limited_and_the_recovery_is_told(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(singleflight, "WARN_EVERY", 0.2)
    monkeypatch.setattr(singleflight, "CACHE_RETRY", 0.1)
    metrics = Metrics()
    outage = CacheOutage(metrics)
    assert outage.worth_trying()
    started = time.monotonic()
    for _ in range(5):
        outage.failed(ConnectionError("refused"))
    assert not outage.worth_trying()  # not before CACHE_RETRY
    out = capsys.readouterr().out
    assert out.count("cache unavailable") == 1 and "failures=1" in out
    text = metrics.render().decode()
    assert "artifactapi_cache_degraded 1.0" in text
    assert "artifactapi_cache_errors_total 5.0" in text
    await until(outage.worth_trying, "due for another try")
    await until(lambda: time.monotonic() - started > 0.2, "a warning due again")
    outage.failed(ConnectionError("refused"))
    out = capsys.readouterr().out
    assert out.count("cache unavailable") == 1 and "failures=5" in out  # the 4 unwarned + this
    outage.answered()
    outage.answered()
    out = capsys.readouterr().out
    assert out.count("cache is back") == 1
    assert "artifactapi_cache_degraded 0.0" in metrics.render().decode()
    assert outage.worth_trying()
