"""Field checks of the API, as pure functions."""

import pytest

from api.validation import (
    check_branch,
    check_commit_sha,
    check_dockerfile_path,
    check_subdomain,
    git_url_checker,
)


@pytest.mark.parametrize("name", ["a", "myapp", "my-app-2", "x" * 63])
def test_dns_labels_are_accepted_as_subdomains(name):
    assert check_subdomain(name) is None


@pytest.mark.parametrize("name", ["", "-app", "app-", "My-App", "a_b", "a.b", "x" * 64, "ä"])
def test_non_dns_labels_are_refused_as_subdomains(name):
    assert check_subdomain(name)


@pytest.mark.parametrize("branch", ["main", "feature/x", "release-1.2", "v1_2"])
def test_ordinary_branch_names_are_accepted(branch):
    assert check_branch(branch) is None


@pytest.mark.parametrize(
    "branch", ["-x", "--upload-pack=evil", "a..b", "a b", "a\nb", "/a", "a/", "x.lock", "a//b", ".hidden"]
)
def test_branch_names_that_could_inject_options_or_escape_are_refused(branch):
    assert check_branch(branch)


@pytest.mark.parametrize("path", ["Dockerfile", "docker/Dockerfile.prod", "a/b/c"])
def test_relative_dockerfile_paths_inside_the_context_are_accepted(path):
    assert check_dockerfile_path(path) is None


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", "a\x00b"])
def test_dockerfile_paths_escaping_the_context_are_refused(path):
    assert check_dockerfile_path(path)


def test_git_urls_are_limited_to_the_configured_schemes():
    check = git_url_checker(frozenset({"https", "http"}))
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
    assert check_commit_sha("a" * 40) is None
    for bad in ["a" * 39, "A" * 40, "g" * 40, "abc"]:
        assert check_commit_sha(bad)
