"""The "reconstruct" task: image(s) of one object → textured mesh (docs/reconstruction.md).

- `dispatch`: `ReconstructPipeline`, what the registry builds: the model or the baseline per request.
- `model`: `ModelReconstructPipeline`, the learned path: prepare → encode → fit → mesh → finish.
- `inputs`: finding the object and cropping it as the encoder was trained (`object_crop`, shared
  with training).
- `fitting`: viewpoint hypotheses, framing, test-time refinement of codes and cameras.
- `colour`: the surface colour from the input views (z-buffered) and the colour field.
- `presets`: `ModelPreset` per quality level.
- `weights`: the shipped checkpoint, a torch-free check of its files, loading it.
- `silhouette`: `SilhouetteReconstructPipeline`, the silhouette-inflation baseline.

Serving code: nothing here imports `backend.train` or `backend.data`.
"""
