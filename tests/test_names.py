"""Names a user reads: astronomers' notation for labels, words for metrics."""
import pytest

from astrocore.data.names import label_title, metric_title


@pytest.mark.parametrize("key, title", [
    ("teff", "Teff [K]"), ("logg", "log g [dex]"), ("feh", "[Fe/H] [dex]"), ("afe", "[α/Fe] [dex]"),
    ("c_fe", "[C/Fe] [dex]"), ("mg_h", "[Mg/H] [dex]"), ("alpha_m", "[α/M] [dex]"), ("x_h", "[X/H] [dex]"),
    ("class_index", "class_index"),
])
def test_label_titles_follow_astronomers_notation(key, title):
    assert label_title(key) == title


def test_label_title_without_unit():
    assert label_title("teff", unit=False) == "Teff"
    assert label_title("n_fe", unit=False) == "[N/Fe]"


def test_metric_titles_are_words():
    assert metric_title("recon_rms") == "reconstruction RMS"
    assert metric_title("val_recon_mse") == "reconstruction MSE (validation)"
    assert metric_title("r2 z feh") == "R² (MLP probe) of z, [Fe/H]"
    assert "_" not in metric_title("some_new_metric")
