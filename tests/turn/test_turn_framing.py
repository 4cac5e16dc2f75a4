"""``channel_header``: the ChannelData header a UDP-leg driver writes beside the data (spec/turn.md TRN-6.6)."""

from __future__ import annotations

import pytest

from p2pos.proto.nat.turn_framing import channel_data, channel_header, decode_channel_data_untrusted


@pytest.mark.parametrize("size", [0, 1, 3, 1200, 16380, 65535])
def test_header_and_data_make_the_channel_data_message(size: int) -> None:
    """[TRN-6.6] header + data is byte for byte the unpadded ChannelData message, and decodes back."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    message = channel_header(0x4ABC, len(data)) + data
    assert message == channel_data(0x4ABC, data, stream=False)
    assert decode_channel_data_untrusted(message) == (0x4ABC, data)


@pytest.mark.parametrize(("channel", "length"), [(0x3FFF, 1), (0x5000, 1), (0x4000, -1), (0x4000, 65536)])
def test_out_of_range_is_refused(channel: int, length: int) -> None:
    """[TRN-6.6] a channel outside 0x4000..0x4FFF or a length that does not fit 16 bits: ValueError."""
    with pytest.raises(ValueError):
        channel_header(channel, length)
