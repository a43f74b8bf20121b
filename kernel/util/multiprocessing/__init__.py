"""``microray.util.multiprocessing`` (Ray's ``ray.util.multiprocessing``): Python's
``multiprocessing.Pool`` API over a pool of actors, so a program that uses
``multiprocessing.Pool`` runs on a microray cluster by changing its import.

    from microray.util.multiprocessing import Pool

    with Pool() as pool:                 # one actor per CPU of the cluster
        print(pool.map(f, range(100)))

``TimeoutError`` and ``JoinableQueue`` are the standard library's, as in Ray.
"""

from __future__ import annotations

from multiprocessing import JoinableQueue, TimeoutError

from microray.util.multiprocessing.pool import Pool

__all__ = ["JoinableQueue", "Pool", "TimeoutError"]
