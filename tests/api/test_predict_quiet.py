"""`metassl predict` on image files says one line: no warning from torch about read-only arrays."""
from metassl.data.images import images_under


def test_predict_on_image_files_prints_no_warning(photos, photo_run, cli, tmp_path):
    out = tmp_path / "p.csv"
    images = images_under(photos / "labeled" / "red")[:2]
    proc = cli("predict", str(photo_run), *map(str, images), str(photos / "unlabeled"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "not writable" not in proc.stderr and "Warning" not in proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip().startswith("metassl: wrote 14 predictions")
