"""The settings of the build egress rules (deploy/build-egress) are checked before anything else:
a bad one stops the script with a message that names it, before it asks the engine anything or
touches a rule (here no engine answers at all)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT

EGRESS = ROOT / "deploy" / "build-egress"
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def run(command: str, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDFARM_BUILD_EGRESS")}
    env.update(NO_ENGINE, **settings)
    return subprocess.run([str(EGRESS), command], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"BUILDFARM_BUILD_EGRESS": "open"}, "BUILDFARM_BUILD_EGRESS must be internet or none, not 'open'"),
        ({"BUILDFARM_BUILD_EGRESS_ALLOW": "10.0.0.0/8, 10.1.2.300"}, "'10.1.2.300' is not an IPv4 address"),
        ({"BUILDFARM_BUILD_EGRESS_ALLOW": "10.0.0.0/33"}, "'10.0.0.0/33' is not an IPv4 address or CIDR"),
        ({"BUILDFARM_BUILD_EGRESS_ALLOW": "10.0.0/8"}, "'10.0.0/8' is not an IPv4 address or CIDR"),
        ({"BUILDFARM_BUILD_EGRESS_ALLOW": "fd00::/8"}, "IPv6 from builds is refused altogether"),
    ],
)
@pytest.mark.parametrize("command", ["apply", "rules"])
def test_a_bad_egress_setting_is_refused_by_name_before_the_engine_is_asked(command, settings, message):
    done = run(command, **settings)
    assert done.returncode == 1
    assert done.stderr.startswith("build-egress: ") and message in done.stderr, done.stderr


def test_good_egress_settings_pass_on_to_the_engine():
    allow = " 10.20.0.0/16 ,, 1.2.3.4"
    done = run("rules", BUILDFARM_BUILD_EGRESS="none", BUILDFARM_BUILD_EGRESS_ALLOW=allow)
    assert done.returncode == 1
    assert "does not answer" in done.stderr, done.stderr
