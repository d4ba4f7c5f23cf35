"""The torch evaluation of the procedural generator gives the numpy generator's surfaces.

Tolerances: within 0.05 of the surface, field values agree to 1e-9 (float64) on 99.5 % of the
points and to 1e-3 on all: the numpy unions skip children by their bounding boxes, which is exact
for true distances but not quite for the distance *bounds* of ellipsoids in a smooth blend (the
torch side evaluates every child). Signs must agree everywhere; the torch measurement of the normalisation
(centre, scale) agrees to 1e-6 of the object size; material ids agree on ≥ 99 % of points (ties
between touching parts may break either way).
"""

import numpy as np
import pytest
import torch

from backend.data.procedural import CATEGORIES, COMPOSITION, ProceduralShape, builder, category_rng, make_shape
from backend.data.procedural.torch_sdf import TorchShape, compile_sdf, make_torch_shape, zero_crossing_box
from backend.data.procedural import sdf as S


def _points(seed: int, shape: ProceduralShape, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    uniform = rng.uniform(-0.6, 0.6, (n, 3))
    # points near the surface: from the mesh, pushed along random directions by up to 0.03
    surface = shape.mesh(32).sample(n) + rng.normal(scale=0.015, size=(n, 3))
    return np.concatenate([uniform, surface])


@pytest.mark.parametrize("category", CATEGORIES)
def test_field_and_materials_match_numpy(category):
    seed = 3
    shape = make_shape(category, seed)
    twin = TorchShape.from_numpy(shape, builder(category)(category_rng(category, seed)), dtype=torch.float64)
    pts = _points(seed, shape)
    ref = shape.sdf(pts)
    got, mat = twin.sdf_and_material(torch.from_numpy(pts))
    got = got.numpy()
    near = np.abs(ref) < 0.05
    assert near.sum() > 1000
    err = np.abs(got[near] - ref[near])
    assert (err <= 1e-9).mean() >= 0.995 and err.max() <= 1e-3
    assert (np.sign(got) == np.sign(ref)).all()
    assert (mat.numpy() == shape.material_ids(pts)).mean() >= 0.99


@pytest.mark.parametrize("seed", [0, 7])
def test_compositions_match_numpy(seed):
    shape = make_shape(COMPOSITION, seed)
    twin = TorchShape.from_numpy(shape, builder(COMPOSITION)(category_rng(COMPOSITION, seed)), dtype=torch.float64)
    pts = _points(seed, shape)
    ref = shape.sdf(pts)
    got = twin.sdf(torch.from_numpy(pts)).numpy()
    near = np.abs(ref) < 0.05
    err = np.abs(got[near] - ref[near])
    assert (err <= 1e-9).mean() >= 0.995 and err.max() <= 1e-3
    assert (np.sign(got) == np.sign(ref)).all()


@pytest.mark.parametrize("category", ["chair", "mug", "humanoid", "cabinet"])
def test_torch_measurement_finds_the_numpy_normalisation(category):
    seed = 1
    spec = builder(category)(category_rng(category, seed))
    reference = ProceduralShape(category, seed, spec, measure_res=64)
    twin = TorchShape(category, seed, builder(category)(category_rng(category, seed)), dtype=torch.float64,
                      measure_res=64)
    assert abs(twin.scale / reference._scale - 1.0) < 1e-6
    np.testing.assert_allclose(twin.center.numpy(), reference._center, atol=1e-6 * reference._scale)


def test_float32_bake_is_the_surface_on_the_grid():
    shape = make_torch_shape("table", 0, measure_res=64)
    sdf, material = shape.bake(48)
    assert sdf.shape == (48, 48, 48) and material.dtype == torch.uint8
    box = zero_crossing_box(sdf, -0.55, 0.55)
    lo, hi = (b.numpy() for b in box)
    # normalised: longest side 1 within a voxel of this coarser grid, centred
    assert abs((hi - lo).max() - 1.0) < 1.1 / 47
    assert np.abs((hi + lo) / 2).max() < 1.1 / 47
    assert set(material.unique().tolist()) <= set(range(len(shape.materials)))
    assert shape.palette().shape == (len(shape.materials), 5)


def test_zero_crossing_box_of_a_sphere():
    res = 33
    pts = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, res, dtype=torch.float64)] * 3, indexing="ij"), -1)
    vol = pts.norm(dim=-1) - 0.5
    lo, hi = zero_crossing_box(vol, -1.0, 1.0)
    np.testing.assert_allclose(lo.numpy(), [-0.5] * 3, atol=1e-9)  # grid points lie on the axes
    np.testing.assert_allclose(hi.numpy(), [0.5] * 3, atol=1e-9)
    assert zero_crossing_box(vol + 5.0, -1.0, 1.0) is None


def test_every_node_kind_compiles_and_matches():
    rng = np.random.default_rng(0)
    prim = S.RoundBox([0.1, 0, 0], [0.3, 0.2, 0.1], 0.05)
    nodes = [
        S.Sphere([0, 0, 0.1], 0.3), S.Ellipsoid([0, 0, 0], [0.3, 0.2, 0.1]), prim,
        S.Cylinder([0, 0, 0], 0.2, 0.3, 0.05), S.RoundCone([0, 0, 0], [0.2, 0.1, 0.3], 0.1, 0.05),
        S.Capsule([0, 0, 0], [0, 0, 0], 0.2), S.Torus([0, 0, 0], 0.3, 0.05), S.HalfSpace([0, 1, 1], 0.1),
        S.Lathe(S.lathe_profile(lambda z: 0.2 + 0.1 * np.sin(6 * z), -0.3, 0.3)),
        S.rotated(prim, S.rotation("y", 0.7), (0.1, 0, 0)), S.Transform(prim, S.rotation("x", 0.3), [0, 0.1, 0], 1.7),
        S.Union([prim, S.Sphere([0.3, 0, 0], 0.1)]), S.SmoothUnion([prim, S.Sphere([0.3, 0, 0], 0.1)], 0.05),
        S.Subtract(prim, S.Sphere([0.3, 0, 0], 0.1), 0.0), S.Subtract(prim, S.Sphere([0.3, 0, 0], 0.1), 0.03),
        S.Intersect(prim, S.Sphere([0, 0, 0], 0.3)), S.Shell(prim, 0.01), S.Offset(prim, 0.02),
        S.Elongate(S.Sphere([0, 0, 0], 0.1), [0.2, 0, 0.1]), S.MirrorX(prim),
        S.Displace(prim, rng.normal(size=(3, 3)) * 8, rng.uniform(0, 6, 3), 0.02),
    ]
    pts = rng.uniform(-0.6, 0.6, (2000, 3))
    for node in nodes:
        got = compile_sdf(node, dtype=torch.float64)(torch.from_numpy(pts)).numpy()
        ref = node(pts)
        near = np.abs(ref) < 0.05
        np.testing.assert_allclose(got[near], ref[near], atol=1e-9, err_msg=type(node).__name__)
        assert (np.sign(got) == np.sign(ref)).all(), type(node).__name__
