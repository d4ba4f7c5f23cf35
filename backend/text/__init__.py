"""The language side of the offline text model: captions of procedural shapes and the vocabulary.

Serving-safe (stdlib + numpy, no torch, no ``backend.data`` or ``backend.train`` import):
- ``colours``: name_colour(rgb) -> ColourName ("dark brown")
- ``lexicon``: every noun, feature phrase and material word captions use, with the held-out split
- ``attributes``: attributes_for(category, spec_or_shape, extents) -> ShapeAttributes
- ``captions``: captions(attrs, rng, count, split) -> list[str]; the train and held-out templates
- ``vocab``: tokenize, Vocabulary, build_vocabulary, analyse(prompt, vocab), UnknownPromptError
"""
