"""The upgrade canary (``make upgrade-check``): per fast path, its probe holds on this aiortc/aioice
and so does the behaviour it exists for; a probe on an object without the attribute says False
and the leg falls back, loudly."""

from __future__ import annotations

import asyncio
import threading
import types
from dataclasses import replace
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket
from rtc_faults import eventually

from bot.media import DiscardSink, SyntheticVideoEncoder
from bot.rtc.legs import PublishLeg, SubscribeLeg
from bot.webrtc import TESTED, FastPaths, fast_path_gauges, fast_paths, log_fast_paths
from bot.webrtc.patches import direct_send, encoder_cap, keyframes, lean_intake, receive_tap, rtcp_taps

pytestmark = pytest.mark.timeout(60)


class Log:
    """A structlog stand-in that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.calls.append((level, event, fields))

        return record

    def events(self, level: str) -> list[str]:
        return [event for lvl, event, _ in self.calls if lvl == level]


def _peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def test_every_fast_path_is_on_with_the_locked_versions() -> None:
    paths = fast_paths()
    assert paths is fast_paths()  # probed once per process
    assert paths.tested, (paths.aiortc, paths.aioice, TESTED)
    assert paths.all_on, paths
    gauges = fast_path_gauges(paths)
    assert set(gauges) == {*paths.paths(), "tested"} and set(gauges.values()) == {1}
    assert set(paths.paths()) >= {"direct_send", "lean_intake", "receive_tap", "keyframes", "encoder_cap"}
    log = Log()
    log_fast_paths(log, paths)
    assert log.events("debug") == ["webrtc_fast_paths"] and not log.events("warning")


def test_a_path_off_or_an_untested_version_is_logged_as_a_warning() -> None:
    off = replace(fast_paths(), direct_send=False)
    log = Log()
    log_fast_paths(log, off)
    assert log.events("warning") == ["webrtc_fast_paths"]
    assert log.calls[0][2]["off"] == ["direct_send"]
    assert fast_path_gauges(off)["direct_send"] == 0
    newer = replace(fast_paths(), aiortc="9.0.0")
    assert not newer.tested
    log = Log()
    log_fast_paths(log, newer)
    assert log.events("warning") == ["webrtc_fast_paths"]
    assert isinstance(newer, FastPaths)


def test_a_probe_on_an_object_without_the_internals_says_false() -> None:
    class Bare:
        transport = None

    for probe in (
        direct_send.probe,
        lean_intake.probe,
        receive_tap.probe,
        keyframes.probe,
        encoder_cap.probe,
        rtcp_taps.probe,
        rtcp_taps.probe_sender,
    ):
        assert probe(Bare()) is False, probe
    assert receive_tap.install(Bare(), lambda c, f: None) is None
    assert keyframes.install(Bare(), lambda: None) is None
    assert encoder_cap.install(Bare()) is None


async def _connect(leg: PublishLeg | SubscribeLeg, answerer: RTCPeerConnection) -> None:
    await answerer.setRemoteDescription(RTCSessionDescription(sdp=await leg.create_offer(), type="offer"))
    await answerer.setLocalDescription(await answerer.createAnswer())
    await leg.apply_answer(answerer.localDescription.sdp)


async def test_direct_send_advances_the_senders_counts_and_answers_a_nack() -> None:
    async with SyntheticVideoEncoder(320, 180, 15, keyframe_interval=None, min_keyframe_gap=0) as encoder:
        leg = PublishLeg(tracks={"video": encoder.track()})
        sender = leg._senders["video"]
        assert direct_send.probe(sender)
        pc = _peer()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        try:
            await _connect(leg, pc)
            await eventually(lambda: leg.direct.get("video") is not None, within=5, what="the direct path")
            direct = leg.direct["video"]
            assert direct is not None
            await eventually(lambda: direct.packets_sent > 20, within=5, what="packets")
            stats = [s for s in (await sender.getStats()).values() if s.type == "outbound-rtp"]
            assert stats and stats[0].packetsSent >= 20 and stats[0].bytesSent > 1000
            # drop every 10th packet of ours on the way in: the receiver NACKs, we resend
            connection = transceiver.receiver.transport.transport._connection
            inner, seen = connection.data_received, [0]

            def lossy(data: bytes, component: int) -> None:
                if len(data) > 12 and 127 < data[0] < 192 and int.from_bytes(data[8:12]) == direct._ssrc:
                    seen[0] += 1
                    if seen[0] % 10 == 0:
                        return
                inner(data, component)

            connection.data_received = lossy
            await eventually(lambda: direct.retransmitted > 0, within=5, what="a retransmission")
            connection.data_received = inner
        finally:
            await leg.aclose()
            await pc.close()


async def test_without_the_internals_the_publish_leg_falls_back_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(direct_send, "probe", lambda sender: False)
    async with SyntheticVideoEncoder(320, 180, 15) as encoder:
        log = Log()
        leg = PublishLeg(tracks={"video": encoder.track()}, log=log)
        try:
            assert "direct_send_unavailable" in log.events("warning")
        finally:
            await leg.aclose()


class _Frames(DiscardSink):
    """A discarding sink that wants the frames (so the receive tap, not the lean intake)."""

    needs_frames = True

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(
        self, kind: str, codec: str, data: bytes, timestamp: int, clock_rate: int, keyframe: bool
    ) -> None:
        self.written += 1


async def _subscribe(sink: Any) -> tuple[SubscribeLeg, RTCPeerConnection]:
    leg = SubscribeLeg(kinds=["video"], sink=sink)
    pc = _peer()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=await leg.create_offer(), type="offer"))
    for transceiver in pc.getTransceivers():
        transceiver.sender.replaceTrack(VideoStreamTrack())
        transceiver.direction = "sendonly"
    await pc.setLocalDescription(await pc.createAnswer())
    await leg.apply_answer(pc.localDescription.sdp)
    return leg, pc


async def test_the_receive_tap_takes_frames_and_no_decoder_thread_runs() -> None:
    sink = _Frames()
    leg, pc = await _subscribe(sink)
    try:
        assert leg.tapped
        await eventually(lambda: sink.written >= 5, within=10, what="tapped frames")
        assert leg.decoder_threads_alive() == {"video": False}
    finally:
        await leg.aclose()
        await pc.close()


async def test_the_lean_intake_counts_packets() -> None:
    leg, pc = await _subscribe(DiscardSink())
    try:
        assert leg.intake is not None
        await eventually(
            lambda: leg.intake is not None and leg.intake.lean_packets > 10, within=10, what="lean"
        )
        counters = leg.counters("video")
        assert counters is not None and counters.frames > 0
        # taken in front of aioice, on the socket: the connection never sees that RTP
        connection = leg.pc.getTransceivers()[0].receiver.transport.transport._connection
        fronted = [p for p in connection._protocols if "datagram_received" in vars(p)]
        assert fronted, "no socket has the lean intake in front of aioice"
        seen_by_connection: list[bytes] = []
        inner = connection.data_received
        connection.data_received = lambda data, component: (
            seen_by_connection.append(data),
            inner(data, component),
        )
        before = leg.intake.lean_packets
        await eventually(lambda: leg.intake is not None and leg.intake.lean_packets > before + 10, within=10)
        assert not [d for d in seen_by_connection if 127 < d[0] < 192 and d[1] not in range(192, 224)]
    finally:
        await leg.aclose()
        await pc.close()
    assert not [p for p in connection._protocols if "datagram_received" in vars(p)], "left in front"


async def test_the_keyframe_hook_fires_on_pli() -> None:
    pc = _peer()
    sender = pc.addTransceiver("video", direction="sendonly").sender
    heard: list[int] = []
    handle = keyframes.install(sender, lambda: heard.append(1))
    assert handle is not None
    try:
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
        await sender._handle_rtcp_packet(pli)
        assert heard == [1]
        handle.uninstall()
        await sender._handle_rtcp_packet(pli)
        assert heard == [1]
    finally:
        await pc.close()


async def test_the_encoder_cap_holds_against_remb() -> None:
    pc = _peer()
    sender = pc.addTransceiver("video", direction="sendonly").sender
    try:
        handle = encoder_cap.install(sender)
        assert handle is not None
        handle.encoder.cap_bps = 300_000
        handle.encoder.target_bitrate = 1_500_000  # what a REMB would ask
        assert handle.encoder.target_bitrate == 300_000
        handle.uninstall()
        assert encoder_cap.probe(sender)
    finally:
        await pc.close()


async def test_the_rtcp_taps_wrap_and_unwrap_one_instance() -> None:
    pc = _peer()
    transceiver = pc.addTransceiver("video", direction="sendrecv")
    try:
        receiver, sender = transceiver.receiver, transceiver.sender
        inner = rtcp_taps.rtcp_handler(sender)
        assert inner is not None
        seen: list[Any] = []

        async def tap(packet: Any) -> None:
            seen.append(packet)
            await inner(packet)

        handle = rtcp_taps.install(sender, rtcp=tap)
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
        await sender._handle_rtcp_packet(pli)
        assert seen == [pli]
        handle.uninstall()
        await sender._handle_rtcp_packet(pli)
        assert seen == [pli]
        assert rtcp_taps.probe(receiver) and rtcp_taps.rtp_handler(receiver) is not None
    finally:
        await pc.close()
    await asyncio.sleep(0)


async def test_the_server_taps_frames_without_copying_receive_and_decodes_nothing() -> None:
    from bot.server.legs import PublishLeg as ServerPublishLeg
    from bot.server.legs import rtc_configuration

    publisher = _peer()
    publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    leg = ServerPublishLeg(1, rtc_configuration(()), lean_intake=False)
    try:
        await publisher.setLocalDescription(await publisher.createOffer())
        await leg.accept_offer(publisher.localDescription.sdp)
        answer = await leg.answer()
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        assert leg.forwarder.mode == "packets"
        await eventually(lambda: leg.received["video"].frames >= 5, within=10, what="tapped frames")
        assert leg.decoded_frames == 0
        for transceiver in leg.pc.getTransceivers():
            queue = getattr(transceiver.receiver, "_RTCRtpReceiver__decoder_queue")  # noqa: B009
            assert isinstance(queue, receive_tap.FrameTap)  # the shared tap stands in for it
            assert not receive_tap.decoder_thread_alive(transceiver.receiver)
            thread = getattr(transceiver.receiver, "_RTCRtpReceiver__decoder_thread")  # noqa: B009
            assert not isinstance(thread, threading.Thread)  # none was started
        assert not [t for t in threading.enumerate() if t.name.endswith("-decoder")]
    finally:
        await leg.aclose()
        await publisher.close()


async def test_without_the_threading_global_a_tapped_receiver_starts_the_thread_that_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback: an aiortc that makes its thread otherwise gets the thread, which ends at once
    on the tap, and the track still ends (what the inline worker also does)."""
    from aiortc import rtcrtpreceiver
    from aiortc.mediastreams import MediaStreamError

    monkeypatch.setattr(rtcrtpreceiver, "threading", threading)
    monkeypatch.setattr(receive_tap, "rtcrtpreceiver", types.SimpleNamespace(threading=None))
    assert not receive_tap.probe_threadless() and not receive_tap.threadless()
    from aiortc import RTCRtpReceiver
    from aiortc.rtcrtpparameters import RTCRtpReceiveParameters

    transport = types.SimpleNamespace(
        state="new", _register_rtp_receiver=lambda *a: None, _unregister_rtp_receiver=lambda *a: None
    )
    receiver = RTCRtpReceiver("audio", transport)
    receiver._track = rtcrtpreceiver.RemoteStreamTrack(kind="audio")  # what the answer would set
    assert receive_tap.install(receiver, lambda codec, frame: None) is not None
    assert rtcrtpreceiver.threading is threading
    await receiver.receive(RTCRtpReceiveParameters(codecs=[], encodings=[]))
    try:
        thread = getattr(receiver, "_RTCRtpReceiver__decoder_thread")  # noqa: B009
        assert isinstance(thread, threading.Thread)
        thread.join(5)
        assert not thread.is_alive()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(receiver.track.recv(), 5)
    finally:
        await receiver.stop()


async def test_the_probe_also_runs_inside_a_running_loop() -> None:
    from bot.webrtc import compat

    assert compat._probe_all() == fast_paths()


async def test_setup_once_shares_one_certificate_and_context_and_caches_interfaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two legs, one certificate, one OpenSSL context, a connection each; the interfaces are
    enumerated once per TTL, and aiortc/aioice's own functions come back on uninstall."""
    import aioice.ice
    from aiortc.rtcdtlstransport import RTCCertificate

    from bot.webrtc import PeerLeg
    from bot.webrtc.patches import setup_once

    scans: list[tuple[bool, bool]] = []
    original = setup_once._ORIGINAL_HOST_ADDRESSES

    def counting(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        scans.append((use_ipv4, use_ipv6))
        return original(use_ipv4, use_ipv6)

    setup_once.uninstall()
    monkeypatch.setattr(setup_once, "_ORIGINAL_HOST_ADDRESSES", counting)
    try:
        a, b = PeerLeg(RTCConfiguration(iceServers=[])), PeerLeg(RTCConfiguration(iceServers=[]))
        assert setup_once.installed()
        certs = [leg.pc._RTCPeerConnection__certificates[0] for leg in (a, b)]
        assert certs[0] is certs[1] and isinstance(certs[0], setup_once.SharedCertificate)
        a.pc.addTransceiver("audio", direction="sendonly")
        await a.pc.setLocalDescription(await a.pc.createOffer())
        await b.pc.setRemoteDescription(a.pc.localDescription)
        await b.pc.setLocalDescription(await b.pc.createAnswer())
        await a.pc.setRemoteDescription(b.pc.localDescription)
        await eventually(lambda: a.connection_state == "connected" and b.connection_state == "connected", 10)
        assert len(certs[0]._contexts) == 1, "one context for both DTLS transports"
        assert len(scans) == 1, f"{len(scans)} interface scans for two gathers within the TTL"
        monkeypatch.setattr(setup_once, "HOST_ADDRESSES_TTL_S", 0.0)
        aioice.ice.get_host_addresses(True, False)
        assert len(scans) == 2, "a stale cache must scan again"
        await a.close_pc()
        await b.close_pc()
    finally:
        monkeypatch.undo()
        setup_once.uninstall()
    import aiortc.rtcpeerconnection

    assert aiortc.rtcpeerconnection.RTCCertificate is RTCCertificate
    assert aioice.ice.get_host_addresses is original
    assert setup_once.install()  # back for the rest of the process


def test_setup_once_refuses_an_aioice_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    from bot.webrtc.patches import setup_once

    setup_once.uninstall()
    try:
        monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6, stun=None: [])
        monkeypatch.setattr(setup_once, "_ORIGINAL_HOST_ADDRESSES", aioice.ice.get_host_addresses)
        assert not setup_once.probe()
        assert not setup_once.install() and not setup_once.installed()
    finally:
        monkeypatch.undo()
        setup_once.install()


def test_fast_srtp_protects_and_unprotects_as_pylibsrtp_does() -> None:
    import pylibsrtp

    from bot.webrtc.patches import fast_srtp

    def session(direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(policy=pylibsrtp.Policy(key=bytes(range(30)), ssrc_type=direction))

    out = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    ours, theirs = fast_srtp.protector(session(out)), session(out).protect
    assert fast_srtp.probe_library()
    receive = fast_srtp.unprotector(session(pylibsrtp.Policy.SSRC_ANY_INBOUND))
    for seq in range(1, 50):
        plain = bytes([0x80, 96, 0, seq, 0, 0, 0, seq, 0, 0, 0, 7]) + bytes([seq]) * (seq * 20)
        protected = ours(plain)
        assert protected == theirs(plain)  # byte for byte what pylibsrtp makes
        assert receive(protected) == plain
    with pytest.raises(pylibsrtp.Error):
        receive(protected)  # a replay, refused as pylibsrtp refuses it
    with pytest.raises(ValueError):
        ours(bytes(1500))

    class Bare:
        def protect(self, data: bytes) -> bytes:
            return data

    bare = Bare()
    assert fast_srtp.protector(bare) == bare.protect  # not pylibsrtp's: its own method


async def test_fast_srtp_writes_raw_only_on_asyncios_own_unconnected_udp() -> None:
    import socket

    from bot.webrtc.patches import fast_srtp

    loop = asyncio.get_running_loop()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    connected, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=rx.getsockname())
    try:
        sendto = fast_srtp.raw_sendto(udp)
        assert sendto is not None
        sendto(b"raw", rx.getsockname())
        assert rx.recv(100) == b"raw"
        assert fast_srtp.raw_sendto(connected) is None
        assert fast_srtp.raw_sendto(object()) is None
    finally:
        udp.close()
        connected.close()
        rx.close()
    assert fast_srtp.raw_sendto(udp) is None  # closing
