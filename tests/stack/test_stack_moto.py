"""The translated stack, created in moto's CloudFormation (the moto server started by
scripts/test): the queues with their redrive policy, the table, the payload bucket and the event
source mapping exist as wired. moto skips the HTTP API, the bucket policy and the alarms, and
ignores TTL; it has no Firehose in CloudFormation, so the archive stream is created through its
Firehose API instead (`_archive_stream_stand_in`). The stack's outputs are written to $DOORBELL_STACK_OUTPUTS for the Rust integration
test that runs the pipeline on them. A second stack, QueueType=fifo, checks the FIFO queues."""

import io
import json
import os
import time
import uuid
import zipfile

import boto3
import pytest

from conftest import ARTIFACT_BUCKET, FUNCTIONS, translate


def _client(service):
    endpoint = os.environ.get("DOORBELL_TEST_AWS_ENDPOINT")
    if not endpoint:
        pytest.fail("DOORBELL_TEST_AWS_ENDPOINT is not set: run ./scripts/test, which starts moto")
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def secrets_arn():
    """The sources' secret, and the function code (a bootstrap that exits) both stacks deploy."""
    sm, s3 = _client("secretsmanager"), _client("s3")
    arn = sm.create_secret(Name=f"doorbell/sources-{uuid.uuid4().hex[:8]}",
                           SecretString=json.dumps({"stripe": ["whsec_doorbell_local_development_only"],
                                                    "github": "doorbell-local-development-only"}))["ARN"]
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    for name in FUNCTIONS:
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=f"{name}.zip", Body=buf.getvalue())
    return arn


def _replace(node, old, new):
    if node == old:
        return new
    if isinstance(node, dict):
        return {k: _replace(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    return node


def _archive_stream_stand_in(name, template):
    """moto's CloudFormation has no AWS::KinesisFirehose::DeliveryStream. For moto only, the
    archive bucket gets a name, the stream is created through moto's Firehose API delivering to
    it, and the template's references to the stream become its name and ARN. moto's Firehose
    ignores `!{timestamp:...}` prefixes and compression: it writes plain objects under
    `archive/YYYY/MM/DD/HH/` (Firehose's default layout)."""
    bucket = f"{name}-archive".lower()
    template["Resources"]["ArchiveBucket"]["Properties"]["BucketName"] = bucket
    configured = template["Resources"].pop("ArchiveStream")["Properties"]["ExtendedS3DestinationConfiguration"]
    stream = f"{name}-archive"
    arn = _client("firehose").create_delivery_stream(
        DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/archive-delivery", "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "archive/", "CompressionFormat": configured["CompressionFormat"],
            "BufferingHints": configured["BufferingHints"]})["DeliveryStreamARN"]
    template = _replace(template, {"Ref": "ArchiveStream"}, stream)
    return _replace(template, {"Fn::GetAtt": ["ArchiveStream", "Arn"]}, arn)


def _create_stack(name, template, parameters):
    template = _archive_stream_stand_in(name, template)
    cf = _client("cloudformation")
    cf.create_stack(StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"],
                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    for _ in range(120):
        st = cf.describe_stacks(StackName=name)["Stacks"][0]
        if not st["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.25)
    assert st["StackStatus"] == "CREATE_COMPLETE", st.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in st["Outputs"]}
    # moto lists resources it skips (alarms, the HTTP API, the bucket policy) without ids.
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId")
                for r in cf.describe_stack_resources(StackName=name)["StackResources"]
                if "LogicalResourceId" in r}
    return {"name": name, "outputs": outputs, "physical": physical}


@pytest.fixture(scope="module")
def stack(secrets_arn):
    parameters = {"SecretsArn": secrets_arn}
    created = _create_stack(f"doorbell-{uuid.uuid4().hex[:8]}", translate(parameters), parameters)
    return {**created, "secrets_arn": secrets_arn}


@pytest.fixture(scope="module")
def fifo_stack(secrets_arn):
    parameters = {"SecretsArn": secrets_arn, "QueueType": "fifo"}
    template = translate(parameters)
    name = f"doorbell-fifo-{uuid.uuid4().hex[:8]}"
    # CloudFormation names a FIFO queue it creates without a QueueName with the .fifo suffix;
    # moto's generated names lack it (and SQS refuses a FIFO queue without it). So for moto only,
    # each queue gets the name CloudFormation's would end with; the template itself names none.
    for logical_id in ("EventsQueue", "DeadLetterQueue"):
        props = template["Resources"][logical_id]["Properties"]
        assert "QueueName" not in props
        props["QueueName"] = f"{name}-{logical_id}.fifo"
    created = _create_stack(name, template, parameters)
    yield created
    _client("cloudformation").delete_stack(StackName=name)


def test_events_queue_redrives_to_the_dlq_after_max_receive_count(stack):
    sqs = _client("sqs")
    out = stack["outputs"]
    attrs = sqs.get_queue_attributes(QueueUrl=out["EventsQueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=out["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5
    assert int(attrs["VisibilityTimeout"]) == 200
    assert int(dlq["MessageRetentionPeriod"]) == 1209600 > int(attrs["MessageRetentionPeriod"])


def test_fifo_stack_has_fifo_queues_redriving_to_the_fifo_dlq(fifo_stack):
    sqs = _client("sqs")
    out = fifo_stack["outputs"]
    attrs = sqs.get_queue_attributes(QueueUrl=out["EventsQueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=out["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    for queue in (attrs, dlq):
        assert queue["FifoQueue"] == "true"
        assert queue["QueueArn"].endswith(".fifo")
        assert queue["ContentBasedDeduplication"] == "false"
        assert queue["DeduplicationScope"] == "messageGroup"
        assert queue["FifoThroughputLimit"] == "perMessageGroupId"
    assert out["EventsQueueUrl"].endswith(".fifo") and out["DeadLetterQueueUrl"].endswith(".fifo")
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5
    mapping, = _client("lambda").list_event_source_mappings(
        FunctionName=fifo_stack["physical"]["WorkerFunction"])["EventSourceMappings"]
    assert mapping["EventSourceArn"] == attrs["QueueArn"]
    assert mapping["BatchSize"] <= 10


def test_payload_bucket_exists_encrypted_and_is_given_to_both_functions(stack):
    bucket = stack["outputs"]["PayloadBucketName"]
    assert bucket == stack["physical"]["PayloadBucket"]
    s3 = _client("s3")
    s3.head_bucket(Bucket=bucket)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    lam = _client("lambda")
    ingest = lam.get_function_configuration(FunctionName=stack["physical"]["IngestFunction"])["Environment"]["Variables"]
    worker = lam.get_function_configuration(FunctionName=stack["physical"]["WorkerFunction"])["Environment"]["Variables"]
    assert ingest["DOORBELL_PAYLOAD_BUCKET"] == bucket == worker["DOORBELL_PAYLOAD_BUCKET"]
    assert worker["DOORBELL_DEAD_LETTER_QUEUE_URL"] == stack["outputs"]["DeadLetterQueueUrl"]


def test_archive_bucket_exists_encrypted_and_the_worker_archives_to_its_stream(stack):
    # (moto's CloudFormation does not apply the lifecycle rule: test_template.py checks it.)
    out, s3 = stack["outputs"], _client("s3")
    bucket = out["ArchiveBucketName"]
    assert bucket == stack["physical"]["ArchiveBucket"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert out["ArchivePrefix"] == "archive/"
    worker = _client("lambda").get_function_configuration(
        FunctionName=stack["physical"]["WorkerFunction"])["Environment"]["Variables"]
    assert worker["DOORBELL_ARCHIVE_STREAM"] == out["ArchiveStreamName"]
    assert worker["DOORBELL_ARCHIVE_BUCKET"] == bucket
    # What the worker sends arrives in the bucket under the archive prefix.
    line = b'{"v":1}\n'
    _client("firehose").put_record_batch(DeliveryStreamName=out["ArchiveStreamName"], Records=[{"Data": line}])
    (obj,) = s3.list_objects_v2(Bucket=bucket, Prefix=out["ArchivePrefix"])["Contents"]
    assert s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read() == line
    s3.delete_object(Bucket=bucket, Key=obj["Key"])


def test_table_has_the_pk_key(stack):
    table = _client("dynamodb").describe_table(TableName=stack["outputs"]["EventsTableName"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_worker_is_wired_to_the_queue_with_partial_batch_failures(stack):
    lam = _client("lambda")
    worker = stack["physical"]["WorkerFunction"]
    queue_arn = _client("sqs").get_queue_attributes(QueueUrl=stack["outputs"]["EventsQueueUrl"],
                                                    AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mappings = lam.list_event_source_mappings(FunctionName=worker)["EventSourceMappings"]
    assert [m["EventSourceArn"] for m in mappings] == [queue_arn]
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mappings[0]["ScalingConfig"] == {"MaximumConcurrency": 5}
    assert mappings[0]["BatchSize"] == 10
    config = lam.get_function_configuration(FunctionName=worker)
    assert config["Runtime"] == "provided.al2023"  # (moto does not keep Architectures)
    env = config["Environment"]["Variables"]
    assert env["DOORBELL_TABLE"] == stack["outputs"]["EventsTableName"]
    ingest = lam.get_function_configuration(FunctionName=stack["physical"]["IngestFunction"])
    assert ingest["Environment"]["Variables"]["DOORBELL_SECRETS_ARN"] == stack["secrets_arn"]


def test_write_outputs_for_the_rust_integration_test(stack):
    path = os.environ.get("DOORBELL_STACK_OUTPUTS")
    if not path:
        pytest.fail("DOORBELL_STACK_OUTPUTS is not set: run ./scripts/test")
    # moto cannot run Lambdas: its event source mapping would receive every message once when
    # it is sent and fail to invoke, spending a receive. The Rust test's poller does the
    # mapping's job instead, so the mapping is disabled (its wiring was asserted above).
    lam = _client("lambda")
    for m in lam.list_event_source_mappings(FunctionName=stack["physical"]["WorkerFunction"])["EventSourceMappings"]:
        lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
    ingest_env = _client("lambda").get_function_configuration(
        FunctionName=stack["physical"]["IngestFunction"])["Environment"]["Variables"]
    outputs = {**stack["outputs"], "SecretsArn": stack["secrets_arn"], "SourcesJson": ingest_env["DOORBELL_SOURCES"]}
    assert {"EventsQueueUrl", "DeadLetterQueueUrl", "EventsTableName", "PayloadBucketName", "ArchiveBucketName",
            "ArchiveStreamName", "ArchivePrefix"} <= set(outputs)
    with open(path, "w") as f:
        json.dump(outputs, f)
