"""LLM interest expansion as a library: prompts, backends, topic validation and grounding,
the two batch stages, and the interest folder that `warmstart expand` writes and serving
reads. Imports train (encoders) and index; never flows or serve."""
