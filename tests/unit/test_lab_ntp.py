"""The lab's SNTP server answers a real client request over UDP with sane NTP fields."""
from __future__ import annotations

import socket
import struct
import time

import pytest

from gldeploy.errors import DeployError
from gldeploy.lab.ntp import NTP_EPOCH_OFFSET, SntpServer, reply


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_answers_a_client() -> None:
    server = SntpServer("127.0.0.1", _free_udp_port())
    server.start()
    try:
        request = bytearray(48)
        request[0] = (4 << 3) | 3  # v4, client
        request[40:48] = struct.pack("!II", 0x12345678, 0x9ABCDEF0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(bytes(request), ("127.0.0.1", server.port))
            data, _ = client.recvfrom(512)
    finally:
        server.stop()
    assert len(data) == 48
    assert data[0] & 0x7 == 4 and (data[0] >> 3) & 0x7 == 4 and data[0] >> 6 == 0  # server, v4, no leap alarm
    assert 1 <= data[1] < 16  # stratum
    assert data[24:32] == struct.pack("!II", 0x12345678, 0x9ABCDEF0)  # origin = our transmit
    transmit = struct.unpack("!I", data[40:44])[0] - NTP_EPOCH_OFFSET
    assert abs(transmit - time.time()) < 5
    assert server.answered == 1


def test_ignores_non_client_packets() -> None:
    assert reply(b"\x00" * 10, 0.0, 0.0) is None
    assert reply(bytes([(4 << 3) | 4]) + b"\x00" * 47, 0.0, 0.0) is None


def test_port_in_use_is_one_sentence() -> None:
    port = _free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        with pytest.raises(DeployError, match="cannot serve NTP"):
            SntpServer("127.0.0.1", port).start()
