"""Argument validation of the object-store tools: no network involved."""

import base64

import pytest

from mcp_tenants.errors import InvalidInput
from mcp_tenants.minio import names


@pytest.mark.parametrize(
    "name",
    ["abc", "my-bucket", "my.bucket.2024", "a" * 63, "0-9", "192.168.5.4x", "xn-valid"],
)
def test_valid_bucket_names_are_accepted(name):
    assert names.validate_bucket_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("My-Bucket", "lowercase"),
        ("my_bucket", "lowercase"),
        ("my bucket", "lowercase"),
        ("-bucket", "start and end"),
        ("bucket-", "start and end"),
        (".bucket", "start and end"),
        ("my..bucket", "'..'"),
        ("my.-bucket", "'.-'"),
        ("my-.bucket", "'-.'"),
        ("192.168.5.4", "IP address"),
        ("xn--bucket", "'xn--'"),
        ("bucket-s3alias", "'-s3alias'"),
    ],
)
def test_invalid_bucket_names_name_the_rule(name, rule):
    with pytest.raises(InvalidInput) as err:
        names.validate_bucket_name(name)
    assert "bucket" in str(err.value)
    assert rule in str(err.value)


def test_bucket_name_must_be_a_string():
    with pytest.raises(InvalidInput, match="bucket must be a string"):
        names.validate_bucket_name(123)


def test_huge_values_are_not_echoed_in_full():
    with pytest.raises(InvalidInput) as err:
        names.validate_bucket_name("x" * 100_000)
    assert len(str(err.value)) < 300
    assert "100000 characters" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        names.validate_object_key("k" * 5000)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("key", ["a", "dir/sub/file.txt", "é" * 512, "spaces and !@#$%^&*()", "/x"])
def test_valid_object_keys_are_accepted(key):
    assert names.validate_object_key(key) == key


def test_object_key_limits_count_utf8_bytes_not_characters():
    names.validate_object_key("a" * 1024)
    with pytest.raises(InvalidInput, match="at most 1024 bytes"):
        names.validate_object_key("a" * 1025)
    with pytest.raises(InvalidInput, match=r"got 1026\)"):
        names.validate_object_key("é" * 513)  # 513 characters, 1026 bytes


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "tab\there", "del\x7f"])
def test_object_keys_with_control_characters_are_rejected(bad):
    with pytest.raises(InvalidInput, match="control character"):
        names.validate_object_key(bad)


def test_empty_key_and_lone_surrogate_are_rejected():
    with pytest.raises(InvalidInput, match="key must not be empty"):
        names.validate_object_key("")
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        names.validate_object_key("a\udc80")


def test_key_errors_name_the_argument_given():
    with pytest.raises(InvalidInput, match=r"^source_key must not be empty"):
        names.validate_object_key("", "source_key")


def test_prefix_may_be_empty_but_follows_key_rules():
    assert names.validate_prefix("") == ""
    assert names.validate_prefix("logs/2024/") == "logs/2024/"
    with pytest.raises(InvalidInput, match="prefix"):
        names.validate_prefix("bad\x01")
    with pytest.raises(InvalidInput, match="prefix"):
        names.validate_prefix("p" * 1025)


def test_start_after_none_or_empty_means_from_the_start():
    assert names.validate_start_after(None) is None
    assert names.validate_start_after("") is None
    assert names.validate_start_after("k/0001") == "k/0001"
    with pytest.raises(InvalidInput, match="start_after"):
        names.validate_start_after("x\x00")


def test_max_keys_is_clamped_to_the_cap_and_must_be_positive():
    assert names.validate_max_keys(10, 1000) == 10
    assert names.validate_max_keys(5000, 1000) == 1000
    for bad in (0, -1):
        with pytest.raises(InvalidInput, match="max_keys must be at least 1"):
            names.validate_max_keys(bad, 1000)
    with pytest.raises(InvalidInput, match="max_keys must be an integer"):
        names.validate_max_keys("10", 1000)


def test_range_validation():
    assert names.validate_range(0, None) == (0, None)
    assert names.validate_range(5, 10) == (5, 10)
    with pytest.raises(InvalidInput, match="offset must be 0 or more"):
        names.validate_range(-1, None)
    with pytest.raises(InvalidInput, match="length must be at least 1"):
        names.validate_range(0, 0)
    with pytest.raises(InvalidInput, match="offset must be an integer"):
        names.validate_range(True, None)


@pytest.mark.parametrize("seconds", [1, 3600, 604800])
def test_expiry_within_seven_days_is_accepted(seconds):
    assert names.validate_expiry(seconds) == seconds


@pytest.mark.parametrize("seconds", [0, -5, 604801, 10**9])
def test_expiry_outside_one_second_to_seven_days_is_rejected(seconds):
    with pytest.raises(InvalidInput, match="expires_seconds must be between 1 and 604800"):
        names.validate_expiry(seconds)


def test_presign_method_is_get_or_put_in_any_case():
    assert names.validate_method("get") == "GET"
    assert names.validate_method("PUT") == "PUT"
    with pytest.raises(InvalidInput, match="method must be 'GET' or 'PUT'"):
        names.validate_method("DELETE")


def test_content_type_cannot_inject_headers():
    assert names.validate_content_type(None) is None
    assert names.validate_content_type("application/json") == "application/json"
    for bad in ("text/plain\r\nX-Evil: 1", "", "x" * 300, "text/plaïn"):
        with pytest.raises(InvalidInput, match="content_type"):
            names.validate_content_type(bad)


def test_decode_text_content_is_utf8():
    assert names.decode_content("héllo", "text") == "héllo".encode()
    with pytest.raises(InvalidInput, match="content is not valid Unicode"):
        names.decode_content("\ud800", "text")


def test_decode_base64_content_ignores_line_wraps():
    data = bytes(range(256)) * 3
    wrapped = base64.encodebytes(data).decode()  # MIME style, a newline every 76 characters
    assert "\n" in wrapped
    assert names.decode_content(wrapped, "base64") == data


@pytest.mark.parametrize("bad", ["abc", "ab$d", "YQ==YQ==", "a-_b"], ids=["padding", "symbol", "inner-pad", "urlsafe"])
def test_decode_bad_base64_is_a_clear_error(bad):
    with pytest.raises(InvalidInput, match="content is not valid base64"):
        names.decode_content(bad, "base64")


def test_decode_rejects_unknown_encoding_and_non_string_content():
    with pytest.raises(InvalidInput, match="encoding must be 'text' or 'base64'"):
        names.decode_content("x", "hex")
    with pytest.raises(InvalidInput, match="content must be a string"):
        names.decode_content(b"x", "text")


def test_encode_utf8_text_as_text():
    text = "héllo\tworld\r\n\x1b[0m"
    assert names.encode_content(text.encode(), cut=False) == (text, "text", len(text.encode()))


def test_encode_binary_as_base64():
    data = b"\x89PNG\r\n\x1a\n\x00\x00"
    content, encoding, used = names.encode_content(data, cut=False)
    assert (encoding, used) == ("base64", len(data))
    assert base64.b64decode(content) == data


def test_encode_valid_utf8_with_nul_bytes_is_base64():
    assert names.encode_content(b"a\x00b", cut=False)[1] == "base64"


def test_encode_trims_a_character_split_by_the_range_end():
    data = "aé€😀".encode()  # 1 + 2 + 3 + 4 bytes
    for cut_at, expected in [(2, "a"), (4, "aé"), (5, "aé"), (9, "aé€")]:
        content, encoding, used = names.encode_content(data[:cut_at], cut=True)
        assert (content, encoding, used) == (expected, "text", len(expected.encode()))


def test_encode_does_not_trim_at_the_end_of_the_object():
    # Without a cut, a broken last character is real data: keep every byte, as base64.
    data = "aé".encode()[:2]
    _, encoding, used = names.encode_content(data, cut=False)
    assert (encoding, used) == ("base64", 2)


def test_encode_a_lone_partial_character_falls_back_to_base64():
    data = "€".encode()[:2]
    content, encoding, used = names.encode_content(data, cut=True)
    assert (encoding, used) == ("base64", 2)
    assert base64.b64decode(content) == data


def test_encode_data_starting_mid_character_is_base64():
    data = "é".encode()[1:] + b"abc"
    assert names.encode_content(data, cut=True)[1] == "base64"
