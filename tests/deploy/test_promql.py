import pytest

from tests.deploy.promql import grafana_variable_metric_names, metric_names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'rate(memscore_events_consumed_total{outcome="scored"}[5m])',
            {"memscore_events_consumed_total"},
        ),
        ("sum by (namespace, le) (rate(h_bucket[5m]))", {"h_bucket"}),
        ("sum(rate(x_total[1m])) by (pod)", {"x_total"}),
        ("a / on (namespace) group_left clamp_min(b, 0.001)", {"a", "b"}),
        ('absent(up{job="memscore"} == 1)', {"up"}),
        ('time() - max(ts_seconds{pod=~"$pod"})', {"ts_seconds"}),
        (
            "histogram_quantile(0.95, "
            'sum by (le) (rate(h_bucket{ns=~"$namespace"}[$__rate_interval])))',
            {"h_bucket"},
        ),
        ("x > 1e3 and y offset 5m", {"x", "y"}),
        ("ns:recorded:sum > bool 0", {"ns:recorded:sum"}),
        ('x{a="memscore_not_a_metric_total"}', {"x"}),
        ("deriv(a[15m]) > 0 unless b", {"a", "b"}),
        ("max_over_time(g[2m:30s]) == Inf", {"g"}),
        ('{__name__="only_matchers"}', set()),
    ],
)
def test_metric_names_finds_exactly_the_series_read(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("label_values(memscore_build_info, namespace)", {"memscore_build_info"}),
        (
            'label_values(memscore_build_info{namespace=~"$namespace"}, pod)',
            {"memscore_build_info"},
        ),
        ("query_result(sum by (pod) (memscore_inflight_requests))", {"memscore_inflight_requests"}),
    ],
)
def test_grafana_variable_queries_yield_their_metric(query: str, expected: set[str]) -> None:
    assert grafana_variable_metric_names(query) == expected
