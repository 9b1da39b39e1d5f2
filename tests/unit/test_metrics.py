"""The request tallies render as the Prometheus families they stand in for; request
ids and the log lines that carry them."""

from app import logs
from app.metrics import Metrics
from app.middleware import RequestIds


def _samples(metrics: Metrics) -> dict[str, float]:
    lines = metrics.render().decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in lines if not line.startswith("#"))
    }


def test_requests_latency_and_bytes() -> None:
    metrics = Metrics()
    for status, seconds in ((200, 0.004), (200, 0.02), (404, 0.2), (200, 400.0)):
        metrics.http.add("/r/{p}", "GET", status, seconds, 10, 100)
    metrics.http.add("/r/{p}", "PUT", 201, 0.001, 5, 0)
    metrics.proxy.add("mirror", "HIT")
    metrics.proxy.add("mirror", "HIT")
    got = _samples(metrics)
    route = 'route="/r/{p}"'
    assert got[f'artifactapi_http_requests_total{{method="GET",{route},status="200"}}'] == 3
    assert got[f'artifactapi_http_requests_total{{method="GET",{route},status="404"}}'] == 1
    # One histogram per route and method, statuses together; buckets are cumulative.
    latency = "artifactapi_http_request_duration_seconds"
    get = f'method="GET",{route}'
    assert got[f'{latency}_bucket{{le="0.005",{get}}}'] == 1
    assert got[f'{latency}_bucket{{le="0.025",{get}}}'] == 2
    assert got[f'{latency}_bucket{{le="0.25",{get}}}'] == 3
    assert got[f'{latency}_bucket{{le="300.0",{get}}}'] == 3
    assert got[f'{latency}_bucket{{le="+Inf",{get}}}'] == 4
    assert got[f"{latency}_count{{{get}}}"] == 4
    assert abs(got[f"{latency}_sum{{{get}}}"] - 400.224) < 1e-9
    assert got[f'{latency}_count{{method="PUT",{route}}}'] == 1
    assert got[f"artifactapi_http_request_bytes_total{{{route}}}"] == 45
    assert got[f"artifactapi_http_response_bytes_total{{{route}}}"] == 400
    assert got['artifactapi_proxy_requests_total{cache="HIT",repository="mirror"}'] == 2


def test_request_ids_are_unique_per_process() -> None:
    ids, other = RequestIds(), RequestIds()
    made = [ids.new() for _ in range(1000)] + [other.new() for _ in range(1000)]
    assert len(set(made)) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)


def test_log_lines_carry_the_request_id_of_their_request() -> None:
    assert logs.add_request_id(None, "info", {"event": "x"}) == {"event": "x"}
    token = logs.REQUEST_ID.set("abc")
    try:
        assert logs.add_request_id(None, "info", {"event": "x"})["request_id"] == "abc"
    finally:
        logs.REQUEST_ID.reset(token)
