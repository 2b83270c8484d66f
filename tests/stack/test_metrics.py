"""The dashboard and the alarms over the functions' Embedded Metric Format metrics.

The metric names come from `shared/src/metrics.rs`, the one place the code names them, so a
metric renamed there and not here (or the other way round) fails a test. The alarms read the
metrics without dimensions: the functions' tests check that every document also publishes its
metrics under the empty dimension set.
"""

import json
import pathlib
import re

import pytest

from conftest import ROOT

METRICS_RS = ROOT / "shared" / "src" / "metrics.rs"


def code_metrics():
    """Every metric the code defines: {name: unit}."""
    text = METRICS_RS.read_text()
    found = {name: "Count" for name in re.findall(r'Metric::count\("(\w+)"\)', text)}
    found.update({name: "Milliseconds" for name in re.findall(r'Metric::milliseconds\("(\w+)"\)', text)})
    return found


def namespace():
    (ns,) = re.findall(r'pub const NAMESPACE: &str = "(\w+)";', METRICS_RS.read_text())
    return ns


def resources(cfn, type_):
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


def substituted(sub):
    """A Fn::Sub string with every ${...} replaced the way CloudFormation would (a number for
    a Number parameter, a name otherwise), so the result can be parsed."""
    def value(m):
        return "0.05" if m.group(1) == "FailedRateAlarmThreshold" else f"resolved-{m.group(1)}"
    return re.sub(r"\$\{([^}]+)\}", value, sub)


@pytest.fixture(scope="module")
def dashboard(cfn_standard):
    (board,) = resources(cfn_standard, "AWS::CloudWatch::Dashboard").values()
    return json.loads(substituted(board["Properties"]["DashboardBody"]["Fn::Sub"]))


def dashboard_metrics(body):
    """(namespace, name, stat) of every metric row, and the text of every expression."""
    rows, expressions = [], []
    for widget in body["widgets"]:
        props = widget["properties"]
        for row in props["metrics"]:
            options = row[-1] if isinstance(row[-1], dict) else {}
            if "expression" in options:
                expressions.append(options["expression"])
                continue
            rows.append((row[0], row[1], options.get("stat", props.get("stat"))))
    return rows, expressions


def test_code_defines_the_metrics_the_dashboard_and_alarms_rely_on():
    metrics = code_metrics()
    assert namespace() == "Doorbell"
    for name in ("Received", "Rejected", "Enqueued", "EnqueueFailed", "Processed", "Ignored", "Duplicate",
                 "Failed", "DeadLettered", "Conflict"):
        assert metrics[name] == "Count"
    assert metrics["HandlerDuration"] == metrics["QueueLag"] == "Milliseconds"


def test_metric_names_are_defined_once_in_the_code():
    text = METRICS_RS.read_text()
    names = re.findall(r'Metric::(?:count|milliseconds)\("(\w+)"\)', text)
    assert len(names) == len(set(names)) == len(code_metrics())


def test_dashboard_shows_every_metric_the_code_publishes(dashboard):
    rows, expressions = dashboard_metrics(dashboard)
    shown = {name for ns, name, _ in rows if ns == namespace()}
    searched = {name for e in expressions for name in re.findall(r'MetricName=\\?"(\w+)\\?"', e)}
    assert shown | searched == set(code_metrics())
    # The dashboard names no Doorbell metric the code does not publish.
    assert shown <= set(code_metrics())


def test_dashboard_shows_latency_percentiles_queue_depths_and_worker_errors(dashboard):
    rows, expressions = dashboard_metrics(dashboard)
    for name in ("HandlerDuration", "QueueLag"):
        assert {stat for ns, n, stat in rows if n == name} == {"p50", "p99"}
    sqs = {(n, row_dims) for n, row_dims in _dimensioned(dashboard, "AWS/SQS")}
    assert ("ApproximateNumberOfMessagesVisible", "resolved-EventsQueue.QueueName") in sqs
    assert ("ApproximateNumberOfMessagesVisible", "resolved-DeadLetterQueue.QueueName") in sqs
    lam = {(n, row_dims) for n, row_dims in _dimensioned(dashboard, "AWS/Lambda")}
    assert {("Errors", "resolved-WorkerFunction"), ("Throttles", "resolved-WorkerFunction")} <= lam
    assert any("Rejected" in e and "reason" in e for e in expressions), "rejections by reason"


def _dimensioned(body, ns):
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if row[0] == ns:
                yield row[1], row[3]


def test_dashboard_widgets_are_in_the_stack_region(dashboard):
    for widget in dashboard["widgets"]:
        assert widget["properties"]["region"] == "resolved-AWS::Region"


def _alarm(cfn, name):
    alarm = cfn["Resources"][name]
    assert alarm["Type"] == "AWS::CloudWatch::Alarm"
    return alarm["Properties"]


@pytest.mark.parametrize("alarm", ["WorkerFailedRateAlarm", "WorkerErrorsAlarm"])
def test_alarms_notify_the_alarm_topic_when_there_is_one(cfn, cfn_standard, alarm):
    assert _alarm(cfn, alarm)["AlarmActions"] == {
        "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
    assert _alarm(cfn_standard, alarm)["TreatMissingData"] == "notBreaching"


def test_failed_rate_alarm_divides_failed_by_the_records_finished_across_all_sources(sam, cfn_standard):
    props = _alarm(cfn_standard, "WorkerFailedRateAlarm")
    queries = {q["Id"]: q for q in props["Metrics"]}
    stats = {i: q["MetricStat"] for i, q in queries.items() if "MetricStat" in q}
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {"Failed", "Processed", "Ignored"}
    for s in stats.values():
        assert s["Metric"]["MetricName"] in code_metrics()
        assert s["Metric"]["Namespace"] == namespace()
        # The total across sources: the document's empty dimension set.
        assert "Dimensions" not in s["Metric"]
        assert (s["Stat"], s["Period"]) == ("Sum", 300)
    returned = [q for q in queries.values() if q.get("ReturnData", True)]
    assert [q["Id"] for q in returned] == ["rate"]
    assert queries["total"]["Expression"] == "FILL(processed, 0) + FILL(ignored, 0) + FILL(failed, 0)"
    assert queries["rate"]["Expression"] == "IF(total > 0, FILL(failed, 0) / total, 0)"
    assert props["Threshold"] == {"Ref": "FailedRateAlarmThreshold"}
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    threshold = sam["Parameters"]["FailedRateAlarmThreshold"]
    assert (threshold["Default"], threshold["MinValue"], threshold["MaxValue"]) == (0.05, 0, 1)


def test_worker_errors_alarm_fires_on_any_function_error(cfn_standard):
    props = _alarm(cfn_standard, "WorkerErrorsAlarm")
    assert (props["Namespace"], props["MetricName"]) == ("AWS/Lambda", "Errors")
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "WorkerFunction"}}]
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == (
        "Sum", 0, "GreaterThanThreshold")
