"""The "mine" task: a folder of photos -> one shape per object it shows (docs/mining.md).

- `pipeline`: `MinePipeline`, what the registry builds: features -> clusters -> a shape per cluster.
- `photos`: each photo's object found and cropped once, at every size the later stages need.
- `clusters`: photo descriptors (the photo embedding, colour histograms) and the grouping.
- `views`: distant cameras, silhouettes of an occupancy volume, the viewpoint search.
- `pooled`: one cluster's shape and cameras from all its photos.
- `colour`: the shape's colour from the photos that see it.

Serving code: nothing here imports `backend.train` or `backend.data`.
"""
