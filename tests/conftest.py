import numpy as np
import pytest

import fastct


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def archive_path(tmp_path):
    return tmp_path / "study.h5"


@pytest.fixture(autouse=True)
def _reset_fastct_settings():
    yield
    fastct.set_num_threads(None)
    fastct.set_progress(None)
    fastct.set_memory_budget(None)
