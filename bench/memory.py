"""Peak memory of this process and every process it started (Ray's raylet, workers, ...)."""

from __future__ import annotations

import threading
import time

import psutil


class PeakMemory:
    """Samples the process tree's proportional set size (PSS: shared pages such as Ray's
    object store counted once) and the machine's used memory, in a background thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_tree_gb = 0.0
        self.peak_used_gb = 0.0
        self.base_used_gb = psutil.virtual_memory().used / 2**30
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_pss(self) -> float:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total / 2**30

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_tree_gb = max(self.peak_tree_gb, self._tree_pss())
            self.peak_used_gb = max(self.peak_used_gb, psutil.virtual_memory().used / 2**30)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> str:
        return (f"peak memory: {self.peak_tree_gb:.2f} GB PSS over the driver and its Ray "
                f"processes; machine used memory peaked {self.peak_used_gb - self.base_used_gb:.2f}"
                f" GB above its starting {self.base_used_gb:.2f} GB")
