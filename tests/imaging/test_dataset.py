"""A layer over a dataset: known-answer statistics, the digits acceptance, Dask = in-process,
resume, and the command's files and errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from napari_kernelspec.base.errors import KernelSpecError
from napari_kernelspec.imaging.dataset import dataset_statistics, folder_source
from napari_kernelspec.imaging.dataset.partition import PartitionTask, process_partition
from napari_kernelspec.imaging.dataset.run import TABLES
from napari_kernelspec.imaging.dataset.stats import FilterStatistics, selectivity_index

torch = pytest.importorskip("torch")
PIL = pytest.importorskip("PIL.Image")

FILTER_COLUMNS = ["index", "fire_fraction", "mean", "variance", "selectivity", "preferred_class"]
CLASS_COLUMNS = ["index", "class", "fire_fraction", "mean", "variance"]
IMAGE_COLUMNS = [
    "path",
    "class",
    "pca_x",
    "pca_y",
    "tsne_x",
    "tsne_y",
    "nn_feature",
    "nn_pixel",
    "nn_feature_same_class",
    "nn_pixel_same_class",
]


def grating(size: int, period: float, phase: float, vertical: bool) -> np.ndarray:
    """uint8 sine grating; vertical stripes vary along x (columns)."""
    y, x = np.mgrid[:size, :size]
    coord = x if vertical else y
    return np.round(127.5 + 127.5 * np.sin(2 * np.pi * coord / period + phase)).astype(np.uint8)


@pytest.fixture
def gratings(tmp_path) -> Path:
    """FOLDER/A: 6 vertical gratings, FOLDER/B: 6 horizontal ones (periods 5-7, phases)."""
    root = tmp_path / "gratings"
    for cls, vertical in (("A", True), ("B", False)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            image = grating(40, 5 + i % 3, i * 0.9, vertical)
            PIL.fromarray(image).save(root / cls / f"{cls}{i}.png")
    return root


@pytest.fixture
def gabor_bank(tmp_path, gabor) -> Path:
    """An .npy bank: filter 0 a vertical Gabor (wave along x), filter 1 a horizontal one."""
    filters = np.stack([gabor(9, 1 / 6, 0.0), gabor(9, 1 / 6, 90.0)])
    filters -= filters.mean(axis=(1, 2), keepdims=True)  # zero mean: blind to brightness
    path = tmp_path / "gabors.npy"
    np.save(path, filters[:, None].astype(np.float32))
    return path


def test_each_gabor_is_selective_for_its_orientation_class(gratings, gabor_bank):
    result = dataset_statistics(gabor_bank, folder_source(gratings), partition_size=4)
    table = result.filter_table().to_pandas()
    assert table.columns.tolist() == FILTER_COLUMNS
    assert table["preferred_class"].tolist() == ["A", "B"]
    assert (table["selectivity"] >= 0.8).all(), table
    per_class = result.class_table().to_pandas().set_index(["index", "class"])
    assert per_class.loc[(0, "A"), "mean"] > 5 * per_class.loc[(0, "B"), "mean"]
    assert per_class.loc[(1, "B"), "mean"] > 5 * per_class.loc[(1, "A"), "mean"]
    # the best patches of each filter lie in its class's images
    rows = result.patches_table().to_pandas()
    for index, folder in ((0, "A"), (1, "B")):
        paths = rows[rows["index"] == index]["path"]
        assert len(paths) == 9 and all(Path(p).parent.name == folder for p in paths)
    # feature space (the layer's average maps) groups the classes perfectly
    same_feature, _ = result.same_class()
    assert same_feature.mean() >= 0.9


def test_statistics_merge_to_the_one_pass_answer_with_bounded_state():
    """Chan's merge of uneven batches = numpy over everything; the state never grows."""
    rng = np.random.default_rng(1)
    acts = np.maximum(rng.normal(0.2, 1.0, (37, 4, 5, 6)), 0)
    acts[:, 3] += 100.0  # a large offset: naive sum-of-squares would lose digits
    labels = rng.integers(-1, 3, 37)
    one = FilterStatistics.empty(3, 4)
    halves = [FilterStatistics.empty(3, 4), FilterStatistics.empty(3, 4)]
    for s, e in ((0, 5), (5, 6), (6, 20), (20, 37)):
        one.add(acts[s:e], labels[s:e])
        halves[s >= 6].add(acts[s:e], labels[s:e])
        assert one.count.shape == (4, 4)  # classes + unlabelled, filters: whatever N is
    merged = halves[0].merge(halves[1])
    for stats in (one, merged):
        for slot, cls in enumerate((0, 1, 2, -1)):
            x = np.moveaxis(acts[labels == cls], 1, 0).reshape(4, -1)
            np.testing.assert_allclose(stats.means()[slot], x.mean(axis=1), rtol=1e-12)
            np.testing.assert_allclose(stats.variance()[slot], x.var(axis=1), rtol=1e-9)
            np.testing.assert_allclose(stats.fire_fraction()[slot], (x > 0).mean(axis=1))
        everything = np.moveaxis(acts, 1, 0).reshape(4, -1)
        np.testing.assert_allclose(
            stats.overall().variance()[0], everything.var(axis=1), rtol=1e-9
        )


def test_selectivity_index_known_values():
    # classes x filters; class 3 has no images (NaN), filter 2 never fires
    means = np.array([[3.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 4.0], [1.0, 1.0, 0.0, 0.0]])
    means = np.vstack([means, np.full(4, np.nan)])
    si, preferred = selectivity_index(means)
    np.testing.assert_allclose(si[[0, 1, 3]], [0.5, 0.0, 1.0])
    assert np.isnan(si[2])
    assert preferred.tolist() == [0, 0, -1, 1]
    assert np.isnan(selectivity_index(np.ones((1, 2)))[0]).all()  # one class: undefined


# --- the digits acceptance, through the command ---------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """``kernelspec dataset lenet5 --sample digits --out DIR`` once for the module."""
    from napari_kernelspec.cli import main

    root = tmp_path_factory.mktemp("digits")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERNELSPEC_CACHE", str(root / "cache"))
        mp.setenv("TORCH_HOME", str(root / "torch"))
        code = main(["dataset", "lenet5", "--sample", "digits", "--out", str(root / "out")])
    assert code == 0
    return root / "out"


def test_digits_feature_neighbours_beat_pixel_neighbours_and_tsne_separates(digits_run):
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    images = pq.read_table(digits_run / "images.parquet").to_pandas()
    assert images.columns.tolist() == IMAGE_COLUMNS
    assert len(images) == 1797
    labels = images["class"].astype(int).to_numpy()
    feature = np.stack(images["nn_feature"].to_numpy())
    pixel = np.stack(images["nn_pixel"].to_numpy())
    assert feature.shape == pixel.shape == (1797, 5)
    assert not (feature == np.arange(1797)[:, None]).any()  # never the query itself
    feature_share = (labels[feature] == labels[:, None]).mean()
    pixel_share = (labels[pixel] == labels[:, None]).mean()
    np.testing.assert_allclose(images["nn_feature_same_class"].mean(), feature_share)
    assert feature_share >= 0.9
    assert feature_share > pixel_share
    xy = images[["tsne_x", "tsne_y"]].to_numpy()
    split = StratifiedKFold(5, shuffle=True, random_state=1)
    accuracy = cross_val_score(KNeighborsClassifier(5), xy, labels, cv=split).mean()
    assert accuracy >= 0.9


def test_digits_tables_and_report(digits_run):
    stats = pq.read_table(digits_run / "filter_stats.parquet")
    assert stats.column_names == FILTER_COLUMNS and stats.num_rows == 6  # LeNet5 conv1
    meta = json.loads(stats.schema.metadata[b"kernelspec"])
    assert meta["weights"] == "trained-digits" and meta["embedding_kind"] == "penultimate"
    classes = pq.read_table(digits_run / "filter_classes.parquet").to_pandas()
    assert classes.columns.tolist() == CLASS_COLUMNS and len(classes) == 60
    assert sorted(classes["class"].unique()) == [str(d) for d in range(10)]
    # the overall mean is the count-weighted mean of the class means (one pixel count each)
    counts = np.bincount(
        pq.read_table(digits_run / "images.parquet")["class"].to_numpy().astype(int)
    )
    for index, group in classes.groupby("index"):
        expected = np.average(group.sort_values("class")["mean"], weights=counts)
        assert stats["mean"][index].as_py() == pytest.approx(expected, rel=1e-9)
    patches = pq.read_table(digits_run / "top_patches.parquet").to_pandas()
    assert (
        len(patches) == 6 * 9
        and (patches.groupby("index")["activation"].diff().dropna() <= 0).all()
    )
    assert not (digits_run / "partitions").exists()
    html = (digits_run / "report.html").read_text()
    assert html.count("<svg") >= 3 and "data:image/png;base64," in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script src" not in html


# --- Dask and resume ------------------------------------------------------------------------


def test_dask_local_cluster_equals_in_process(gratings, gabor_bank, tmp_path):
    from distributed import Client, LocalCluster

    from napari_kernelspec.scan.dataset import compute_dataset

    source = folder_source(gratings)
    here = dataset_statistics(gabor_bank, source, partition_size=5, k=4)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        there = compute_dataset(
            gabor_bank, source, tmp_path / "out", client=client, progress=False,
            partition_size=5, k=4,
        )  # fmt: skip
    for field in ("count", "fires", "mean", "m2"):
        np.testing.assert_allclose(
            getattr(there.stats, field), getattr(here.stats, field), rtol=1e-12
        )
    np.testing.assert_array_equal(there.top.image_index, here.top.image_index)
    np.testing.assert_array_equal(there.top.boxes, here.top.boxes)
    np.testing.assert_array_equal(there.embedding, here.embedding)
    np.testing.assert_array_equal(there.nn_feature, here.nn_feature)
    assert there.filter_table().equals(here.filter_table())


def test_interrupted_run_resumes_with_the_stored_partitions(gratings, gabor_bank, tmp_path):
    source = folder_source(gratings)  # 12 images: partitions of 5, 5, 2
    store = tmp_path / "parts"
    seen: list[int] = []

    def dies_after_one(tasks):
        yield process_partition(tasks[0])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset_statistics(
            gabor_bank, source, store=store, partition_size=5, compute=dies_after_one
        )
    with pytest.raises(KernelSpecError, match="resume"):
        dataset_statistics(gabor_bank, source, store=store, partition_size=5)

    def counting(tasks: list[PartitionTask]):
        seen.extend(t.start for t in tasks)
        for t in tasks:
            yield process_partition(t)

    resumed = dataset_statistics(
        gabor_bank, source, store=store, partition_size=5, resume=True, compute=counting
    )
    assert seen == [5, 10]
    whole = dataset_statistics(gabor_bank, source, partition_size=5)
    np.testing.assert_allclose(resumed.stats.m2, whole.stats.m2, rtol=1e-12)
    np.testing.assert_array_equal(resumed.top.image_index, whole.top.image_index)
    with pytest.raises(KernelSpecError, match="another run"):
        dataset_statistics(gabor_bank, source, store=store, partition_size=4, resume=True)


# --- the command ----------------------------------------------------------------------------


def test_command_on_a_folder(gratings, gabor_bank, tmp_path, cli):
    out = tmp_path / "out"
    code, stdout, _ = cli(
        "dataset", str(gabor_bank), str(gratings), "--out", str(out), "--no-progress",
        "--partition-size", "4", "--no-tsne",
    )  # fmt: skip
    assert code == 0, stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([*TABLES, "report.html"])
    stats = pq.read_table(out / "filter_stats.parquet").to_pandas()
    assert stats["preferred_class"].tolist() == ["A", "B"]
    # report.html: a row of top patches per filter, cut from the gratings of its class
    html = (out / "report.html").read_text()
    strips = [_png(uri) for uri in re.findall(r'class="patch" src="([^"]+)"', html)]
    assert len(strips) == 2
    for f, strip in enumerate(strips):
        tiles = _split(strip, 9)
        assert len(tiles) == 9
        along_x = np.abs(np.diff(tiles, axis=2)).mean()  # vertical stripes change along x
        along_y = np.abs(np.diff(tiles, axis=1)).mean()
        if f == 0:  # the vertical Gabor: vertical gratings, constant down each column
            assert along_y == 0 and along_x > 10
        else:
            assert along_x == 0 and along_y > 10


def _png(uri: str) -> np.ndarray:
    import base64
    import io

    data = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(PIL.open(io.BytesIO(data)).convert("L"), np.float64)


def _split(strip: np.ndarray, k: int, gap: int = 2) -> np.ndarray:
    """A strip of k equal tiles with `gap` white columns between them -> (k, h, w)."""
    width = (strip.shape[1] + gap) // k - gap
    return np.stack([strip[:, i * (width + gap) : i * (width + gap) + width] for i in range(k)])


def test_unlabelled_folder_has_no_classes(tmp_path, gabor_bank):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        PIL.fromarray(grating(24, 6, i, i % 2 == 0)).save(folder / f"{i}.png")
    result = dataset_statistics(gabor_bank, folder_source(folder), tsne=False)
    stats = result.filter_table().to_pandas()
    assert stats["selectivity"].isna().all() and stats["preferred_class"].isna().all()
    assert result.class_table().num_rows == 0
    images = result.image_table().to_pandas()
    assert images["class"].isna().all() and images["nn_pixel_same_class"].isna().all()
    assert images["tsne_x"].isna().all() and images["pca_x"].notna().all()
    # 4 images have 3 others: the 5 neighbours asked for become 3, and the facts say so
    assert np.stack(images["nn_feature"].to_numpy()).shape == (4, 3)
    assert result.meta["neighbours"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lenet5", "--out", "{out}"], "FOLDER"),
        (["lenet5", "{missing}", "--sample", "digits", "--out", "{out}"], "one of them"),
        (["lenet5", "{missing}", "--out", "{out}"], "not a folder"),
        (["lenet5", "{empty}", "--out", "{out}"], "no images"),
    ],
)
def test_command_errors_are_one_line_and_write_nothing(tmp_path, cli, args, message):
    (tmp_path / "empty").mkdir()
    names = {"out": tmp_path / "out", "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    argv = [a.format(**names) for a in args]
    code, _, err = cli("dataset", *argv)
    assert code == 2
    assert err.startswith("kernelspec: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_images_the_classifier_cannot_take_are_one_line_and_leave_no_folder(tmp_path, cli):
    # LeNet5's classifier takes 32x32 only: 40x40 images pass conv1 but not its fc1
    folder = tmp_path / "big"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        PIL.fromarray(grating(40, 6, 0.0, cls == "a")).save(folder / cls / "0.png")
    out = tmp_path / "out"
    code, _, err = cli("dataset", "lenet5", str(folder), "--out", str(out), "--no-progress")
    assert code == 2, err
    assert err.startswith("kernelspec: error: ") and err.count("\n") == 1
    assert "(40x40 px) cannot go through the whole of LeNet5" in err and "average maps" in err
    assert not out.exists()
    code, _, err = cli("dataset", "lenet5", str(folder), "--out", str(out), "--no-progress",
                       "--no-tsne", "--neighbours", "1", "--embedding", "layer")  # fmt: skip
    assert code == 0, err


def test_error_after_the_start_leaves_no_folder(gratings, gabor_bank, tmp_path, cli):
    out = tmp_path / "out"
    code, _, err = cli(
        "dataset", str(gabor_bank), str(gratings), "--out", str(out), "--embedding",
        "penultimate", "--no-progress",
    )  # fmt: skip
    assert code == 2 and "weights file" in err and err.count("\n") == 1
    assert not out.exists()
    small = gratings / "A" / "tiny.png"
    PIL.fromarray(np.zeros((3, 3), np.uint8)).save(small)  # fails inside the first partition
    code, _, err = cli("dataset", str(gabor_bank), str(gratings), "--out", str(out))
    assert code == 2 and "tiny.png" in err
    assert not out.exists()


def test_image_too_small_for_the_layer_names_it(tmp_path, gabor_bank):
    folder = tmp_path / "small" / "A"
    folder.mkdir(parents=True)
    PIL.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "tiny.png")
    with pytest.raises(KernelSpecError, match=r"tiny\.png"):
        dataset_statistics(gabor_bank, folder_source(folder.parent))


def test_mixed_sizes_match_feature_maps_and_top_patches_image_by_image(tmp_path, gabor_bank):
    """Statistics and patches over a folder of two image sizes = today's one-image tools."""
    from napari_kernelspec.imaging import feature_maps, read_image, top_patches

    rng = np.random.default_rng(3)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, size in enumerate((20, 20, 31, 20, 31)):
        PIL.fromarray(rng.integers(0, 256, (size, size + i), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    source = folder_source(folder)
    result = dataset_statistics(gabor_bank, source, k=3, batch_size=2, tsne=False)
    paths = [key for key, _ in source.items]
    maps = [feature_maps(str(gabor_bank), read_image(p)).maps for p in paths]
    pooled = np.concatenate([m.reshape(2, -1) for m in maps], axis=1).astype(np.float64)
    overall = result.stats.overall()
    np.testing.assert_allclose(overall.means()[0], pooled.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(overall.variance()[0], pooled.var(axis=1), rtol=1e-5)
    np.testing.assert_allclose(overall.fire_fraction()[0], (pooled > 0).mean(axis=1))
    np.testing.assert_allclose(result.embedding, [m.mean(axis=(1, 2)) for m in maps], rtol=1e-5)
    expected = top_patches(str(gabor_bank), paths, k=3)
    np.testing.assert_array_equal(result.top.image_index, expected.image_index)
    np.testing.assert_array_equal(result.top.boxes, expected.boxes)
    np.testing.assert_allclose(result.top.activations, expected.activations, rtol=1e-5)


def test_nearest_neighbours_known_answer_and_same_class_share():
    from napari_kernelspec.imaging.dataset.neighbours import nearest_neighbours, same_class_share

    # points on a line whose gaps double: every row's order of neighbours is known
    x = np.array([[0.0], [1.0], [3.0], [7.0], [15.0]])
    nn = nearest_neighbours(x, k=3)
    np.testing.assert_array_equal(nn, [[1, 2, 3], [0, 2, 3], [1, 0, 3], [2, 1, 0], [3, 2, 1]])
    assert nearest_neighbours(x, k=10).shape == (5, 4)  # at most every other row
    share = same_class_share(nn, np.array([0, 0, 1, 1, -1]))
    np.testing.assert_allclose(share[:4], [1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert np.isnan(share[4])  # no class
