import gc
from collections.abc import Iterator

import pytest

from worker.gctune import YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_tune_gc_raises_only_the_young_threshold(restore_gc: None) -> None:
    gc.set_threshold(700, 11, 12)
    tune_gc()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 11, 12)
