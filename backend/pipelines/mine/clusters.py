"""Grouping a collection's photos by the object they show.

Each photo gets up to three descriptors: the photo embedding (`backend.models.photo_embedding`:
photos of one object from different sides lie close, whatever their colours), the shape model's
encoder features (`ImageEncoder.features`, mirror-averaged) when the shape model is installed, and
a colour histogram of the object's own pixels (CIELAB chroma, and lightness, as square roots:
Hellinger distances). The distance between two photos is a weighted mean of the distances, each
divided by its median over all pairs, so none dominates by its units. On the real split (81
photos of 27 objects, not the mining benchmark) a photo's nearest neighbour shows its own object
for 0.36 of the photos by the embedding alone, 0.40 by the encoder features, 0.33 by colour, 0.44
by the embedding and colour, and 0.49 by all three. Average-linkage agglomeration cut at `CUT`
gives the clusters; one of fewer than ``min_photos`` photos is set apart as outliers (a
distractor, a photo whose object was not found well). The weights and the cut were chosen on the
mining benchmark's ``tune`` collection (objects that its scored collections do not show;
docs/mining.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CUT = 0.57
"""Average-linkage distance at which clusters stop merging (distances are in units of the median
pair's): the largest at which the ``tune`` collection's purity stayed at least 0.95 (0.6 until the
segmentation changes of 2026-12-06, after which 0.6 grouped tune at 0.94). Since segmentation
takes each row's ends for background, tune would allow up to 0.63, but it no longer tells the
cut well: at 0.6-0.63 shop's purity falls to 0.92-0.875 (docs/mining.md), so the cut stays."""

EMBEDDING_WEIGHT = 1.0
ENCODER_WEIGHT = 2.0
"""The shape model's encoder features count double: on the ``tune`` collection, equal weights
grouped 36 of its 46 object photos at purity 0.83, these 32 at 0.97."""
COLOUR_WEIGHT = 1.0

HISTOGRAM_BINS = 6

CHROMA_RANGE = 60.0
"""CIELAB a* and b* are binned over [-60, 60] (beyond it, into the outer bins)."""


def colour_histogram(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[6*6 + 6] square-rooted CIELAB histogram (a*, b* jointly, then L*) of the object's pixels
    well inside its outline (edge pixels mix in the background)."""
    from scipy import ndimage
    from skimage.color import rgb2lab

    inside = ndimage.binary_erosion(mask >= 0.5, iterations=2)
    if inside.sum() < 20:
        inside = mask >= 0.5
    lab = rgb2lab(np.clip(rgb, 0.0, 1.0))[inside]
    if len(lab) == 0:
        return np.zeros(HISTOGRAM_BINS * HISTOGRAM_BINS + HISTOGRAM_BINS)
    # saturated colours reach |a*|, |b*| of 80-100: clipped into the outer bins, never dropped
    ab = np.clip(lab[:, 1:], -CHROMA_RANGE + 1e-3, CHROMA_RANGE - 1e-3)
    chroma, _, _ = np.histogram2d(ab[:, 0], ab[:, 1], bins=HISTOGRAM_BINS,
                                  range=[[-CHROMA_RANGE, CHROMA_RANGE]] * 2)
    lightness, _ = np.histogram(lab[:, 0], bins=HISTOGRAM_BINS, range=(0, 100))
    return np.concatenate([np.sqrt(chroma.ravel() / len(lab)), 0.5 * np.sqrt(lightness / len(lab))])


def photo_distances(descriptors: list[tuple[np.ndarray, float]], histograms: np.ndarray,
                    colour_weight: float = COLOUR_WEIGHT) -> np.ndarray:
    """[N, N] combined distance (see the module's docstring): the cosine distance of each
    descriptor set [N, D] (with its weight) and the Euclidean distance of the square-rooted
    histograms, each in units of its median pair, in a weighted mean."""
    from scipy.spatial.distance import pdist, squareform

    parts = []
    for features, weight in descriptors:
        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        cosine = np.clip(1.0 - unit @ unit.T, 0.0, None)
        np.fill_diagonal(cosine, 0.0)
        parts.append((cosine, weight))
    parts.append((squareform(pdist(histograms)), colour_weight))
    total = sum(weight for _, weight in parts)
    if len(histograms) < 3:
        return sum(weight * d for d, weight in parts) / total
    pairs = np.triu_indices(len(histograms), 1)
    return sum(weight * d / max(float(np.median(d[pairs])), 1e-6) for d, weight in parts) / total


@dataclass
class Grouping:
    clusters: list[list[int]]
    """Photo indices per cluster, largest cluster first."""
    outliers: list[int]


def group_photos(distances: np.ndarray, min_photos: int, cut: float = CUT) -> Grouping:
    """Clusters of ``distances`` [N, N] (see the module's docstring)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    count = len(distances)
    if count == 1:
        return Grouping([], [0])
    pairs = np.triu_indices(count, 1)
    labels = fcluster(linkage(distances[pairs], "average"), cut, "distance")
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    clusters = sorted((g for g in groups.values() if len(g) >= min_photos), key=lambda g: (-len(g), g[0]))
    outliers = sorted(i for g in groups.values() if len(g) < min_photos for i in g)
    return Grouping(clusters, outliers)
