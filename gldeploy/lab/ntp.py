"""A small SNTP server (RFC 4330) serving this host's clock to the air-gapped lab's VMs.

An air-gapped site has its own time source; in the lab that is the host, on the private network.
systemd-timesyncd in the VMs syncs against it, so the pre-install clock check passes for real.
"""
from __future__ import annotations

import socket
import struct
import threading
import time

from gldeploy.errors import DeployError
from gldeploy.lab.proc import say

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
STRATUM = 3
PRECISION = -20  # about a microsecond


def ntp_timestamp(unix: float) -> bytes:
    """64-bit NTP timestamp (seconds since 1900, 32-bit fraction)."""
    seconds = int(unix) + NTP_EPOCH_OFFSET
    fraction = int((unix - int(unix)) * (1 << 32)) & 0xFFFFFFFF
    return struct.pack("!II", seconds & 0xFFFFFFFF, fraction)


def reply(request: bytes, received: float, now: float) -> bytes | None:
    """Server reply (mode 4) to a client request (mode 3); None for anything else."""
    if len(request) < 48:
        return None
    version, mode = (request[0] >> 3) & 0x7, request[0] & 0x7
    if mode != 3 or version not in (3, 4):
        return None
    header = struct.pack("!BBbb", (0 << 6) | (version << 3) | 4, STRATUM, request[2], PRECISION)
    root_delay, root_dispersion = 0, int(0.01 * 65536)
    body = struct.pack("!II4s", root_delay, root_dispersion, b"LOCL")
    return header + body + ntp_timestamp(now - 1) + request[40:48] + ntp_timestamp(received) + ntp_timestamp(now)


class SntpServer:
    """UDP SNTP server on ip:port in a daemon thread; stop() closes it."""

    def __init__(self, ip: str, port: int = 123) -> None:
        self.ip, self.port = ip, port
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.answered = 0

    def start(self) -> None:
        """Bind and serve; DeployError (one sentence) if the port is taken."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.ip, self.port))
        except OSError as exc:
            sock.close()
            raise DeployError(f"cannot serve NTP to the lab on {self.ip}:{self.port} ({exc.strerror}); "
                              f"stop whatever uses UDP port {self.port} on that address") from None
        sock.settimeout(0.5)
        self.sock = sock
        self.thread = threading.Thread(target=self._serve, daemon=True, name="gl-lab-sntp")
        self.thread.start()
        say(f"lab NTP (SNTP, host clock) on {self.ip}:{self.port}/udp")

    def _serve(self) -> None:
        while self.sock is not None:
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            received = time.time()
            answer = reply(data, received, time.time())
            if answer and self.sock is not None:
                self.sock.sendto(answer, peer)
                self.answered += 1

    def stop(self) -> None:
        """Stop serving and close the socket."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        if self.thread is not None:
            self.thread.join(timeout=2)
