"""What a received frame is, read from its first bytes: pure functions, no I/O, no decoding.

The sinks get encoded frames as aiortc's receiver reassembles them (``JitterFrame.data``): a VP8
frame without its RTP payload descriptor, H.264 as Annex-B NAL units (start codes), one Opus
packet. Recording needs a little of what is inside without decoding: whether a video frame is a
keyframe, the picture size for the container header, and how long an Opus packet lasts. Each
function here reads only headers (a few bytes, or the NAL unit types of one frame), never
raises on garbage, and answers None (or False) when the bytes do not say.
"""

from __future__ import annotations

from dataclasses import dataclass

_VP8_START_CODE = b"\x9d\x01\x2a"

H264_IDR = 5
H264_SEI = 6
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
_START_CODE = b"\x00\x00\x01"

# profile_idc values whose SPS carries chroma format, bit depths and scaling lists (H.264 7.3.2.1.1)
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def codec_of(codec: str) -> str | None:
    """The sinks' name for an RTP codec (``VP8``, ``video/H264``, ``opus``...): ``vp8``, ``h264``,
    ``opus``, ``pcmu``, ``pcma``, or None for anything else."""
    name = codec.rpartition("/")[2].lower()
    return name if name in ("vp8", "h264", "opus", "pcmu", "pcma") else None


# --- VP8 (RFC 6386 section 9.1) --------------------------------------------------------------------


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a VP8 keyframe; None if ``data`` is not a whole keyframe header.

    The frame tag's bit 0 is 0 on keyframes, which then carry the start code ``9d 01 2a`` and
    14-bit width and height (the top two bits are scaling hints, ignored here).
    """
    if len(data) < 10 or data[0] & 1 or data[3:6] != _VP8_START_CODE:
        return None
    width = (data[6] | data[7] << 8) & 0x3FFF
    height = (data[8] | data[9] << 8) & 0x3FFF
    if not (width and height):
        return None
    return width, height


# --- H.264 Annex-B ---------------------------------------------------------------------------------


def h264_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit, without start codes; [] if there is no start code.

    Emulation prevention guarantees ``00 00 01`` never occurs inside a NAL unit, so splitting on
    it is exact; the zero byte of a four-byte start code is trailing zero data and is stripped.
    """
    start = data.find(_START_CODE)
    if start < 0:
        return []
    units = []
    pos = start + 3
    while True:
        nxt = data.find(_START_CODE, pos)
        end = len(data) if nxt < 0 else nxt
        unit = data[pos:end].rstrip(b"\x00") if nxt >= 0 else data[pos:end]
        if unit:
            units.append(unit)
        if nxt < 0:
            return units
        pos = nxt + 3


def h264_nal_type(unit: bytes) -> int:
    """``nal_unit_type`` of one NAL unit (without start code)."""
    return unit[0] & 0x1F


@dataclass(frozen=True)
class H264Frame:
    """What one H.264 access unit holds, as far as recording cares."""

    idr: bool
    """It has an IDR slice: decoding can start here (given the SPS and PPS)."""
    sps: bytes | None
    """Its (first) sequence parameter set, without start code."""
    pps: bytes | None
    """Its (first) picture parameter set, without start code."""
    valid: bool
    """It is Annex-B at all (starts with a start code and has NAL units)."""


def h264_frame(data: bytes) -> H264Frame:
    """Classify an Annex-B access unit by its NAL unit types."""
    units = h264_nal_units(data) if data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")) else []
    idr = False
    sps = pps = None
    for unit in units:
        kind = h264_nal_type(unit)
        if kind == H264_IDR:
            idr = True
        elif kind == H264_SPS and sps is None:
            sps = unit
        elif kind == H264_PPS and pps is None:
            pps = unit
    return H264Frame(idr=idr, sps=sps, pps=pps, valid=bool(units))


class _Bits:
    """Big-endian bit reader over an RBSP (emulation prevention already removed)."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self._left:
            raise ValueError("SPS is truncated")
        self._left -= n
        return (self._value >> self._left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(unit: bytes) -> bytes:
    """Drop the emulation prevention bytes (``00 00 03`` -> ``00 00``)."""
    return unit.replace(b"\x00\x00\x03", b"\x00\x00")


def h264_sps_size(sps: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels, after cropping, from an SPS NAL unit; None if unreadable."""
    try:
        return _sps_size(_Bits(_rbsp(sps[1:])))
    except ValueError:
        return None


def _sps_size(bits: _Bits) -> tuple[int, int] | None:
    profile_idc = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_planes = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + bits.se() + 256) % 256
                        last = nxt or last
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if bits.u(1):
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    if chroma_format_idc == 0 or separate_planes:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        sub_w = 1 if chroma_format_idc == 3 else 2
        sub_h = 2 if chroma_format_idc == 1 else 1
        unit_x, unit_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16 - (crop[0] + crop[1]) * unit_x
    height = (2 - frame_mbs_only) * height_units * 16 - (crop[2] + crop[3]) * unit_y
    if width <= 0 or height <= 0:
        return None
    return width, height


# --- Opus (RFC 6716 section 3.1) -------------------------------------------------------------------


def opus_samples(packet: bytes) -> int | None:
    """Samples at 48 kHz in one Opus packet, from its TOC byte; None if it cannot be told."""
    if not packet:
        return None
    config = packet[0] >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config & 1]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config & 3]
    code = packet[0] & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(packet) < 2:
        return None
    else:
        count = packet[1] & 0x3F
    samples = frame * count
    return samples if 0 < samples <= 5760 else None  # at most 120 ms a packet


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a received frame starts a picture on its own: a VP8 keyframe, an H.264 access unit
    with an IDR slice; every audio frame. For a tap that wants to fill ``keyframe`` cheaply."""
    name = codec_of(codec)
    if name == "vp8":
        return vp8_keyframe_size(data) is not None
    if name == "h264":
        return h264_frame(data).idr
    return True
