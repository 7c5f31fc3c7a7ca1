"""What a 150 MB request body costs the server: its resident memory and its disk.

Starts ``callbridge demo`` (the one next to the running Python) in its own process, then sends,
over real sockets and signed in as nobody: a 150 MB JSON body to ``/me/complaints`` streamed
with chunked encoding, and a 150 MB multipart body to ``/login`` (declared size, then sent).
It reads the server's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``) before and
after, the status of each answer, how many bytes were sent before it came, and how much the
temporary folder grew (a multipart parser spools big parts there).

    .venv/bin/python bench/body_limits.py            # this tree
    /path/to/other/.venv/bin/python bench/body_limits.py   # another checkout, for comparison
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SIZE = 150 * 1024 * 1024
CHUNK = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def send(port: int, path: str, content_type: str, chunked: bool) -> tuple[int, int]:
    """Send SIZE bytes until the server answers; (status, bytes sent before the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {SIZE}"
        head = f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: {content_type}\r\n"
        head += f"{length}\r\n\r\n"
        sock.sendall(head.encode())
        sent = 0
        body = b"x" * CHUNK
        while sent < SIZE:
            if select.select([sock], [], [], 0)[0]:
                break
            piece = f"{CHUNK:x}\r\n".encode() + body + b"\r\n" if chunked else body
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += CHUNK
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        answer = sock.recv(4096)
        return int(answer.split(b" ", 2)[1]), sent


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="body-limits-"))
    spool = work / "tmp"
    spool.mkdir()
    port = free_port()
    callbridge = Path(sys.executable).with_name("callbridge")
    server = subprocess.Popen(
        [str(callbridge), "demo", "--port", str(port), "--data-dir", str(work / "data")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"TMPDIR": str(spool)},
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)  # noqa: S310
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(2)
        before = peak_rss_mb(server.pid)
        json_status, json_sent = send(port, "/me/complaints", "application/json", chunked=True)
        after_json = peak_rss_mb(server.pid)
        multipart = "multipart/form-data; boundary=x"
        form_status, form_sent = send(port, "/login", multipart, chunked=False)
        time.sleep(1)
        after_form = peak_rss_mb(server.pid)
        spooled = folder_mb(spool)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        "peak_rss_before_mb": round(before, 1),
        "json_150mb_status": json_status,
        "json_sent_before_answer_mb": json_sent / CHUNK,
        "peak_rss_growth_after_json_mb": round(after_json - before, 1),
        "multipart_150mb_status": form_status,
        "multipart_sent_before_answer_mb": form_sent / CHUNK,
        "peak_rss_growth_after_multipart_mb": round(after_form - before, 1),
        "spooled_to_disk_mb": round(spooled, 1),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
