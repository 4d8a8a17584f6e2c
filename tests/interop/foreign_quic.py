"""A foreign QUIC client (aioquic) against Sunfleet's gateway ingest: it connects without a
certificate, with certificates it should not be let in with, with the wrong ALPN, and with a
valid gateway certificate to send malformed and out-of-place frames, then does a well-formed
exchange to show that the server is still healthy. Every outcome is compared with what
ingest/PROTOCOL.md documents.

Usage: foreign_quic.py --addr HOST:PORT --ca CA.pem --ca-key CA.key --cert GW.pem --key GW.key
                       --spare-serial S1 --spare-serial S2 [--micro SERIAL] [--server-name NAME]
                       [--slow]

  --cert/--key     a registered gateway's certificate (`sunfleet cert gateway --serial N`);
                   most scenarios run one after the other on it.
  --ca-key         the fleet CA's key: certificates for an unregistered serial, for a common
                   name that is no serial, an expired one and the spare gateways' are made here.
  --spare-serial   two more registered gateways (no other client may use them meanwhile): the
                   Hello-timeout scenarios stall on them while the others run.
  --micro          a microinverter of the --cert gateway's system, for the valid batch
                   (without it the batch holds no readings).
  --slow           also the 30 s frame timeout.

Prints one line per scenario, "ok <name>: <what was seen>" or "FAIL <name>: expected <what
PROTOCOL.md documents>; saw <what was seen>", then a summary line. Exits 1 if any scenario
differs from the documentation, 2 if the scenarios could not run.
"""

import argparse
import asyncio
import datetime
import os
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALPN = "sunfleet/1"
MAX_BODY = 4 << 20
MAX_TEXT = 1024
HELLO_TIMEOUT_S = 10
FRAME_TIMEOUT_S = 30

# Frame kinds and error codes (PROTOCOL.md).
HELLO, WELCOME, BATCH, ACK, TASK, TASK_RESULT, HEARTBEAT, ERROR = range(1, 9)
KIND_NAMES = {1: "Hello", 2: "Welcome", 3: "Batch", 4: "Ack", 5: "Task", 6: "TaskResult",
              7: "Heartbeat", 8: "Error"}
CODES = {0: "none", 1: "UnsupportedVersion", 2: "UnknownKind", 3: "FrameTooLarge",
         4: "Malformed", 5: "HelloExpected", 6: "UnknownGateway", 7: "RetiredGateway",
         8: "SerialMismatch", 9: "Overloaded", 10: "Internal", 11: "Replaced", 12: "Timeout",
         13: "UnexpectedFrame", 14: "BadCertificate"}
TLS_ALERTS = {10: "unexpected_message", 40: "handshake_failure", 42: "bad_certificate",
              43: "unsupported_certificate", 44: "certificate_revoked",
              45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter",
              48: "unknown_ca", 49: "access_denied", 50: "decode_error", 51: "decrypt_error",
              70: "protocol_version", 80: "internal_error", 109: "missing_extension",
              116: "certificate_required", 120: "no_application_protocol"}
STREAM_LIMIT_ERROR = 0x04


# ---------------------------------------------------------------------------------------
# Frames

def frame(kind, body, version=1):
    return struct.pack("<BBI", version, kind, len(body)) + body


def text(value):
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("<H", len(data)) + data


def hello(serial, firmware="aioquic-probe 1.0", software="foreign_quic.py"):
    return frame(HELLO, struct.pack("<Q", serial) + text(firmware) + text(software))


def heartbeat(sent_us):
    return frame(HEARTBEAT, struct.pack("<q", sent_us))


def varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def signed(value):
    return varint(((value << 1) ^ (value >> 63)) & 0xFFFF_FFFF_FFFF_FFFF)


def delta_column(values):
    out, previous = b"", 0
    for value in values:
        out += signed(value - previous)
        previous = value
    return out


@dataclass
class Micro:
    serial: int
    time_us: int
    interval_s: int = 300
    energy_j: int = 30_000
    ac_power_w: int = 100
    dc_voltage_mv: int = 32_000
    dc_current_ma: int = 3_100
    ac_voltage_mv: int = 230_000
    ac_frequency_mhz: int = 50_000
    temperature_c: int = 31
    status: int = 0


def batch_body(gateway, seq, created_us, micros=(), micro_count=None):
    """A Batch body in the engine's record format (engine/src/wal/codec.rs): no meter,
    battery or event rows."""
    m = list(micros)
    out = bytes([1]) + varint(gateway) + varint(seq) + signed(created_us)
    out += varint(len(m) if micro_count is None else micro_count)
    out += delta_column(r.serial for r in m)
    out += delta_column(r.time_us for r in m)
    for name in ("interval_s", "energy_j", "ac_power_w"):
        out += b"".join(varint(getattr(r, name)) for r in m)
    out += delta_column(r.dc_voltage_mv for r in m)
    out += b"".join(varint(r.dc_current_ma) for r in m)
    out += delta_column(r.ac_voltage_mv for r in m)
    out += delta_column(r.ac_frequency_mhz for r in m)
    out += b"".join(signed(r.temperature_c) for r in m)
    out += b"".join(varint(r.status) for r in m)
    return out + varint(0) + varint(0) + varint(0)


def parse_frames(buffer):
    """Complete server frames at the start of `buffer`: [(kind, fields)], bytes used."""
    frames, pos = [], 0
    while len(buffer) - pos >= 6:
        version, kind, length = struct.unpack_from("<BBI", buffer, pos)
        if len(buffer) - pos - 6 < length:
            break
        body = bytes(buffer[pos + 6:pos + 6 + length])
        pos += 6 + length
        if version != 1:
            frames.append(("?", f"version {version}"))
        elif kind in (WELCOME, ACK):
            frames.append((kind, struct.unpack("<Q", body[:8])[0]))
        elif kind == HEARTBEAT:
            frames.append((kind, struct.unpack("<q", body[:8])[0]))
        elif kind == ERROR:
            code, n = struct.unpack_from("<HH", body)
            frames.append((kind, (code, body[4:4 + n].decode(errors="replace"))))
        elif kind == TASK:
            frames.append((kind, struct.unpack_from("<Q", body)[0]))
        else:
            frames.append((kind, body))
    return frames, pos


# ---------------------------------------------------------------------------------------
# Connections

class Probe(QuicConnectionProtocol):
    """Records what the server does: handshake, frames on our stream, stream signals, and
    the close, as soon as the datagram carrying it arrives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handshake = False
        self.buffer = bytearray()
        self.frames = []
        self.fin = False
        self.stop_sending = None
        self.reset = None
        self.changed = asyncio.Event()
        self.stream = None

    def quic_event_received(self, event):
        if isinstance(event, events.HandshakeCompleted):
            self.handshake = True
        elif isinstance(event, events.StreamDataReceived):
            self.buffer += event.data
            parsed, used = parse_frames(self.buffer)
            del self.buffer[:used]
            self.frames += parsed
            self.fin = self.fin or event.end_stream
        elif isinstance(event, events.StopSendingReceived):
            self.stop_sending = event.error_code
        elif isinstance(event, events.StreamReset):
            self.reset = event.error_code
        self.changed.set()

    def datagram_received(self, data, addr):
        super().datagram_received(data, addr)
        self.changed.set()

    @property
    def closed(self):
        """The peer's (or our) CONNECTION_CLOSE, before the draining period ends."""
        return self._quic._close_event

    async def until(self, predicate, timeout):
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))
            except asyncio.TimeoutError:
                pass
        return True

    def send(self, data, fin=False, stream=None):
        if stream is None:
            if self.stream is None:
                self.stream = self._quic.get_next_available_stream_id()
            stream = self.stream
        self._quic.send_stream_data(stream, data, end_stream=fin)
        self.transmit()

    def of_kind(self, kind):
        return [value for k, value in self.frames if k == kind]

    async def hello(self, serial):
        """Hello, then the Welcome's acked mark (None if the server closed instead)."""
        self.send(hello(serial))
        await self.until(lambda: self.of_kind(WELCOME) or self.closed, 10)
        welcomes = self.of_kind(WELCOME)
        return welcomes[0] if welcomes else None

    async def wait_closed_by_server(self, timeout=15):
        await self.until(lambda: self.closed is not None, timeout)

    async def finish(self):
        self.close()
        try:
            await asyncio.wait_for(self.wait_closed(), 5)
        except asyncio.TimeoutError:
            pass
        if self._transport is not None:
            self._transport.close()


@dataclass
class Context:
    host: str
    port: int
    server_name: str
    ca: str
    cert: str
    key: str
    serial: int
    micro: int | None
    folder: str
    certs: dict = field(default_factory=dict)
    spares: dict = field(default_factory=dict)
    failures: int = 0
    results: int = 0


async def dial(ctx, cert="gateway", alpn=ALPN, wait=10.0):
    """Connects from 127.0.0.1; `cert` names one of ctx.certs (None: no certificate)."""
    config = QuicConfiguration(is_client=True, alpn_protocols=[alpn],
                               server_name=ctx.server_name, idle_timeout=60.0)
    config.load_verify_locations(cafile=ctx.ca)
    if cert is not None:
        certfile, keyfile = ctx.certs[cert]
        config.load_cert_chain(certfile, keyfile)
    connection = QuicConnection(configuration=config)
    loop = asyncio.get_running_loop()
    _, probe = await loop.create_datagram_endpoint(
        lambda: Probe(connection), local_addr=("127.0.0.1", 0))
    probe.connect((ctx.host, ctx.port))
    await probe.until(lambda: probe.handshake or probe.closed is not None, wait)
    return probe


# ---------------------------------------------------------------------------------------
# Outcomes

def describe_close(close):
    if close is None:
        return "connection still open"
    reason = f' "{close.reason_phrase}"' if close.reason_phrase else ""
    if close.frame_type is None:
        return f"application close {close.error_code} {CODES.get(close.error_code, '?')}{reason}"
    code = close.error_code
    if 0x100 <= code <= 0x1FF:
        alert = code - 0x100
        name = f"TLS alert {alert} {TLS_ALERTS.get(alert, '?')}"
    else:
        name = {STREAM_LIMIT_ERROR: "STREAM_LIMIT_ERROR"}.get(code, "transport error")
    return f"transport close 0x{code:x} ({name}){reason}"


def describe(probe, elapsed=None):
    parts = [] if probe.handshake else ["handshake not completed"]
    shown = []
    for kind, value in probe.frames:
        if kind == ERROR:
            shown.append(f"Error frame {value[0]} {CODES.get(value[0], '?')}")
        elif kind in (WELCOME, ACK):
            shown.append(f"{KIND_NAMES[kind]}({value})")
        elif kind == HEARTBEAT:
            shown.append("Heartbeat echo")
        else:
            shown.append(f"{KIND_NAMES.get(kind, kind)} frame")
    if shown:
        parts.append(", ".join(shown))
    if probe.stop_sending is not None:
        parts.append(f"STOP_SENDING {probe.stop_sending}")
    if probe.fin:
        parts.append("server stream finished")
    parts.append(describe_close(probe.closed))
    if elapsed is not None:
        parts.append(f"after {elapsed:.1f} s")
    return "; ".join(parts)


def report(ctx, name, ok, expected, seen):
    ctx.results += 1
    if ok:
        print(f"ok {name}: {seen}", flush=True)
    else:
        ctx.failures += 1
        print(f"FAIL {name}: expected {expected}; saw {seen}", flush=True)


def app_close(probe, code, welcome):
    """PROTOCOL.md, Errors: the connection is closed with the code as the QUIC application
    close code and a message as the reason; an Error frame, if it arrives, says the same;
    no Welcome before Hello."""
    close = probe.closed
    if close is None or close.frame_type is not None or close.error_code != code:
        return False
    if code != 0 and not close.reason_phrase:
        return False
    if any(value[0] != code for value in probe.of_kind(ERROR)):
        return False
    if not welcome and probe.of_kind(WELCOME):
        return False
    return True


def expected_close(code):
    return f"application close {code} {CODES[code]} with a reason (and no other Error code)"


# ---------------------------------------------------------------------------------------
# Scenarios

async def tls_refused(ctx, name, cert, alpn=ALPN):
    """PROTOCOL.md, Transport: a client without a certificate or with one from another CA
    fails the TLS handshake; ALPN is sunfleet/1."""
    probe = await dial(ctx, cert=cert, alpn=alpn)
    if probe.closed is None and probe.handshake:
        # TLS 1.3: the client finishes first; the server judges its certificate after.
        probe.send(hello(ctx.serial))
    await probe.wait_closed_by_server(10)
    close = probe.closed
    ok = (close is not None and close.frame_type is not None
          and 0x100 <= close.error_code <= 0x1FF and not probe.frames)
    report(ctx, name, ok, "the TLS handshake refused (a CRYPTO_ERROR transport close, "
           "no frame from the server)", describe(probe))
    await probe.finish()


async def admission_refused(ctx, name, cert, code):
    """PROTOCOL.md, Transport: the serial is read from the verified certificate and looked
    up on every connection; unknown -> 6 at once; no serial in it -> 14."""
    probe = await dial(ctx, cert=cert)
    if probe.closed is None:
        probe.send(hello(ctx.serial))
    await probe.wait_closed_by_server(10)
    report(ctx, name, app_close(probe, code, welcome=False), expected_close(code),
           describe(probe))
    await probe.finish()


async def before_hello(ctx, name, data, code, fin=False):
    """The first bytes of the connection's stream are `data`."""
    probe = await dial(ctx)
    probe.send(data, fin=fin)
    await probe.wait_closed_by_server()
    report(ctx, name, app_close(probe, code, welcome=False), expected_close(code),
           describe(probe))
    await probe.finish()


async def after_hello(ctx, name, make, code, fin=False):
    """Hello, Welcome, then `make(acked)`'s bytes."""
    probe = await dial(ctx)
    acked = await probe.hello(ctx.serial)
    if acked is not None:
        probe.send(make(acked), fin=fin)
        await probe.wait_closed_by_server()
    ok = acked is not None and app_close(probe, code, welcome=True)
    report(ctx, name, ok, "Welcome, then " + expected_close(code), describe(probe))
    await probe.finish()


async def still_open_after(ctx, name, make, why, acked_batch=False):
    """Hello, Welcome, a frame the server takes without complaint, then a Heartbeat: the
    echo shows the connection is still served; then our FIN ends it normally (code 0)."""
    probe = await dial(ctx)
    acked = await probe.hello(ctx.serial)
    ok = False
    if acked is not None:
        probe.send(make(acked) + heartbeat(4242))
        await probe.until(lambda: probe.of_kind(HEARTBEAT) or probe.closed, 10)
        if acked_batch:
            await probe.until(lambda: probe.of_kind(ACK) or probe.closed, 10)
        echoed = probe.of_kind(HEARTBEAT) == [4242]
        probe.send(b"", fin=True)
        await probe.wait_closed_by_server(10)
        ok = (echoed and app_close(probe, 0, welcome=True) and not probe.of_kind(ERROR)
              and probe.of_kind(ACK) == ([acked + 1] if acked_batch else []))
    ack = ", Ack(n+1)" if acked_batch else ""
    report(ctx, name, ok, f"{why}: Welcome(n){ack}, Heartbeat echo, then a normal close 0 "
           "after our FIN", describe(probe))
    await probe.finish()


async def stream_reset(ctx, name, before_hello):
    """The gateway abandons its stream (RESET_STREAM) in the middle of a frame. PROTOCOL.md
    names no error for a gateway that gives up: the server ends the connection as for one
    that went away (close 0), before the Hello as after it; it is not a server failure
    (10 Internal)."""
    probe = await dial(ctx)
    acked = None if before_hello else await probe.hello(ctx.serial)
    if before_hello or acked is not None:
        probe.send((hello(ctx.serial) if before_hello else valid_batch(ctx, acked + 1))[:7])
        await asyncio.sleep(0.2)
        probe._quic.reset_stream(probe.stream, 77)
        probe.transmit()
        await probe.wait_closed_by_server(10)
    ok = (before_hello or acked is not None) and app_close(probe, 0, welcome=not before_hello)
    report(ctx, name, ok, "a normal close 0 (no error blamed on either side)", describe(probe))
    await probe.finish()


async def too_many_streams(ctx, name, unidirectional):
    """PROTOCOL.md, Transport: one bidirectional stream and no unidirectional ones per
    connection; opening more than the server allows is a QUIC STREAM_LIMIT_ERROR
    (RFC 9000, 4.6). aioquic respects the limits, so they are lifted here on purpose."""
    probe = await dial(ctx)
    acked = await probe.hello(ctx.serial)
    if acked is not None:
        quic = probe._quic
        quic._remote_max_streams_bidi = 16
        quic._remote_max_streams_uni = 16
        extra = quic.get_next_available_stream_id(is_unidirectional=unidirectional)
        probe.send(heartbeat(1), stream=extra)
        await probe.wait_closed_by_server(10)
    close = probe.closed
    ok = (acked is not None and close is not None and close.frame_type is not None
          and close.error_code == STREAM_LIMIT_ERROR)
    report(ctx, name, ok, "Welcome, then a transport close 0x4 (STREAM_LIMIT_ERROR)",
           describe(probe))
    await probe.finish()


def reading(ctx, serial=None):
    now = int(time.time() * 1e6)
    return Micro(serial=serial if serial is not None else ctx.micro,
                 time_us=now - now % 300_000_000)


def valid_batch(ctx, seq, micros=None):
    if micros is None:
        micros = [reading(ctx)] if ctx.micro is not None else []
    return frame(BATCH, batch_body(ctx.serial, seq, int(time.time() * 1e6), micros))


async def batch_then_garbage(ctx, name):
    """PROTOCOL.md, Errors: nothing the gateway sent before the bad frame is lost: batches
    already appended are still stored; the next Welcome says how far the server got."""
    probe = await dial(ctx)
    acked = await probe.hello(ctx.serial)
    ok, second = False, None
    if acked is not None:
        probe.send(valid_batch(ctx, acked + 1) + b"\xffgarbage")
        await probe.wait_closed_by_server()
        closed_ok = app_close(probe, 1, welcome=True)
        acks_ok = all(seq == acked + 1 for seq in probe.of_kind(ACK))
        await probe.finish()
        again = await dial(ctx)
        second = await again.hello(ctx.serial)
        again.send(b"", fin=True)
        await again.wait_closed_by_server(10)
        await again.finish()
        ok = closed_ok and acks_ok and second == acked + 1
    seen = describe(probe) + f"; next Welcome({second})"
    report(ctx, name, ok, "Welcome(n), then application close 1 UnsupportedVersion; the "
           "next Welcome(n+1): the batch before the garbage was stored", seen)
    if acked is None:
        await probe.finish()


async def healthy(ctx, name):
    """PROTOCOL.md, Transport and sessions: Hello -> Welcome(acked); a batch after it is
    acknowledged once durable; the same batch again is a replay, acknowledged with the
    current mark; a Heartbeat is echoed; our FIN ends the connection normally."""
    probe = await dial(ctx)
    acked = await probe.hello(ctx.serial)
    ok = False
    if acked is not None:
        batch = valid_batch(ctx, acked + 1)
        probe.send(batch)
        await probe.until(lambda: probe.of_kind(ACK) or probe.closed, 15)
        probe.send(batch)
        await probe.until(lambda: len(probe.of_kind(ACK)) >= 2 or probe.closed, 15)
        probe.send(heartbeat(777))
        await probe.until(lambda: probe.of_kind(HEARTBEAT) or probe.closed, 10)
        probe.send(b"", fin=True)
        await probe.wait_closed_by_server(10)
        ok = (probe.of_kind(ACK) == [acked + 1, acked + 1]
              and probe.of_kind(HEARTBEAT) == [777]
              and app_close(probe, 0, welcome=True) and not probe.of_kind(ERROR))
    report(ctx, name, ok, "Welcome(n), Ack(n+1), Ack(n+1) for the replay, Heartbeat echo, "
           "then a normal close 0 after our FIN", describe(probe))
    await probe.finish()
    return ok


async def silent(ctx, name, cert, send):
    """PROTOCOL.md, Errors: code 12 when no stream or Hello arrives within the Hello
    timeout (10 s), or a started frame is not finished within the frame timeout (30 s)."""
    began = time.monotonic()
    probe = await dial(ctx, cert=cert)
    limit = HELLO_TIMEOUT_S
    if send == "hello-then-stalled-frame":
        acked = await probe.hello(ctx.spares[cert])
        if acked is not None:
            began = time.monotonic()
            probe.send(frame(BATCH, b"\x01" * 100)[:16])
        limit = FRAME_TIMEOUT_S
    elif send is not None:
        probe.send(send)
    await probe.wait_closed_by_server(limit + 15)
    elapsed = time.monotonic() - began
    ok = app_close(probe, 12, welcome=True) and limit - 1 <= elapsed <= limit + 10
    report(ctx, name, ok, f"{expected_close(12)} about {limit} s later", describe(probe, elapsed))
    await probe.finish()


async def wait_ready(ctx, deadline_s=60):
    """The server may still be starting: a well-formed Hello until it is welcomed."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        probe = await dial(ctx, wait=2.0)
        if probe.handshake and probe.closed is None:
            acked = await probe.hello(ctx.serial)
            probe.send(b"", fin=True)
            await probe.wait_closed_by_server(5)
            await probe.finish()
            if acked is not None:
                report(ctx, "ready", True, "", f"Welcome({acked})")
                return True
        last = describe(probe)
        await probe.finish()
        await asyncio.sleep(0.5)
    report(ctx, "ready", False, "a Welcome within 60 s", last)
    return False


# ---------------------------------------------------------------------------------------
# Certificates

def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(folder, stem, issuer_cert, issuer_key, subject, expired=False):
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=365)
    if expired:
        not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                            False, False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    cert = builder.sign(issuer_key, hashes.SHA256())
    return save(folder, stem, cert, key)


def save(folder, stem, cert, key):
    certfile = os.path.join(folder, stem + ".pem")
    keyfile = os.path.join(folder, stem + ".key")
    with open(certfile, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return certfile, keyfile


def gateway_name(common_name):
    attributes = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Sunfleet gateway")]
    if common_name is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def foreign_ca(name):
    """A CA of our own, named `name`."""
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def prepare_certs(ctx, ca_key_path, spares):
    with open(ctx.ca, "rb") as f:
        fleet_cert = x509.load_pem_x509_certificate(f.read())
    with open(ca_key_path, "rb") as f:
        fleet_key = serialization.load_pem_private_key(f.read(), password=None)
    serial = f"{ctx.serial:012d}"
    ctx.certs["gateway"] = (ctx.cert, ctx.key)
    # A CA named like the real fleet CA (only its key differs), and one named otherwise.
    other_cert, other_key = foreign_ca(fleet_cert.subject)
    ctx.certs["foreign"] = make_cert(ctx.folder, "foreign", other_cert, other_key,
                                     gateway_name(serial))
    unknown_cert, unknown_key = foreign_ca(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "Some other fleet CA")]))
    ctx.certs["unknown-ca"] = make_cert(ctx.folder, "unknown-ca", unknown_cert, unknown_key,
                                        gateway_name(serial))
    ctx.certs["expired"] = make_cert(ctx.folder, "expired", fleet_cert, fleet_key,
                                     gateway_name(serial), expired=True)
    ctx.certs["unregistered"] = make_cert(ctx.folder, "unregistered", fleet_cert, fleet_key,
                                          gateway_name("999999999999"))
    ctx.certs["not-a-serial"] = make_cert(ctx.folder, "not-a-serial", fleet_cert, fleet_key,
                                          gateway_name("solar-gateway-7"))
    ctx.certs["no-common-name"] = make_cert(ctx.folder, "no-cn", fleet_cert, fleet_key,
                                            gateway_name(None))
    for i, spare in enumerate(spares):
        ctx.certs[f"spare{i}"] = make_cert(ctx.folder, f"spare{i}", fleet_cert, fleet_key,
                                           gateway_name(f"{spare:012d}"))
        ctx.spares[f"spare{i}"] = spare


# ---------------------------------------------------------------------------------------

async def main_lane(ctx):
    s = ctx.serial
    other = s + 1 if s < 999_999_999_999 else s - 1
    await tls_refused(ctx, "tls-no-client-certificate", None)
    await tls_refused(ctx, "tls-certificate-from-another-ca", "foreign")
    await tls_refused(ctx, "tls-certificate-from-unknown-ca", "unknown-ca")
    await tls_refused(ctx, "tls-expired-certificate", "expired")
    await tls_refused(ctx, "tls-wrong-alpn", "gateway", alpn="h3")
    await admission_refused(ctx, "certificate-unregistered-serial", "unregistered", 6)
    await admission_refused(ctx, "certificate-common-name-not-a-serial", "not-a-serial", 14)
    await admission_refused(ctx, "certificate-without-common-name", "no-common-name", 14)

    await before_hello(ctx, "first-bytes-garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    await before_hello(ctx, "first-frame-version-2", frame(HELLO, b"\0" * 12, version=2), 1)
    await before_hello(ctx, "first-frame-unknown-kind-9", frame(9, b""), 2)
    await before_hello(ctx, "first-frame-unknown-kind-0", frame(0, b"\0\0\0\0"), 2)
    await before_hello(ctx, "first-frame-length-over-4mib",
                       struct.pack("<BBI", 1, HELLO, MAX_BODY + 1) + b"\0" * 64, 3)
    await before_hello(ctx, "first-frame-length-4gib",
                       struct.pack("<BBI", 1, BATCH, 0xFFFF_FFFF) + b"\0" * 64, 3)
    await before_hello(ctx, "first-frame-heartbeat", heartbeat(1), 5)
    await before_hello(ctx, "first-frame-valid-batch", valid_batch(ctx, 1, micros=[]), 5)
    await before_hello(ctx, "hello-short-body", frame(HELLO, b"\x01\x02\x03"), 4)
    await before_hello(ctx, "hello-trailing-bytes",
                       frame(HELLO, struct.pack("<Q", s) + text("fw") + text("sw") + b"!!"), 4)
    await before_hello(ctx, "hello-bad-utf8",
                       frame(HELLO, struct.pack("<Q", s) + text(b"\xff\xfe") + text("sw")), 4)
    await before_hello(ctx, "hello-text-over-1kib",
                       frame(HELLO, struct.pack("<Q", s) + text("x" * (MAX_TEXT + 1)) + text("")),
                       4)
    await before_hello(ctx, "hello-serial-13-digits", hello(1_000_000_000_000), 4)
    await before_hello(ctx, "hello-serial-mismatch", hello(other), 8)
    await before_hello(ctx, "hello-truncated-then-fin", hello(s)[:12], 4, fin=True)
    await before_hello(ctx, "header-truncated-then-fin", hello(s)[:3], 4, fin=True)
    await before_hello(ctx, "empty-stream-fin", b"", 0, fin=True)

    await after_hello(ctx, "after-hello-garbage", lambda a: b"\x00garbage", 1)
    await after_hello(ctx, "after-hello-unknown-kind-200", lambda a: frame(200, b"x"), 2)
    await after_hello(ctx, "after-hello-length-over-4mib",
                      lambda a: struct.pack("<BBI", 1, BATCH, MAX_BODY + 1) + b"\0" * 64, 3)
    await after_hello(ctx, "batch-garbage-body", lambda a: frame(BATCH, b"\x01\xff" * 20), 4)
    await after_hello(ctx, "batch-unknown-body-version",
                      lambda a: frame(BATCH, b"\x07" + batch_body(s, a + 1, 0)[1:]), 4)
    await after_hello(ctx, "batch-trailing-bytes",
                      lambda a: frame(BATCH, batch_body(s, a + 1, 0) + b"\0"), 4)
    await after_hello(ctx, "batch-row-count-beyond-body",
                      lambda a: frame(BATCH, batch_body(s, a + 1, 0, micro_count=1_000_000)), 4)
    await after_hello(ctx, "batch-reading-serial-13-digits",
                      lambda a: frame(BATCH, batch_body(s, a + 1, 0,
                                                        [reading(ctx, 10**12)])), 4)
    await after_hello(ctx, "batch-value-out-of-range",
                      lambda a: frame(BATCH, batch_body(s, a + 1, 0, [Micro(
                          serial=482_100_000_000, time_us=0, interval_s=70_000)])), 4)
    # A gateway whose clock is wrong: times the engine could not file under a day.
    for name, time_us in [("i64-max", 2**63 - 1), ("i64-min", -(2**63)),
                          ("year-10000", 253_402_300_800_000_000),
                          ("before-2000", 946_684_799_999_999)]:
        await after_hello(ctx, f"batch-reading-time-{name}",
                          lambda a, t=time_us: frame(BATCH, batch_body(s, a + 1, 0, [
                              replace(reading(ctx), time_us=t)])), 4)
    await after_hello(ctx, "batch-names-another-gateway",
                      lambda a: frame(BATCH, batch_body(other, a + 1, 0)), 4)
    await after_hello(ctx, "batch-sequence-0", lambda a: frame(BATCH, batch_body(s, 0, 0)), 4)
    await after_hello(ctx, "batch-truncated-then-fin",
                      lambda a: valid_batch(ctx, a + 1)[:-3], 4, fin=True)
    await after_hello(ctx, "task-result-unknown-state",
                      lambda a: frame(TASK_RESULT, struct.pack("<QB", 1, 9) + text("?")), 4)
    await after_hello(ctx, "error-frame-unknown-code",
                      lambda a: frame(ERROR, struct.pack("<H", 999) + text("?")), 4)
    await after_hello(ctx, "heartbeat-short-body", lambda a: frame(HEARTBEAT, b"\1\2\3"), 4)
    await after_hello(ctx, "second-hello", lambda a: hello(s), 13)
    await after_hello(ctx, "gateway-sends-welcome",
                      lambda a: frame(WELCOME, struct.pack("<Q", 0)), 13)
    await after_hello(ctx, "gateway-sends-ack", lambda a: frame(ACK, struct.pack("<Q", a)), 13)
    await after_hello(ctx, "gateway-sends-task",
                      lambda a: frame(TASK, struct.pack("<QB", 1, 3) + text("{}")), 13)
    await batch_then_garbage(ctx, "batch-then-garbage")

    await still_open_after(ctx, "task-result-for-unknown-task",
                           lambda a: frame(TASK_RESULT, struct.pack("<QB", 987_654_321, 2)
                                           + text("done")),
                           "a report for a task that is not open is ignored")
    await still_open_after(ctx, "gateway-error-frame",
                           lambda a: frame(ERROR, struct.pack("<H", 10) + text("disk full")),
                           "an Error frame from a gateway is logged")
    await still_open_after(ctx, "batch-from-unregistered-device",
                           lambda a: valid_batch(ctx, a + 1, [reading(ctx, 999_999_999_990)]),
                           "a batch is Malformed only for the reasons listed",
                           acked_batch=True)
    await stream_reset(ctx, "stream-reset-before-hello", before_hello=True)
    await stream_reset(ctx, "stream-reset-mid-batch", before_hello=False)
    await too_many_streams(ctx, "second-bidirectional-stream", unidirectional=False)
    await too_many_streams(ctx, "unidirectional-stream", unidirectional=True)
    await healthy(ctx, "healthy-while-others-stall")


async def run(args):
    host, _, port = args.addr.rpartition(":")
    with open(args.cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    with tempfile.TemporaryDirectory(prefix="foreign-quic-") as folder:
        ctx = Context(host=host, port=int(port), server_name=args.server_name, ca=args.ca,
                      cert=args.cert, key=args.key, serial=int(common_name), micro=args.micro,
                      folder=folder)
        prepare_certs(ctx, args.ca_key, args.spare_serial)
        if not await wait_ready(ctx):
            return ctx
        lanes = [main_lane(ctx),
                 silent(ctx, "silent-no-stream", "spare0", None),
                 silent(ctx, "hello-header-then-stall", "spare1", b"\x01\x01\x14")]
        if args.slow:
            async def slow_lane():
                # After the silent scenario on the same gateway (a new connection of a
                # gateway replaces its older one).
                await asyncio.sleep(HELLO_TIMEOUT_S + 3)
                await silent(ctx, "frame-started-then-stall", "spare0",
                             "hello-then-stalled-frame")
            lanes.append(slow_lane())
        await asyncio.gather(*lanes)
        await healthy(ctx, "healthy-after-all")
        return ctx


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--ca-key", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--spare-serial", type=int, action="append", required=True)
    parser.add_argument("--micro", type=int)
    parser.add_argument("--slow", action="store_true")
    args = parser.parse_args()
    if len(args.spare_serial) != 2:
        parser.error("give --spare-serial twice")
    try:
        ctx = asyncio.run(asyncio.wait_for(run(args), 300))
    except asyncio.TimeoutError:
        print("FAIL overall: the scenarios did not finish within 300 s", flush=True)
        sys.exit(1)
    print(f"summary: {ctx.results} scenarios, {ctx.results - ctx.failures} as documented, "
          f"{ctx.failures} not", flush=True)
    sys.exit(1 if ctx.failures else 0)


if __name__ == "__main__":
    main()
