r"""The BEATs masked-token train step in PyTorch, from the official semantics: the baseline of benchmarks/tokenizer.py.

Runs only in a Python that has torch and numpy ($AUDIOREP_TORCH_PYTHON; benchmarks/torch_baseline.py); audiorep
never imports it:

    "$AUDIOREP_TORCH_PYTHON" benchmarks/torch_beats_step.py --batch 2 --seconds 10 --steps 3

The encoder is written from microsoft/unilm beats/BEATs.py and beats/backbone.py in train mode, with the official
attribute names and the released checkpoints' configuration (dropouts 0, so they are left out):
`BEATs` (patch_embedding: Conv2d 16x16 without bias, layer_norm, post_extract_proj) -> `TransformerEncoder`
(pos_conv: weight-normed grouped Conv1d over dim 2, SamePad, GELU; layer_norm; layers, each behind the
layer-wise gradient decay `GradMultiply`) -> `TransformerSentenceEncoderLayer` (DeepNorm post-LN) with
`MultiheadAttention` (time-first [N, B, C] with bmm over B * heads, q * scaling / 32, max-subtract, x 32,
T5 relative position buckets from one embedding shared by every layer, gated per query by grep_linear /
grep_a). The official release has no pretraining code; the rest of the step is what audiorep's masked_tokens
objective does (pretrain/objectives.py), written here in torch:
- Kaldi fbank of the raw audio with torchaudio's defaults as BEATs.preprocess calls them (x 2**15, 128 bins,
  25 / 10 ms, povey window, 512-point FFT, preemphasis 0.97, DC removal), then (x - 15.41663) / (2 * 6.55582);
- the random-projection tokenizer on the raw 16x16 patches (the same projection and codebook as
  audiorep/tokenizers/random_projection.py for a seed), under no_grad;
- 75 % of the patches masked uniformly at random per clip; the encoder sees the visible ones: the dropped
  patches are zeroed before the conv positional embedding (as the official encoder zeroes padding), only the
  kept tokens enter the layers, and the relative position buckets use their original grid distances;
- the label predictor as audiorep builds it for BEATs (`LabelPredictor` below; the paper's has no released
  code): the encoder outputs back at their positions, `mask_token` at the masked ones, `--predictor-depth`
  pre-LN blocks (scaled_dot_product_attention) sharing one relative position bias over the full grid, a final
  LayerNorm, then a Linear(768, codebook) head at the masked positions; cross-entropy over the masked codes;
- grad-norm clipping and AdamW with weight decay on matrices only, with configs/beats_iter.py's settings (the
  defaults here; benchmarks/tokenizer.py passes them from the config).

Runs on a CUDA GPU when there is one (with TF32 matmuls, as XLA's default precision; `--device cpu` forces the
CPU). Prints one line `RESULT {json}`: median seconds per step after warm-up steps, the loss, torch version,
threads, device.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
FBANK_MEAN, FBANK_STD = 15.41663, 6.55582
ALPHA = 32.0  # the official attention's logit rescaling (q / 32, max-subtract, x 32)

# The released checkpoints' cfg (iter3 / iter3+), as audiorep's BEATS_BASE.
BASE = dict(input_patch_size=16, embed_dim=512, encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
            encoder_attention_heads=12, layer_wise_gradient_decay_ratio=0.6, deep_norm=True, conv_pos=128,
            conv_pos_groups=16, num_buckets=320, max_distance=800, num_mel_bins=128)


# ------------------------------------------------------------------------------------------ frontend
def kaldi_mel_banks(bins: int, fft: int, sample_rate: int, low_hz: float) -> torch.Tensor:
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f / 700)), up to Nyquist.  -> f32[bins, fft // 2 + 1]."""
    mel = lambda f: 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)
    lo, hi = mel(low_hz), mel(sample_rate / 2)
    delta = (hi - lo) / (bins + 1)
    left = lo + torch.arange(bins, dtype=torch.float64)[:, None] * delta
    centre, right = left + delta, left + 2 * delta
    f = mel(torch.arange(fft // 2, dtype=torch.float64) * (sample_rate / fft))[None]
    w = torch.clamp(torch.minimum((f - left) / (centre - left), (right - f) / (right - centre)), min=0.0)
    return F.pad(w, (0, 1)).float()  # the Nyquist bin gets no weight, as in torchaudio


class KaldiFbank(nn.Module):
    """torchaudio.compliance.kaldi.fbank as BEATs.preprocess calls it, normalised.
    f32[B, samples] -> f32[B, T, 128]."""

    def __init__(self, bins: int = 128):
        super().__init__()
        self.size, self.shift, self.fft = 400, 160, 512
        self.register_buffer("window", torch.hann_window(self.size, periodic=False, dtype=torch.float64).pow(0.85)
                             .float())
        self.register_buffer("banks", kaldi_mel_banks(bins, self.fft, SAMPLE_RATE, 20.0))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        frames = (wav * 2.0 ** 15).unfold(-1, self.size, self.shift)  # snip_edges: whole frames only
        frames = frames - frames.mean(-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - 0.97 * previous) * self.window
        power = torch.fft.rfft(frames, n=self.fft).abs().pow(2)
        mel = torch.clamp_min(power @ self.banks.T, torch.finfo(torch.float32).eps).log()
        return (mel - FBANK_MEAN) / (2 * FBANK_STD)


def patches(fbank: torch.Tensor, p: int = 16) -> torch.Tensor:
    """Raw p x p patches in token order (time-major).  f32[B, T, M] -> f32[B, (T // p) * (M // p), p * p]."""
    b, t, m = fbank.shape
    x = fbank[:, : t // p * p, : m // p * p].reshape(b, t // p, p, m // p, p)
    return x.permute(0, 1, 3, 2, 4).reshape(b, (t // p) * (m // p), p * p)


class RandomProjection(nn.Module):
    """BEST-RQ / BEATs iteration-1 tokenizer, built as audiorep's RandomProjectionTokenizer builds it for a seed.
    f32[..., in_dim] -> i64[...]."""

    def __init__(self, in_dim: int, codebook_size: int = 1024, code_dim: int = 16, seed: int = 0):
        super().__init__()
        rs = np.random.RandomState(seed)
        projection = rs.standard_normal((in_dim, code_dim)) * math.sqrt(2.0 / (in_dim + code_dim))
        codebook = rs.standard_normal((codebook_size, code_dim))
        codebook /= np.linalg.norm(codebook, axis=-1, keepdims=True)
        self.register_buffer("projection", torch.from_numpy(projection.astype(np.float32)))
        self.register_buffer("codebook", torch.from_numpy(codebook.astype(np.float32)))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x @ self.projection) @ self.codebook.T).argmax(-1)


# ------------------------------------------------------------------------------------------ encoder
class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient scaled (fairseq's GradMultiply: BEATs' layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def relative_buckets(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Official `_relative_positions_bucket` (bidirectional T5 buckets) of key - query distances.  i64 -> i64."""
    half = num_buckets // 2
    out = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    large = exact + (torch.log(rel.float() / exact) / math.log(max_distance / exact) * (half - exact)).long()
    large = torch.clamp(large, max=half - 1)
    return out + torch.where(rel < exact, rel, large)


class MultiheadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, *, has_relative_attention_bias: bool, num_buckets: int,
                 max_distance: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scaling = self.head_dim ** -0.5
        self.num_buckets, self.max_distance = num_buckets, max_distance
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, heads)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.grep_linear = nn.Linear(self.head_dim, 8)
        self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def compute_bias(self, positions: torch.Tensor) -> torch.Tensor:
        """Bias of the tokens at grid positions i64[B, N] (original indices).  -> f32[B * heads, N, N]."""
        rel = positions[:, None, :] - positions[:, :, None]  # memory - context
        values = self.relative_attention_bias(relative_buckets(rel, self.num_buckets, self.max_distance))
        b, n = positions.shape
        return values.permute(0, 3, 1, 2).reshape(b * self.heads, n, n)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        """x f32[N, B, C] (time first, as fairseq), position_bias f32[B * heads, N, N] -> f32[N, B, C]."""
        n, b, c = x.shape
        h, dh = self.heads, self.head_dim
        q = self.q_proj(x) * self.scaling / ALPHA
        k, v = self.k_proj(x), self.v_proj(x)
        q = q.contiguous().view(n, b * h, dh).transpose(0, 1)
        k = k.contiguous().view(n, b * h, dh).transpose(0, 1)
        v = v.contiguous().view(n, b * h, dh).transpose(0, 1)
        w = torch.bmm(q, k.transpose(1, 2))
        w = (w - w.max(dim=-1, keepdim=True)[0]) * ALPHA
        query = q.view(b, h, n, dh) * ALPHA / self.scaling
        gate_a, gate_b = torch.sigmoid(self.grep_linear(query).view(b, h, n, 2, 4).sum(-1)).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
        w = w + gate.view(b * h, n, 1) * position_bias
        attn = torch.bmm(F.softmax(w, dim=-1), v)
        return self.out_proj(attn.transpose(0, 1).contiguous().view(n, b, c))


class TransformerSentenceEncoderLayer(nn.Module):
    """Post-LN layer with the DeepNorm residual scale alpha = (2L)^(1/4)."""

    def __init__(self, cfg: dict, *, has_relative_attention_bias: bool):
        super().__init__()
        d = cfg["encoder_embed_dim"]
        self.self_attn = MultiheadAttention(d, cfg["encoder_attention_heads"],
                                            has_relative_attention_bias=has_relative_attention_bias,
                                            num_buckets=cfg["num_buckets"], max_distance=cfg["max_distance"])
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg["encoder_ffn_embed_dim"])
        self.fc2 = nn.Linear(cfg["encoder_ffn_embed_dim"], d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.deep_norm_alpha = math.pow(2 * cfg["encoder_layers"], 0.25) if cfg["deep_norm"] else 1.0

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.deep_norm_alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.deep_norm_alpha + self.fc2(F.gelu(self.fc1(x))))


def shared_bias_layers(cfg: dict, depth: int) -> nn.ModuleList:
    """`depth` layers whose relative_attention_bias is layer 0's (as TransformerEncoder ties them)."""
    layers = nn.ModuleList([TransformerSentenceEncoderLayer(cfg, has_relative_attention_bias=i == 0)
                            for i in range(depth)])
    for layer in layers[1:]:
        layer.self_attn.relative_attention_bias = layers[0].self_attn.relative_attention_bias
    return layers


class PosConv(nn.Module):
    """Conv1d(D, D, K, padding K // 2, groups) with weight norm over dim 2 (weight_g, weight_v), SamePad, GELU."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        v = torch.randn(dim, dim // groups, kernel) * math.sqrt(4.0 / (kernel * dim))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """f32[B, D, N] -> f32[B, D, N]."""
        w = self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)
        y = F.conv1d(x, w, self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:
            y = y[:, :, :-1]
        return F.gelu(y)


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["encoder_embed_dim"]
        self.pos_conv = PosConv(d, cfg["conv_pos"], cfg["conv_pos_groups"])
        self.layers = shared_bias_layers(cfg, cfg["encoder_layers"])
        self.layer_norm = nn.LayerNorm(d)
        self.layer_wise_gradient_decay_ratio = cfg["layer_wise_gradient_decay_ratio"]

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """All patch embeddings f32[B, N, D], kept token indices i64[B, K] -> f32[B, K, D]."""
        kept = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device).scatter_(1, keep, True)
        x = x * kept[..., None]  # dropped patches zeroed before the conv, as the official code zeroes padding
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
        x = self.layer_norm(x).transpose(0, 1)
        bias = self.layers[0].self_attn.compute_bias(keep)
        for layer in self.layers:
            x = layer(GradMultiply.apply(x, self.layer_wise_gradient_decay_ratio), bias)
        return x.transpose(0, 1)


class BEATs(nn.Module):
    """fbank f32[B, T, 128], kept token indices i64[B, K] -> encoder outputs f32[B, K, 768]."""

    def __init__(self, cfg: dict):
        super().__init__()
        p = cfg["input_patch_size"]
        self.patch_embedding = nn.Conv2d(1, cfg["embed_dim"], kernel_size=p, stride=p, bias=False)
        self.layer_norm = nn.LayerNorm(cfg["embed_dim"])
        self.post_extract_proj = nn.Linear(cfg["embed_dim"], cfg["encoder_embed_dim"])
        self.encoder = TransformerEncoder(cfg)

    def forward(self, fbank: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        feats = self.patch_embedding(fbank.unsqueeze(1))  # B, C, T', F'
        feats = feats.reshape(feats.shape[0], feats.shape[1], -1).transpose(1, 2)  # time-major tokens
        return self.encoder(self.post_extract_proj(self.layer_norm(feats)), keep)


class PredictorBlock(nn.Module):
    """Pre-LN transformer block (fused qkv, GELU MLP 4x, LayerNorm eps 1e-6) with an additive attention bias."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """f32[B, N, D], bias f32[1, H, N, N] -> f32[B, N, D]."""
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class LabelPredictor(nn.Module):
    """audiorep's label predictor for BEATs (pretrain/objectives.py; the paper's, whose code is not released):
    the encoder outputs back at their grid positions, `mask_token` at the masked ones, `depth` pre-LN blocks
    sharing one T5-bucketed relative position bias over the full grid (BEATs has no absolute positions), a final
    LayerNorm.  f32[B, K, D] at i64[B, K] -> f32[B, N, D]."""

    def __init__(self, cfg: dict, depth: int):
        super().__init__()
        d, h = cfg["encoder_embed_dim"], cfg["encoder_attention_heads"]
        self.num_buckets, self.max_distance = cfg["num_buckets"], cfg["max_distance"]
        self.mask_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.relative_attention_bias = nn.Parameter(torch.randn(cfg["num_buckets"], h) * 0.02)
        self.blocks = nn.ModuleList([PredictorBlock(d, h) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, visible: torch.Tensor, keep: torch.Tensor, n: int) -> torch.Tensor:
        b, _, d = visible.shape
        x = self.mask_token.expand(b, n, d).scatter(1, keep[..., None].expand(-1, -1, d), visible)
        pos = torch.arange(n, device=visible.device)
        buckets = relative_buckets(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        bias = self.relative_attention_bias[buckets].permute(2, 0, 1)[None]  # 1, H, N, N
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)


class MaskedTokenStep(nn.Module):
    """Everything the step trains: the BEATs encoder, the label predictor and the code head."""

    def __init__(self, cfg: dict, codebook_size: int, predictor_depth: int):
        super().__init__()
        self.beats = BEATs(cfg)
        self.predictor = LabelPredictor(cfg, predictor_depth)
        self.head = nn.Linear(cfg["encoder_embed_dim"], codebook_size)
        p = cfg["input_patch_size"]
        self.frontend = KaldiFbank(cfg["num_mel_bins"])
        self.tokenizer = RandomProjection(p * p, codebook_size)

    def loss(self, audio: torch.Tensor, mask_ratio: float, frames: int) -> torch.Tensor:
        with torch.no_grad():
            fbank = self.frontend(audio)[:, :frames]
            codes = self.tokenizer(patches(fbank))  # i64[B, N]
            b, n = codes.shape
            order = torch.rand(b, n, device=codes.device).argsort(dim=-1)
            masked_count = int(round(mask_ratio * n))
            idx = order[:, :masked_count]  # masked positions
            keep = order[:, masked_count:].sort(dim=-1).values  # visible ones, in grid order
        visible = self.beats(fbank, keep)
        full = self.predictor(visible, keep, n)
        at_masked = full.gather(1, idx[..., None].expand(-1, -1, full.shape[-1]))
        logits = self.head(at_masked)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.gather(1, idx).reshape(-1))


def adamw(model: nn.Module, *, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (audiorep's trainer: not biases, norms, embeddings)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "relative_attention_bias" not in n and "norm" not in n]
    ids = {id(p) for p in decay}
    rest = [p for _, p in named if id(p) not in ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=eps)


def check_encoder(npz: str) -> float:
    """Max |this encoder - audiorep's| on the tiny official-layout fixture weights (tests/fixtures/
    make_beats_fixture.py, seed 0) for the fbank and kept indices in `npz` (written by benchmarks/tokenizer.py
    --check with audiorep's outputs)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
    import make_beats_fixture as fixture

    sd = fixture.make_state_dict(fixture.CFG, 0)
    sizes = ("embed_dim", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
             "conv_pos", "conv_pos_groups", "num_buckets", "max_distance")
    model = BEATs(dict(BASE, **{k: fixture.CFG[k] for k in sizes}))
    model.load_state_dict({k.replace("encoder.pos_conv.0.", "encoder.pos_conv."): v for k, v in sd.items()})
    data = np.load(npz)
    with torch.no_grad():
        out = model(torch.from_numpy(data["fbank"]), torch.from_numpy(data["keep"]).long())
    return float(np.abs(out.numpy() - data["tokens"]).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--frames", type=int, default=992, help="fbank frames kept (992: whole 16-frame patches of 10 s)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--predictor-depth", type=int, default=3, help="label-predictor blocks (configs/beats_iter.py: 3)")
    ap.add_argument("--codebook-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--b1", type=float, default=0.9)
    ap.add_argument("--b2", type=float, default=0.98)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip-norm", type=float, default=10.0, help="0: no clipping")
    ap.add_argument("--layers", type=int, default=BASE["encoder_layers"], help="encoder layers (12 = ViT-B)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="auto", help="'cpu', 'cuda' or 'auto' (cuda when available)")
    ap.add_argument("--check-against", metavar="NPZ", help="compare the encoder with audiorep's outputs in NPZ "
                    "(fbank, keep, tokens) on the tiny fixture weights instead of timing")
    args = ap.parse_args()
    if args.check_against:
        print("RESULT " + json.dumps(dict(max_abs_diff=check_encoder(args.check_against))))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = dict(BASE, encoder_layers=args.layers)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cuda = device.startswith("cuda")
    if cuda:  # TF32 matmuls, what XLA's default precision does for f32 dots on NVIDIA GPUs
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = MaskedTokenStep(cfg, args.codebook_size, args.predictor_depth).to(device)
    opt = adamw(model, lr=args.lr, betas=(args.b1, args.b2), eps=args.eps, weight_decay=args.weight_decay)
    audio = torch.randn(args.batch, int(args.seconds * SAMPLE_RATE), device=device) * 0.1
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = model.loss(audio, args.mask_ratio, args.frames)
        loss.backward()
        if args.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.clip_norm)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    times, loss = [], float("nan")
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    print("RESULT " + json.dumps(dict(seconds=statistics.median(times), loss=loss, torch=torch.__version__,
                                      threads=torch.get_num_threads(),
                                      device=torch.cuda.get_device_name() if cuda else "cpu",
                                      params=sum(p.numel() for p in params))))


if __name__ == "__main__":
    main()
