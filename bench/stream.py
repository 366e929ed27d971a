"""Stream benchmark: bulk bytes through the SSH transport vs the OpenSSH client.

Run as root (it starts a throwaway sshd on loopback, like the tests):

    .venv/bin/python -m bench.stream [--mb 512]

Moves the same file (random, so nothing compresses it) out of and into the
site, once through ``Transport.stream_out``/``stream_in`` and once through
``ssh host cat`` with OpenSSH's own client, and prints throughput, the ratio
and the process's peak RSS. Machines are noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maintainer.ssh import SSHTransport  # noqa: E402
from tests.servers.sshd import SSHServer, running_sshd  # noqa: E402

MB = 1024 * 1024


def openssh(server: SSHServer, command: str, **kwargs: object) -> float:
    argv = [
        "ssh", "-p", str(server.port), "-i", str(server.key_file),
        "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", f"{server.user}@{server.host}", command,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the file moved each way")
    size = parser.parse_args().mb * MB

    with running_sshd() as server:
        blob = server.workspace("stream-bench") / "blob"
        with blob.open("wb") as fh:
            for _ in range(size // MB):
                fh.write(os.urandom(MB))
        ssh = SSHTransport.from_vars(server.host, server.port, server.user, server.site_vars())
        ssh.connect()

        started = time.perf_counter()
        received = 0
        with ssh.stream_out(["cat", str(blob)]) as out:
            while chunk := out.read(MB):
                received += len(chunk)
        ours_out = time.perf_counter() - started
        assert out.result is not None and out.result.ok, out.result
        assert received == size

        started = time.perf_counter()
        with ssh.stream_in(["sh", "-c", "cat > /dev/null"]) as stdin, blob.open("rb") as fh:
            while chunk := fh.read(MB):
                stdin.write(chunk)
        ours_in = time.perf_counter() - started
        assert stdin.result is not None and stdin.result.ok, stdin.result
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        ssh.close()

        theirs_out = openssh(server, f"cat {blob}", stdout=subprocess.DEVNULL)
        with blob.open("rb") as fh:
            theirs_in = openssh(server, "cat > /dev/null", stdin=fh)

    mb = size / MB
    print(f"{mb:.0f} MB of random bytes each way over loopback SSH")
    print(f"{'':14}{'maintainer':>14}{'OpenSSH ssh':>14}{'ratio':>8}")
    for name, ours, theirs in (("site -> us", ours_out, theirs_out), ("us -> site", ours_in, theirs_in)):
        print(f"{name:14}{mb / ours:>10.0f} MB/s{mb / theirs:>10.0f} MB/s{theirs / ours:>7.2f}x")
    print(f"peak RSS of this process (interpreter included): {peak / MB:.0f} MB")


if __name__ == "__main__":
    main()
