"""HTML reports: figures exist and decode, nothing remote; the check catches breakage."""

import base64
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastct import report


def make_report(folder):
    plt = report._pyplot()
    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(0).random((8, 8)))
    src = report.save_figure(fig, folder, "noise")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data_uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    blocks = [
        report.figure_html(src, "noise"),
        f'<img src="{data_uri}" alt="inline">',
        '<a href="#top">top</a>',
        report.html_table([{"a": 1.5, "b": None}], [("a", "A", ".1f"), ("b", "B", ".1f")]),
    ]
    return report.write_html(folder, "test report", blocks)


def test_report_is_whole(tmp_path):
    path = make_report(tmp_path)
    assert report.check_report(path) == []
    text = path.read_text()
    assert "<td>1.5</td>" in text and "<td>-</td>" in text
    assert (tmp_path / "figures" / "noise.png").read_bytes().startswith(b"\x89PNG")


def test_missing_figure_is_found(tmp_path):
    path = make_report(tmp_path)
    (tmp_path / "figures" / "noise.png").unlink()
    assert report.check_report(path) == ["<img src='figures/noise.png'>: file not found"]


def test_corrupt_figure_is_found(tmp_path):
    path = make_report(tmp_path)
    png = tmp_path / "figures" / "noise.png"
    png.write_bytes(png.read_bytes()[:60])  # truncated: right signature, broken data
    problems = report.check_report(path)
    assert len(problems) == 1 and "does not decode as PNG" in problems[0]
    png.write_bytes(b"GIF89a....")
    assert report.check_report(path) == ["<img src='figures/noise.png'>: is not a PNG file"]


@pytest.mark.parametrize(
    "block, expected",
    [
        ('<img src="https://example.org/a.png">', "remote resource"),
        ('<script src="//cdn.example.org/x.js"></script>', "remote resource"),
        ('<link rel="stylesheet" href="http://example.org/s.css">', "remote resource"),
        ('<div style="background: url(https://example.org/b.png)"></div>', "remote resource"),
        ('<img src="../outside.png">', "outside the report folder"),
        ('<img src="data:image/gif;base64,R0lGOD">', "not a base64 PNG"),
    ],
)
def test_bad_references_are_found(tmp_path, block, expected):
    (tmp_path / "outside.png").write_bytes(b"")
    sub = tmp_path / "r"
    sub.mkdir()
    path = report.write_html(sub, "t", [block])
    problems = report.check_report(path)
    assert len(problems) == 1 and expected in problems[0], problems


def test_missing_report(tmp_path):
    assert "report file not found" in report.check_report(tmp_path / "nope.html")[0]


def test_checkerboard_and_boundaries_match_numpy():
    a, b = np.zeros((4, 6)), np.ones((4, 6))
    cb = report._checkerboard(a, b, tiles=2)
    ref = np.zeros((4, 6))
    ref[:2, 3:] = 1
    ref[2:, :3] = 1
    np.testing.assert_array_equal(cb, ref)
    labels = np.array([[1, 1, 2], [1, 1, 2], [0, 0, 0]])
    edges = report._boundaries(labels)
    # A plain loop: a pixel is an edge if its down or right neighbour differs (and a
    # label is involved).
    ref = np.zeros(labels.shape, bool)
    for i in range(3):
        for j in range(3):
            for di, dj in ((1, 0), (0, 1)):
                if i + di < 3 and j + dj < 3 and labels[i, j] != labels[i + di, j + dj]:
                    ref[i, j] = True
    assert np.array_equal(edges, ref)


def test_sample_plane_matches_scipy(tmp_path):
    import scipy.ndimage as ndi

    import fastct

    rng = np.random.default_rng(2)
    img = rng.normal(size=(6, 7, 8)).astype(np.float32)
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        ar.create_volume("v", img, spacing=(2.0, 1.0, 0.5), origin=(1.0, 0.0, -1.0))
    pts = np.stack(
        np.meshgrid([5.0], np.linspace(0, 6, 5), np.linspace(-1, 2.5, 4), indexing="ij"), -1
    )[0]
    with fastct.open(tmp_path / "a.h5") as ar:
        got = report._sample_plane(ar["v"], pts, cval=-7.0)
    idx = (pts - np.array([1.0, 0.0, -1.0])) / np.array([2.0, 1.0, 0.5])
    ref = ndi.map_coordinates(img, idx.reshape(-1, 3).T, order=1, cval=-7.0).reshape(5, 4)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


# -- the global matplotlib state is the caller's ------------------------------------------
def test_report_leaves_the_backend_and_pyplot_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    plt = pytest.importorskip("matplotlib.pyplot")  # a notebook user has pyplot imported
    before = matplotlib.get_backend()
    open_before = plt.get_fignums()
    make_report(tmp_path)
    report._timings_html(report._pyplot(), tmp_path, {"denoise": 1.5, "register": 2.0})
    assert report.check_report(tmp_path / "report.html") == []
    assert (tmp_path / "figures" / "timings.png").is_file()
    assert matplotlib.get_backend() == before
    assert plt.get_fignums() == open_before  # no figure left registered with pyplot


def test_save_figure_closes_a_pyplot_figure(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = plt.figure()
    report.save_figure(fig, tmp_path, "user")
    assert fig.number not in plt.get_fignums()


def _run_python(code: str, timeout: float) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_report_never_selects_a_backend_or_imports_pyplot(tmp_path):
    pytest.importorskip("matplotlib")
    code = f"""
        import sys
        import matplotlib
        matplotlib.use("svg")  # e.g. a notebook's backend
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_report import make_report
        make_report({str(tmp_path)!r})
        print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
        """
    assert _run_python(code, timeout=120) == "svg False"


@pytest.mark.slow
def test_pipeline_report_keeps_a_notebook_backend(tmp_path):
    """The whole demo (pipeline + report) in a process with pyplot on the svg backend."""
    pytest.importorskip("matplotlib")
    code = f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        from fastct.cli import main
        assert main(["demo", "--out", {str(tmp_path / "demo")!r}, "--size", "small",
                     "--quiet"]) == 0
        print(matplotlib.get_backend(), plt.get_fignums())
        """
    assert _run_python(code, timeout=900) == "svg []"
    assert report.check_report(tmp_path / "demo" / "report" / "report.html") == []
