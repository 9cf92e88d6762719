import signal

import numpy as np
import pytest

import fastct

# A shell that starts the test run in the background without job control (``make test
# &`` in a script, some CI runners) makes it ignore SIGINT, and every child process
# inherits that: the tests that send a real SIGINT to a child would then test nothing.
# With a Python handler here, children start with the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
