"""Cases of the SmartDeal engine: the buffers and registers of a run of one layer on a batch
of activations, and the golden engine model's result (tests, simulations, benchmarks)."""

import dataclasses

import torch

from ..engines.smartdeal.spec import pack_act
from ..golden.digits_vit import DigitsViTConfig
from ..golden.shell import Buffer
from ..golden.smartdeal.finetune import FinetuneConfig
from ..golden.smartdeal.engine_model import SmartDealEngineModel

__all__ = ["SMALL_VIT", "SMALL_FINETUNE", "SmartDealCase", "make_case", "act_words", "random_layer", "clip_layer",
           "assert_cycle_model"]

# The tests' small digits ViT (one block, the default widths, so every layer of block 0
# has the default model's shape), fine-tuned for 5 epochs: cached under build/models,
# about 4 s to make, where the benchmark's default model takes about two minutes.
SMALL_VIT = DigitsViTConfig(depth=1, epochs=15)
SMALL_FINETUNE = FinetuneConfig(epochs=5)


@dataclasses.dataclass
class SmartDealCase:
    params: object
    contents: dict          # buffer name -> words
    settings: dict          # register name -> value
    expected: object        # the golden model's RunResult
    words: tuple            # the packed layer
    x: torch.Tensor         # the activations (M, L)


def act_words(params, x):
    """{word: value} of the `act` buffer for activations x (M, L) int8, in the layout of
    params.impl (engines.smartdeal.spec.buffers, pack_act)."""
    return pack_act(params, x.tolist())


def random_layer(outputs, length, *, seed=0, sparsity_threshold=0.05, exponent_bits=2,
                 block_rows=None):
    """The hardware form (SmartDealWeights) of a decomposed random weight (outputs x length);
    `block_rows`: m0 (default: the reference's rule, decomposition.decompose)."""
    from ..golden.smartdeal.decomposition import decompose
    from ..golden.smartdeal.hardware import quantize_decomposition
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(outputs, length, generator=generator, dtype=torch.float64)
    return quantize_decomposition(decompose(weight, threshold=sparsity_threshold,
                                            block_rows=block_rows),
                                  exponent_bits=exponent_bits)


def clip_layer(exponent_bits, block_rows, blocks_per_output, length):
    """Three outputs at the extremes: every coefficient -2^(2^E - 1) (the magnitude clip)
    with every B entry -128; every block zero (B = 0, Ce = 0); every coefficient
    +2^(2^E - 1), B -128 (with x = -128 the sums reach the largest magnitudes of both
    signs). M_w = 1 and S_w the hardware form's (hardware.weight_shift: the rebuilt
    weights +-3·128·2^(2^E - 1) round to +-96 in int8)."""
    from ..golden.smartdeal.format import LayerHeader
    from ..golden.smartdeal.hardware import SmartDealWeights, weight_shift
    clip = 1 << (1 << exponent_bits) - 1
    header = LayerHeader("linear", 3, length, block_rows, blocks_per_output, exponent_bits,
                         1, weight_shift(3 * 128 * clip))
    blocks = blocks_per_output
    ce = torch.cat([torch.full((blocks, block_rows, 3), -clip),
                    torch.zeros(blocks, block_rows, 3, dtype=torch.int64),
                    torch.full((blocks, block_rows, 3), clip)])
    basis = torch.cat([torch.full((blocks, 3, 3), -128),
                       torch.zeros(blocks, 3, 3, dtype=torch.int64),
                       torch.full((blocks, 3, 3), -128)])
    return SmartDealWeights(header, (3, length), basis, ce)


def make_case(params, words, x, *, requant=None, settings=None, stale=0):
    """The case of a run of the packed layer `words` on int8 activations x (M, L).
    requant: None (exact sums) or (multiplier, shift). `stale`: a value for every buffer
    word the case does not set (a run must not depend on them)."""
    model = SmartDealEngineModel(params)
    buffers = {spec.name: Buffer(spec) for spec in model.buffer_specs}
    for buffer in buffers.values():
        buffer.words = [stale & ((1 << buffer.width) - 1)] * buffer.depth
    for n, word in enumerate(words):
        buffers["weights"].words[n] = word
    for address, word in act_words(params, x).items():
        buffers["act"].words[address] = word
    regs = model.register_map.reset_values()
    regs["tokens"] = x.shape[0]
    if requant is not None:
        regs["requant"] = model.register_map["requant"].pack(
            enable=1, multiplier=requant[0], shift=requant[1])
    regs.update(settings or {})
    contents = {name: list(buffer.words) for name, buffer in buffers.items()}
    expected = model.run(regs, buffers)
    return SmartDealCase(params, contents, regs, expected, tuple(words), x)


def assert_cycle_model(case, measured, tolerance=0.02):
    """The cycle model (engines.smartdeal.cycles) within `tolerance` (2%) of each run's
    measured cycles of `case` run after run: the first run checks the layer, the later
    ones (the weights not written since) do not. Returns the model's cycles."""
    from ..engines.smartdeal.cycles import Layer, cycles
    from ..golden.smartdeal.hardware import SmartDealWeights
    layer = Layer.of(SmartDealWeights.from_packed(list(case.words)))
    tokens = case.settings["tokens"]
    model = [cycles(case.params, layer, tokens, checked=n > 0) for n in range(len(measured))]
    for n, (want, got) in enumerate(zip(model, measured)):
        assert abs(want - got) <= tolerance * got, \
            f"run {n}: the cycle model says {want}, the RTL took {got}"
    return model
