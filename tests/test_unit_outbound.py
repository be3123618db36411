"""The outbound address rule (common/outbound.py), with a fake resolver: no name is looked up
and no connection is made."""

import ipaddress

import pytest

from common.config import Config, ConfigError
from common.outbound import HostUnresolved, OutboundRefused, OutboundRule, parse_networks, redact_userinfo


def resolving(table: dict[str, list[str]]):
    """A resolver that knows only `table` (a name missing from it does not resolve)."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"{host}: Name or service not known")
        return table[host]

    return resolve


def refusal(url: str, table: dict[str, list[str]] | None = None, allow: str = "") -> str | None:
    rule = OutboundRule(parse_networks(allow), resolving(table or {}))
    try:
        rule.check_url(url)
    except OutboundRefused as e:
        return str(e)
    return None


@pytest.mark.parametrize(
    "address,kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "not a public address"),  # CGNAT
        ("fd00::1", "private"),  # ULA
        ("169.254.169.254", "link-local"),  # the cloud metadata address
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("255.255.255.255", "private"),  # broadcast
        ("192.0.2.1", "private"),  # documentation: never a real host
    ],
)
def test_every_address_that_is_not_public_is_refused_by_default(address, kind):
    reason = OutboundRule().refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert OutboundRule().refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_range_opens_exactly_that_range():
    rule = OutboundRule(parse_networks("10.20.0.0/16, fd12::/16"))
    assert rule.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert rule.refusal(ipaddress.ip_address("::ffff:10.20.3.4")) is None
    assert rule.refusal(ipaddress.ip_address("fd12::5")) is None
    assert "private" in rule.refusal(ipaddress.ip_address("10.21.0.1"))
    assert "loopback" in rule.refusal(ipaddress.ip_address("127.0.0.1"))


@pytest.mark.parametrize(
    "url,table,words",
    [
        ("http://127.0.0.1:8080/r.git", None, "'127.0.0.1' is a loopback address"),
        ("https://[::1]/r.git", None, "'::1' is a loopback address"),
        ("http://169.254.169.254/latest/meta-data", None, "link-local"),
        ("https://git.internal/r.git", {"git.internal": ["10.0.0.5"]}, "resolves to 10.0.0.5, a private"),
        ("https://localhost/r.git", {"localhost": ["127.0.0.1"]}, "resolves to 127.0.0.1, a loopback"),
        # One public and one private address: the client may pick either.
        ("https://mixed.example/r.git", {"mixed.example": ["8.8.8.8", "192.168.0.1"]}, "192.168.0.1"),
    ],
)
def test_a_url_whose_host_is_or_resolves_to_a_refused_address_is_refused(url, table, words):
    reason = refusal(url, table)
    assert reason is not None and words in reason and "BUILDFARM_OUTBOUND_ALLOW" in reason


@pytest.mark.parametrize(
    "url,words",
    [
        ("https://user:token@8.8.8.8/r.git", "credentials"),
        ("https://token@8.8.8.8/r.git", "credentials"),
        # Hosts that parsers read differently: curl must connect where the check looked.
        ("http://8.8.8.8\\.evil/r.git", "not a DNS name or an IP address"),
        ("http://2130706433/r.git", "not a DNS name or an IP address"),
        ("http://0x7f.1/r.git", "not a DNS name or an IP address"),
        ("http://127.1/r.git", "not a DNS name or an IP address"),
        ("http://[not-v6]/r.git", "cannot be read"),
        ("http://8.8.8.8:99999/r.git", "port"),
    ],
)
def test_urls_with_credentials_or_an_ambiguous_host_are_refused(url, words):
    reason = refusal(url)
    assert reason is not None and words in reason


def test_a_public_host_is_checked_at_every_address_it_resolves_to():
    rule = OutboundRule(resolve=resolving({"git.example": ["8.8.8.8", "2001:4860:4860::8888"]}))
    target = rule.check_url("https://git.example/r.git")
    assert (target.host, target.port, target.addresses) == (
        "git.example",
        443,
        ("8.8.8.8", "2001:4860:4860::8888"),
    )
    assert rule.check_url("http://git.example:8080/r.git").port == 8080


def test_a_host_that_does_not_resolve_is_told_apart_from_a_refused_one():
    with pytest.raises(HostUnresolved, match="'nowhere.example' does not resolve"):
        OutboundRule(resolve=resolving({})).check_url("https://nowhere.example/r.git")


def test_a_url_without_a_network_host_is_not_the_rules_business():
    assert OutboundRule().check_url("file:///srv/git/r.git") is None


def test_a_loopback_git_server_is_allowed_once_its_range_is_opened():
    assert refusal("http://127.0.0.1:9/r.git", allow="127.0.0.0/8") is None


def test_a_bad_allowed_range_stops_the_process_at_start_with_the_variable_named():
    with pytest.raises(ConfigError, match="BUILDFARM_OUTBOUND_ALLOW: 'ten.0.0.0/8' is not"):
        Config.from_env({"BUILDFARM_OUTBOUND_ALLOW": "127.0.0.0/8,ten.0.0.0/8"})
    assert Config.from_env({"BUILDFARM_OUTBOUND_ALLOW": " 10.0.0.0/8 , ::1 "}).outbound_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_credentials_in_urls_are_redacted_wherever_they_are_in_a_text():
    said = "fatal: unable to access 'https://user:s3cret@git.example/r.git/': 403 (see http://a@b/c)"
    assert (
        redact_userinfo(said)
        == "fatal: unable to access 'https://***@git.example/r.git/': 403 (see http://***@b/c)"
    )
    assert redact_userinfo("https://git.example/r.git?x=@y") == "https://git.example/r.git?x=@y"
