"""Publishing pre-encoded packets (bot.media.PacketTrack, e.g. SharedMedia): the codec offered
first is the packets' own, the media server's PLI/FIR reaches the shared encoder, unmuting video
restarts on a keyframe, and the room's bitrate cap does not apply (fixed bitrate)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from rtc_faults import Recorder, eventually

from bot.media import FrameSink, MediaSpec, SharedMedia, SyntheticVideoEncoder, read_frame_counter
from bot.rtc import EnxRtc, MediaError
from bot.rtc.legs import PublishLeg
from bot.rtc.legs.publish import _Gate
from bot.server import RoomServer

pytestmark = pytest.mark.timeout(60)

AV = {"audio": True, "video": True}
NO_MEDIA = {"audio": False, "video": False}
KEYFRAME_BOUND_S = 0.5


def video_payload_types(sdp: str) -> list[str]:
    """Codec names of the video m-line, in offer order."""
    lines = sdp.splitlines()
    m = next(line for line in lines if line.startswith("m=video"))
    rtpmap = {
        line.split()[0].split(":")[1]: line.split()[1].split("/")[0]
        for line in lines
        if line.startswith("a=rtpmap:")
    }
    return [rtpmap[pt] for pt in m.split()[3:]]


class FakeH264Packets(MediaStreamTrack):
    """Duck-typed like bot.media.PacketTrack: H.264 packets (it never sends any)."""

    kind = "video"
    mime_type = "video/H264"

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def request_keyframe(self) -> None:
        self.requests += 1

    async def recv(self) -> Any:
        await asyncio.sleep(3600)
        raise MediaStreamError


async def answer_with(offer: str, mime: str) -> tuple[RTCPeerConnection, str]:
    """A receive-only answerer that accepts only ``mime`` (as the room server: VP8/Opus)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    caps = RTCRtpReceiver.getCapabilities("video")
    assert caps is not None
    transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType.lower() == mime.lower()])
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return pc, pc.localDescription.sdp


async def test_h264_packets_are_offered_h264_first_and_a_vp8_answer_is_refused() -> None:
    leg = PublishLeg(tracks={"video": FakeH264Packets()})
    answerer: RTCPeerConnection | None = None
    try:
        offer = await leg.create_offer()
        codecs = video_payload_types(offer)
        assert codecs[0] == "H264", codecs  # not VP8: aiortc packs with the negotiated codec
        assert leg.sends_packets("video") and leg.set_video_cap(300_000) is False
        answerer, answer = await answer_with(offer, "video/VP8")
        with pytest.raises(MediaError, match=r"answered video/vp8.*H264 packets"):
            await leg.apply_answer(answer)
    finally:
        await leg.aclose()
        if answerer is not None:
            await answerer.close()


async def test_unmuting_packet_video_asks_for_and_waits_for_a_keyframe() -> None:
    async with SyntheticVideoEncoder(160, 90, 30, keyframe_interval=None, min_keyframe_gap=0) as encoder:
        gate = _Gate(encoder.track(), is_open=True)
        first = await asyncio.wait_for(gate.recv(), 5)
        assert first.is_keyframe  # a packet track starts on a keyframe
        for _ in range(4):
            assert not (await asyncio.wait_for(gate.recv(), 5)).is_keyframe
        gate.is_open = False
        pending = asyncio.ensure_future(gate.recv())  # keeps reading (and dropping) while closed
        await asyncio.sleep(0.2)
        assert not pending.done()
        requests = encoder.keyframe_requests
        gate.is_open = True
        assert encoder.keyframe_requests == requests + 1
        packet = await asyncio.wait_for(pending, 5)
        assert packet.is_keyframe
        gate.stop()
    # frames keep their order: the encoder is one source, the gate only drops


async def test_a_pli_on_the_wire_reaches_the_shared_encoder() -> None:
    """aiortc answers PLI by flagging its own encoder; on the packet path the leg forwards it."""
    async with SyntheticVideoEncoder(160, 90, 30, keyframe_interval=None, min_keyframe_gap=0) as encoder:
        leg = PublishLeg(tracks={"video": encoder.track()})
        answerer, answer = await answer_with(await leg.create_offer(), "video/VP8")
        try:
            await leg.apply_answer(answer)
            receiver = answerer.getReceivers()[0]
            await eventually(lambda: bool(receiver.getSynchronizationSources()), within=5, what="media")
            requests, keyframes = encoder.keyframe_requests, encoder.keyframes
            ssrc = receiver.getSynchronizationSources()[0].source
            await receiver._send_rtcp_pli(ssrc)
            await eventually(lambda: encoder.keyframe_requests > requests, within=2, what="PLI forwarded")
            await eventually(lambda: encoder.keyframes > keyframes, within=2, what="a keyframe made")
        finally:
            await leg.aclose()
            await answerer.close()


@pytest.mark.parametrize("rtx", [False, True], ids=["nack", "nack-rtx"])
async def test_the_direct_sender_answers_nacks_from_its_history(rtx: bool) -> None:
    """A receiver that lost packets (dropped on arrival, before aiortc sees them) NACKs them;
    the direct sender resends them (as RTX when negotiated) and the receiver's loss closes."""
    async with SyntheticVideoEncoder(320, 180, 15, keyframe_interval=None, min_keyframe_gap=0) as encoder:
        leg = PublishLeg(tracks={"video": encoder.track()})
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        wanted = ("video/vp8", "video/rtx") if rtx else ("video/vp8",)
        transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType.lower() in wanted])
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=await leg.create_offer(), type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await leg.apply_answer(pc.localDescription.sdp)
            receiver = transceiver.receiver
            await eventually(lambda: leg.direct.get("video") is not None, within=5, what="the direct path")
            direct = leg.direct["video"]
            assert direct is not None
            # every 15th RTP packet of the publisher's SSRC is lost on the way in
            connection = receiver.transport.transport._connection
            inner = connection.data_received
            seen, dropped = [0], [0]

            def lossy(data: bytes, component: int) -> None:
                if len(data) > 12 and 127 < data[0] < 192 and int.from_bytes(data[8:12]) == direct._ssrc:
                    seen[0] += 1
                    if seen[0] % 15 == 0:
                        dropped[0] += 1
                        return
                inner(data, component)

            connection.data_received = lossy
            await asyncio.sleep(3.0)
            connection.data_received = inner
            await asyncio.sleep(0.5)
            print(f"\ndropped {dropped[0]}, retransmitted {direct.retransmitted} (rtx={rtx})")
            assert dropped[0] >= 5 and direct.retransmitted >= dropped[0]
            stats = [s for s in (await receiver.getStats()).values() if s.type == "inbound-rtp"]
            assert stats and stats[0].packetsLost == 0  # every hole was filled
        finally:
            await leg.aclose()
            await pc.close()


async def test_shared_media_publishers_and_a_subscribers_keyframes(
    room_server: RoomServer, room: dict[str, Any]
) -> None:
    room_id = str(room["room_id"])
    spec = MediaSpec(width=320, height=180, fps=15)
    async with SharedMedia(keyframe_interval=None, min_keyframe_gap=0.1) as media:
        publishers = []
        tracks: list[MediaStreamTrack] = []
        for name in ("p1", "p2"):
            audio, video = media.tracks(spec, audio=True, video=True)
            assert audio is not None and video is not None
            tracks += [audio, video]
            rtc = EnxRtc(audio, video, label=name)
            rec = Recorder(rtc)
            await rtc.join_room(room_server.mint_token(room_id, name=name), AV)
            await rec.wait_for("on_published_stream")
            publishers.append(rtc)
        (encoder,) = [s for s in media.streams if isinstance(s, SyntheticVideoEncoder)]
        assert encoder.subscribers == 2  # one encoding for both publishers
        publish = (await publishers[0].stats())["publish"]
        assert publish["packetVideo"] is True and publish["videoBitrate"] is None
        assert publishers[0]._publisher.publication is not None
        assert publishers[0]._publisher.publication.leg.set_video_cap(100_000) is False  # fixed bitrate

        decoded: dict[int, list[av.VideoFrame]] = {}

        def frames(info: dict[str, Any]) -> FrameSink:
            out = decoded.setdefault(info["streamId"], [])
            return FrameSink(
                lambda f: out.append(f) if isinstance(f, av.VideoFrame) else None,
                request_keyframe=info["request_keyframe"],
            )

        requests = encoder.keyframe_requests
        sub = EnxRtc(label="watcher", subscribe="all", sink_factory=frames)
        rec = Recorder(sub)
        t0 = time.monotonic()
        await sub.join_room(room_server.mint_token(room_id, name="watcher"), NO_MEDIA)
        streams = {p.published_stream_id for p in publishers}
        for stream_id in streams:
            await rec.wait_for("on_subscribed_stream", lambda p, s=stream_id: p["streamId"] == s)
        # the first keyframe of each leg comes fast (the leg asks for one at ready)
        legs = [sub._subscriber.legs[s].leg for s in streams]
        await eventually(
            lambda: all(leg.counters("video").keyframes for leg in legs),  # type: ignore[union-attr]
            within=2,
            what="a keyframe on every leg",
        )
        first = max(leg.counters("video").first_keyframe_at for leg in legs) - t0  # type: ignore[operator,union-attr]
        # the media server's PLIs (when it starts reading a stream, or forwarding a subscriber's)
        # reached the one shared encoder through the publishers' senders
        await eventually(lambda: encoder.keyframe_requests > requests, within=2, what="PLI at the encoder")

        # a subscriber's keyframe request: the next keyframe arrives within the bound
        leg = legs[0]
        counters = leg.counters("video")
        assert counters is not None
        await asyncio.sleep(0.5)  # past the server's keyframe-request throttle
        before, asked, requests = counters.keyframes, time.monotonic(), encoder.keyframe_requests
        leg.request_keyframe()
        await eventually(lambda: counters.keyframes > before, within=2, what="a keyframe after PLI")
        assert counters.last_keyframe_at is not None
        after_pli = counters.last_keyframe_at - asked
        view = room_server.room_view(room_id)["participants"]
        if any(s.get("forwarding") == "packets" for p in view for s in p["streams"]):
            # forwarded by the media server to the publisher, whose sender tells the encoder
            assert encoder.keyframe_requests > requests
        print(
            f"\nshared media: join -> first keyframe on both legs {first * 1000:.0f} ms, PLI -> keyframe {after_pli * 1000:.0f} ms"
        )
        assert after_pli < KEYFRAME_BOUND_S

        await asyncio.sleep(0.5)
        for stream_id in streams:
            counts = [c for c in (read_frame_counter(f) for f in decoded[stream_id]) if c is not None]
            assert len(counts) >= 10 and all(y > x for x, y in itertools.pairwise(counts)), counts
        # both publishers sent on the direct path: the encoder handed packets to their senders
        for rtc in publishers:
            assert rtc._publisher.publication is not None
            direct = rtc._publisher.publication.leg.direct
            assert set(direct) == {"audio", "video"} and all(
                d is not None and d.packets_sent for d in direct.values()
            )
        await sub.disconnect()
        for rtc in publishers:
            await rtc.disconnect()
        assert encoder.subscribers == 0  # the direct senders left with their legs
        for track in tracks:
            track.stop()  # the caller's to stop; they never queued a packet
        assert encoder.subscribers == 0


async def test_a_direct_sender_stops_while_its_gate_is_closed_and_resumes_on_a_keyframe() -> None:
    """Muting or the audio-only fallback closes the leg's gate: the direct sender sends nothing;
    reopening asks the shared encoder for a keyframe and resumes with it."""
    async with SyntheticVideoEncoder(160, 90, 15, keyframe_interval=None, min_keyframe_gap=0) as encoder:
        leg = PublishLeg(tracks={"video": encoder.track()})
        answerer, answer = await answer_with(await leg.create_offer(), "video/VP8")
        try:
            await leg.apply_answer(answer)
            await eventually(lambda: leg.direct.get("video") is not None, within=5, what="the direct path")
            direct = leg.direct["video"]
            assert direct is not None
            await eventually(lambda: direct.frames_sent > 5, within=5, what="frames")
            # the send-only leg's receiver keeps no REMB estimator (about 96 KiB each)
            (transceiver,) = leg.pc.getTransceivers()
            assert transceiver.receiver._RTCRtpReceiver__remote_bitrate_estimator is None  # type: ignore[attr-defined]
            leg.set_sending("video", False)
            await asyncio.sleep(0.1)
            stopped = direct.frames_sent
            await asyncio.sleep(0.6)
            assert direct.frames_sent == stopped  # nothing while closed
            requests, keyframes = encoder.keyframe_requests, encoder.keyframes
            sent_keyframe: list[bool] = []  # per frame sent after reopening: was it a keyframe
            deliver = direct.deliver

            def watching(packet: Any, keyframe: bool) -> None:
                before = direct.frames_sent
                deliver(packet, keyframe)
                if direct.frames_sent > before:
                    sent_keyframe.append(keyframe)

            direct.deliver = watching  # type: ignore[method-assign]
            leg.set_sending("video", True)
            assert encoder.keyframe_requests == requests + 1
            await eventually(lambda: len(sent_keyframe) > 3, within=3, what="frames again")
            assert encoder.keyframes > keyframes and sent_keyframe[0] is True
            receiver = answerer.getReceivers()[0]
            assert receiver.getSynchronizationSources()  # the answerer hears it
        finally:
            await leg.aclose()
            await answerer.close()


async def test_switching_the_source_moves_the_direct_sender_and_the_stream_goes_on() -> None:
    """``replace_source`` (a scenario's ``switch_media``): the direct sender leaves the old
    stream for the new one, its RTP clock goes on (no step back, no jump), the first frame sent
    is the new stream's keyframe, and the far end decodes the new picture; a source of another
    codec is refused and nothing changes."""
    async with (
        SyntheticVideoEncoder(320, 180, 15, keyframe_interval=None, min_keyframe_gap=0) as first,
        SyntheticVideoEncoder(160, 90, 15, keyframe_interval=None, min_keyframe_gap=0) as second,
    ):
        leg = PublishLeg(tracks={"video": first.track()})
        answerer, answer = await answer_with(await leg.create_offer(), "video/VP8")
        remote = answerer.getReceivers()[0].track
        sizes: list[tuple[int, int]] = []

        async def watch() -> None:
            while True:
                frame = await remote.recv()
                sizes.append((frame.width, frame.height))

        watcher = asyncio.ensure_future(watch())
        try:
            await leg.apply_answer(answer)
            await eventually(lambda: (320, 180) in sizes, within=5, what="the first picture")
            direct = leg.direct["video"]
            assert direct is not None and first.subscribers == 1
            with pytest.raises(MediaError, match="same codec"):
                leg.replace_source("video", FakeH264Packets())
            assert direct.stream is first
            stamps: list[tuple[int, bool]] = []  # (RTP timestamp, keyframe) of each frame sent
            deliver = direct.deliver

            def watching(packet: Any, keyframe: bool) -> None:
                before = direct.frames_sent
                deliver(packet, keyframe)
                if direct.frames_sent > before:
                    stamps.append((direct._last_ts, keyframe))

            direct.deliver = watching  # type: ignore[method-assign]
            await eventually(lambda: len(stamps) >= 3, within=3, what="frames before the switch")
            old = leg.replace_source("video", second.track())
            old.stop()
            switched_at = len(stamps)
            assert direct.stream is second and first.subscribers == 0
            await eventually(lambda: (160, 90) in sizes, within=5, what="the new picture at the far end")
            after = stamps[switched_at:]
            assert after and after[0][1] is True, "the first frame after the switch is not a keyframe"
            steps = [(b - a) % (1 << 32) for a, b in itertools.pairwise(t for t, _ in stamps)]
            assert all(0 < s < 90_000 for s in steps), steps  # the clock only ever moved on, < 1 s
        finally:
            watcher.cancel()
            await leg.aclose()
            await answerer.close()
