"""Grouping a collection's photos by the object they show.

Each photo gets two descriptors: the photo embedding (`backend.models.photo_embedding`: photos of
one object from different sides lie close, whatever their colours) and a colour histogram of the
object's own pixels (CIELAB chroma, and lightness, as square roots: Hellinger distances). The
distance between two photos is the mean of the two distances, each divided by its median over all
pairs, so neither dominates by its units. Average-linkage agglomeration cut at `CUT` gives the
clusters; one of fewer than ``min_photos`` photos is set apart as outliers (a distractor, a photo
whose object was not found well).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CUT = 0.6
"""Average-linkage distance at which clusters stop merging (distances are in units of the median
pair's)."""

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


def photo_distances(embeddings: np.ndarray, histograms: np.ndarray) -> np.ndarray:
    """[N, N] combined distance (see the module's docstring)."""
    from scipy.spatial.distance import pdist, squareform

    cosine = np.clip(1.0 - embeddings @ embeddings.T, 0.0, None)
    np.fill_diagonal(cosine, 0.0)
    colour = squareform(pdist(histograms))
    if len(embeddings) < 3:
        return (cosine + colour) / 2
    pairs = np.triu_indices(len(embeddings), 1)
    return (cosine / max(np.median(cosine[pairs]), 1e-6) + colour / max(np.median(colour[pairs]), 1e-6)) / 2


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
