import sys
import threading
import time

import pytest

from sslstudio.core.memory import release_free_memory


def _anonymous_mib() -> int:
    time.sleep(1.2)  # the kernel folds each thread's page counts into /proc's figure about once a second
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("RssAnon"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator, on Linux")
def test_memory_a_worker_thread_freed_goes_back_to_the_system():
    kept = []

    def job():
        blocks = [bytes(1000) + bytes([i % 251]) for i in range(200_000)]  # malloc'd, not pymalloc's
        kept.append(blocks[-1])  # one block at the end: the allocator cannot give back on its own
        del blocks

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    before = _anonymous_mib()
    assert release_free_memory()
    assert _anonymous_mib() < before - 100
