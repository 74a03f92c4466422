"""DINOv2 and CLIP feature networks: parity with the reference implementations on small random
weights, the full-size files' names and shapes, the extractor and registry, the evaluation's
memory.

The parity reference is tests/fixtures/feature_nets_expected.npz with dinov2_tiny.pth and
clip_tiny.pt, written by experiments/reference/feature_nets_reference.py with the official
DINOv2 module code, dgm-eval's transforms and open_clip's VisionTransformer (torch).
"""

from __future__ import annotations

import hashlib
import os
import pickle

import jax
import numpy as np
import pytest

from gancmp.metrics import networks, pth, vit_features, vit_weights
from gancmp.nets import dinov2 as dino_net
from gancmp.nets import vit
from gancmp.nets.forms import accelerator_forms
from gancmp.nets.vit import ViTConfig

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TINY_DINO = ViTConfig(width=32, depth=2, heads=2, mlp_dim=128, patch=14, act="gelu",
                      layer_scale=True, eps=1e-6)
TINY_CLIP = ViTConfig(width=32, depth=2, heads=2, mlp_dim=128, patch=14, act="quick_gelu",
                      ln_pre=True, patch_bias=False, eps=1e-5)
GIB = 2**30


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURES, "feature_nets_expected.npz")) as data:
        return {k: data[k] for k in data.files}


def _images(expected, prefix: str) -> np.ndarray:
    """The reference script's images, regenerated from their seed (checked by sha256)."""
    seed, shape = int(expected[f"{prefix}_seed"]), tuple(expected[f"{prefix}_shape"])
    images = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    key = "dinov2" if prefix == "dino" else "clip"
    assert hashlib.sha256(images.tobytes()).hexdigest() == str(expected[f"{key}_images_sha256"])
    return images


def _assert_parity(ours: np.ndarray, ref: np.ndarray) -> None:
    """Each image's features equal the reference's to 1e-4 relative (L2 of the vector)."""
    assert ours.shape == ref.shape and ours.dtype == np.float32
    rel = np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 1e-4, rel


@pytest.fixture(scope="module")
def tiny_dino():
    variables = vit_weights.convert_dinov2(
        pth.load_pth(os.path.join(FIXTURES, "dinov2_tiny.pth")), TINY_DINO)
    return {mode: vit_features.ViTExtractor(variables, "dinov2", preprocess=mode,
                                            config=TINY_DINO, dim=32, batch_size=4)
            for mode in dino_net.PREPROCESS_MODES}


# ---------------------------------------------------------------------------------------------
# Parity with the references
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", dino_net.PREPROCESS_MODES)
def test_dinov2_equals_the_official_module_behind_dgm_evals_transform(tiny_dino, expected, mode):
    """The official DinoVisionTransformer (18×18 position embeddings interpolated to 16×16 as
    the real 37×37 are) behind dgm-eval's transform (default: 8-bit PIL resize; clean:
    `--clean_resize`) on 20×24 uint8 images: ours from the .pth, through the extractor on 4
    devices, equal its features to 1e-4."""
    images = _images(expected, "dino").astype(np.float32) / 255.0
    _assert_parity(tiny_dino[mode](images), expected[f"dinov2_{mode}"])


def test_dinov2_8bit_resize_is_pillows_to_one_level(expected):
    """dgm-eval's default resize (Pillow on the 8-bit image, fixed point): ours rounds float
    sums instead, so a pixel may be one level off where a sum falls on a half; measured here:
    at most one level, in under 0.01 % of the values."""
    image = _images(expected, "dino")[:1].astype(np.float32) / 255.0
    x = np.asarray(dino_net.preprocess(image, "dgm_eval"))[0]
    levels = np.round((x * dino_net.IMAGENET_STD + dino_net.IMAGENET_MEAN) * 255.0)
    diff = np.abs(levels - expected["dinov2_resize8_first"].astype(np.float64))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_clip_from_torchscript_equals_open_clips_visual_tower(expected):
    """open_clip's VisionTransformer (QuickGELU, 336 px) saved as a TorchScript archive, read
    without torch: ours equal its unit-norm projected embeddings (CMMD's feature) to 1e-4."""
    path = os.path.join(FIXTURES, "clip_tiny.pt")
    assert pth.is_torchscript(path)
    variables = vit_weights.convert_clip(pth.load_torchscript(path), TINY_CLIP, 16)
    extractor = vit_features.ViTExtractor(variables, "clip", config=TINY_CLIP, dim=16,
                                          batch_size=4)
    feats = extractor(_images(expected, "clip").astype(np.float32) / 255.0)
    _assert_parity(feats, expected["clip_cmmd"])
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-6)


def test_cpu_form_gives_the_accelerators_features(tiny_dino, expected):
    """On CPU devices the network takes `vit.CPU_FORM`: dense kernels kept [out, in] (XLA:CPU's
    faster product) and 4 heads per attention product; the accelerators' form keeps the
    converted [in, out] variables as they are and all heads in one product. The same images
    give the same features to float32 summation order, and the converted weights are the
    same numbers transposed."""
    variables = vit_weights.convert_dinov2(
        pth.load_pth(os.path.join(FIXTURES, "dinov2_tiny.pth")), TINY_DINO)
    with accelerator_forms():
        theirs = vit_features.ViTExtractor(variables, "dinov2", preprocess="clean",
                                           config=TINY_DINO, dim=32, batch_size=4)
    ours = tiny_dino["clean"]
    assert (ours.form, theirs.form) == (vit.CPU_FORM, vit.ACCELERATOR_FORM)
    assert vit.CPU_FORM == vit.ViTForm("out_in", 4) and vit.ACCELERATOR_FORM == vit.ViTForm()
    qkv = ("params", "blocks_0", "attn", "qkv", "kernel")
    np.testing.assert_array_equal(_leaf(ours.variables, qkv).T, _leaf(variables, qkv))
    np.testing.assert_array_equal(_leaf(theirs.variables, qkv), _leaf(variables, qkv))
    images = _images(expected, "dino").astype(np.float32) / 255.0
    np.testing.assert_allclose(ours(images), theirs(images), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="kernel_layout must be one of in_out, out_in"):
        vit.with_kernel_layout(variables, "out-in")
    with pytest.raises(ValueError, match="kernel_layout must be one of in_out, out_in"):
        vit.ViTForm("out-in", 4)
    with pytest.raises(ValueError, match="head_group must be a number of heads ≥ 1 or None"):
        vit.ViTForm("out_in", 0)


@pytest.mark.parametrize("form, queries", [(vit.ACCELERATOR_FORM, None), (vit.CPU_FORM, None),
                                           (vit.ViTForm("out_in", 3), 1)])
def test_attention_equals_softmax_attention_by_hand(form, queries):
    """Attention of 6 heads (d = 4) over 5 tokens, in one product, in groups of 4 (4 + 2) and of
    3 with the first token's query only, against the definition in float64: the qkv kernel's
    columns are (q | k | v) × (head, d), each head softmax(q·kᵀ/√d)·v, heads concatenated
    (head, d) into proj."""
    heads, d, n, width = 6, 4, 5, 24
    x = np.random.default_rng(0).normal(size=(2, n, width)).astype(np.float32)
    layer = vit.Attention(heads, form=form, queries=queries)
    variables = layer.init(jax.random.PRNGKey(0), x)
    ours = np.asarray(layer.apply(variables, x))
    p = {name: {k: np.asarray(v, np.float64) for k, v in leaf.items()}
         for name, leaf in variables["params"].items()}
    kernel = {n: p[n]["kernel"] if form.kernel_layout == "in_out" else p[n]["kernel"].T
              for n in ("qkv", "proj")}
    qkv = (x @ kernel["qkv"] + p["qkv"]["bias"]).reshape(2, n, 3, heads, d)
    q, k, v = qkv[:, :queries or n, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", weights, v).reshape(2, -1, width)
    expected = out @ kernel["proj"] + p["proj"]["bias"]
    assert ours.shape == (2, queries or n, width)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def _leaf(tree, path):
    for key in path:
        tree = tree[key]
    return np.asarray(tree)


def test_apply_is_the_extractors_pipeline_for_fused_programs(tiny_dino, expected):
    """`apply` (what the on-device evaluator fuses into its chunk program) gives the call's
    features; it has no logits."""
    extractor = tiny_dino["clean"]
    images = _images(expected, "dino").astype(np.float32) / 255.0
    feats, logits = jax.jit(extractor.apply)(extractor.variables, images)
    assert logits is None
    np.testing.assert_allclose(np.asarray(feats), extractor(images), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no classifier"):
        extractor.apply(extractor.variables, images, logits=True)


def test_torch_bicubic_matrix_on_a_hand_case():
    """Torch's bicubic (a = −0.75) of 2 → 4 pixels, scale factor 2: out d samples
    x = (d + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25, edges clamped; weights by hand."""
    w = vit_weights.torch_bicubic_matrix(2, 2.0)

    def k(t):  # the a = −0.75 kernel
        t = abs(t)
        return 1.25 * t**3 - 2.25 * t**2 + 1 if t <= 1 else -0.75 * (t**3 - 5 * t**2 + 8 * t - 4)
    # x = 0.25: taps −1, 0, 1, 2 at distances 1.25, 0.25, 0.75, 1.75; −1 → 0, 2 → 1
    row1 = [k(1.25) + k(0.25), k(0.75) + k(1.75)]
    np.testing.assert_allclose(w[1], row1, rtol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(w[2], w[1][::-1], rtol=1e-12)  # the mirror image


# ---------------------------------------------------------------------------------------------
# The full-size files: names and shapes, without downloading
# ---------------------------------------------------------------------------------------------

def _official_dinov2_vitl14() -> dict[str, tuple[int, ...]]:
    """The official dinov2_vitl14_pretrain.pth's entries, from its architecture (width 1024,
    24 blocks, MLP 4096, patch 14, img_size 518: 1 + 37² = 1370 positions)."""
    d, h = 1024, 4096
    out = {"cls_token": (1, 1, d), "pos_embed": (1, 1370, d), "mask_token": (1, d),
           "patch_embed.proj.weight": (d, 3, 14, 14), "patch_embed.proj.bias": (d,)}
    for i in range(24):
        b = f"blocks.{i}."
        out.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,),
                    b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
                    b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                    b + "ls1.gamma": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                    b + "mlp.fc1.weight": (h, d), b + "mlp.fc1.bias": (h,),
                    b + "mlp.fc2.weight": (d, h), b + "mlp.fc2.bias": (d,), b + "ls2.gamma": (d,)})
    return {**out, "norm.weight": (d,), "norm.bias": (d,)}


def _openai_clip_vitl14_336_visual() -> dict[str, tuple[int, ...]]:
    """The visual entries of OpenAI's ViT-L-14-336px.pt, from its architecture (width 1024,
    24 blocks, patch 14, 336 px: 1 + 24² = 577 positions, embedding 768)."""
    d, v = 1024, "visual."
    out = {v + "class_embedding": (d,), v + "positional_embedding": (577, d),
           v + "proj": (d, 768), v + "conv1.weight": (d, 3, 14, 14),
           v + "ln_pre.weight": (d,), v + "ln_pre.bias": (d,),
           v + "ln_post.weight": (d,), v + "ln_post.bias": (d,)}
    for i in range(24):
        b = f"{v}transformer.resblocks.{i}."
        out.update({b + "ln_1.weight": (d,), b + "ln_1.bias": (d,),
                    b + "attn.in_proj_weight": (3 * d, d), b + "attn.in_proj_bias": (3 * d,),
                    b + "attn.out_proj.weight": (d, d), b + "attn.out_proj.bias": (d,),
                    b + "ln_2.weight": (d,), b + "ln_2.bias": (d,),
                    b + "mlp.c_fc.weight": (4 * d, d), b + "mlp.c_fc.bias": (4 * d,),
                    b + "mlp.c_proj.weight": (d, 4 * d), b + "mlp.c_proj.bias": (d,)})
    return out


def test_full_size_state_dicts_names_and_shapes():
    """What the converters expect of the full-size files (derived from our Flax modules) is
    exactly the reference files' entries (written out from the architectures)."""
    assert vit_weights.dinov2_state_dict_shapes() == _official_dinov2_vitl14()
    assert vit_weights.clip_state_dict_shapes() == _openai_clip_vitl14_336_visual()
    assert vit_features.parameter_count("dinov2") == 303_227_904  # pos_embed at 224 px: 257
    assert vit_features.parameter_count("clip") == 304_293_888


def test_conversion_refuses_other_weights_naming_the_entry():
    state = pth.load_pth(os.path.join(FIXTURES, "dinov2_tiny.pth"))
    with pytest.raises(vit_weights.WeightsError,
                       match=r"cls_token has shape \(1, 1, 32\), not \(1, 1, 1024\)"):
        vit_weights.convert_dinov2(state)  # a tiny file is no ViT-L/14
    del state["norm.bias"]
    with pytest.raises(vit_weights.WeightsError, match="(?s)missing norm.bias.*dinov2_vitl14"):
        vit_weights.convert_dinov2(state, TINY_DINO)
    clip = pth.load_torchscript(os.path.join(FIXTURES, "clip_tiny.pt"))
    with_text = {**clip, "token_embedding.weight": np.zeros((3, 2), np.float32)}
    vit_weights.convert_clip(with_text, TINY_CLIP, 16)  # the text tower is ignored
    with pytest.raises(vit_weights.WeightsError, match="unexpected entry visual.extra"):
        vit_weights.convert_clip({**clip, "visual.extra": np.zeros(1)}, TINY_CLIP, 16)
    with pytest.raises(vit_weights.WeightsError, match="ViT-L-14-336px.pt"):
        vit_weights.convert_clip(state)


def test_a_torchscript_global_that_is_no_module_is_refused(tmp_path):
    """A TorchScript archive may name `__torch__` modules; any other global is refused."""
    import zipfile

    payload = pickle.dumps(os.system)  # a global that would run code
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", payload)
    with pytest.raises(pth.UnsafePickleError, match="refusing to load global"):
        pth.load_torchscript(str(path))


def test_missing_weights_say_where_they_come_from(tmp_path):
    with pytest.raises(vit_weights.WeightsError, match="dl.fbaipublicfiles.com"):
        networks.make_extractor("dinov2", None, cache_dir=str(tmp_path))
    with pytest.raises(vit_weights.WeightsError, match="no weights file"):
        networks.make_extractor("clip", str(tmp_path / "none.pt"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(vit_weights.WeightsError, match="cannot read .*junk.pth"):
        networks.make_extractor("dinov2", str(tmp_path / "junk.pth"))


def test_registry_lists_the_networks_with_their_dimensions():
    assert networks.names() == ("inception", "dinov2", "clip")
    assert (networks.get("dinov2").dim, networks.get("clip").dim) == (1024, 768)
    for name in ("dinov2", "clip"):
        extractor = vit_features.ViTExtractor.abstract(name, batch_size=4)
        assert extractor.dims == networks.get(name).dim
        assert set(extractor.provenance) == {"weights_sha256", "weights_source", "preprocess",
                                             "network", "feature_dim", "precision"}
    with pytest.raises(ValueError, match="dgm_eval, clean"):
        vit_features.ViTExtractor.abstract("dinov2", preprocess="tf1_legacy")


# ---------------------------------------------------------------------------------------------
# The evaluation's memory
# ---------------------------------------------------------------------------------------------

def test_celeba_16_trials_dinov2_evaluation_fits_4_gib_per_device():
    """The fused generate → DINOv2 features program of the paper's CelebA-64 model (InfoGAN at
    64×64, as configs/sweeps/lucic2018.py picks it: 16 generators take 2 GiB; CelebA-64's
    DCGAN needs less, 2.3 GiB): K = 16 trials on one device, N = 10,000 samples each, the FID
    evaluator's batch of 50 (3 samples per trial per chunk, 48 images per network pass), the
    chunk loop on the device, the accelerators' forms of the networks, compiled from shapes
    only (the ViT-L's variables abstract, never on a device). Its arguments are the generators'
    variables (not D's, nor the optimizers') and the network's 1.13 GiB of float32 weights; the
    16 × 10,002 × 1024 kept features never are: each segment's go to the host. XLA's peak stays
    under 4 GiB."""
    from gancmp.metrics import device_eval  # noqa: PLC0415
    from gancmp.train import memory, samples  # noqa: PLC0415
    from gancmp.train.state import abstract_states  # noqa: PLC0415
    from gancmp.trial import make_trial  # noqa: PLC0415
    from tests.helpers import load_config  # noqa: PLC0415

    one = make_trial(load_config("mnist_infogan", dataset="celeb_a")).on_devices(1, "trials")
    device, k, n = jax.local_devices()[:1], 16, 10_000
    with accelerator_forms():  # the accelerators' program (the ViT: all heads in one product)
        extractor = vit_features.ViTExtractor.abstract("dinov2", batch_size=50, micro_batch=0,
                                                       devices=device)
        program = device_eval.GroupFeatures(
            samples.generator_of(one.setup), extractor, n,
            np.zeros((n, one.setup.z_dim), np.float32), chunk=max(1, extractor.batch_size // k),
            logits=False, num_splits=1, loop="device", devices=device)
        states = abstract_states(one.setup, one.hparams, k)
        stats = program.lower(k, states).compile().memory_analysis()
    assert extractor.form == vit.ACCELERATOR_FORM
    peak = (stats.argument_size_in_bytes + stats.output_size_in_bytes
            - stats.alias_size_in_bytes + stats.temp_size_in_bytes)
    weights = memory.extractor_bytes(extractor)
    generators = sum(a.size * a.dtype.itemsize
                     for a in jax.tree.leaves((states.g_params, states.g_state)))
    assert weights > 1.2e9 and generators > 2 * GIB
    held = weights + generators + program.z.nbytes  # and the evaluation noise
    assert held <= stats.argument_size_in_bytes < held + 2**20
    assert stats.output_size_in_bytes <= device_eval.SEGMENT_BYTES + 2**20
    assert peak < 4 * GIB, peak / GIB


def test_plan_counts_each_metric_networks_flops_from_the_architecture():
    """`gancmp plan`'s FLOPs of a feature: the ViT's matmuls by hand (patch embedding, per
    block qkv, output projection, MLP and the two attention products, the last block for the
    class token's row only but qkv for every token; CLIP adds its 1024×768 projection, not
    counted: 0.05 %), the networks a config's metrics need."""
    from gancmp.sweep import plan  # noqa: PLC0415

    def vit_macs(tokens: int, width: int = 1024, mlp: int = 4096, depth: int = 24) -> int:
        block = tokens * width * (3 * width + width + 2 * mlp) + 2 * tokens**2 * width
        last = tokens * 3 * width**2 + width * (width + 2 * mlp) + 2 * tokens * width
        return (tokens - 1) * 14 * 14 * 3 * width + (depth - 1) * block + last

    assert plan.metric_network_flops("dinov2") == 2 * vit_macs(1 + 16 * 16)
    assert plan.metric_network_flops("clip") == 2 * vit_macs(1 + 24 * 24)
    assert plan.metric_networks(None) == ("inception",)
    assert plan.metric_networks(["fid", "fd_dinov2", "cmmd"]) == ("inception", "dinov2", "clip")
    assert plan.metric_networks(["fd_clip"]) == ("clip",)


def test_bench_section_is_replaced_in_place_and_kept_by_a_rewrite(tmp_path, monkeypatch):
    """`gancmp bench --what features` puts its section into RESULTS.md in place (appended the
    first time); `--what all` rewrites its own section only, keeping the features section and
    the hand-written sections after it, also in a file written before its end marker."""
    from gancmp.bench import suite  # noqa: PLC0415

    a = f"{suite.FEATURES_BEGIN}\nA\n{suite.FEATURES_END}"
    b = f"{suite.FEATURES_BEGIN}\nB\n{suite.FEATURES_END}"
    first = suite.replace_section("# Benchmarks\n\nsuite table\n", a)
    assert first == f"# Benchmarks\n\nsuite table\n\n{a}\n"
    assert suite.replace_section(first + "tail\n", b) == \
        f"# Benchmarks\n\nsuite table\n\n{b}\ntail\n"
    path = str(tmp_path / "RESULTS.md")
    suite.write_section(a, path)
    assert a in open(path).read()
    with open(path, "a") as f:
        f.write("\n## A profile\n\nby hand\n")
    monkeypatch.setattr(suite, "table", lambda results: f"table {results['run']}")
    suite.write({"run": 1}, path)
    legacy = open(path).read().replace(suite.SUITE_END + "\n", "")  # as before the marker
    with open(path, "w") as f:
        f.write(legacy)
    suite.write({"run": 2}, path)
    text = open(path).read()
    assert "table 2" in text and "table 1" not in text and text.count("## A profile") == 1
    assert text.index("table 2") < text.index(suite.SUITE_END) < text.index(a) \
        < text.index("## A profile\n\nby hand\n")


def test_the_on_device_evaluator_takes_a_vit_extractor_unchanged(tiny_dino):
    """`device_eval.GroupFeatures` fuses the extractor's `apply` into its chunked generate →
    features program (grey 28×28 samples of two tiny InfoGAN trials, 4 devices): the features
    it keeps are the extractor's own of the same samples."""
    from gancmp.metrics import device_eval, evaluators  # noqa: PLC0415
    from gancmp.train import samples as samples_lib  # noqa: PLC0415
    from gancmp.train import step as step_lib  # noqa: PLC0415
    from gancmp.trial import make_trial  # noqa: PLC0415
    from tests.helpers import tiny_infogan_config  # noqa: PLC0415

    setup = make_trial(tiny_infogan_config(dataset="mnist")).setup
    g, _ = setup.networks()
    variables = jax.vmap(lambda key: g.init(key, np.zeros((2, setup.z_dim)), train=False))(
        jax.random.split(jax.random.key(0), 2))
    states = evaluators.GeneratorState(jax.tree.map(lambda a: 5 * a, variables.pop("params")),
                                       variables)
    n, extractor = 10, tiny_dino["dgm_eval"]
    z = step_lib.eval_latents(5, n, setup.z_dim, setup.method.prior)
    gen = samples_lib.generator_of(setup)
    samples = evaluators.generate_group(gen, states, z, chunk=13)  # [2, n, 28, 28, 1]
    gf = device_eval.GroupFeatures(gen, extractor, n, z, chunk=4, logits=False, num_splits=1,
                                   loop="python")
    carry = gf(states)
    feats = np.asarray(carry["features"]).reshape(2, -1, 32)[:, :n]
    for trial in range(2):
        want = extractor(np.asarray(samples[trial]))
        np.testing.assert_allclose(feats[trial], want, rtol=1e-4, atol=1e-5)


def test_float16_torchscript_reads_as_its_float32_weights_rounded(expected):
    """OpenAI's .pt files store float16 (HalfStorage): read without torch, they are the float32
    file's tensors rounded to float16, and the features from them stay close (1e-2)."""
    half = pth.load_torchscript(os.path.join(FIXTURES, "clip_tiny_fp16.pt"))
    full = pth.load_torchscript(os.path.join(FIXTURES, "clip_tiny.pt"))
    assert half.keys() == full.keys() and all(v.dtype == np.float16 for v in half.values())
    for name, value in full.items():
        np.testing.assert_array_equal(half[name], value.astype(np.float16), err_msg=name)
    variables = vit_weights.convert_clip(half, TINY_CLIP, 16)
    assert all(a.dtype == np.float32 for a in jax.tree.leaves(variables))
    extractor = vit_features.ViTExtractor(variables, "clip", config=TINY_CLIP, dim=16,
                                          batch_size=4)
    feats = extractor(_images(expected, "clip").astype(np.float32) / 255.0)
    np.testing.assert_allclose(feats, expected["clip_cmmd"], atol=1e-2)
