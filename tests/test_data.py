"""Loaders for the Kaggle CSV, image folders and FER+ votes, their cache, and every bad-input error."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core.config import EMOTIONS, DataNotFoundError, resolve_data_path
from fer_core.data import (
    DataError,
    apply_ferplus,
    attach_vote_shares,
    cache_dir,
    load_csv,
    load_dataset,
    load_ferplus,
    load_folder,
    parse_csv,
    with_vote_shares,
)

HEADER = "emotion,pixels,Usage\n"
GOOD_PIXELS = " ".join(["7"] * 2304)


def write_csv(path: Path, body: str, header: str = HEADER) -> Path:
    path.write_text(header + body)
    return path


def test_sample_csv_splits_shapes_and_counts(sample_data):
    assert sample_data.splits == ["Training", "PublicTest", "PrivateTest"]
    x, y = sample_data.split("Training")
    assert x.dtype == torch.uint8 and x.shape == (350, 48, 48)
    assert y.dtype == torch.int64 and y.shape == (350,)
    assert sample_data.class_counts() == {"Training": [50] * 7, "PublicTest": [20] * 7, "PrivateTest": [10] * 7}


def test_first_row_matches_the_text(sample_path):
    with gzip.open(sample_path, "rt") as f:
        f.readline()
        label, pixels, usage = f.readline().strip().split(",")
    data = load_csv(sample_path, cache=False)
    first = data.images[usage][0].flatten().tolist()
    assert first == [int(v) for v in pixels.split()]
    assert int(data.labels[usage][0]) == int(label)


def test_plain_and_gzip_give_the_same_data(sample_path, tmp_path):
    plain = tmp_path / "fer2013.csv"
    with gzip.open(sample_path, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    a, b = load_csv(sample_path, cache=False), load_csv(plain, cache=False)
    for s in a.splits:
        assert torch.equal(a.images[s], b.images[s]) and torch.equal(a.labels[s], b.labels[s])


def test_cache_is_written_reused_and_invalidated(sample_path, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "fer.csv.gz"
    shutil.copy(sample_path, src)
    first = load_csv(src)
    files = list(cache_dir().glob("*.npz"))
    assert len(files) == 1
    second = load_csv(src)
    assert torch.equal(first.images["PublicTest"], second.images["PublicTest"])
    # A changed file (new mtime/size) must not be served from the old cache.
    write_csv(src, f"3,{GOOD_PIXELS},Training\n")
    os.utime(src, (1, 1))
    third = load_csv(src)
    assert third.class_counts() == {"Training": [0, 0, 0, 1, 0, 0, 0]}


def test_all_three_usage_values_are_kept(tmp_path):
    body = "".join(f"{i},{GOOD_PIXELS},{u}\n" for i, u in enumerate(["Training", "PublicTest", "PrivateTest", "PrivateTest"]))
    data = parse_csv(write_csv(tmp_path / "three.csv", body))
    assert {s: len(v) for s, v in data.labels.items()} == {"Training": 1, "PublicTest": 1, "PrivateTest": 2}


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (f"0,{GOOD_PIXELS},Training\n", "emotion,pixel,Usage\n", "missing column"),
        ("0,1 2 3,Training\n", HEADER, "line 2: pixels must be 2304"),
        (f"0,{GOOD_PIXELS} 9,Training\n", HEADER, "pixels must be 2304"),
        (f"0,{' '.join(['300'] * 2304)},Training\n", HEADER, "0..255"),
        (f"0,{' '.join(['-1'] * 2304)},Training\n", HEADER, "0..255"),
        (f"0,{' '.join(['a'] * 2304)},Training\n", HEADER, "pixels must be 2304 integers"),
        (f"7,{GOOD_PIXELS},Training\n", HEADER, "emotion 7 is outside 0..6"),
        (f"x,{GOOD_PIXELS},Training\n", HEADER, "is not an integer"),
        (f"0,{GOOD_PIXELS},Training\n1,{GOOD_PIXELS},Validation\n", HEADER, "line 3: unknown Usage 'Validation'"),
        ("", HEADER, "no rows"),
        ("", "", "empty"),
    ],
    ids=["columns", "short", "long", "over255", "negative", "letters", "label7", "label-x", "usage", "no-rows", "empty"],
)
def test_bad_csv_gives_a_clear_error_naming_file_and_row(tmp_path, body, header, message):
    path = write_csv(tmp_path / "bad.csv", body, header)
    with pytest.raises(DataError, match=message) as err:
        load_csv(path, cache=False)
    assert str(path) in str(err.value)


def test_truncated_gzip_is_a_data_error(sample_path, tmp_path):
    bad = tmp_path / "cut.csv.gz"
    bad.write_bytes(sample_path.read_bytes()[:5000])
    with pytest.raises(DataError, match="cut.csv.gz"):
        load_csv(bad, cache=False)


def test_a_photo_or_other_binary_file_given_as_the_csv_is_named_as_such(sample_data, tmp_path):
    photo = tmp_path / "face.png"
    Image.fromarray(sample_data.images["Training"][0].numpy()).save(photo)  # a real face picture, not the dataset
    with pytest.raises(DataError, match="face.png: not a text CSV \\(it holds binary data\\); expected a FER2013 CSV"):
        load_dataset(photo)


def test_missing_path_says_where_the_data_goes(tmp_path, monkeypatch):
    monkeypatch.delenv("FER_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as err:
        resolve_data_path(tmp_path / "nope.csv")
    msg = str(err.value)
    assert "--data" in msg and "FER_DATA" in msg and "nope.csv" in msg
    monkeypatch.setenv("FER_DATA", str(tmp_path / "also-nope.csv"))
    with pytest.raises(DataNotFoundError, match="FER_DATA is set"):
        resolve_data_path()


def test_fer_data_env_var_is_used(sample_path, monkeypatch):
    monkeypatch.setenv("FER_DATA", str(sample_path))
    assert resolve_data_path() == sample_path
    assert load_dataset().class_counts()["PrivateTest"] == [10] * 7


def test_missing_split_error_lists_what_exists(sample_data):
    with pytest.raises(KeyError, match="has Training, PublicTest, PrivateTest") as e:  # still a KeyError for lookups
        sample_data.split("Validation")
    assert isinstance(e.value, DataError) and str(e.value).startswith("split 'Validation' is not in")  # no quotes


def _write_folder(root: Path, data, split_names: dict[str, str], ext: str = ".png") -> None:
    for usage, folder in split_names.items():
        x, y = data.split(usage)
        for i, (img, label) in enumerate(zip(x.numpy(), y.tolist(), strict=True)):
            d = root / folder / EMOTIONS[label].capitalize()
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:04d}{ext}")


def test_image_folder_round_trips_png_exactly(sample_data, tmp_path):
    _write_folder(tmp_path, sample_data, {"Training": "train", "PublicTest": "val", "PrivateTest": "test"})
    data = load_folder(tmp_path)
    assert data.class_counts() == sample_data.class_counts()
    # Files are read in sorted order, per emotion folder; compare as sets of image bytes per class.
    for s in sample_data.splits:
        for c in range(7):
            got = {bytes(im.numpy().tobytes()) for im in data.images[s][data.labels[s] == c]}
            want = {bytes(im.numpy().tobytes()) for im in sample_data.images[s][sample_data.labels[s] == c]}
            assert got == want


def test_image_folder_accepts_usage_names_jpg_rgb_and_other_sizes(sample_data, tmp_path):
    _write_folder(tmp_path, sample_data, {"PublicTest": "PublicTest"}, ext=".jpg")
    rgb = np.stack([sample_data.images["Training"][0].numpy()] * 3, -1)
    Image.fromarray(rgb).resize((96, 96)).save(tmp_path / "PublicTest" / "Happy" / "big_rgb.png")
    data = load_folder(tmp_path)
    x, y = data.split("PublicTest")
    assert x.shape == (141, 48, 48) and int((y == 3).sum()) == 21


def test_image_folder_errors(tmp_path, sample_data):
    (tmp_path / "train" / "bored").mkdir(parents=True)
    with pytest.raises(DataError, match="unknown emotion folder 'bored'"):
        load_folder(tmp_path)
    shutil.rmtree(tmp_path / "train")
    with pytest.raises(DataError, match="no images found"):
        load_folder(tmp_path)
    d = tmp_path / "train" / "sad"
    d.mkdir(parents=True)
    (d / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_folder(tmp_path)


def test_ferplus_majority_matches_a_hand_computation(sample_path):
    votes = load_ferplus(sample_path.parent / "fer2013new.csv")
    lines = (sample_path.parent / "fer2013new.csv").read_text().splitlines()[1:]
    order = [6, 3, 5, 4, 0, 1, 2]  # FER+ column -> EMOTIONS index for the first seven columns
    for i, line in enumerate(lines):
        cells = line.split(",")
        v = [float(c) for c in cells[2:]]
        v = [0.0 if c <= 1 else c for c in v]
        top = int(np.argmax(v))
        expected = order[top] if (cells[1] and top < 7 and max(v) > 0.5 * sum(v)) else -1
        assert int(votes.labels[i]) == expected, f"row {i}: {line}"
        if expected >= 0:
            assert abs(float(votes.dist[i].sum()) - 1) < 1e-5
            assert int(votes.dist[i].argmax()) == expected


def test_ferplus_relabels_and_rejects_misaligned_files(sample_data, sample_path, tmp_path):
    votes = load_ferplus(sample_path.parent / "fer2013new.csv")
    relabelled = apply_ferplus(sample_data, votes)
    kept = int((votes.labels >= 0).sum())
    assert sum(len(v) for v in relabelled.labels.values()) == kept
    assert relabelled.extra["dist_Training"].shape == (len(relabelled.labels["Training"]), 7)
    short = tmp_path / "fer2013new.csv"
    short.write_text("\n".join((sample_path.parent / "fer2013new.csv").read_text().splitlines()[:100]))
    with pytest.raises(DataError, match="not aligned"):
        apply_ferplus(sample_data, load_ferplus(short))
    with pytest.raises(DataError, match="missing FER\\+ column"):
        short.write_text("Usage,Image name,neutral\nTraining,a.png,10\n")
        load_ferplus(short)


def test_vote_shares_keep_every_row_and_need_an_aligned_csv(sample_data, sample_path, tmp_path):
    votes = load_ferplus(sample_path.parent / "fer2013new.csv")
    shared = with_vote_shares(sample_data)  # found beside the sample CSV
    for s in sample_data.splits:
        assert torch.equal(shared.images[s], sample_data.images[s]) and torch.equal(shared.labels[s], sample_data.labels[s])
        rows = torch.tensor([u == s for u in votes.usage])
        assert torch.equal(shared.extra[f"dist_{s}"], votes.dist[rows])
    short = tmp_path / "fer2013new.csv"
    short.write_text("\n".join((sample_path.parent / "fer2013new.csv").read_text().splitlines()[:100]))
    with pytest.raises(DataError, match="not aligned"):
        attach_vote_shares(sample_data, load_ferplus(short))
    folder = type(sample_data)(images=sample_data.images, labels=sample_data.labels, source=str(tmp_path))
    with pytest.raises(DataError, match="image folder"):
        with_vote_shares(folder)


def test_load_dataset_with_ferplus_labels(sample_path):
    data = load_dataset(sample_path, labels="ferplus")
    assert "FER+" in data.source
    assert sum(data.class_counts()["Training"]) < 350


@pytest.mark.slow
def test_full_data_counts_match_the_readme(full_data_path):
    data = load_dataset(full_data_path)
    counts = data.class_counts()
    assert counts["Training"] == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert counts["PublicTest"] == [467, 56, 496, 895, 653, 415, 607]
