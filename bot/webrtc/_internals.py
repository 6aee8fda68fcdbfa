"""Every aiortc/aioice private name bot.webrtc reads or replaces, spelled once.

Locked to aiortc 1.16 / aioice 0.13 (``compat.TESTED``). A rename in a new release shows up in
one probe here (``tests/webrtc/test_compat.py``), not as a silent slow path somewhere else.
"""

from __future__ import annotations

from typing import Final

# -- RTCRtpSender (name-mangled: ``self.__x`` inside aiortc's class)
_S: Final = "_RTCRtpSender__"
SENDER_RTP_STARTED: Final = f"{_S}rtp_started"
SENDER_RTP_EXITED: Final = f"{_S}rtp_exited"
SENDER_MID: Final = f"{_S}mid"
SENDER_EXTENSIONS_MAP: Final = f"{_S}rtp_header_extensions_map"
SENDER_RTX_PAYLOAD_TYPE: Final = f"{_S}rtx_payload_type"
SENDER_RTX_SEQUENCE_NUMBER: Final = f"{_S}rtx_sequence_number"
SENDER_TRACK: Final = f"{_S}track"
SENDER_NTP_TIMESTAMP: Final = f"{_S}ntp_timestamp"
SENDER_RTP_TIMESTAMP: Final = f"{_S}rtp_timestamp"
SENDER_OCTET_COUNT: Final = f"{_S}octet_count"
SENDER_PACKET_COUNT: Final = f"{_S}packet_count"
SENDER_ENCODER: Final = f"{_S}encoder"

# -- RTCRtpSender methods replaced on one instance
RUN_RTP: Final = "_run_rtp"
RETRANSMIT: Final = "_retransmit"
SEND_KEYFRAME: Final = "_send_keyframe"
HANDLE_RTCP_PACKET: Final = "_handle_rtcp_packet"
ENABLED: Final = "_enabled"
SSRC: Final = "_ssrc"
RTX_SSRC_OF_SENDER: Final = "_rtx_ssrc"

# -- RTCRtpReceiver
_R: Final = "_RTCRtpReceiver__"
RECEIVER_JITTER_BUFFER: Final = f"{_R}jitter_buffer"
RECEIVER_DECODER_QUEUE: Final = f"{_R}decoder_queue"
RECEIVER_DECODER_THREAD: Final = f"{_R}decoder_thread"
RECEIVER_STARTED: Final = f"{_R}started"
RECEIVER_CODECS: Final = f"{_R}codecs"
RECEIVER_RTX_SSRC: Final = f"{_R}rtx_ssrc"
RECEIVER_RTCP_TASK: Final = f"{_R}rtcp_task"
RECEIVER_NACK_GENERATOR: Final = f"{_R}nack_generator"
RECEIVER_REMOTE_STREAMS: Final = f"{_R}remote_streams"
RECEIVER_REMB_ESTIMATOR: Final = f"{_R}remote_bitrate_estimator"
HANDLE_RTP_PACKET: Final = "_handle_rtp_packet"
SEND_RTCP_PLI: Final = "_send_rtcp_pli"
RUN_RTCP: Final = "_run_rtcp"

# -- JitterBuffer
JITTER_PREFETCH: Final = "_prefetch"
JITTER_IS_VIDEO: Final = "_is_video"

# -- Vp8Encoder
VP8_TARGET_BITRATE: Final = "_Vp8Encoder__target_bitrate"

# -- RTCDtlsTransport
DTLS_TX_SRTP: Final = "_tx_srtp"
DTLS_RX_SRTP: Final = "_rx_srtp"
DTLS_STATE: Final = "_state"
DTLS_SEND_RTP: Final = "_send_rtp"
DTLS_REGISTER_RTP_RECEIVER: Final = "_register_rtp_receiver"

# -- RTCIceTransport -> aioice.Connection
ICE_CONNECTION: Final = "_connection"
ICE_NOMINATED: Final = "_nominated"
ICE_PROTOCOLS: Final = "_protocols"  # the connection's StunProtocols (one per local socket)

# -- module attributes looked up at call time, replaced once per process (patches.setup_once)
PC_CERTIFICATE_CLASS: Final = "RTCCertificate"  # in aiortc.rtcpeerconnection
RECEIVER_REMB_CLASS: Final = "RemoteBitrateEstimator"  # in aiortc.rtcrtpreceiver
ICE_HOST_ADDRESSES: Final = "get_host_addresses"  # in aioice.ice
RECEIVER_THREADING: Final = "threading"  # in aiortc.rtcrtpreceiver (patches.receive_tap)
RECEIVER_DECODER_WORKER: Final = "decoder_worker"  # in aiortc.rtcrtpreceiver: the thread's target

# -- RTCPeerConnection: the descriptions it parsed itself (read, never written)
_P: Final = "_RTCPeerConnection__"
PC_LOCAL_DESCRIPTIONS: Final = (f"{_P}pendingLocalDescription", f"{_P}currentLocalDescription")
PC_REMOTE_DESCRIPTIONS: Final = (f"{_P}pendingRemoteDescription", f"{_P}currentRemoteDescription")
