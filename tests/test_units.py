import pytest

from cosma.core.errors import UsageError
from cosma.core.units import format_bytes, is_tier, normalize_tier, parse_size


@pytest.mark.parametrize(
    "text, value",
    [("1048576", 1048576), ("384KiB", 384 * 1024), ("2MB", 2_000_000), ("1.5MiB", 3 * 512 * 1024), ("64 kib", 65536)],
)
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "1.2.3", "12XB", "-5", "MiB", "M_Q", "1MiBs"])
def test_bad_sizes_say_what_is_accepted(text):
    with pytest.raises(UsageError, match="KiB"):
        parse_size(text)


@pytest.mark.parametrize("text, reason", [("0", "positive"), ("1.5B", "whole number")])
def test_sizes_must_be_whole_positive_bytes(text, reason):
    with pytest.raises(UsageError, match=reason):
        parse_size(text)


def test_tiers():
    assert is_tier("m_r") and is_tier("M-P") and not is_tier("1MiB")
    assert normalize_tier("m_h") == "M_H"
    with pytest.raises(UsageError):
        normalize_tier("M_X")


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(None) == "-"
