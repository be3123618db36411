"""Every way of submitting a build (deploy, retry, push webhook) goes through one use case
(api/submission.py): the same queueing, the same superseding of queued builds. No worker runs
here, so the builds stay pending."""

import pytest

from tests.farm import archive_deployment, build_path, context_archive, deploy, dockerfile

pytestmark = pytest.mark.in_process


def test_a_retry_supersedes_queued_builds_when_the_deployment_asks_for_it(client):
    # Given a deployment that supersedes queued builds: its first build (cancelled by the second
    # deploy) and a second build waiting in the queue
    deployment = archive_deployment(client, context_archive(dockerfile("true")), supersede_queued=True)
    first = deploy(client, deployment)
    queued = deploy(client, deployment)
    # When the first build is retried
    response = client.post(build_path(first) + "/retry")
    assert response.status_code == 202, response.text
    retried = response.json()
    # Then the build still waiting behind the retry is cancelled, as a new deploy would have done
    superseded = client.get(build_path(queued)).json()
    assert superseded["status"] == "cancelled"
    assert superseded["error"] == f"Superseded by build #{retried['number']}"
    assert client.get(build_path(retried)).json()["status"] == "pending"


def test_a_retry_leaves_queued_builds_alone_when_the_deployment_does_not_supersede(client):
    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    first = deploy(client, deployment)
    queued = deploy(client, deployment)
    assert client.post(build_path(first) + "/retry").status_code == 202
    assert client.get(build_path(queued)).json()["status"] == "pending"
