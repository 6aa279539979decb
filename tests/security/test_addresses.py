"""IP_RATE_LIMIT buckets: IPv4 per address, IPv6 per /64, IPv4-mapped addresses unmapped."""

import pytest

from app.security.addresses import ip_bucket


@pytest.mark.parametrize(
    ("ip", "bucket"),
    [
        pytest.param("192.0.2.7", "192.0.2.7", id="ipv4"),
        pytest.param("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", id="ipv6"),
        pytest.param("2001:db8:1:2::ffff", "2001:db8:1:2::/64", id="same-64"),
        pytest.param("2001:db8:1:3::1", "2001:db8:1:3::/64", id="next-64"),
        pytest.param("::ffff:192.0.2.7", "192.0.2.7", id="ipv4-mapped"),
        pytest.param("::1", "::/64", id="loopback"),
        pytest.param("fe80::1%eth0", "fe80::/64", id="scoped"),
        pytest.param("testclient", "testclient", id="not-an-address"),
    ],
)
def test_a_client_address_is_counted_in_its_bucket(ip: str, bucket: str) -> None:
    assert ip_bucket(ip) == bucket


def test_two_ipv4_clients_of_a_dual_stack_socket_are_two_buckets() -> None:
    assert ip_bucket("::ffff:192.0.2.1") != ip_bucket("::ffff:192.0.2.2")
