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


def parameter_values(template, parameters):
    """Every parameter's value as CloudFormation passes it to conditions and rules: a string,
    the given one or the default."""
    values = {k: str(p["Default"]) for k, p in template["Parameters"].items() if "Default" in p}
    values.update({k: str(v) for k, v in parameters.items()})
    return values


def evaluate(expr, values, conditions=None):
    """The condition and rule functions the template uses (Fn::Equals, Not, And, Or, Contains,
    Condition, Ref to a parameter), evaluated the way CloudFormation does, on string values."""
    if not isinstance(expr, dict):
        return expr
    ((fn, arg),) = expr.items()
    if fn == "Ref":
        return values[arg]  # KeyError: a condition or rule names a parameter that does not exist
    if fn == "Condition":
        return conditions[arg]
    if fn == "Fn::Equals":
        a, b = (str(evaluate(x, values, conditions)) for x in arg)
        return a == b
    if fn == "Fn::Not":
        return not evaluate(arg[0], values, conditions)
    if fn == "Fn::And":
        return all(evaluate(x, values, conditions) for x in arg)
    if fn == "Fn::Or":
        return any(evaluate(x, values, conditions) for x in arg)
    if fn == "Fn::Contains":
        items, item = arg
        return str(evaluate(item, values, conditions)) in [str(evaluate(x, values, conditions)) for x in items]
    raise ValueError(f"unsupported function {fn}")


def resolve_conditions(template, parameters):
    """The template as CloudFormation creates it for these parameters: Fn::If resolved,
    AWS::NoValue properties removed, resources and outputs whose condition is false dropped. Ref and
    GetAtt stay as they are."""
    values = parameter_values(template, parameters)
    conditions = {}
    for name, expr in template.get("Conditions", {}).items():
        conditions[name] = evaluate(expr, values, conditions)

    no_value = object()

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, yes, no = node["Fn::If"]
                return walk(yes if conditions[name] else no)
            if node == {"Ref": "AWS::NoValue"}:
                return no_value
            out = {k: walk(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not no_value}
        if isinstance(node, list):
            return [x for x in (walk(v) for v in node) if x is not no_value]
        return node

    resolved = walk(copy.deepcopy(template))
    for section in ("Resources", "Outputs"):
        resolved[section] = {k: v for k, v in resolved.get(section, {}).items()
                             if "Condition" not in v or conditions[v["Condition"]]}
    return resolved


@pytest.fixture(scope="session")
def sam():
    return sam_template()


@pytest.fixture(scope="session")
def cfn():
    return translate({"SecretsArn": SECRETS_ARN})


@pytest.fixture(scope="session")
def cfn_standard(cfn):
    """The default deployment (QueueType standard), conditions resolved."""
    return resolve_conditions(cfn, {"SecretsArn": SECRETS_ARN})


@pytest.fixture(scope="session")
def cfn_fifo():
    """The stack translated and resolved with QueueType=fifo."""
    parameters = {"SecretsArn": SECRETS_ARN, "QueueType": "fifo"}
    return resolve_conditions(translate(parameters), parameters)


@pytest.fixture(scope="session")
def cfn_function_url():
    """The stack translated and resolved with IngestFunctionUrl=true."""
    parameters = {"SecretsArn": SECRETS_ARN, "IngestFunctionUrl": "true"}
    return resolve_conditions(translate(parameters), parameters)
