"""Wiring of the stack, asserted on the SAM template and on its CloudFormation translation.

Each test names the failure case it guards (see the team's failure-case list): C19 partial
batch failures, C22 visibility timeout, C23 maxReceiveCount, DLQ alarm metric and reserved
concurrency, C24 DLQ retention and target (FIFO to FIFO), C33 the Rust build settings; plus the
FIFO variant (QueueType=fifo), the claim-check payload bucket, least privilege and no secret in
the template. `cfn` is the translation as CloudFormation receives it; `cfn_standard` and
`cfn_fifo` have the conditions resolved for each queue type.
"""

import json

import pytest

from conftest import FUNCTIONS, SECRETS_ARN, TEMPLATE, evaluate, parameter_values

DAY = 24 * 3600
FIFO_PROPERTIES = ("FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit")


def resources(cfn, type_):
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


def param_max(sam, name):
    return int(sam["Parameters"][name]["MaxValue"])


def param_range(sam, value):
    """(lowest, highest) a property can take: a literal, or a Ref to a bounded parameter."""
    if isinstance(value, dict):
        p = sam["Parameters"][value["Ref"]]
        return int(p["MinValue"]), int(p["MaxValue"])
    return int(value), int(value)


def event_source_mapping(cfn):
    mappings = resources(cfn, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1
    (mapping,) = mappings.values()
    return mapping["Properties"]


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


def test_c23_event_source_concurrency_stays_within_the_worker_reserved_concurrency(sam, cfn):
    """With reserved concurrency below the event source's maximum concurrency, Lambda throttles
    the extra invocations and every throttled receive counts toward maxReceiveCount."""
    mapping = event_source_mapping(cfn)
    lowest, highest = param_range(sam, mapping["ScalingConfig"]["MaximumConcurrency"])
    assert 2 <= lowest <= highest <= 1000  # Lambda's bounds for MaximumConcurrency
    reserved = sam["Resources"]["WorkerFunction"]["Properties"].get("ReservedConcurrentExecutions")
    if reserved is not None:
        reserved_lowest, _ = param_range(sam, reserved)
        assert highest <= reserved_lowest


def test_c24_dlq_is_the_redrive_target_and_outlives_the_source_queue(cfn_standard):
    queues = cfn_standard["Resources"]
    redrive = queues["EventsQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    source_retention = queues["EventsQueue"]["Properties"]["MessageRetentionPeriod"]
    dlq_retention = queues["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    assert dlq_retention == 14 * 24 * 3600 and dlq_retention > source_retention
    assert not queues["EventsQueue"]["Properties"].get("FifoQueue") and not queues["DeadLetterQueue"]["Properties"].get("FifoQueue")
    for q in ("EventsQueue", "DeadLetterQueue"):
        assert queues[q]["Properties"]["SqsManagedSseEnabled"] is True


def test_c24_a_fifo_queue_dead_letters_to_a_fifo_queue(cfn_fifo):
    queues = cfn_fifo["Resources"]
    for q in ("EventsQueue", "DeadLetterQueue"):
        props = queues[q]["Properties"]
        assert props["FifoQueue"] is True, q
        # Ingest sets MessageDeduplicationId itself; high throughput is per message group.
        assert props["ContentBasedDeduplication"] is False, q
        assert props["DeduplicationScope"] == "messageGroup", q
        assert props["FifoThroughputLimit"] == "perMessageGroupId", q
        # CloudFormation names a FIFO queue <stack>-<logical id>-<suffix>.fifo when it names it.
        assert "QueueName" not in props, q
        assert props["SqsManagedSseEnabled"] is True, q
    redrive = queues["EventsQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                       "maxReceiveCount": {"Ref": "MaxReceiveCount"}}
    assert (queues["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
            > queues["EventsQueue"]["Properties"]["MessageRetentionPeriod"])


def test_standard_queues_have_no_fifo_properties_and_keep_the_batching_window(cfn_standard):
    for q in ("EventsQueue", "DeadLetterQueue"):
        props = cfn_standard["Resources"][q]["Properties"]
        assert not set(FIFO_PROPERTIES) & set(props), q
    mapping = event_source_mapping(cfn_standard)
    assert mapping["MaximumBatchingWindowInSeconds"] == {"Ref": "WorkerBatchingWindowSeconds"}


def test_fifo_event_source_has_no_batching_window(cfn_fifo):
    # "Batching window is not supported for FIFO queues" (Lambda's SQS event source parameters).
    mapping = event_source_mapping(cfn_fifo)
    assert "MaximumBatchingWindowInSeconds" not in mapping
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == {"Ref": "WorkerBatchSize"}
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaximumConcurrency"}}


def _rules_hold(sam, parameters):
    values = parameter_values(sam, {"SecretsArn": SECRETS_ARN, **parameters})
    for rule in sam["Rules"].values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
            continue
        if not all(evaluate(a["Assert"], values) for a in rule["Assertions"]):
            return False
    return True


def test_rules_reject_batch_sizes_lambda_would_refuse(sam):
    """Lambda refuses a FIFO event source with more than 10 records a batch, and a standard one
    with more than 10 and no batching window; the template's Rules refuse those parameters
    before anything is created, and accept every other combination."""
    low, high = param_range(sam, {"Ref": "WorkerBatchSize"})
    windows = sorted({0, 1, param_max(sam, "WorkerBatchingWindowSeconds")})
    for queue_type in sam["Parameters"]["QueueType"]["AllowedValues"]:
        for size in range(low, high + 1):
            for window in windows:
                lambda_accepts = size <= 10 if queue_type == "fifo" else (size <= 10 or window >= 1)
                params = {"QueueType": queue_type, "WorkerBatchSize": size, "WorkerBatchingWindowSeconds": window}
                assert _rules_hold(sam, params) == lambda_accepts, params


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


def test_table_has_the_sparse_alerts_index(cfn):
    table = cfn["Resources"]["EventsTable"]["Properties"]
    assert {"AttributeName": "alert", "AttributeType": "S"} in table["AttributeDefinitions"]
    assert {"AttributeName": "alert_at", "AttributeType": "N"} in table["AttributeDefinitions"]
    assert table["GlobalSecondaryIndexes"] == [{
        "IndexName": "alerts",
        "KeySchema": [{"AttributeName": "alert", "KeyType": "HASH"},
                      {"AttributeName": "alert_at", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }]


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


def test_functions_are_told_the_payload_bucket_and_the_worker_the_dead_letter_queue(cfn):
    ingest = cfn["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
    worker = cfn["Resources"]["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert ingest["DOORBELL_PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}
    assert worker["DOORBELL_PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}
    assert worker["DOORBELL_DEAD_LETTER_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
    assert "DOORBELL_DEAD_LETTER_QUEUE_URL" not in ingest


PAYLOAD_OBJECTS = {"Fn::Sub": "${PayloadBucket.Arn}/*"}
ARCHIVE_STREAM = {"Fn::GetAtt": ["ArchiveStream", "Arn"]}
ARCHIVE_OBJECTS = {"Fn::Sub": "${ArchiveBucket.Arn}/archive/*"}


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
        ("s3:PutObject",): PAYLOAD_OBJECTS,
    }
    worker = {tuple(_as_list(s["Action"])): s["Resource"] for s in _statements(cfn, "WorkerRole")}
    assert worker == {
        ("logs:CreateLogStream", "logs:PutLogEvents"): {"Fn::GetAtt": ["WorkerLogGroup", "Arn"]},
        ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"): {"Fn::GetAtt": ["EventsQueue", "Arn"]},
        ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"): {"Fn::GetAtt": ["EventsTable", "Arn"]},
        ("s3:GetObject",): PAYLOAD_OBJECTS,
        ("sqs:SendMessage",): {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        ("firehose:PutRecordBatch",): ARCHIVE_STREAM,
        ("s3:PutObject",): ARCHIVE_OBJECTS,
    }
    for s in _statements(cfn, "IngestRole") + _statements(cfn, "WorkerRole"):
        assert s["Effect"] == "Allow" and s["Resource"] != "*"


def _grants(cfn, role):
    """(action, resource) for every action the role allows."""
    return [(a, json.dumps(s["Resource"], sort_keys=True)) for s in _statements(cfn, role) for a in _as_list(s["Action"])]


def test_ingest_may_only_put_payload_objects_and_the_worker_only_read_them_and_reject_to_the_dlq(cfn):
    objects = json.dumps(PAYLOAD_OBJECTS, sort_keys=True)
    dlq = json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}, sort_keys=True)
    ingest, worker = _grants(cfn, "IngestRole"), _grants(cfn, "WorkerRole")
    assert [g for g in ingest if g[0].startswith("s3:")] == [("s3:PutObject", objects)]
    archive = json.dumps(ARCHIVE_OBJECTS, sort_keys=True)
    assert [g for g in worker if g[0].startswith("s3:")] == [("s3:GetObject", objects), ("s3:PutObject", archive)]
    # Reject goes straight to the dead-letter queue: the worker's only send, and only there.
    assert [g for g in worker if g[0] == "sqs:SendMessage"] == [("sqs:SendMessage", dlq)]
    assert not [g for g in ingest + worker if g[1] == dlq and g[0] != "sqs:SendMessage"]
    assert not [g for g in ingest if g[1] == dlq]
    for action, _ in ingest + worker:
        assert "*" not in action, action


def test_payload_bucket_is_private_encrypted_and_outlives_the_dead_letter_queue(sam, cfn):
    bucket = cfn["Resources"]["PayloadBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    props = bucket["Properties"]
    assert props["BucketEncryption"] == {"ServerSideEncryptionConfiguration": [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert not {"Prefix", "Filter"} & set(rule), "the rule must cover every object"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rule["ExpirationInDays"] == {"Ref": "PayloadRetentionDays"}
    retention_days = sam["Parameters"]["PayloadRetentionDays"]
    shortest = int(retention_days["MinValue"])  # the shortest a deployment can choose
    assert int(retention_days["Default"]) >= shortest
    queues = cfn["Resources"]
    events_retention = queues["EventsQueue"]["Properties"]["MessageRetentionPeriod"]
    dlq_retention = queues["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    assert shortest * DAY > 14 * DAY and shortest * DAY > dlq_retention
    # A message moved to a FIFO dead-letter queue, or sent there by the worker's Reject, starts
    # the dead-letter queue's retention afresh: its payload must outlast both queues.
    assert shortest * DAY > events_retention + dlq_retention


def test_payload_bucket_refuses_requests_without_tls(cfn):
    policy = cfn["Resources"]["PayloadBucketPolicy"]
    assert policy["Type"] == "AWS::S3::BucketPolicy"
    assert policy["Properties"]["Bucket"] == {"Ref": "PayloadBucket"}
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [{"Fn::GetAtt": ["PayloadBucket", "Arn"]}, PAYLOAD_OBJECTS]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_alarms_cover_dlq_depth_queue_age_ingest_errors_and_rejected_signatures(cfn_standard):
    cfn = cfn_standard
    alarms = {v["Properties"]["MetricName"]: v["Properties"] for v in resources(cfn, "AWS::CloudWatch::Alarm").values()
              if "MetricName" in v["Properties"]}  # the failed-rate alarm is metric math (test_metrics.py)
    assert set(alarms) == {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "5xx", "4xx", "SignatureRejected",
                           "Errors"}
    filt = cfn["Resources"]["SignatureRejectedMetricFilter"]["Properties"]
    assert filt["FilterPattern"] == '{ $.fields.metric = "SignatureRejected" }'
    assert filt["LogGroupName"] == {"Ref": "IngestLogGroup"}
    assert filt["MetricTransformations"][0]["MetricName"] == "SignatureRejected"


def test_conflicting_deliveries_are_counted_from_the_worker_log(cfn_standard):
    filt = cfn_standard["Resources"]["IdempotencyConflictMetricFilter"]["Properties"]
    assert filt["FilterPattern"] == '{ $.fields.metric = "IdempotencyConflict" }'
    assert filt["LogGroupName"] == {"Ref": "WorkerLogGroup"}
    assert filt["MetricTransformations"][0] == {
        "MetricNamespace": "Doorbell", "MetricName": "IdempotencyConflict", "MetricValue": "1", "DefaultValue": 0}


def test_no_secret_value_in_the_template():
    text = TEMPLATE.read_text()
    for needle in ("whsec_", "shpss_", "SecretString", "-----BEGIN"):
        assert needle not in text


def test_outputs_give_the_webhook_url_queues_table_and_payload_bucket(cfn_standard):
    cfn = cfn_standard
    assert set(cfn["Outputs"]) == {"WebhookBaseUrl", "EventsQueueUrl", "DeadLetterQueueUrl", "EventsTableName",
                                   "PayloadBucketName", "ArchiveBucketName", "ArchiveStreamName", "ArchivePrefix"}
    assert cfn["Outputs"]["ArchiveBucketName"]["Value"] == {"Ref": "ArchiveBucket"}
    assert cfn["Outputs"]["ArchiveStreamName"]["Value"] == {"Ref": "ArchiveStream"}
    assert cfn["Outputs"]["ArchivePrefix"]["Value"] == "archive/"
    assert "/webhooks/" in json.dumps(cfn["Outputs"]["WebhookBaseUrl"])
    assert cfn["Outputs"]["PayloadBucketName"]["Value"] == {"Ref": "PayloadBucket"}


@pytest.mark.parametrize("missing", ["SecretsArn"])
def test_secrets_arn_is_required_and_validated(sam, missing):
    p = sam["Parameters"][missing]
    assert "Default" not in p
    import re

    assert re.match(p["AllowedPattern"], SECRETS_ARN)
    assert not re.match(p["AllowedPattern"], "whsec_not_an_arn")


def test_no_function_url_unless_asked(cfn_standard):
    assert not resources(cfn_standard, "AWS::Lambda::Url")
    permissions = resources(cfn_standard, "AWS::Lambda::Permission").values()
    assert all(p["Properties"].get("Principal") != "*" for p in permissions)


def test_function_url_when_asked_is_public_on_ingest_with_both_permissions_and_a_5xx_alarm(cfn_function_url):
    cfn = cfn_function_url
    (url,) = resources(cfn, "AWS::Lambda::Url").values()
    assert url["Properties"] == {"AuthType": "NONE", "TargetFunctionArn": {"Fn::GetAtt": ["IngestFunction", "Arn"]}}
    public = [p["Properties"] for p in resources(cfn, "AWS::Lambda::Permission").values()
              if p["Properties"].get("Principal") == "*"]
    # Since October 2025 a NONE-auth URL needs both statements; each is limited to the URL.
    assert sorted(p["Action"] for p in public) == ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    for p in public:
        assert p["FunctionName"] == {"Ref": "IngestFunction"}
        if p["Action"] == "lambda:InvokeFunctionUrl":
            assert p["FunctionUrlAuthType"] == "NONE"
        else:
            assert p["InvokedViaFunctionUrl"] is True
    alarms = [a["Properties"] for a in resources(cfn, "AWS::CloudWatch::Alarm").values()
              if a["Properties"].get("MetricName") == "Url5xxCount"]
    assert len(alarms) == 1
    assert alarms[0]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "IngestFunction"}}]
    assert alarms[0]["Threshold"] == 0
    out = cfn["Outputs"]["WebhookFunctionUrl"]["Value"]
    assert out == {"Fn::Sub": "${IngestUrl.FunctionUrl}webhooks/"}
    # The HTTP API stays: both URLs reach the same verified ingest.
    assert "WebhookBaseUrl" in cfn["Outputs"]


ARCHIVE_PREFIX = "archive/date=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"


def test_archive_stream_delivers_gzip_json_lines_by_date_and_hour_to_the_archive_bucket(cfn):
    stream = cfn["Resources"]["ArchiveStream"]
    assert stream["Type"] == "AWS::KinesisFirehose::DeliveryStream"
    props = stream["Properties"]
    assert props["DeliveryStreamType"] == "DirectPut"
    s3 = props["ExtendedS3DestinationConfiguration"]
    assert s3["BucketARN"] == {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}
    assert s3["RoleARN"] == {"Fn::GetAtt": ["ArchiveDeliveryRole", "Arn"]}
    assert s3["CompressionFormat"] == "GZIP"
    # The layout S3ArchiveReader (ArchiveLayout::Partitioned) and Athena's partition projection read.
    assert s3["Prefix"] == ARCHIVE_PREFIX
    assert s3["ErrorOutputPrefix"] == "archive-errors/!{firehose:error-output-type}/date=!{timestamp:yyyy-MM-dd}/"
    assert not s3["ErrorOutputPrefix"].startswith("archive/"), "errors must not be read as envelopes"
    # Few, large objects: at most one per 5 minutes; no dynamic partitioning (a per-GB charge).
    assert s3["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 300}
    assert "DynamicPartitioningConfiguration" not in s3 and "ProcessingConfiguration" not in s3
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_archive_bucket_is_private_encrypted_tls_only_and_expires_after_archive_retention_days(sam, cfn):
    props = cfn["Resources"]["ArchiveBucket"]["Properties"]
    assert props["BucketEncryption"] == {"ServerSideEncryptionConfiguration": [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert not {"Prefix", "Filter"} & set(rule), "the rule must cover every object"
    assert rule["ExpirationInDays"] == {"Ref": "ArchiveRetentionDays"}
    p = sam["Parameters"]["ArchiveRetentionDays"]
    assert int(p["Default"]) == 30 and int(p["MinValue"]) == 1
    (statement,) = cfn["Resources"]["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Resource"] == [{"Fn::GetAtt": ["ArchiveBucket", "Arn"]}, {"Fn::Sub": "${ArchiveBucket.Arn}/*"}]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_worker_may_write_to_the_archive_stream_and_only_put_record_batches(cfn):
    stream = json.dumps(ARCHIVE_STREAM, sort_keys=True)
    worker = _grants(cfn, "WorkerRole")
    assert [g for g in worker if g[0].startswith("firehose:")] == [("firehose:PutRecordBatch", stream)]
    assert not [g for g in _grants(cfn, "IngestRole") if g[0].startswith("firehose:") or "Archive" in g[1]]


def test_the_worker_is_told_the_archive_stream_and_bucket(cfn):
    env = cfn["Resources"]["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert env["DOORBELL_ARCHIVE_STREAM"] == {"Ref": "ArchiveStream"}
    assert env["DOORBELL_ARCHIVE_BUCKET"] == {"Ref": "ArchiveBucket"}
    ingest = cfn["Resources"]["IngestFunction"]["Properties"]["Environment"]["Variables"]
    assert not [k for k in ingest if k.startswith("DOORBELL_ARCHIVE")]


def test_firehose_may_only_deliver_to_the_archive_bucket_and_log_its_errors(cfn):
    role = cfn["Resources"]["ArchiveDeliveryRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}
    grants = {tuple(_as_list(s["Action"])): s["Resource"] for s in _statements(cfn, "ArchiveDeliveryRole")}
    assert grants == {
        ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"): {"Fn::GetAtt": ["ArchiveBucket", "Arn"]},
        ("s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"): {"Fn::Sub": "${ArchiveBucket.Arn}/*"},
        ("logs:PutLogEvents",): {"Fn::GetAtt": ["ArchiveDeliveryLogGroup", "Arn"]},
    }
