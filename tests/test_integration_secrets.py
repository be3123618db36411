"""The build secrets' records (common/records/secrets.py) on real Redis, through both adapters:
what the API writes is what the worker reads back and decrypts."""

import uuid

import pytest

from common.build_secrets import SecretCipher
from common.config import ConfigError
from common.contract import MAX_SECRETS
from common.records import deployments, secrets
from tests.test_integration_records import new_deployment


@pytest.fixture
def deployment(run):
    return run(deployments.create_deployment(new_deployment(f"t-{uuid.uuid4().hex[:12]}")))


def test_the_worker_reads_back_every_secret_the_api_set_and_decrypts_it(run, deployment, config):
    cipher = SecretCipher(config.secrets_key)
    assert run(secrets.set_secret(deployment.id, "b", cipher.encrypt("first"))) is True
    assert run(secrets.set_secret(deployment.id, "a", cipher.encrypt("other"))) is True
    # Rotating a name replaces its value: not a new secret
    assert run(secrets.set_secret(deployment.id, "b", cipher.encrypt("second"))) is False
    tokens = run(secrets.secret_tokens(deployment.id))
    assert {name: cipher.decrypt(token) for name, token in tokens.items()} == {"a": "other", "b": "second"}
    assert run(secrets.secret_names(deployment.id)) == ["a", "b"]
    assert run(secrets.delete_secret(deployment.id, "a")) is True
    assert run(secrets.delete_secret(deployment.id, "a")) is False
    assert run(secrets.secret_names(deployment.id)) == ["b"]


def test_a_secret_is_refused_past_the_limit_and_for_a_deleted_deployment(run, deployment):
    for i in range(MAX_SECRETS):
        run(secrets.set_secret(deployment.id, f"s{i}", "token"))
    with pytest.raises(secrets.TooManySecrets):
        run(secrets.set_secret(deployment.id, "one-more", "token"))
    run(deployments.delete_deployment(deployment))
    assert run(secrets.secret_tokens(deployment.id)) == {}
    with pytest.raises(secrets.DeploymentGone):
        run(secrets.set_secret(deployment.id, "late", "token"))
    assert run(secrets.secret_names(deployment.id)) == []


def test_a_key_that_is_not_a_fernet_key_or_another_key_is_refused_clearly(config):
    with pytest.raises(ConfigError, match="not a Fernet key"):
        SecretCipher("too-short")
    token = SecretCipher(config.secrets_key).encrypt("value")
    other = SecretCipher("A" * 43 + "=")
    with pytest.raises(ConfigError, match="cannot be decrypted with BUILDFARM_SECRETS_KEY"):
        other.decrypt(token)
