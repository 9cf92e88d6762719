"""Compressed DICOM (JPEG 2000, JPEG-LS, RLE) through fastct.io, with the decoders of the
``io`` extra, and the error a missing decoder gives."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastct.io as fio

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

# pydicom's MR_small.dcm re-encoded losslessly: each must decode to the same pixels.
LOSSLESS = {
    "MR_small_jp2klossless.dcm": ("openjpeg", "JPEG 2000"),
    "MR_small_jpeg_ls_lossless.dcm": ("libjpeg", "JPEG-LS"),
    "MR_small_RLE.dcm": ("rle", "RLE"),
}


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_compressed_mr_equals_the_uncompressed_file(name):
    plugin, _ = LOSSLESS[name]
    pytest.importorskip(plugin, reason=f"the io extra's {plugin} decoder is not installed")
    reference = fio.read_dicom_series(get_testdata_file("MR_small.dcm"))
    vol = fio.read_dicom_series(get_testdata_file(name))
    assert vol.array.shape == reference.array.shape == (1, 64, 64)
    assert vol.array.dtype == reference.array.dtype
    np.testing.assert_array_equal(vol.array, reference.array)
    assert vol.spacing == reference.spacing
    assert vol.origin == reference.origin


def test_jpeg2000_ct_slice_in_hounsfield_units():
    pytest.importorskip("openjpeg", reason="the io extra's openjpeg decoder is not installed")
    path = get_testdata_file("693_J2KI.dcm")
    vol = fio.read_dicom_series(path)
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert vol.array.dtype == np.int16 and vol.units == "HU"
    np.testing.assert_array_equal(vol.array[0], np.rint(hu).astype(np.int16))


def _read_without_decoders(name: str) -> subprocess.CompletedProcess:
    """Read ``name`` in a fresh process where no third-party pixel decoder imports."""
    code = textwrap.dedent(
        f"""
        import sys
        for m in ("pylibjpeg", "openjpeg", "libjpeg", "rle", "gdcm", "PIL", "jpeg_ls"):
            sys.modules[m] = None
        from pydicom.data import get_testdata_file
        import fastct.io as fio
        try:
            fio.read_dicom_series(get_testdata_file({name!r}))
        except Exception as exc:
            print(type(exc).__name__ + ": " + str(exc))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_missing_decoder_names_the_extra_to_install(name):
    out = _read_without_decoders(name).stdout
    assert out.startswith("ImportError: "), out
    assert "pip install 'fastct-engine[io]'" in out
    assert LOSSLESS[name][1] in out  # names the compression
    assert "corrupt" not in out and "truncated" not in out


def test_damaged_compressed_data_is_still_reported_as_corrupt(tmp_path):
    pytest.importorskip("openjpeg", reason="the io extra's openjpeg decoder is not installed")
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])  # a J2K header, then junk
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        fio.read_dicom_series(bad)
