"""Patch ``setup_once``: work aiortc/aioice redo for every peer connection, done once per process
(or when first needed).

A swarm joining 20 bots a second, and the room server answering them, built per peer
connection what is the same for all of them (``bench/join_cost.py``, BENCHMARKS.md):

- a DTLS key and certificate (aiortc's ``RTCPeerConnection.__init__`` generates a P-256 key and
  signs a certificate) and, per DTLS transport, an OpenSSL context loading them again, its
  cipher list and SRTP profiles. :class:`SharedCertificate` is generated once per process
  (again after :data:`CERTIFICATE_LIFETIME_S`, well inside aiortc's 30 days) and builds one
  context per set of SRTP profiles; every connection still gets its own ``SSL.Connection``
  (keys of a session are never shared), and the fingerprint in every SDP is the same one, as a
  browser reusing a certificate does;
- the machine's interface addresses (aioice enumerates every interface through ``ifaddr`` for
  each ICE transport it gathers): kept for :data:`HOST_ADDRESSES_TTL_S`, so a swarm's ramp
  enumerates a few times a second instead of 40 times, and an address that appears or goes
  away (a link cut, a namespace's veth) is seen within that time;
- a REMB estimator for every video receiver (aiortc's ``RTCRtpReceiver.__init__``: 1000 rate
  buckets filled in Python), although a publishing bot's receivers never receive and the
  server's lean intake never feeds them: :class:`LazyRemoteBitrateEstimator` builds the real one
  on its first packet.

Each replaces a module attribute (``aiortc.rtcpeerconnection.RTCCertificate``,
``aioice.ice.get_host_addresses``, ``aiortc.rtcrtpreceiver.RemoteBitrateEstimator``) once,
after :func:`probe` checked they are what this module was written against (aiortc 1.16, aioice
0.13); otherwise nothing is replaced and ``enx_fast_path{name="setup_once"}`` says 0.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCCertificate
from OpenSSL import SSL

from .. import _internals as n

CERTIFICATE_LIFETIME_S = 24 * 3600.0
HOST_ADDRESSES_TTL_S = 2.0

_PC = aiortc.rtcpeerconnection
_RECEIVER = aiortc.rtcrtpreceiver
_ICE = aioice.ice
_ORIGINAL_HOST_ADDRESSES: Callable[[bool, bool], list[str]] = getattr(_ICE, n.ICE_HOST_ADDRESSES)
_lock = threading.Lock()


class SharedCertificate(RTCCertificate):
    """aiortc's certificate, one per process, with its OpenSSL contexts kept."""

    _current: SharedCertificate | None = None
    _born = 0.0

    def __init__(self, key: Any, cert: Any) -> None:
        super().__init__(key=key, cert=cert)
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}
        self._fingerprints: list[Any] | None = None

    def getFingerprints(self) -> list[Any]:
        """Digested once (aiortc hashes the certificate for every offer and answer)."""
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return list(self._fingerprints)

    @classmethod
    def generateCertificate(cls) -> SharedCertificate:
        with _lock:
            now = time.monotonic()
            if cls._current is None or now - cls._born > CERTIFICATE_LIFETIME_S:
                fresh = RTCCertificate.generateCertificate()
                cls._current = cls(key=fresh._key, cert=fresh._cert)
                cls._born = now
            return cls._current

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> SSL.Context:
        key = tuple(p.openssl_profile for p in srtp_profiles)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = super()._create_ssl_context(srtp_profiles)
        return ctx


class LazyRemoteBitrateEstimator:
    """aiortc's REMB estimator, built on the first packet it is given (never, on a send-only
    leg or a lean intake)."""

    __slots__ = ("_real",)

    def __init__(self) -> None:
        self._real: RemoteBitrateEstimator | None = None

    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int) -> Any:
        real = self._real
        if real is None:
            real = self._real = RemoteBitrateEstimator()
        return real.add(
            arrival_time_ms=arrival_time_ms, abs_send_time=abs_send_time, payload_size=payload_size, ssrc=ssrc
        )


def _cached_host_addresses() -> Callable[[bool, bool], list[str]]:
    cache: dict[tuple[bool, bool], tuple[float, list[str]]] = {}

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        key = (use_ipv4, use_ipv6)
        now = time.monotonic()
        hit = cache.get(key)
        if hit is None or now - hit[0] > HOST_ADDRESSES_TTL_S:
            hit = cache[key] = (now, _ORIGINAL_HOST_ADDRESSES(use_ipv4, use_ipv6))
        return list(hit[1])

    get_host_addresses.enx_cached = True  # type: ignore[attr-defined]
    return get_host_addresses


def _parameters(f: Callable[..., Any]) -> Sequence[str]:
    try:
        return list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return ()


def probe() -> bool:
    """Whether aiortc still takes its certificate class from ``rtcpeerconnection`` and builds
    contexts through ``_create_ssl_context``, and aioice still looks its host addresses up by
    module name with the same arguments."""
    cert_class = getattr(_PC, n.PC_CERTIFICATE_CLASS, None)
    return (
        cert_class in (RTCCertificate, SharedCertificate)
        and callable(getattr(RTCCertificate, "_create_ssl_context", None))
        and _parameters(RTCCertificate._create_ssl_context) == ["self", "srtp_profiles"]
        and getattr(_RECEIVER, n.RECEIVER_REMB_CLASS, None)
        in (RemoteBitrateEstimator, LazyRemoteBitrateEstimator)
        and _parameters(RemoteBitrateEstimator.add)
        == ["self", "arrival_time_ms", "abs_send_time", "payload_size", "ssrc"]
        and _parameters(RemoteBitrateEstimator) == []
        and callable(getattr(_ICE, n.ICE_HOST_ADDRESSES, None))
        and _parameters(_ORIGINAL_HOST_ADDRESSES) == ["use_ipv4", "use_ipv6"]
    )


def installed() -> bool:
    return (
        getattr(_PC, n.PC_CERTIFICATE_CLASS, None) is SharedCertificate
        and getattr(_RECEIVER, n.RECEIVER_REMB_CLASS, None) is LazyRemoteBitrateEstimator
    ) and bool(getattr(getattr(_ICE, n.ICE_HOST_ADDRESSES, None), "enx_cached", False))


def install() -> bool:
    """Replace both, once per process; False (nothing replaced) when :func:`probe` says no."""
    with _lock:
        if installed():
            return True
        if not probe():
            return False
        setattr(_PC, n.PC_CERTIFICATE_CLASS, SharedCertificate)
        setattr(_RECEIVER, n.RECEIVER_REMB_CLASS, LazyRemoteBitrateEstimator)
        setattr(_ICE, n.ICE_HOST_ADDRESSES, _cached_host_addresses())
        return True


def uninstall() -> None:
    """aiortc's and aioice's own again (tests)."""
    with _lock:
        setattr(_PC, n.PC_CERTIFICATE_CLASS, RTCCertificate)
        setattr(_RECEIVER, n.RECEIVER_REMB_CLASS, RemoteBitrateEstimator)
        setattr(_ICE, n.ICE_HOST_ADDRESSES, _ORIGINAL_HOST_ADDRESSES)
