"""Wiring of the stack, asserted on the SAM template and on its CloudFormation translation.

Each test names the failure case it guards (see the team's failure-case list): C19 partial
batch failures, C22 visibility timeout, C23 maxReceiveCount and DLQ alarm metric, C24 DLQ
retention and target, C33 the Rust build settings; plus least privilege and no secret in the
template.
"""

import json

import pytest

from conftest import FUNCTIONS, SECRETS_ARN, TEMPLATE


def resources(cfn, type_):
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


def param_max(sam, name):
    return int(sam["Parameters"][name]["MaxValue"])


def test_c19_sqs_event_source_reports_batch_item_failures(cfn):
    mappings = resources(cfn, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1
    (mapping,) = mappings.values()
    props = mapping["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "WorkerFunction"}
    assert props["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerMaximumConcurrency"}


def test_c22_visibility_timeout_is_at_least_six_worker_timeouts_plus_the_batching_window(sam, cfn):
    worker_timeout = cfn["Resources"]["WorkerFunction"]["Properties"]["Timeout"]
    visibility = cfn["Resources"]["EventsQueue"]["Properties"]["VisibilityTimeout"]
    window = param_max(sam, "WorkerBatchingWindowSeconds")
    assert visibility >= 6 * worker_timeout + window
    # The worker's lease is its remaining time, at most its timeout: never longer than the
    # visibility timeout, so a message cannot reappear while its lease is live elsewhere.
    assert worker_timeout <= visibility


def test_c23_redrive_after_at_least_five_receives_and_dlq_alarm_on_visible_messages(sam, cfn):
    redrive = cfn["Resources"]["EventsQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    p = sam["Parameters"]["MaxReceiveCount"]
    assert int(p["Default"]) == 5 and int(p["MinValue"]) >= 5
    assert int(sam["Parameters"]["WorkerMaximumConcurrency"]["MinValue"]) >= 2
    alarm = cfn["Resources"]["DeadLetterQueueAlarm"]["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_c24_dlq_is_the_redrive_target_and_outlives_the_source_queue(cfn):
    queues = cfn["Resources"]
    redrive = queues["EventsQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    source_retention = queues["EventsQueue"]["Properties"]["MessageRetentionPeriod"]
    dlq_retention = queues["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    assert dlq_retention == 14 * 24 * 3600 and dlq_retention > source_retention
    assert not queues["EventsQueue"]["Properties"].get("FifoQueue") and not queues["DeadLetterQueue"]["Properties"].get("FifoQueue")
    for q in ("EventsQueue", "DeadLetterQueue"):
        assert queues[q]["Properties"]["SqsManagedSseEnabled"] is True


def test_c33_rust_functions_build_with_cargo_lambda_for_arm64_al2023(sam, cfn):
    for name in FUNCTIONS:
        res = sam["Resources"][name]
        assert res["Metadata"]["BuildMethod"] == "rust-cargolambda"
        props = cfn["Resources"][name]["Properties"]
        assert props["Runtime"] == "provided.al2023"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == "bootstrap"
    assert sam["Resources"]["IngestFunction"]["Properties"]["CodeUri"] == "functions/ingest"
    assert sam["Resources"]["WorkerFunction"]["Properties"]["CodeUri"] == "functions/worker"
    binaries = {sam["Resources"][n]["Metadata"]["BuildProperties"]["Binary"] for n in FUNCTIONS}
    assert binaries == {"doorbell-ingest", "doorbell-worker"}


def test_table_is_on_demand_with_ttl_on_expires_at_pitr_and_sse(cfn):
    table = cfn["Resources"]["EventsTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True


def test_http_api_routes_post_webhooks_source_to_ingest(cfn):
    fn = cfn["Resources"]["IngestFunction"]["Properties"]
    env = fn["Environment"]["Variables"]
    assert env["DOORBELL_QUEUE_URL"] == {"Ref": "EventsQueue"}
    assert env["DOORBELL_SECRETS_ARN"] == {"Ref": "SecretsArn"}
    assert env["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"] == "true"
    api = cfn["Resources"]["WebhookApi"]["Properties"]["Body"]
    route = api["paths"]["/webhooks/{source}"]
    assert list(route) == ["post"]
    assert route["post"]["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"
    worker_env = cfn["Resources"]["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker_env["DOORBELL_TABLE"] == {"Ref": "EventsTable"}


def _statements(cfn, role):
    props = cfn["Resources"][role]["Properties"]
    assert not props.get("ManagedPolicyArns"), f"{role} must not carry broad managed policies"
    return [s for p in props["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _as_list(x):
    return x if isinstance(x, list) else [x]


def test_each_function_may_touch_only_its_own_resources(cfn):
    for fn, role in (("IngestFunction", "IngestRole"), ("WorkerFunction", "WorkerRole")):
        assert cfn["Resources"][fn]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    ingest = {tuple(_as_list(s["Action"])): s["Resource"] for s in _statements(cfn, "IngestRole")}
    assert ingest == {
        ("logs:CreateLogStream", "logs:PutLogEvents"): {"Fn::GetAtt": ["IngestLogGroup", "Arn"]},
        ("sqs:SendMessage",): {"Fn::GetAtt": ["EventsQueue", "Arn"]},
        ("secretsmanager:GetSecretValue",): {"Ref": "SecretsArn"},
    }
    worker = {tuple(_as_list(s["Action"])): s["Resource"] for s in _statements(cfn, "WorkerRole")}
    assert worker == {
        ("logs:CreateLogStream", "logs:PutLogEvents"): {"Fn::GetAtt": ["WorkerLogGroup", "Arn"]},
        ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"): {"Fn::GetAtt": ["EventsQueue", "Arn"]},
        ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"): {"Fn::GetAtt": ["EventsTable", "Arn"]},
    }
    for s in _statements(cfn, "IngestRole") + _statements(cfn, "WorkerRole"):
        assert s["Effect"] == "Allow" and s["Resource"] != "*"


def test_alarms_cover_dlq_depth_queue_age_ingest_errors_and_rejected_signatures(cfn):
    alarms = {v["Properties"]["MetricName"]: v["Properties"] for v in resources(cfn, "AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "5xx", "4xx", "SignatureRejected"}
    filt = cfn["Resources"]["SignatureRejectedMetricFilter"]["Properties"]
    assert filt["FilterPattern"] == '{ $.fields.metric = "SignatureRejected" }'
    assert filt["LogGroupName"] == {"Ref": "IngestLogGroup"}
    assert filt["MetricTransformations"][0]["MetricName"] == "SignatureRejected"


def test_no_secret_value_in_the_template():
    text = TEMPLATE.read_text()
    for needle in ("whsec_", "shpss_", "SecretString", "-----BEGIN"):
        assert needle not in text


def test_outputs_give_the_webhook_url_queues_and_table(cfn):
    assert set(cfn["Outputs"]) == {"WebhookBaseUrl", "EventsQueueUrl", "DeadLetterQueueUrl", "EventsTableName"}
    assert "/webhooks/" in json.dumps(cfn["Outputs"]["WebhookBaseUrl"])


@pytest.mark.parametrize("missing", ["SecretsArn"])
def test_secrets_arn_is_required_and_validated(sam, missing):
    p = sam["Parameters"][missing]
    assert "Default" not in p
    import re

    assert re.match(p["AllowedPattern"], SECRETS_ARN)
    assert not re.match(p["AllowedPattern"], "whsec_not_an_arn")
