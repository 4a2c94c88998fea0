"""Converts the published VGGish weights into one Flax msgpack file for FAD.

  python -m experiments.convert_vggish --vggish_source=vggish_model.ckpt \\
      --vggish_pca=vggish_pca_params.npz --vggish_output=vggish.msgpack

`--vggish_source` is the TF-slim checkpoint (`vggish_model.ckpt`) or the torchvggish state dict
(`vggish-10086976.pth`); neither TensorFlow nor PyTorch is needed. Then point the evaluation at
the result with `VGGISH_WEIGHTS=vggish.msgpack`. This file is intentionally kept short: the logic
is in `jaxrestore/vggish.py`.
"""

import jax
from absl import flags, logging

from experiments import cli
from jaxrestore import vggish

_SOURCE = flags.DEFINE_string(
    "vggish_source", None, "vggish_model.ckpt (TF, V1 file or V2 prefix) or a torchvggish .pth."
)
_OUTPUT = flags.DEFINE_string("vggish_output", None, "The Flax msgpack file to write.")
_PCA = flags.DEFINE_string(
    "vggish_pca", None, "Optional PCA parameters: vggish_pca_params.npz or the torchvggish .pth."
)
_TORCH_FLATTEN = flags.DEFINE_enum(
    "vggish_torch_flatten",
    "nhwc",
    ["nhwc", "nchw"],
    "Flatten order of a torch port before its first Linear (torchvggish: nhwc).",
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _SOURCE.value or not _OUTPUT.value:
        raise cli.UsageError("--vggish_source and --vggish_output are required")
    logging.info("devices: %d, processes: %d", jax.device_count(), jax.process_count())
    try:
        weights = vggish.convert_weights(
            _SOURCE.value, _OUTPUT.value, _PCA.value, _TORCH_FLATTEN.value
        )
    except OSError as error:
        raise cli.UsageError(str(error)) from None
    count = sum(leaf.size for leaf in jax.tree.leaves(weights.params))
    logging.info(
        "wrote %s: %d parameters, %d-d embedding, PCA %s",
        _OUTPUT.value,
        count,
        weights.model().embedding_size,
        "included" if weights.pca_means is not None else "absent",
    )


if __name__ == "__main__":
    cli.run(main)
