"""A fuzz run of the whole API from its OpenAPI description (schemathesis): no 5xx, and every
response conforms to the description (status codes, content types, headers, bodies)."""

import os
import subprocess

from tests.conftest import BIN, ROOT
from tests.farm import archive_deployment, build_path, context_archive, deploy, dockerfile

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_the_api_answers_a_fuzz_run_of_its_openapi_description_without_errors(api_url, client, tenant_token):
    # Given a deployment with a build (no worker runs here: it stays pending)
    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    build = deploy(client, deployment)
    env = {
        **os.environ,
        "FUZZ_TOKEN": tenant_token[1],
        "FUZZ_DEPLOYMENT_ID": deployment["id"],
        "FUZZ_BUILD_ID": build["id"],
    }
    # When schemathesis fuzzes every operation
    run = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{api_url}/api/v1/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            os.environ.get("FUZZ_EXAMPLES", "15"),
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
            "--seed",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Then no check failed
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    print(run.stdout[run.stdout.rfind("Test cases:") :])
    # Clean up what the fuzzer queued, so that no later worker builds it
    for page in [
        client.get(f"/deployments/{deployment['id']}/builds", params={"limit": 100, "status": "pending"})
    ]:
        for queued in page.json():
            client.post(build_path(queued) + "/cancel")
