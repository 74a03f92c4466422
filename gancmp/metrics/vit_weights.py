"""The DINOv2 and CLIP weights: the reference files' names and shapes, their conversion to the
Flax variables of `gancmp.nets.vit` (without torch), and where the files come from.

- DINOv2 ViT-L/14: the official checkpoint `dinov2_vitl14_pretrain.pth` (`DINOV2_URL`, the
  file `torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')` loads, so dgm-eval's), a
  plain state dict read by `gancmp.metrics.pth.load_pth`. Its 37×37 position embeddings are
  interpolated here, once, to the 16×16 patches of the 224×224 input, exactly as the model's
  `interpolate_pos_encoding` does on every call (`torch_bicubic_matrix`).
- CLIP ViT-L/14@336px: OpenAI's TorchScript archive `ViT-L-14-336px.pt` (`CLIP_URL`; its
  sha256 is the URL's directory, `CLIP_SHA256`), read by `gancmp.metrics.pth.load_torchscript`;
  a plain state dict with the same `visual.*` names (open_clip's copy of the OpenAI weights,
  `open_clip_pytorch_model.bin` of hf-hub `timm/vit_large_patch14_clip_336.openai`) is read
  too. Only the visual tower is kept; the text tower's entries are ignored.

Torch Linear weights [out, in] become kernels [in, out]; a patch convolution [D, C, p, p]
becomes the kernel [p·p·C, D] of the flattened (row, column, channel) patch. A missing, unknown
or wrong-shaped entry raises `WeightsError`, naming the entry and where the file comes from.
The sha256 of the file read is returned with its variables and recorded with every number.
"""

from __future__ import annotations

import functools
import math
import pickle
import zipfile

import numpy as np
from flax import traverse_util

from gancmp import storage
from gancmp.metrics.pth import is_torchscript, load_pth, load_torchscript
from gancmp.nets import clip as clip_net
from gancmp.nets import dinov2 as dino_net
from gancmp.nets import vit
from gancmp.storage import sha256_file

DINOV2_URL = ("https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/"
              "dinov2_vitl14_pretrain.pth")
CLIP_SHA256 = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
CLIP_URL = f"https://openaipublic.azureedge.net/clip/models/{CLIP_SHA256}/ViT-L-14-336px.pt"
FILES = {"dinov2": ("dinov2_vitl14_pretrain.pth", DINOV2_URL),
         "clip": ("ViT-L-14-336px.pt", CLIP_URL)}
CACHE_DIR = "~/.cache/gancmp"  # for messages; `storage.cache_root()` is the place


class WeightsError(ValueError):
    """Weights missing, unreadable or not the network's; the message says where they come
    from."""

    def __init__(self, network: str, problem: str):
        name, url = FILES[network]
        super().__init__(f"{problem}\nThe {network} weights are {name} ({url}): download it "
                         f"once and pass its path, or put it in {CACHE_DIR}.")


# ---------------------------------------------------------------------------------------------
# Torch's bicubic interpolation of the DINOv2 position embeddings
# ---------------------------------------------------------------------------------------------

def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Torch's cubic convolution kernel (a = −0.75) at distances |t| < 2."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def torch_bicubic_matrix(in_size: int, scale_factor: float) -> np.ndarray:
    """The [out, in] matrix (float64) of torch `F.interpolate(mode='bicubic',
    align_corners=False, antialias=False, scale_factor=s)` along one axis: out = floor(in·s),
    source x = (d + 0.5)/s − 0.5 (the given factor, not in/out), taps floor(x) − 1 … + 2 with
    the a = −0.75 kernel, indices clamped to the edge."""
    out_size = int(math.floor(in_size * scale_factor))
    matrix = np.zeros((out_size, in_size))
    for d in range(out_size):
        x = (d + 0.5) / scale_factor - 0.5
        i0 = math.floor(x)
        for tap in range(-1, 3):
            matrix[d, min(max(i0 + tap, 0), in_size - 1)] += _cubic(np.float64(x - i0 - tap))
    return matrix


def interpolate_pos_embed(pos: np.ndarray, patches: int,
                          offset: float = dino_net.INTERPOLATE_OFFSET) -> np.ndarray:
    """DINOv2's `interpolate_pos_encoding`: pos [1, 1 + M², D] → [1 + patches², D] (the class
    token's row kept, the M×M grid resized to patches×patches by torch bicubic with scale
    factor (patches + offset)/M)."""
    pos = np.asarray(pos, np.float64).reshape(-1, pos.shape[-1])
    m = math.isqrt(pos.shape[0] - 1)
    if m * m != pos.shape[0] - 1:
        raise ValueError(f"pos_embed of {pos.shape[0] - 1} patches is no square grid")
    if m == patches:
        return pos.astype(np.float32)
    w = torch_bicubic_matrix(m, float(patches + offset) / m)
    grid = np.einsum("ia,jb,abd->ijd", w, w, pos[1:].reshape(m, m, -1))
    return np.concatenate([pos[:1], grid.reshape(patches * patches, -1)]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Names: torch entry ↔ Flax variable
# ---------------------------------------------------------------------------------------------

_DINO_BLOCK = {"norm1.weight": ("norm1", "scale"), "norm1.bias": ("norm1", "bias"),
               "attn.qkv.weight": ("attn", "qkv", "kernel"),
               "attn.qkv.bias": ("attn", "qkv", "bias"),
               "attn.proj.weight": ("attn", "proj", "kernel"),
               "attn.proj.bias": ("attn", "proj", "bias"), "ls1.gamma": ("ls1", "gamma"),
               "norm2.weight": ("norm2", "scale"), "norm2.bias": ("norm2", "bias"),
               "mlp.fc1.weight": ("mlp", "fc1", "kernel"), "mlp.fc1.bias": ("mlp", "fc1", "bias"),
               "mlp.fc2.weight": ("mlp", "fc2", "kernel"), "mlp.fc2.bias": ("mlp", "fc2", "bias"),
               "ls2.gamma": ("ls2", "gamma")}
_CLIP_BLOCK = {"ln_1.weight": "norm1.weight", "ln_1.bias": "norm1.bias",
               "attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias",
               "attn.out_proj.weight": "attn.proj.weight", "attn.out_proj.bias": "attn.proj.bias",
               "ln_2.weight": "norm2.weight", "ln_2.bias": "norm2.bias",
               "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
               "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias"}


def dinov2_names(config: vit.ViTConfig) -> dict[str, tuple[str, ...]]:
    """Official DINOv2 checkpoint name → Flax params path, in the checkpoint's order."""
    names = {"cls_token": ("cls_token",), "pos_embed": ("pos_embed",),
             "patch_embed.proj.weight": ("patch_embed", "kernel"),
             "patch_embed.proj.bias": ("patch_embed", "bias")}
    for i in range(config.depth):
        names.update({f"blocks.{i}.{k}": (f"blocks_{i}", *v) for k, v in _DINO_BLOCK.items()})
    return {**names, "norm.weight": ("norm", "scale"), "norm.bias": ("norm", "bias")}


def clip_names(config: vit.ViTConfig) -> dict[str, tuple[str, ...]]:
    """OpenAI CLIP `visual.*` name → Flax params path of `ClipVisual`, in the file's order."""
    names = {"visual.class_embedding": ("trunk", "cls_token"),
             "visual.positional_embedding": ("trunk", "pos_embed"),
             "visual.proj": ("proj",), "visual.conv1.weight": ("trunk", "patch_embed", "kernel"),
             "visual.ln_pre.weight": ("trunk", "ln_pre", "scale"),
             "visual.ln_pre.bias": ("trunk", "ln_pre", "bias")}
    for i in range(config.depth):
        for ours, theirs in _CLIP_BLOCK.items():
            names[f"visual.transformer.resblocks.{i}.{ours}"] = (
                "trunk", f"blocks_{i}", *_DINO_BLOCK[theirs])
    return {**names, "visual.ln_post.weight": ("trunk", "norm", "scale"),
            "visual.ln_post.bias": ("trunk", "norm", "bias")}


def _torch_shape(name: str, shape: tuple[int, ...], config: vit.ViTConfig) -> tuple[int, ...]:
    """A Flax variable's shape as the torch file stores it."""
    if name.endswith(("patch_embed.proj.weight", "conv1.weight")):
        return (shape[1], 3, config.patch, config.patch)
    if name == "cls_token":
        return (1, 1, *shape)
    if name == "pos_embed":
        return (1, *shape)
    if name.endswith("weight") and len(shape) == 2:
        return shape[::-1]
    return shape


@functools.lru_cache(maxsize=8)
def _dinov2_shapes(config: vit.ViTConfig, checkpoint_size: int) -> tuple:
    flat = _flat_shapes(dino_net.model(config), checkpoint_size)
    out = {name: _torch_shape(name, flat[path], config)
           for name, path in dinov2_names(config).items()}
    return tuple({**out, "mask_token": (1, config.width)}.items())


@functools.lru_cache(maxsize=8)
def _clip_shapes(config: vit.ViTConfig, embed_dim: int, input_size: int) -> tuple:
    flat = _flat_shapes(clip_net.model(config, embed_dim), input_size)
    return tuple((name, _torch_shape(name.removeprefix("visual."), flat[path], config)
                  if not name.endswith(("class_embedding", "positional_embedding"))
                  else flat[path]) for name, path in clip_names(config).items())


def dinov2_state_dict_shapes(config: vit.ViTConfig = dino_net.VIT_L14,
                             checkpoint_size: int = dino_net.CHECKPOINT_SIZE
                             ) -> dict[str, tuple[int, ...]]:
    """The names and shapes of the official DINOv2 checkpoint of `config` (ViT-L/14: the
    official `dinov2_vitl14_pretrain.pth`'s), from the Flax module, plus its unused
    `mask_token` [1, width]."""
    return dict(_dinov2_shapes(config, checkpoint_size))


def clip_state_dict_shapes(config: vit.ViTConfig = clip_net.VIT_L14,
                           embed_dim: int = clip_net.FEATURE_DIM,
                           input_size: int = clip_net.INPUT_SIZE) -> dict[str, tuple[int, ...]]:
    """The `visual.*` names and shapes of OpenAI's CLIP file of `config` (ViT-L/14@336px's)."""
    return dict(_clip_shapes(config, embed_dim, input_size))


def _flat_shapes(module, size: int) -> dict[tuple[str, ...], tuple[int, ...]]:
    import jax  # noqa: PLC0415 (shapes only)
    import jax.numpy as jnp  # noqa: PLC0415

    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                            jnp.zeros((1, size, size, 3), jnp.float32))["params"]
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes).items()}


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------

def _to_flax(name: str, value: np.ndarray, config: vit.ViTConfig) -> np.ndarray:
    """A torch entry as its Flax variable (see the module docstring)."""
    if name.endswith(("patch_embed.proj.weight", "conv1.weight")):
        return value.transpose(2, 3, 1, 0).reshape(-1, value.shape[0])
    if name in ("cls_token", "pos_embed"):
        return value.reshape(-1) if name == "cls_token" else value.reshape(value.shape[-2:])
    if name.endswith("weight") and value.ndim == 2:
        return value.T
    return value


def _convert(network: str, state_dict: dict[str, np.ndarray], names: dict,
             shapes: dict[str, tuple[int, ...]], config: vit.ViTConfig
             ) -> dict[tuple[str, ...], np.ndarray]:
    """{Flax path: float32 array} of every entry of `names`, each checked against `shapes`
    (which may list optional entries too); every problem is gathered into one error."""
    problems, flat = [], {}
    for name, path in names.items():
        if name not in state_dict:
            problems.append(f"missing {name}")
        elif tuple(np.shape(state_dict[name])) != tuple(shapes[name]):
            problems.append(f"{name} has shape {tuple(np.shape(state_dict[name]))}, not "
                            f"{tuple(shapes[name])}")
        else:
            value = np.asarray(state_dict[name], np.float32)
            flat[path] = np.ascontiguousarray(_to_flax(name, value, config))
    problems += [f"unexpected entry {k}" for k in state_dict
                 if k not in names and k not in shapes]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)"
                                            if len(problems) > 5 else "")
        raise WeightsError(network, f"not the {network} weights: {shown}.")
    return flat


def convert_dinov2(state_dict: dict[str, np.ndarray],
                   config: vit.ViTConfig = dino_net.VIT_L14,
                   input_size: int = dino_net.INPUT_SIZE) -> dict:
    """Official DINOv2 state dict → {'params': ...} of `gancmp.nets.dinov2.model(config)` for
    inputs of input_size² pixels (the position embeddings interpolated to them; `mask_token`
    dropped)."""
    if np.ndim(state_dict.get("pos_embed")) != 3:
        raise WeightsError("dinov2", "not the dinov2 weights: no pos_embed [1, tokens, width].")
    pos = np.asarray(state_dict["pos_embed"])
    checkpoint_size = math.isqrt(max(pos.shape[1] - 1, 0)) * config.patch
    shapes = dinov2_state_dict_shapes(config, checkpoint_size)
    flat = _convert("dinov2", state_dict, dinov2_names(config), shapes, config)
    flat[("pos_embed",)] = interpolate_pos_embed(pos, input_size // config.patch)
    return {"params": traverse_util.unflatten_dict(flat)}


def convert_clip(state_dict: dict[str, np.ndarray], config: vit.ViTConfig = clip_net.VIT_L14,
                 embed_dim: int = clip_net.FEATURE_DIM,
                 input_size: int = clip_net.INPUT_SIZE) -> dict:
    """OpenAI CLIP state dict (`visual.*` entries; the rest, the text tower, ignored) →
    {'params': ...} of `gancmp.nets.clip.model(config, embed_dim)`."""
    names = clip_names(config)
    shapes = clip_state_dict_shapes(config, embed_dim, input_size)
    visual = {k: v for k, v in state_dict.items() if k.startswith("visual.")}
    if not visual:
        raise WeightsError("clip", "not CLIP weights: no visual.* entries.")
    flat = _convert("clip", visual, names, shapes, config)
    return {"params": traverse_util.unflatten_dict(flat)}


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def read_state_dict(network: str, path: str) -> dict[str, np.ndarray]:
    """A torch file's tensors by name: a TorchScript archive or a pickled state dict."""
    try:
        if is_torchscript(path):
            return load_torchscript(path)
        return load_pth(path)
    except FileNotFoundError as e:
        raise WeightsError(network, f"no weights file at {path}.") from e
    except (OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(network, f"cannot read {path}: {e}") from e


def resolve_path(network: str, path: str | None, cache_dir: str | None = None) -> str:
    """`path`, or the reference file's name in the cache directory (nothing is downloaded)."""
    if path:
        return path
    name = FILES[network][0]
    cached = storage.join(cache_dir or storage.cache_root(), name)
    if not storage.exists(cached):
        raise WeightsError(network, f"no weights given and none cached at {cached}.")
    return cached


def load_variables(network: str, path: str | None, cache_dir: str | None = None
                   ) -> tuple[dict, str, str]:
    """(variables, the file's sha256, the path read) of "dinov2" or "clip" from `path` (None:
    the cached reference file)."""
    path = resolve_path(network, path, cache_dir)
    state_dict = read_state_dict(network, path)
    variables = convert_dinov2(state_dict) if network == "dinov2" else convert_clip(state_dict)
    return variables, sha256_file(path), path
