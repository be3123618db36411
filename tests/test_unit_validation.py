"""Field checks of the API contract (common/contract.py), as the API applies them to a body."""

import json

import falcon
import pytest

from api.validation import check_build_timeout, check_git_url, parse_json
from common.contract import DeployRequest, NewDeployment


def refusal(**fields) -> str | None:
    """Why the API refuses an archive deployment with these fields, or None if it accepts it."""
    body = json.dumps({"name": "a", "subdomain": "x", "source_type": "archive", **fields}).encode()
    try:
        parse_json(body, "application/json", NewDeployment)
    except falcon.HTTPError as e:
        assert e.status == falcon.HTTP_422
        return e.description
    return None


@pytest.mark.parametrize("name", ["a", "myapp", "my-app-2", "x" * 63])
def test_dns_labels_are_accepted_as_subdomains(name):
    assert refusal(subdomain=name) is None


@pytest.mark.parametrize("name", ["", "-app", "app-", "My-App", "a_b", "a.b", "x" * 64, "ä", "app\n"])
def test_non_dns_labels_are_refused_as_subdomains(name):
    assert "subdomain" in refusal(subdomain=name)


def git_refusal(**fields) -> str | None:
    return refusal(**{"source_type": "git", "repo_url": "https://h/r.git", **fields})


@pytest.mark.parametrize("branch", ["main", "feature/x", "release-1.2", "v1_2"])
def test_ordinary_branch_names_are_accepted(branch):
    assert git_refusal(branch=branch) is None


@pytest.mark.parametrize(
    "branch",
    ["-x", "--upload-pack=evil", "a..b", "a b", "a\nb", "/a", "a/", "x.lock", "a//b", ".hidden", "main\n"],
)
def test_branch_names_that_could_inject_options_or_escape_are_refused(branch):
    assert "branch" in git_refusal(branch=branch)


@pytest.mark.parametrize("path", ["Dockerfile", "docker/Dockerfile.prod", "a/b/c", "..x/Dockerfile"])
def test_relative_dockerfile_paths_inside_the_context_are_accepted(path):
    assert refusal(dockerfile_path=path) is None


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", "a\x00b", "a/", ".."]
)
def test_dockerfile_paths_escaping_the_context_are_refused(path):
    assert "context" in refusal(dockerfile_path=path)


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "a\x7f"])
def test_blank_names_and_control_characters_are_refused(name):
    assert "name" in refusal(name=name)


def test_git_urls_are_limited_to_the_configured_schemes():
    schemes = frozenset({"https", "http"})

    def check(url: str) -> str | None:
        if problem := git_refusal(repo_url=url):
            return problem
        try:
            check_git_url(url, schemes)
        except falcon.HTTPError as e:
            return e.description
        return None

    assert check("https://example.com/repo.git") is None
    assert check("http://127.0.0.1:8080/repo.git") is None
    for bad in [
        "file:///etc",
        "ext::sh -c evil",
        "ssh://host/repo",
        "-uhttps://x",
        "https://",
        "git://h/r",
        "https://host/repo\n",
    ]:
        assert check(bad), bad


def test_commit_sha_must_be_full_lowercase_hex():
    def check(sha: str) -> bool:
        try:
            parse_json(json.dumps({"commit_sha": sha}).encode(), "application/json", DeployRequest)
        except falcon.HTTPError as e:
            return "commit_sha" in e.description
        return False

    assert not check("a" * 40)
    for bad in ["a" * 39, "A" * 40, "g" * 40, "abc", "a" * 40 + "\n"]:
        assert check(bad), bad


@pytest.mark.parametrize("timeout,accepted", [(1, True), (86400, True), (0, False), (-5, False)])
def test_a_build_timeout_is_at_least_one_second_in_the_contract(timeout, accepted):
    assert (refusal(build_timeout_s=timeout) is None) == accepted


@pytest.mark.parametrize("timeout,accepted", [(None, True), (1, True), (1800, True), (1801, False)])
def test_a_build_timeout_is_at_most_the_farms_maximum(timeout, accepted):
    try:
        check_build_timeout(timeout, 1800)
    except falcon.HTTPError as e:
        assert e.status == falcon.HTTP_422 and "at most 1800" in e.description
        assert not accepted
    else:
        assert accepted
