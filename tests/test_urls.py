"""The URL validator and the address policy (modemgw.urls): tables of cases, no DNS, no sockets."""

import ipaddress

import pytest

from modemgw import urls


@pytest.mark.parametrize("url, scheme, host, port, target, host_header", [
    ("http://example.com", "http", "example.com", 80, "/", "example.com"),
    ("https://example.com/hook?a=1&b=2#part", "https", "example.com", 443, "/hook?a=1&b=2", "example.com"),
    ("HTTPS://Hooks.Example.COM:8443/x", "https", "hooks.example.com", 8443, "/x", "hooks.example.com:8443"),
    ("http://192.0.2.10/sms-events", "http", "192.0.2.10", 80, "/sms-events", "192.0.2.10"),
    ("http://[2001:db8::1]:8080/cb", "http", "2001:db8::1", 8080, "/cb", "[2001:db8::1]:8080"),
    ("http://[::1]/", "http", "::1", 80, "/", "[::1]"),
    ("https://bücher.example/straße", "https", "xn--bcher-kva.example", 443, "/stra%C3%9Fe", "xn--bcher-kva.example"),
    ("http://example.com:/x", "http", "example.com", 80, "/x", "example.com"),
    ("http://example.com?x=1", "http", "example.com", 80, "/?x=1", "example.com"),
    ("http://intranet_hooks.local/x%20y", "http", "intranet_hooks.local", 80, "/x%20y", "intranet_hooks.local"),
    ("http://example.com./x", "http", "example.com.", 80, "/x", "example.com."),
    ("http://" + "a" * 63 + ".example/", "http", "a" * 63 + ".example", 80, "/", "a" * 63 + ".example"),
    ("http://h:65535/", "http", "h", 65535, "/", "h:65535"),
])
def test_valid_urls_parse_to_their_destination(url, scheme, host, port, target, host_header):
    destination = urls.parse(url)
    assert (destination.scheme, destination.host, destination.port, destination.target) == (scheme, host, port,
                                                                                             target)
    assert destination.host_header == host_header
    assert urls.problem(url) is None


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:18499/a b", "has a space at character 25 (write it as %20)"),
    ("http://" + "a" * 64 + ".example.com/", "host label of 64 characters"),
    ("http://[::1/", "is not a valid URL (Invalid IPv6 URL"),
    ("", "is empty"),
    ("ftp://example.com/", "must be an http:// or https:// URL"),
    ("javascript:alert(1)", "must be an http:// or https:// URL"),
    ("http:example.com", "must be an http:// or https:// URL"),
    ("example.com/hook", "must be an http:// or https:// URL"),
    ("http://", "has no host"),
    ("http:///path", "has no host"),
    ("http://:8080/", "has no host before its port"),
    ("http://example.com:0/", "port '0'; a port is a number from 1 to 65535"),
    ("http://example.com:65536/", "port '65536'"),
    ("http://example.com:80a/", "port '80a'"),
    ("http://example.com:８０/", "port '８０'"),
    ("http://user:secret@example.com/", "user name or password"),
    ("http://example.com\\@evil.test/", "user name or password"),
    ("http://exa mple.com/", "has a space at character 11"),
    (" http://example.com/", "has a space at character 1"),
    ("http://example.com/\n", "has whitespace (U+000A)"),
    ("http://example.com/\t", "has whitespace (U+0009)"),
    ("http://example.com/\x00", "control or invisible formatting character (U+0000)"),
    ("http://example.com/\x7f", "control or invisible formatting character (U+007F)"),
    ("http://example.com/\u200b", "control or invisible formatting character (U+200B)"),
    ("http://example.com/\u00a0", "has whitespace (U+00A0)"),
    ("http://example.com/\u2028", "has whitespace (U+2028)"),
    ("http://a..example/", "empty label"),
    ("http://.example/", "empty label"),
    ("http://-example.com/", "label '-example'"),
    ("http://example-.com/", "label 'example-'"),
    ("http://exa!mple.com/", "label 'exa!mple'"),
    ("http://%65xample.com/", "percent sign in its host"),
    ("http://" + "abcdefghi." * 26 + "com/", "host name of 263 characters; a DNS name has at most 253"),
    ("http://127.1/", "not a valid IPv4 address"),
    ("http://0x7f.0.0.1/", "not a valid IPv4 address"),
    ("http://2130706433/", "not a valid IPv4 address"),
    ("http://127.000.000.001/", "not a valid IPv4 address"),
    ("http://256.1.1.1/", "not a valid IPv4 address"),
    ("http://example.123/", "not a valid IPv4 address"),
    ("http://::1/", "malformed host"),
    ("http://[::1]x/", "malformed IPv6 address"),
    ("http://[::g]/", "IPv6"),  # urlsplit itself refuses it on newer Pythons
    ("http://[v1.future]/", "IPv6"),
    ("http://[fe80::1%25eth0]/", "zone index"),
    ("http://exa\uff0fmple.com/", "invalid characters under NFKC normalization"),
    ("http://" + "ü" * 70 + ".example/", "not a valid international domain name"),
    ("http://example.com/" + "x" * 2048, "characters long; at most 2048"),
])
def test_invalid_urls_are_refused_with_what_to_fix(url, words):
    with pytest.raises(urls.UrlError) as caught:
        urls.parse(url)
    assert words in str(caught.value)
    assert urls.problem(url) == str(caught.value)


def test_a_long_host_name_is_refused_by_its_length():
    host = ".".join(["a" * 63] * 4)  # 255 characters
    assert "host name of 255 characters; a DNS name has at most 253" in urls.problem(f"http://{host}/")
    assert urls.problem(f"http://{host[:253]}/") is None


def test_a_non_string_is_refused():
    with pytest.raises(urls.UrlError, match="must be a string"):
        urls.parse(None)


@pytest.mark.parametrize("address, private, words", [
    ("93.184.216.34", False, None),
    ("2606:4700::1111", False, None),
    ("127.0.0.1", True, None),
    ("10.1.2.3", True, None),
    ("192.168.1.20", True, None),
    ("::1", True, None),
    ("fd00::5", True, None),
    ("127.0.0.1", False, "a loopback address: callbacks go there only with [gateway] callback_private_destinations"),
    ("::1", False, "a loopback address"),
    ("10.1.2.3", False, "a private (LAN) address"),
    ("172.16.0.9", False, "a private (LAN) address"),
    ("192.168.1.20", False, "a private (LAN) address"),
    ("fd00::5", False, "a private (LAN) address"),
    ("100.64.0.1", False, "not globally routable"),
    ("::ffff:10.0.0.1", False, "a private (LAN) address"),
    ("169.254.169.254", True, "link-local"),
    ("169.254.169.254", False, "link-local"),
    ("fe80::1", True, "link-local"),
    ("fe80::1%eth0", True, "link-local"),
    ("::ffff:169.254.169.254", True, "link-local"),
    ("64:ff9b::a9fe:a9fe", True, "link-local"),
    ("224.0.0.1", True, "multicast"),
    ("ff02::1", True, "multicast"),
    ("0.0.0.0", True, "unspecified"),
    ("0.1.2.3", True, "unspecified"),
    ("::", True, "unspecified"),
    ("240.0.0.1", True, "reserved"),
    ("255.255.255.255", True, "reserved"),
])
def test_address_policy(address, private, words):
    problem = urls.address_problem(address, private=private)
    assert problem is None if words is None else words in problem
    assert urls.address_problem(ipaddress.ip_address(address.split("%")[0]), private=private) == problem


@pytest.mark.parametrize("url, private, words", [
    ("https://hooks.example.com/sms", False, None),
    ("http://93.184.216.34/cb", False, None),
    ("http://127.0.0.1:8080/cb", True, None),
    ("http://localhost:8080/cb", True, None),
    ("http://127.0.0.1:8080/cb", False, "points at 127.0.0.1, a loopback address"),
    ("http://[::1]:8080/cb", False, "points at ::1, a loopback address"),
    ("http://192.168.1.20/cb", False, "points at 192.168.1.20, a private (LAN) address"),
    ("http://localhost:8080/cb", False, "points at localhost, a loopback name"),
    ("http://hooks.localhost/cb", False, "a loopback name"),
    ("http://169.254.169.254/latest/meta-data", True, "link-local"),
    ("http://a b/", True, "has a space"),
])
def test_callback_urls_are_checked_against_the_policy_when_submitted(url, private, words):
    if words is None:
        assert urls.check_callback(url, private=private).host
    else:
        with pytest.raises(urls.UrlError) as caught:
            urls.check_callback(url, private=private)
        assert words in str(caught.value)
