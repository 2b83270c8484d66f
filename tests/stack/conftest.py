"""Shared fixtures: the SAM template translated to plain CloudFormation, offline."""

import copy
import os
import pathlib

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ARTIFACT_BUCKET = "doorbell-artifacts"
FUNCTIONS = ("IngestFunction", "WorkerFunction")


class _NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs only for policies named as strings;
    the template names none, so no IAM call is needed (and none can be made offline)."""

    def load(self):
        return {}


def sam_template():
    return yaml_parse(TEMPLATE.read_text())


def translate(parameters):
    """What `sam package` + CloudFormation's transform do: CodeUri becomes an S3 object, then
    the Serverless resources become plain CloudFormation."""
    template = copy.deepcopy(sam_template())
    for name in FUNCTIONS:
        template["Resources"][name]["Properties"]["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{name}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, parameters, _NoManagedPolicies())


SECRETS_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:doorbell/sources-AbCdEf"


@pytest.fixture(scope="session")
def sam():
    return sam_template()


@pytest.fixture(scope="session")
def cfn():
    return translate({"SecretsArn": SECRETS_ARN})
