"""Token sequences and feature maps -> one image-level vector, by the `pooling` names of config.yaml.

"" is biobench's own definition of a family's image feature: the CLS token for token models with a class token,
otherwise the max over tokens or spatial positions (what biobench reports its leaderboard with).
"cls": the class token. "avg" / "max": mean / max over patch tokens (prefix tokens left out) or spatial positions.
"token_avg": the class token concatenated with the mean patch token (DINOv2's linear-evaluation feature)."""

from __future__ import annotations

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from biobench.errors import ModelLoadError

POOLINGS = ("", "cls", "avg", "max", "token_avg")


@jaxtyped(typechecker=beartype)
def pool_tokens(tokens: Float[torch.Tensor, "b n d"], n_prefix: int, pooling: str) -> Float[torch.Tensor, "b e"]:
    """`tokens` = the `n_prefix` prefix tokens (class token first, then registers) followed by the patch tokens."""
    patches = tokens[:, n_prefix:]
    if pooling in ("cls", "token_avg") and n_prefix == 0:
        raise ModelLoadError(f"pooling {pooling!r} needs a class token, and this model has none; use avg or max")
    if pooling == "cls" or (pooling == "" and n_prefix):
        return tokens[:, 0]
    if pooling == "avg":
        return patches.mean(1)
    if pooling == "token_avg":
        return torch.cat([tokens[:, 0], patches.mean(1)], dim=-1)
    return patches.amax(1)


@jaxtyped(typechecker=beartype)
def pool_map(maps: Float[torch.Tensor, "b c h w"], pooling: str) -> Float[torch.Tensor, "b c"]:
    if pooling in ("cls", "token_avg"):
        raise ModelLoadError(f"pooling {pooling!r} needs a class token, and this model gives feature maps; "
                             "use avg or max")
    return maps.mean((2, 3)) if pooling == "avg" else maps.amax((2, 3))
