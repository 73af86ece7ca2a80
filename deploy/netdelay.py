#!/usr/bin/env python3
"""A delay line for deploy/netns-cluster.sh, used where the kernel has no tc netem.

It opens a TUN device; every IP packet the router namespace routes into that device is held for
DELAY milliseconds (and dropped with probability LOSS) and then written back, after which the
kernel forwards it to its destination. Constant delay keeps the packets in order.

    netdelay.py DEVICE DELAY_MS [LOSS_FRACTION]

Prints "ready" once the device exists; runs until killed.
"""
import collections
import fcntl
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print("usage: netdelay.py DEVICE DELAY_MS [LOSS_FRACTION]", file=sys.stderr)
        return 2
    name, delay = sys.argv[1], float(sys.argv[2]) / 1000.0
    loss = float(sys.argv[3]) if len(sys.argv) == 4 else 0.0
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    print("ready", flush=True)
    held = collections.deque()  # (due time, packet), in arrival order
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        select.select([fd], [], [], timeout)
        while True:
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                break
            if loss == 0.0 or random.random() >= loss:
                held.append((time.monotonic() + delay, packet))
        now = time.monotonic()
        while held and held[0][0] <= now:
            try:
                os.write(fd, held[0][1])
            except BlockingIOError:
                break  # the kernel's queue is full: retry this packet on the next pass
            held.popleft()


if __name__ == "__main__":
    sys.exit(main())
