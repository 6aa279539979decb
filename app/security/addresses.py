"""Client addresses as the IP rate limit counts them."""

import ipaddress

# An IPv6 subscriber usually gets a whole /64 (RFC 6177): counting each /128 would give
# one attacker 2^64 buckets.
IPV6_BUCKET_PREFIX = 64


def ip_bucket(ip: str) -> str:
    """The IP_RATE_LIMIT bucket of a client address: an IPv4 address itself, an IPv6
    address its /64. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
    socket reports for an IPv4 client) is unmapped first, or every IPv4 client would share
    one /64. Text that is no address (a proxy's odd header) is its own bucket."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_BUCKET_PREFIX), strict=False)
        return str(network)
    return str(address)
