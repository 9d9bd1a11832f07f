"""Fuzz suite: hostile files through every reader and upload path (see tests/fuzz_cases.py).

Every case must end as ``ok`` or a clear error (DataError / UploadError): no uncaught exception, no hang
(hard time limit), no memory blow-up (address-space limit and per-case peak RSS), nothing written outside
the uploads folder. The default run takes a fast seeded subset; ``-m slow`` runs 1,000 cases per reader.
"""
import io
import zipfile

import numpy as np
import pytest

import fuzz_cases as fc  # tests/ is on sys.path (rootdir conftest)
from astrocore.app import uploads
from astrocore.data.dataset import DataError
from astrocore.data.readers import limits, read_spectra

FAST_CASES = 32
FULL_CASES = 1000


def _check(records):
    bad = [r for r in records if r["outcome"] not in ("ok", "error")]
    summary = fc.summarise(records)
    assert not bad, "\n".join(f"{r['reader']}#{r['index']} {r['kind']}: {r['outcome']} {r['type']} {r['message'][:200]}"
                              for r in bad[:20]) + f"\n{summary}"
    empty = [r for r in records if r["outcome"] == "error" and not r["message"].strip()]
    assert not empty, empty[:5]
    return summary


def test_fuzz_fast_subset():
    records = fc.run_cases([(reader, i, 0) for reader in fc.READERS for i in range(FAST_CASES)], workers=2)
    summary = _check(records)
    assert set(summary) == set(fc.READERS)
    assert all(row["cases"] == FAST_CASES for row in summary.values())


@pytest.mark.slow
def test_fuzz_full():
    records = fc.run_cases([(reader, i, 1) for reader in fc.READERS for i in range(FULL_CASES)], workers=2)
    _check(records)


def test_cases_are_seeded_and_cover_every_kind():
    first, again = fc.make_case("npz_spectra", 5, 3), fc.make_case("npz_spectra", 5, 3)
    assert first["files"] == again["files"]
    for reader in fc.READERS:
        kinds = {fc.make_case(reader, i)["kind"] for i in range(FAST_CASES)}
        assert len(kinds) >= min(len(set(fc._kinds(reader))), 8), (reader, kinds)


# ---------------------------------------------------------------------------- the known attacks, one by one
def test_npy_header_declaring_74_gib_is_refused_before_allocating(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "X.npy").write_bytes(fc.npy_header((10 ** 6, 10 ** 4), "<f8") + bytes(100))
    with pytest.raises(DataError, match="declares"):
        read_spectra(folder, wavelength=np.linspace(5000, 6000, 10 ** 4))


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "spectra.npz"
    path.write_bytes(fc.npz_bytes({"spectra": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(DataError, match="pickled"):
        read_spectra(path)


def test_fits_with_naxis_beyond_2_31_fails_fast(tmp_path):
    path = tmp_path / "huge.fits"
    path.write_bytes(fc._fits_header([("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "1"), ("NAXIS1", "2147483648")]))
    with pytest.raises(DataError, match="declares"):
        read_spectra(path)


def test_fits_gz_bomb_is_capped_while_streaming(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROCORE_MAX_DECOMPRESSED_MB", "16")
    path = tmp_path / "bomb.fits.gz"
    header = fc._fits_header([("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "0")])
    path.write_bytes(fc.gzip.compress(header) + fc.gzip.compress(bytes(1 << 20)) * 40)
    with pytest.raises(DataError, match="more than 16 MB"):
        read_spectra(path)


def test_zip_entries_encrypted_unsupported_or_long_named_are_clear_errors():
    members = [("g/X.npy", fc.npy_bytes(np.ones((2, 3))))]
    cases = {"encrypted": fc.patch_zip(fc.zip_bytes(members), flags=0x1),
             "compression method 99": fc.patch_zip(fc.zip_bytes(members), method=99),
             "characters long": fc.zip_bytes(members + [("g/" + "x" * 300 + ".npy", b"1")]),
             "unsafe path": fc.zip_bytes(members + [("../../evil.npy", b"1")])}
    for expected, data in cases.items():
        with pytest.raises(uploads.UploadError, match=expected):
            uploads.load_uploaded_spectra("folder.zip", data)


def test_zip_bomb_is_measured_not_trusted(monkeypatch):
    monkeypatch.setenv("ASTROCORE_MAX_DECOMPRESSED_MB", "8")
    data = fc.zip_bomb("g/X.npy", zeros=64 << 20, lie=True)  # declares 1,000 bytes
    with pytest.raises(uploads.UploadError):
        uploads.load_uploaded_spectra("bomb.zip", data)
    assert not any(p.is_file() and p.stat().st_size > 9 << 20 for p in uploads.uploads_dir().rglob("*"))


def test_upload_names_of_300_characters_are_stored_shortened():
    buffer = io.BytesIO()
    np.savez(buffer, spectra=np.ones((2, 7214)))
    path = uploads.store_upload("s" * 300 + ".npz", buffer.getvalue())
    assert len(path.name) <= 100 and path.name.endswith(".npz")


def test_local_paths_are_limited_to_the_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    (root / "ok.csv").write_text("wavelength,flux\n5000,1\n5001,1\n")
    monkeypatch.setenv("ASTROCORE_DATA_ROOT", str(root))
    assert uploads.local_spectra_source(str(root / "ok.csv"))["kind"] == "file"
    for outside in ("/etc", str(root / ".." ), str(root / "../x.csv"), "/"):
        with pytest.raises(uploads.UploadError, match="outside the data folders"):
            uploads.local_spectra_source(outside)
    with pytest.raises(uploads.UploadError, match="outside the data folders"):
        uploads.check_payne("/etc/passwd")


def test_csv_row_and_column_counts_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROCORE_MAX_VALUES", "1000")
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "1,2\n" * 2000)
    with pytest.raises(DataError, match="cells"):
        read_spectra(path)


def test_check_npz_and_safe_extract_refuse_links(tmp_path):
    info = zipfile.ZipInfo("g/link")
    info.external_attr = 0o120777 << 16
    with pytest.raises(DataError, match="link"):
        limits.safe_extract(fc.zip_bytes([(info, b"/etc/passwd")]), tmp_path / "out", "x.zip")
