"""Validates a SAM template offline, two ways, and fails on any finding:

1. cfn-lint on the SAM template itself;
2. the SAM transform with aws-sam-translator, then cfn-lint on the CloudFormation it produces
   (this catches mistakes in SAM event properties whatever cfn-lint version runs).

With --self-test, also proves the check fails on templates with known mistakes.
"""

import json
import os
import subprocess
import sys
import tempfile

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# Each mutation: (what it breaks, text to replace, replacement).
MISTAKES = [
    ("a misspelled MSK property", "            MaximumRetryAttempts: !Ref", "            MaximumRetryAttempt: !Ref"),
    ("an invalid starting position", "StartingPosition: !Ref StartingPosition", "StartingPosition: NEWEST"),
    ("an unknown runtime", "Runtime: provided.al2023", "Runtime: rust1.x"),
]


class ManagedPolicies:
    """The managed policies SAM may attach, by name, without calling IAM."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSLambdaVPCAccessExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
            "AWSLambdaMSKExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaMSKExecutionRole",
        }


def cfn_lint(path):
    result = subprocess.run(["cfn-lint", "--", path], capture_output=True, text=True)
    return result.returncode, (result.stdout + result.stderr).strip()


def translate(text):
    document = yaml_parse(text)
    for resource in document.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            # The build replaces CodeUri with the uploaded artifact; any S3 location will do here.
            resource["Properties"]["CodeUri"] = "s3://artifacts-bucket/msk-order-enricher.zip"
    return transform(document, {}, ManagedPolicies())


def problems(text):
    """Every finding for the template text, as readable lines; empty when clean."""
    found = []
    with tempfile.TemporaryDirectory() as scratch:
        sam_path = os.path.join(scratch, "template.yaml")
        with open(sam_path, "w") as f:
            f.write(text)
        code, output = cfn_lint(sam_path)
        if code != 0:
            found.append(f"cfn-lint (SAM template):\n{output}")
        try:
            cloudformation = translate(text)
        except InvalidDocumentException as error:
            found.append("SAM transform: " + "; ".join(str(cause) for cause in error.causes))
            return found
        cfn_path = os.path.join(scratch, "cloudformation.json")
        with open(cfn_path, "w") as f:
            json.dump(cloudformation, f, indent=1)
        code, output = cfn_lint(cfn_path)
        if code != 0:
            found.append(f"cfn-lint (CloudFormation after the SAM transform):\n{output}")
    return found


def main():
    args = sys.argv[1:]
    self_test = "--self-test" in args
    paths = [a for a in args if a != "--self-test"] or ["template.yaml"]
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    failed = False
    for path in paths:
        with open(path) as f:
            text = f.read()
        found = problems(text)
        if found:
            failed = True
            print(f"{path}: FAILED")
            print("\n".join(found))
        else:
            print(f"{path}: clean (cfn-lint on the SAM template and on its CloudFormation)")
        if self_test:
            for what, old, new in MISTAKES:
                if old not in text:
                    print(f"self-test: cannot introduce {what}: {old!r} is not in {path}")
                    failed = True
                    continue
                if problems(text.replace(old, new, 1)):
                    print(f"self-test: {what} is caught")
                else:
                    print(f"self-test: {what} is NOT caught")
                    failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
