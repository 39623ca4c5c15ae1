"""A small ViT trained on scikit-learn's bundled digits: real Q, K, V and attention maps.

The ViTCoD golden models need the queries, keys and attention maps of a transformer that
was really trained (the auto-encoder is fitted to them, the masks are cut from them). The
project produces one itself, without network access: `sklearn.datasets.load_digits`
(1,797 8x8 grey images, 10 classes) ships inside scikit-learn.

The model: 2x2 patches -> 16 patch tokens + CLS = 17 tokens, embedding 48, 3 heads of
head_dim 16 (DeiT-Tiny's head count), 4 pre-norm blocks, MLP ratio 2, classification from
the CLS token. Training is a deterministic script (fixed seeds, one thread,
`torch.use_deterministic_algorithms`) on a fixed stratified split (1,437 train, 360 test
images); it takes well under two minutes on two CPU cores. The weights are cached as
build/models/digits_vit-<config hash>.pt, so a changed configuration retrains and
configurations do not overwrite one another.

`python -m celine.golden.digits_vit` trains (or loads) the default model and prints its
test accuracy.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from typing import NamedTuple

import torch
from torch import nn

from ..spec.checks import check_choice, check_int
from .activation import check_scale
from .taylor import taylor_attention

IMAGE_SIDE = 8              # load_digits images are 8x8
PIXEL_MAX = 16.0            # ... with grey levels 0..16
CLASSES = 10
TEST_IMAGES = 360           # the fixed split: 1,437 train, 360 test (stratified)
SPLIT_SEED = 0
LABEL_SMOOTHING = 0.1
ATTENTIONS = ("softmax", "taylor")
CACHE_FORMAT = 2            # bump when the cached file's layout or the training code changes


@dataclasses.dataclass(frozen=True)
class DigitsViTConfig:
    """Hyper-parameters of the model and of its training; all validated."""
    patch: int = 2
    kernel: int | None = None
    attention: str = "softmax"
    dim: int = 48
    heads: int = 3
    depth: int = 4
    mlp_ratio: int = 2
    epochs: int = 100
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0

    def __post_init__(self):
        check_choice("patch", self.patch, (1, 2, 4, 8))
        if self.kernel is not None:
            check_int("kernel", self.kernel, minimum=self.patch, maximum=IMAGE_SIDE)
            if (self.kernel - self.patch) % 2:
                raise ValueError(f"kernel must exceed patch ({self.patch}) by an even number, "
                                 f"not {self.kernel!r}")
        check_choice("attention", self.attention, ATTENTIONS)
        check_int("heads", self.heads, minimum=1)
        check_int("dim", self.dim, minimum=1)
        if self.dim % self.heads:
            raise ValueError(f"dim must be a multiple of heads ({self.heads}), not {self.dim!r}")
        check_int("depth", self.depth, minimum=1)
        check_int("mlp_ratio", self.mlp_ratio, minimum=1)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_scale("lr", self.lr)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, "
                             f"not {self.weight_decay!r}")
        check_int("seed", self.seed, minimum=0)

    @property
    def head_dim(self):
        return self.dim // self.heads

    @property
    def window(self):
        """Pixels a patch token sees along each axis: `kernel`, or `patch` if None."""
        return self.patch if self.kernel is None else self.kernel

    @property
    def tokens(self):
        """Patch tokens plus the CLS token."""
        return (IMAGE_SIDE // self.patch) ** 2 + 1

    @property
    def digest(self):
        """A hash of every field (and of the cache format): the cache key."""
        text = json.dumps([CACHE_FORMAT, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- data -----------------------------------------------------------------------------------

class DigitsSplit(NamedTuple):
    """Images as float32 (B, 8, 8) in [0, 1], labels as int64 (B,)."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def digits_dataset():
    """The fixed stratified split of load_digits (1,437 train, 360 test images)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32) / PIXEL_MAX
    labels = torch.tensor(data.target, dtype=torch.int64)
    train, test = train_test_split(range(len(labels)), test_size=TEST_IMAGES,
                                   random_state=SPLIT_SEED, stratify=data.target)
    train, test = torch.tensor(train), torch.tensor(test)
    return DigitsSplit(images[train], labels[train], images[test], labels[test])


# -- model ----------------------------------------------------------------------------------

class Attention(nn.Module):
    """Multi-head self-attention: softmax, or ViTALiTy's first-order Taylor attention
    (golden.taylor.taylor_attention, trained in the loop)."""

    def __init__(self, dim, heads, attention="softmax"):
        super().__init__()
        self.heads = heads
        self.attention = attention
        self.mask = None            # softmax over a fixed kept mask (heads, N, N), if set
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, qk_transform=None):
        """(output, q, k, v, attn): q, k, v (B, heads, N, head_dim), attn (B, heads, N, N).

        qk_transform(q, k) -> (q, k), if given, replaces q and k before the scores (to run
        the model with reconstructed Q and K); the q and k returned are the replaced ones.
        """
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if qk_transform is not None:
            q, k = qk_transform(q, k)
        if self.attention == "taylor":
            # the weights the linear form applies: (1 + q.k_hat / sqrt(d)) / N (the sum of
            # k_hat is 0, so the denominator is N)
            out = taylor_attention(q, k, v).to(q.dtype)
            k_hat = k - k.mean(dim=-2, keepdim=True)
            attn = (1 + q @ k_hat.transpose(-2, -1) / math.sqrt(c // self.heads)) / n
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(c // self.heads)
            if self.mask is not None:
                scores = scores.masked_fill(~self.mask, -math.inf)
            attn = torch.softmax(scores, dim=-1)
            out = attn @ v
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj(out), q, k, v, attn


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, attention="softmax"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, attention)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x, qk_transform=None):
        out, q, k, v, attn = self.attn(self.norm1(x), qk_transform)
        x = x + out
        return x + self.mlp(self.norm2(x)), (q, k, v, attn)


class DigitsViT(nn.Module):
    """Pre-norm ViT over (B, 8, 8) images in [0, 1]; logits (B, 10)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.window ** 2, config.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos = nn.Parameter(torch.randn(1, config.tokens, config.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.mlp_ratio,
                                          config.attention)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, CLASSES)

    def set_masks(self, masks):
        """Fixed attention masks (ViTCoD): masks[layer] a (heads, N, N) bool tensor (True =
        kept) or None; softmax attention then runs over the kept entries only."""
        if len(masks) != len(self.blocks):
            raise ValueError(f"masks must hold one entry per layer ({len(self.blocks)}), "
                             f"not {len(masks)}")
        for block, mask in zip(self.blocks, masks):
            block.attn.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        return self

    def patches(self, images):
        """(B, tokens - 1, window²): each patch token's window of pixels, row-major, the
        windows `patch` apart, zero beyond the image's edges."""
        c = self.config
        windows = nn.functional.unfold(images[:, None], c.window, stride=c.patch,
                                       padding=(c.window - c.patch) // 2)
        # Contiguous, as the patches were before windows: the embedding's matmul sums in
        # another order over a transposed view, and a model trained on one differs from
        # one trained on the other (the Q/K auto-encoders' attention error went from
        # 0.037 to 0.116 on the default model, tests/test_vitcod_autoencoder.py).
        return windows.transpose(1, 2).contiguous()

    def trace(self, images, qk_transform=None):
        """(logits, [(q, k, v, attn) per layer]) for a batch of images.

        qk_transform(layer, q, k) -> (q, k), if given, replaces every layer's q and k
        before its attention scores (see Attention.forward).
        """
        x = self.embed(self.patches(images))
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        internals = []
        for layer, block in enumerate(self.blocks):
            transform = None if qk_transform is None else \
                (lambda q, k, layer=layer: qk_transform(layer, q, k))
            x, inner = block(x, transform)
            internals.append(inner)
        return self.head(self.norm(x[:, 0])), internals

    def forward(self, images):
        return self.trace(images)[0]


# -- training -------------------------------------------------------------------------------

@contextlib.contextmanager
def one_thread():
    """torch on one intra-op thread inside (the caller's count restored on exit). This
    model's tensors are small: more threads only contend, and on a loaded 2-core machine
    they make evaluation 20x slower. Usable as a decorator."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def deterministic(seed):
    """Fixed seed, one thread and deterministic kernels inside; the caller's RNG state,
    thread count and determinism setting are restored on exit."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic)


def shift_augment(images, generator):
    """Each image translated by -1, 0 or +1 pixel on each axis (zero fill)."""
    b = images.shape[0]
    padded = nn.functional.pad(images, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2, b), generator=generator)
    rows = (torch.arange(IMAGE_SIDE)[None, :] + dy[:, None])[:, :, None]
    cols = (torch.arange(IMAGE_SIDE)[None, :] + dx[:, None])[:, None, :]
    return padded[torch.arange(b)[:, None, None], rows, cols]


def training_batches(data, batch_size, generator):
    """One epoch over the train split: (shift-augmented images, labels) in shuffled batches,
    every random draw from `generator`."""
    order = torch.randperm(len(data.train_labels), generator=generator)
    for first in range(0, len(order), batch_size):
        batch = order[first:first + batch_size]
        yield shift_augment(data.train_images[batch], generator), data.train_labels[batch]


def classification_loss(logits, labels):
    """The training loss: cross-entropy with label smoothing 0.1."""
    return nn.functional.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)


@one_thread()
@torch.no_grad()
def accuracy(model, images, labels, qk_transform=None):
    """The fraction of `images` classified as `labels` (qk_transform: see DigitsViT.trace)."""
    model.eval()
    logits = model.trace(images, qk_transform)[0]
    return float((logits.argmax(-1) == labels).float().mean())


def train_vit(config, data=None, *, progress=True):
    """A freshly trained model (eval mode) and its record {test_accuracy, train_seconds}."""
    data = digits_dataset() if data is None else data
    start = time.perf_counter()
    with deterministic(config.seed), torch.enable_grad():
        model = DigitsViT(config)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
            pct_start=0.1)
        for epoch in range(config.epochs):
            model.train()
            total = 0.0
            for images, labels in training_batches(data, config.batch_size, generator):
                loss = classification_loss(model(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(labels)
            if progress:
                test = accuracy(model, data.test_images, data.test_labels)
                print(f"epoch {epoch + 1:3d}/{config.epochs}  "
                      f"loss {total / len(data.train_labels):.4f}  "
                      f"test accuracy {test:.4f}  ({time.perf_counter() - start:.1f} s)",
                      flush=True)
        model.eval()
        record = {"test_accuracy": accuracy(model, data.test_images, data.test_labels),
                  "train_seconds": time.perf_counter() - start}
    return model, record


def cache_path(config):
    """Where the model of `config` is cached (see `cached`)."""
    from ..sim.emit import build_root
    return build_root() / "models" / f"digits_vit-{config.digest}.pt"


def cached(name, digest, make):
    """The entry (a dict of tensors, state dicts and JSON-ready values) cached as
    build/models/<name>-<digest>.pt, or `make()`'s, cached first. One worker of several
    makes it, the others wait and load it; a file of another digest is made again."""
    from ..sim.emit import build_root, locked
    path = build_root() / "models" / f"{name}-{digest}.pt"
    with locked(path.with_suffix(".lock")):
        if path.exists():
            saved = torch.load(path, weights_only=True)
            if saved["digest"] == digest:
                return saved
        saved = {**make(), "digest": digest}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        torch.save(saved, partial)
        partial.replace(path)
        return saved


def trained_vit_record(config=None, *, progress=True):
    """(model, record): the cached model for `config` (default DigitsViTConfig()), trained
    and cached first if absent. record: config, digest, test_accuracy, train_seconds."""
    config = DigitsViTConfig() if config is None else config
    if not isinstance(config, DigitsViTConfig):
        raise TypeError(f"config must be a DigitsViTConfig, not {config!r}")

    def make():
        model, record = train_vit(config, progress=progress)
        return {"record": {"config": dataclasses.asdict(config), "digest": config.digest,
                           **record},
                "state_dict": model.state_dict()}

    saved = cached("digits_vit", config.digest, make)
    model = DigitsViT(config)
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["record"]


def trained_vit(config=None, *, progress=True):
    """The trained model for `config` (default DigitsViTConfig()), from the cache or trained
    now (one line per epoch printed when `progress`)."""
    return trained_vit_record(config, progress=progress)[0]


# -- what the ViTCoD models consume ---------------------------------------------------------

@one_thread()
@torch.no_grad()
def capture_qkv(model, images):
    """{layer: (q, k, v)}, each float (B, heads, N, head_dim), for (B, 8, 8) images."""
    model.eval()
    _, internals = model.trace(images)
    return {layer: (q, k, v) for layer, (q, k, v, _) in enumerate(internals)}


@one_thread()
@torch.no_grad()
def attention_maps(model, images):
    """The softmax attention maps averaged over `images`: (layers, heads, N, N)."""
    model.eval()
    _, internals = model.trace(images)
    return torch.stack([attn.mean(0) for *_, attn in internals])


def main():
    model, record = trained_vit_record()
    data = digits_dataset()
    print(f"digits ViT {record['digest']}: test accuracy "
          f"{accuracy(model, data.test_images, data.test_labels):.4f} "
          f"({len(data.test_labels)} images), trained in {record['train_seconds']:.1f} s")


if __name__ == "__main__":
    main()
