"""Typed view of ``fastct``'s top level for IDEs and type checkers.

``fastct/__init__.py`` loads its public names lazily (``_LAZY``, ``_SUBMODULES``) so that
``import fastct`` compiles nothing; this stub names each of them with its real type.
tests/test_package.py checks that it lists exactly the names the module exposes.
"""

from . import classify as classify
from . import cli as cli
from . import datasets as datasets
from . import evaluation as evaluation
from . import features as features
from . import filters as filters
from . import io as io
from . import lungs as lungs
from . import metrics as metrics
from . import pipeline as pipeline
from . import registration as registration
from . import report as report
from . import segmentation as segmentation
from . import streaming as streaming
from . import transforms as transforms
from . import volume as volume
from ._config import get_memory_budget as get_memory_budget
from ._config import get_num_threads as get_num_threads
from ._config import set_memory_budget as set_memory_budget
from ._config import set_num_threads as set_num_threads
from ._config import set_progress as set_progress
from ._warmup import warmup as warmup
from .features import FeatureTable as FeatureTable
from .features import RegionAdjacency as RegionAdjacency
from .features import region_adjacency as region_adjacency
from .features import region_features as region_features
from .filters import gaussian as gaussian
from .filters import median as median
from .filters import unsharp_mask as unsharp_mask
from .registration import Registration as Registration
from .registration import register as register
from .registration import resample as resample
from .segmentation import slic as slic
from .streaming import map_overlap as map_overlap
from .transforms import RigidTransform as RigidTransform
from .transforms import SimilarityTransform as SimilarityTransform
from .transforms import load_transform as load_transform
from .volume import Archive as Archive
from .volume import Volume as Volume
from .volume import open as open

__version__: str

__all__ = [
    "__version__",
    "get_memory_budget",
    "get_num_threads",
    "set_memory_budget",
    "set_num_threads",
    "set_progress",
    "Archive",
    "FeatureTable",
    "RegionAdjacency",
    "Registration",
    "RigidTransform",
    "SimilarityTransform",
    "Volume",
    "gaussian",
    "load_transform",
    "map_overlap",
    "median",
    "open",
    "region_adjacency",
    "region_features",
    "register",
    "resample",
    "slic",
    "unsharp_mask",
    "warmup",
]
