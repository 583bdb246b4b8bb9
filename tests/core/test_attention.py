"""Attention and the Transformer encoder: the plan's row per projection kernel with Keras 3.15's einsum fans, each
projection's own seed and values, the Transformer's places, and the residual rules on attention models (scaled,
deepnorm, zero_last, rezero) against their formulas."""

import math

import keras
import numpy as np
import pytest
from keras.src.initializers.random_initializers import compute_fans

import modelforge
from modelforge.build import projection_values
from modelforge.core.init.residual import deepnorm_factors
from tests.helpers import FAST, assert_refused, plan_of

PROJECTIONS = ("query", "key", "value", "attention_output")
SEQUENCE = ["data=synthetic", "data.shape=[6,12]", "data.num_samples=64"]


def attention_plan(compose, heads, key_dim, extra=None):
    keys = "".join(f",{k}:{v}" for k, v in (extra or {}).items())
    layer = f"{{type:multi_head_attention,name:mha,num_heads:{heads},key_dim:{key_dim}{keys}}}"
    return plan_of(compose, f"+model.layers=[{layer}]", *SEQUENCE)


@pytest.mark.parametrize(("heads", "key_dim", "extra"), [(1, 12, {}), (2, 4, {}), (4, 3, {"value_dim": 5}),
                                                         (8, 2, {"output_shape": 7})])
def test_each_projection_has_a_row_with_keras_einsum_fans(compose, heads, key_dim, extra):
    plan = attention_plan(compose, heads, key_dim, extra)
    kernels = [e for e in plan.for_layer("mha") if e.weight.endswith("kernel")]
    assert [e.weight for e in kernels] == [f"{p}/kernel" for p in PROJECTIONS]
    built = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=key_dim, **extra)
    built.build((None, 6, 12), (None, 6, 12))
    subs = [built._query_dense, built._key_dense, built._value_dense, built._output_dense]
    for entry, sub in zip(kernels, subs, strict=True):
        assert entry.shape == tuple(sub.kernel.shape)
        # Keras' own analysis of the layer's einsum equation gives the axes its initializer reads.
        from keras.src.layers.core.einsum_dense import _analyze_einsum_string

        inputs, kernel = sub.equation.split("->")[0].split(",")
        source = tuple(entry.shape[kernel.index(c)] if c in kernel else 3 for c in inputs)
        *_, input_axes, output_axes = _analyze_einsum_string(sub.equation, sub.bias_axes, source,
                                                             sub.partial_output_shape)
        assert (entry.fan_in, entry.fan_out) == compute_fans(entry.shape, input_axes, output_axes)
        assert entry.keras_fans is None  # Keras 3.15 reads the same fans: nothing to correct
        # The shape alone would read heads x d_model as the query's fan_in (Keras before 3.15).
        if entry.weight == "query/kernel" and heads > 1:
            assert compute_fans(entry.shape)[0] == 12 * heads != entry.fan_in


def test_query_key_and_value_get_their_own_seeds_and_values(compose):
    cfg = compose([*FAST, "model=transformer", "initializer=glorot_normal"])
    plan = modelforge.plan(cfg)
    kernels = [e for e in plan.for_layer("encoder1.attn.mha1") if e.weight.endswith("kernel")]
    assert len({e.seed for e in kernels}) == 4
    layer = modelforge.build_model(cfg).get_layer("encoder1.attn.mha1")
    values = {w.path.split("/", 1)[1]: w.numpy() for w in layer.weights}
    q, k, v = (values[f"{p}/kernel"] for p in ("query", "key", "value"))
    assert not np.allclose(q, k) and not np.allclose(k, v) and not np.allclose(q, v)
    for entry in kernels:  # each written as its own initializer draws it, whatever Keras' clone drew
        np.testing.assert_array_equal(values[entry.weight], projection_values(entry))
        assert abs(values[entry.weight].std() - entry.target_std) < 0.15 * entry.target_std


def test_orthogonal_works_on_the_einsum_matrix(compose):
    plan = attention_plan(compose, 2, 6, {"initializer": "orthogonal"})
    query = next(e for e in plan.for_layer("mha") if e.weight == "query/kernel")
    matrix = projection_values(query).reshape(12, 12)  # (d_model) x (heads x key_dim)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(12), atol=1e-5)
    assert query.target_std == pytest.approx(1 / math.sqrt(12))


def test_lsuv_and_delta_orthogonal_on_attention(compose):
    assert_refused(lambda: attention_plan(compose, 2, 4, {"initializer": "lsuv"}), "initializer=lsuv",
                   "mha/query/kernel", "orthogonal")
    plan = attention_plan(compose, 2, 4, {"initializer": "delta_orthogonal"})
    query = next(e for e in plan.for_layer("mha") if e.weight == "query/kernel")
    assert (query.build[0], query.computed) == ("orthogonal", None)
    assert "not a convolution" in query.choice.note


def test_the_transformer_places_every_weight(compose):
    plan = plan_of(compose, "model=transformer")
    places = {(e.layer, e.weight): e.place for e in plan.entries}
    assert places[("encoder2.attn.mha1", "value/kernel")] == "attn_value"
    assert places[("encoder2.attn.mha1", "attention_output/bias")] == "attn_output"
    assert places[("encoder1.mlp.dense1", "kernel")] == "ffn_in"
    assert places[("encoder1.mlp.dense2", "kernel")] == "ffn_out"
    assert places[("embed.pos1", "embeddings")] == places[("embed.embedding1", "embeddings")] == "embedding"
    assert {e.branches for e in plan.entries} == {4}  # two blocks of two branches


def test_pre_and_post_norm_put_the_layer_norm_in_the_branch_or_after_the_add(compose):
    pre = {s.name: s.inputs for s in plan_of(compose, "model=transformer").specs}
    post = {s.name: s.inputs for s in plan_of(compose, "model=transformer", "model.norm=post").specs}
    assert pre["encoder1.attn.mha1"] == ("encoder1.attn.norm",)
    assert pre["encoder1.attn.add"] == ("embed.pos1", "encoder1.attn.mha1")
    assert post["encoder1.attn.mha1"] == ("embed.pos1",)
    assert post["encoder1.attn.norm"] == ("encoder1.attn.add",)
    assert post["encoder1.mlp.dense1"] == ("encoder1.attn.norm",)


@pytest.mark.parametrize("blocks", [2, 12])
def test_scaled_divides_the_attention_output_and_mlp_output_by_sqrt_l(compose, blocks):
    repeat = f"model.blocks.encoder.repeat={blocks}"
    plain = {e.path: e for e in plan_of(compose, "model=transformer", repeat).entries}
    scaled = plan_of(compose, "model=transformer", repeat, "residual=scaled")
    changed = {(e.layer, e.weight): e.target_std / plain[e.path].target_std for e in scaled.entries
               if e.target_std != plain[e.path].target_std}
    assert {(layer.rsplit(".", 1)[-1], weight) for layer, weight in changed} == {
        ("mha1", "attention_output/kernel"), ("dense2", "kernel")}
    assert len(changed) == 2 * blocks
    assert all(r == pytest.approx(1 / math.sqrt(2 * blocks)) for r in changed.values())


def test_deepnorm_scales_shortcuts_and_kernels_by_its_formulas(compose):
    n = 12
    repeat = f"model.blocks.encoder.repeat={n}"
    plain = {e.path: e for e in plan_of(compose, "model=transformer", "model.norm=post", repeat).entries}
    deep = plan_of(compose, "model=transformer", "model.norm=post", repeat, "residual=deepnorm")
    alpha, beta = (2 * n) ** 0.25, (8 * n) ** -0.25
    assert deepnorm_factors(2 * n) == pytest.approx((alpha, beta))
    shortcuts = [e for e in deep.entries if e.type == "scale"]
    assert len(shortcuts) == 2 * n and {e.place for e in shortcuts} == {"shortcut"}
    assert all(e.build == ("constant", {"value": pytest.approx(alpha)}) for e in shortcuts)
    scaled = {e.place for e in deep.entries if e.path in plain and e.target_std != plain[e.path].target_std}
    assert scaled == {"attn_value", "attn_output", "ffn_in", "ffn_out"}
    for e in deep.entries:
        if e.place in scaled and e.weight.endswith("kernel"):
            assert e.target_std == pytest.approx(plain[e.path].target_std * beta)
    specs = {s.name: s for s in deep.specs}
    assert specs["encoder3.mlp.add"].inputs == ("encoder3.mlp.shortcut_scale", "encoder3.mlp.dense2")


def test_deepnorm_on_pre_ln_is_refused_naming_the_key(compose):
    assert_refused(lambda: plan_of(compose, "model=transformer", "residual=deepnorm"), "residual=deepnorm",
                   "post-LN", "model.norm=post")


def test_zero_last_and_rezero_on_the_transformer(compose):
    zero = plan_of(compose, "model=transformer", "residual=zero_last")
    zeroed = {(e.layer.rsplit(".", 1)[-1], e.weight) for e in zero.entries if e.choice.name == "zeros"
              and e.choice.source == "residual:zero_last"}
    assert zeroed == {("mha1", "attention_output/kernel"), ("dense2", "kernel")}
    gates = [e for e in plan_of(compose, "model=transformer", "residual=rezero").entries if e.place == "gate"]
    assert len(gates) == 4 and all(e.build == ("constant", {"value": 0.0}) for e in gates)


def test_fixup_on_attention_is_refused(compose):
    assert_refused(lambda: plan_of(compose, "model=transformer", "model.norm=null", "residual=fixup"),
                   "residual=fixup", "attention")


def test_attention_to_another_block(compose):
    """A block that starts with attention reads a query and a value: cross-attention, with a residual add."""
    plan = plan_of(compose, *SEQUENCE, "+model.blocks={a:{layers:[{type:dense}]},b:{input:a,layers:["
                   "{type:dense,units:4}]},x:{input:[a,b],residual:true,layers:[{type:multi_head_attention,"
                   "num_heads:2,key_dim:4}]}}")
    specs = {s.name: s for s in plan.specs}
    assert specs["x.mha1"].inputs == ("a.dense1", "b.dense1")
    assert specs["x.add"].inputs == ("a.dense1", "x.mha1")
    key = next(e for e in plan.for_layer("x.mha1") if e.weight == "key/kernel")
    assert key.shape == (4, 2, 4) and (key.fan_in, key.fan_out) == (4, 8)


def test_the_transformer_trains_and_its_saved_model_loads(compose, tmp_path):
    modelforge.train(compose([*FAST, "model=transformer", "residual=deepnorm", "model.norm=post"]),
                     run_dir=tmp_path)
    model = keras.saving.load_model(tmp_path / "model.keras")
    scale = model.get_layer("encoder1.attn.shortcut_scale")
    assert float(scale.factor.numpy()) == pytest.approx(deepnorm_factors(4)[0])
    assert {type(layer).__name__ for layer in model.layers} >= {"MultiHeadAttention", "PositionEmbedding", "Scale"}


def test_the_plan_table_gives_deepnorms_factors(compose):
    from modelforge.core.init.plan import format_table

    table = format_table(plan_of(compose, "model=transformer", "model.norm=post", "residual=deepnorm",
                                 "model.blocks.encoder.repeat=12"))
    assert "alpha = (2N)^(1/4) = 2.213" in table and "beta = (8N)^(-1/4) = 0.3195" in table and "N = L/2 = 12" in table


def test_the_memory_estimate_counts_each_attention_layers_projections_and_scores(compose):
    from modelforge.core.init.memory import estimate

    def activations(blocks):
        plan = plan_of(compose, "model=transformer", f"model.blocks.encoder.repeat={blocks}")
        return plan, estimate(plan, 1, "adam").activations

    (_, two), (three_plan, three) = activations(2), activations(3)
    block = [s for s in three_plan.specs if s.block and s.block.startswith("encoder3")]
    outputs = sum(math.prod(s.output_shape) for s in block)
    steps, heads, key_dim = 64, 4, 8  # the digits as 64 tokens; model=transformer's heads of 8
    kept = steps * heads * 4 * key_dim + 2 * heads * steps * steps
    assert three - two == 2 * 4 * (outputs + kept)  # float32 values, kept for the backward pass with gradients


def test_layerscale_on_the_transformer_starts_at_caits_value(compose):
    scales = [e for e in plan_of(compose, "model=transformer", "residual=layerscale").entries if e.place == "gate"]
    assert len(scales) == 4 and all(e.build == ("constant", {"value": 0.1}) for e in scales)


def test_the_plan_table_shows_each_projections_own_seed(compose):
    from modelforge.core.init.plan import format_table

    plan = plan_of(compose, "model=transformer")
    table = format_table(plan)
    for layer in ("encoder1.attn.mha1", "encoder2.attn.mha1"):
        seeds = {e.weight.split("/")[0]: e.seed for e in plan.for_layer(layer) if e.weight.endswith("kernel")}
        assert len(set(seeds.values())) == 4
        assert f"  {layer}: " + ", ".join(f"{p} {seeds[p]}" for p in PROJECTIONS) in table.splitlines()
