"""Differentiable rendering in plain PyTorch.

- `cameras`: batched pinhole cameras (OpenCV axes), orbit/look-at and Blender conversions, rays.
- `fields`: the field-callable interface shared by the renderers, ray bounds, backgrounds.
- `volsdf`: VolSDF volume rendering of an SDF (colour, soft mask, depth, normals, eikonal).
- `surface`: DVR-style surface rendering with the implicit depth gradient.
- `extract`: marching-cubes mesh extraction from a field.
- `hull`: the visual hull of input masks as a field, for carving.
- `losses`: mask and SDF losses shared by training and test-time refinement.
"""
