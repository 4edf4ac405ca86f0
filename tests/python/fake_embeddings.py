"""Two deterministic llm embedding models, `fake-64` and `fake-32`, for tests that use llm as its
users do, without a network or an API key.

Imported, `register()` adds them to llm's plugin manager. Run as a script, it is the `llm`
command with the models registered: `python fake_embeddings.py embed docs d1 -c text -d db`.
"""
import hashlib
import struct
import sys

import llm
import llm.cli
import numpy as np


def vector(text, dim):
    """The embedding of `text`: a fixed random vector per text, the same in every process. A text
    `near:<other>` is close to the embedding of `<other>`."""
    if text.startswith("near:"):
        base = np.asarray(vector(text[5:], dim), dtype=np.float64)
        return [float(x) for x in base + 0.05 * np.asarray(vector("noise:" + text, dim))]
    seed = int.from_bytes(hashlib.sha256(f"{dim}:{text}".encode()).digest()[:8], "little")
    values = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return [float(x) for x in values]


def decode(blob):
    """llm's encoding of a vector: little-endian float32."""
    return struct.unpack("<" + "f" * (len(blob) // 4), blob)


class Fake(llm.EmbeddingModel):
    def __init__(self, dim):
        self.model_id = f"fake-{dim}"
        self.dim = dim

    def embed_batch(self, items):
        for item in items:
            yield vector(item if isinstance(item, str) else item.decode(), self.dim)


class Plugin:
    @llm.hookimpl
    def register_embedding_models(self, register):
        register(Fake(64))
        register(Fake(32))


def register():
    if not llm.plugins.pm.has_plugin("fake-embeddings"):
        llm.plugins.pm.register(Plugin(), name="fake-embeddings")


if __name__ == "__main__":
    register()
    llm.cli.cli(sys.argv[1:])
