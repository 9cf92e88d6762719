"""Untrusted content: links and storage that leave the file, code in model files and
arrays, names that could address paths outside an output folder, strings that reach the
HTML report, and sizes that would exhaust memory or disk."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastct
from fastct.io import ResourceLimitError, check_allocation, check_disk_space
from fastct.volume import ArchiveDamagedError

VOL = "/scans/a/image"


def _cli(*argv: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """``fastct ARGV`` in this process (faster than a child), stderr captured."""
    from fastct.cli import main

    err, saved = io.StringIO(), {k: os.environ.get(k) for k in env}
    here = os.getcwd()
    os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(argv))
    finally:
        os.chdir(here)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(argv, code, "", err.getvalue())


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-2000:])
    assert lines[0].startswith("fastct: error: ")
    return lines[0]


# -- links and storage that leave the file ---------------------------------------------------
@pytest.fixture
def outside(tmp_path):
    """A file outside the archive with known content: an HDF5 dataset and raw bytes."""
    data = np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8)
    with h5py.File(tmp_path / "outside.h5", "w") as f:
        f.create_dataset("/data", data=data)
    (tmp_path / "outside.raw").write_bytes(data.tobytes())
    return data


def _with(tmp_path, name, build):
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        build(f)
        if VOL in f:
            f[VOL].attrs["spacing"] = np.ones(3)
    return path


@pytest.mark.parametrize("kind", ["external_link", "external_raw", "virtual"])
def test_storage_outside_the_file_is_refused_unless_allowed(tmp_path, outside, kind):
    def build(f):
        if kind == "external_link":
            f["/scans/a"] = h5py.ExternalLink(str(tmp_path / "outside.h5"), "/")
            return
        if kind == "external_raw":
            f.create_dataset(VOL, shape=(4, 8, 8), dtype=np.int16,
                             external=[(str(tmp_path / "outside.raw"), 0, outside.nbytes)])  # fmt: skip
            return
        layout = h5py.VirtualLayout(shape=(4, 8, 8), dtype=np.int16)
        layout[:] = h5py.VirtualSource(str(tmp_path / "outside.h5"), "/data", shape=(4, 8, 8))
        f.create_virtual_dataset(VOL, layout)

    path = _with(tmp_path, f"{kind}.h5", build)
    name = "/scans/a/data" if kind == "external_link" else VOL
    with fastct.open(path) as ar, pytest.raises(ValueError, match="allow_external=True"):
        ar[name]
    with fastct.open(path, allow_external=True) as ar:
        np.testing.assert_array_equal(ar[name].read(), outside)
    line = _one_error_line(_cli("gaussian", f"{path}:{name}", str(tmp_path / "o.nii"),
                                "--sigma", "1", "--quiet"))  # fmt: skip
    assert "outside" in line and not (tmp_path / "o.nii").exists()


def test_zarr_symlink_out_of_the_store_is_refused_unless_allowed(tmp_path):
    store = tmp_path / "s.zarr"
    data = np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4)
    with fastct.open(store, "w") as ar:
        ar.create_volume(VOL, data, chunks=(1, 4, 4))
    chunks = store / "scans/a/image/0/c"
    moved = tmp_path / "elsewhere"
    chunks.rename(moved)
    chunks.symlink_to(moved, target_is_directory=True)
    with fastct.open(store) as ar, pytest.raises(ValueError, match="outside the store"):
        ar[VOL]
    with fastct.open(store, allow_external=True) as ar:
        np.testing.assert_array_equal(ar[VOL].read(), data)


# -- code in model files and arrays never runs -------------------------------------------------
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_pickle_payload_would_run_when_unpickled(tmp_path):
    """The control: the payload does create the marker when unpickled."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("container", ["raw", "zip_member", "npy"])
def test_pickle_payloads_are_refused_without_running(tmp_path, container):
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Payload(marker), protocol=4)
    if container == "npy":
        path = tmp_path / "a.npy"
        arr = np.empty((1, 1, 1), dtype=object)
        arr[0, 0, 0] = _Payload(marker)
        np.save(path, arr, allow_pickle=True)
        with pytest.raises(ValueError, match="never unpickles"):
            fastct.io.read_npy(path)
    else:
        path = tmp_path / "m.fastct-model"
        if container == "raw":
            path.write_bytes(payload)
        else:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr("meta.json", '{"format": "fastct-model", "format_version": 1, '
                            '"fastct_version": "0", "kind": "nodule-detector", "schema": {}, '
                            '"params": {}}')  # fmt: skip
                zf.writestr("model.skops", payload)
            path.write_bytes(buf.getvalue())
        from fastct.classify import load_model

        with pytest.raises(ValueError):
            load_model(path)
    assert not marker.exists(), "fastct executed a pickle payload"


# -- names from input files never leave the output folder ------------------------------------
@pytest.mark.parametrize("member", [".."])
def test_member_names_that_address_parent_folders_are_refused(tmp_path, member):
    """HDF5 allows a group named '..'; batch and pipeline turn scan ids into file and
    folder names, so such an archive is refused as a whole, by the API and the CLI."""
    path = tmp_path / "dots.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(f"/scans/{member}/image", data=np.zeros((2, 3, 4), np.int16))
        f.create_dataset("/scans/ok/image", data=np.zeros((2, 3, 4), np.int16))
    with fastct.open(path) as ar, pytest.raises(ArchiveDamagedError, match="outside"):
        ar.volumes()
    from fastct.batch import _scans

    with pytest.raises(ValueError, match="outside"):
        _scans(path)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    _one_error_line(_cli("info", str(path)))
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before


def test_dicom_text_is_data_not_a_path(tmp_path):
    """A series description with '../' and HTML is imported as metadata; the import
    writes the chosen archive and nothing else."""
    src = Path(__file__).resolve().parent / "corpus" / "dicom" / "series_description_script"
    out = tmp_path / "out"
    out.mkdir()
    proc = _cli("import", str(src), f"{out / 'a.h5'}:/scans/x/image", "--quiet", cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.h5", "out"]
    with fastct.open(out / "a.h5") as ar:
        assert ar.volumes() == ["/scans/x/image"]


# -- the HTML report escapes what came from input files --------------------------------------
def test_report_html_escapes_strings_from_inputs(tmp_path):
    from fastct.report import figure_html, html_table, write_html

    evil = "\"><script>alert('x')</script>"
    table = html_table([{"id": evil, "value": 1.0}],
                       [("id", evil, None), ("value", "v", ".1f")])  # fmt: skip
    page = write_html(tmp_path, f"run {evil}", [table, figure_html("fig.png", evil)])
    text = Path(page).read_text()
    assert "<script>" not in text and "alert('x')" not in text
    assert text.count("&lt;script&gt;") >= 4


# -- sizes: memory and disk ------------------------------------------------------------------
def test_reading_more_than_the_memory_bound_is_refused_naming_the_size(tmp_path, monkeypatch):
    path = tmp_path / "a.h5"
    with fastct.open(path, "w") as ar:
        ar.create_volume(VOL, shape=(64, 64, 64), dtype=np.float32)  # 1 MiB, not written
    monkeypatch.setenv("FASTCT_MAX_MEMORY", "512K")
    with fastct.open(path) as ar:
        with pytest.raises(ResourceLimitError, match=r"needs 1\.0 MiB of memory.*512\.0 KiB"):
            ar[VOL].read()
        assert ar[VOL][0].shape == (64, 64)  # slices within the bound still read
    np.save(tmp_path / "a.npy", np.zeros((64, 64, 64), np.float32))
    with pytest.raises(ResourceLimitError, match="1.0 MiB"):
        fastct.io.read_npy(tmp_path / "a.npy")
    monkeypatch.delenv("FASTCT_MAX_MEMORY")
    # the command line: a streamed input, an in-memory result over the bound
    line = _one_error_line(_cli("gaussian", f"{path}:{VOL}", str(tmp_path / "o.nii"),
                                "--sigma", "1", "--quiet", FASTCT_MAX_MEMORY="512K"))  # fmt: skip
    assert "needs 1.0 MiB of memory" in line and not (tmp_path / "o.nii").exists()
    assert fastct.io.read_npy(tmp_path / "a.npy").array.shape == (64, 64, 64)


def test_check_allocation_and_disk_space(tmp_path):
    check_allocation(1000, "x", max_memory="1K")
    with pytest.raises(ResourceLimitError, match="needs 2.0 KiB of memory"):
        check_allocation(2048, "x", max_memory="1K")
    with pytest.raises(ValueError, match="max_memory"):
        check_allocation(1, "x", max_memory="lots")
    check_disk_space(1, tmp_path / "out.nii", "writing")
    with pytest.raises(ResourceLimitError, match="of disk"):
        check_disk_space(2**62, tmp_path / "missing" / "out.nii", "writing out.nii")


def test_writes_larger_than_the_free_disk_are_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(ResourceLimitError, match="of disk"):
        fastct.io.write_npy(tmp_path / "a.npy", np.zeros((8, 8, 8)))
    with pytest.raises(ResourceLimitError, match="of disk"):
        fastct.io.write_nifti(tmp_path / "a.nii", np.zeros((8, 8, 8)))
    with fastct.open(tmp_path / "a.h5", "w") as ar, pytest.raises(ResourceLimitError):
        ar.create_volume(VOL, np.zeros((8, 8, 8)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]  # the empty archive only


def test_declared_sizes_are_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(VOL, shape=(2**20,) * 3, dtype=np.int16, chunks=(64, 64, 64))
    with fastct.open(path) as ar, pytest.raises(ResourceLimitError, match="1.15e\\+18 voxels"):
        ar[VOL]


@pytest.mark.slow
def test_pipeline_report_escapes_scan_names_and_attributes(tmp_path):
    """End to end: scan groups and an archive attribute carrying HTML and quotes (HDF5
    allows them in names) come out escaped in report.html; the run writes only inside
    its output folder."""
    evil = "<script>alert('x')</script>\""
    ph = fastct.datasets.chest_phantom("tiny", seed=3)
    path = tmp_path / "study.h5"
    with fastct.open(path, "w") as ar:
        for scan in ("a", "b"):
            ar.create_volume(f"scans/{evil}{scan}/image", ph.image, spacing=ph.spacing,
                             modality="CT", units="HU", attrs={"description": evil})  # fmt: skip
        ar.set_attrs("/", title=evil)
    out = tmp_path / "out"
    fastct.pipeline.run(path, f"/scans/{evil}a", f"/scans/{evil}b", out_dir=out,
                        run_name="r1")  # fmt: skip
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "study.h5"]
