#!/usr/bin/env python3
"""torchrun for a torch built without libuv (Debian 13's and newer python3-torch).

Usage: python3 scripts/torchrun.py [torchrun arguments...]
e.g.   python3 scripts/torchrun.py --no-python --nproc-per-node 2 \
           contaccum train --config run.yaml --output runs/a

torch >= 2.4 makes libuv the default TCPStore, and every rendezvous of
torchrun (static, c10d, the agent's store) creates its store with that
default; USE_LIBUV=0 reaches only some of them. Debian builds torch without
libuv, so its torchrun stops with "use_libuv was requested but PyTorch was
build without libuv support" before starting a worker. This runs torchrun
unchanged except that, when the default store cannot be made here, a store
created without an explicit use_libuv gets the classic one (which contaccum's
workers use too: include/contaccum/core/torch_compat.h).
"""
import os
import sys

import torch.distributed as dist


def default_store_works():
    try:
        dist.TCPStore("127.0.0.1", 0, 1, True, wait_for_workers=False)
        return True
    except RuntimeError as error:
        if "libuv" not in str(error):
            raise
        return False


def classic_by_default(store_class):
    class ClassicTCPStore(store_class):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("use_libuv", False)
            super().__init__(*args, **kwargs)

    ClassicTCPStore.__name__ = ClassicTCPStore.__qualname__ = "TCPStore"
    return ClassicTCPStore


if __name__ == "__main__":
    if not default_store_works():
        # Before torch.distributed.run is imported: its rendezvous modules
        # bind the name TCPStore when they are imported.
        dist.TCPStore = classic_by_default(dist.TCPStore)
        # The paths that read USE_LIBUV pass use_libuv explicitly.
        os.environ.setdefault("USE_LIBUV", "0")
    from torch.distributed.run import main

    sys.exit(main())
