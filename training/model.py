"""A compact, channel-independent Temporal Fusion Transformer (Lim et al., 2019) in plain PyTorch.

One row is ONE metric of one server (tft-v3, `layout: "series"`): the graph sees a single series,
which metric it is, the server's profile and the time of its last step. Any subset of a server's
metrics can therefore be forecast, and a metric that carries no information cannot move another
metric's forecast, because no row ever sees another row.

`forward` is the exported ONNX graph, with the whole serving contract inside it:

* masking: NaN (or +-inf) = not observed. The mask is built first, then the gaps are filled with
  the location (z = 0), so nothing non-finite reaches the network; an all-NaN row gives finite
  outputs (location 0, a tiny scale).
* normalisation, over observed steps only: loc = the last observed value, or the median of the
  last three (`loc_method`), so a head that outputs zero is (robust) persistence and the network
  learns the change over it; scale = max(1.2533 * mean absolute deviation around the observed
  mean, rel_floor * max(|loc|, |mean|) + abs_floor). The floor is relative and tiny, so a
  near-idle series (0.1 % CPU) keeps its own spread, and a constant series has a tiny scale and
  is forecast constant.
* patching: the 288-step context becomes 24 tokens of 12 steps (1 h); the 96-step horizon is 8
  decoder tokens each emitting 12 steps x 3 quantiles. This keeps the TFT's structure at ~1/12
  of the per-step cost.

TFT layout (hidden size `d`):

* static covariate encoder: metric embedding + profile embedding + a linear map of four real
  statics (observed fraction, age of the last observation, where the metric's physical lower and
  upper bounds sit in z units) -> four GRNs giving the contexts for variable selection (c_s),
  static enrichment (c_e) and the LSTM's initial state (c_h, c_c);
* encoder variable selection over 6 variables per patch token (the 12 z-values, the 12-step
  observed mask, 4 calendar features): a linear embedding per variable, weights from a GRN over
  all inputs and c_s; decoder variable selection likewise over the 4 known calendar features;
* LSTM encoder over 24 tokens, LSTM decoder over 8, gated skip + layer norm;
* static enrichment GRN on every token;
* interpretable multi-head attention: per-head queries/keys, one value projection shared by the
  heads, head attentions averaged; decoder tokens attend to encoder tokens, fully unobserved
  patches are masked out (with a large negative bias, not -inf, so an all-NaN row stays finite);
* position-wise GRN, gated skip to the decoder's LSTM output, and a quantile head that predicts
  the median plus softplus gaps, so p10 <= p50 <= p90 holds by construction; its weights start
  near zero, so an untrained model is persistence with modest intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from . import schema

#: encoder variables (names of `variable_weights`, in order)
ENCODER_VARIABLES: tuple[str, ...] = ("value", "observed", *schema.CALENDAR_FEATURES)
#: real-valued static inputs, in order
STATIC_REALS: tuple[str, ...] = ("observed_fraction", "last_observation_age", "z_range_low", "z_range_high")
#: normalisation locations (TFTConfig.loc_method)
LOC_METHODS: tuple[str, ...] = ("last", "median3", "median12")


@dataclass
class TFTConfig:
    """Everything needed to rebuild the network; stored in `model.json` under `architecture`."""

    n_metrics: int = len(schema.METRICS)
    #: metric embedding rows: the 14 metrics plus training-only extra kinds (schema.EXTRA_KINDS)
    n_metric_slots: int = len(schema.METRICS) + len(schema.EXTRA_KINDS)
    n_profiles: int = len(schema.PROFILES)
    context_length: int = schema.CONTEXT_LENGTH
    horizon: int = schema.HORIZON
    step_seconds: int = schema.STEP_SECONDS
    quantiles: tuple[float, ...] = schema.QUANTILES
    patch: int = 12
    hidden: int = 32
    heads: int = 4
    dropout: float = 0.1
    input_clip: float = 10.0
    #: location of the normalisation: "last" = the last observed value (the zero-output head is
    #: persistence); "median3" = the median of the last three observed values (a single spike at
    #: the end does not move it; the zero-output head is a robust persistence); "median12" = the
    #: median of the last twelve observed values (one hour: the zero-output head is the robust
    #: level "median of the last hour", which isolated spikes and short bursts do not move)
    loc_method: str = "last"
    rel_floor: float = 1e-3
    abs_floor: float = 1e-6
    #: physical range per metric slot; a negative high means "unbounded above"
    range_low: list[float] = field(default_factory=lambda: [schema.slot_range(i)[0] for i in range(schema.N_SLOTS)])
    range_high: list[float] = field(
        default_factory=lambda: [-1.0 if schema.slot_range(i)[1] is None else float(schema.slot_range(i)[1])
                                 for i in range(schema.N_SLOTS)])

    def __post_init__(self):
        if self.loc_method not in LOC_METHODS:
            raise ValueError(f"unknown loc_method {self.loc_method!r} ({', '.join(LOC_METHODS)})")
        if self.context_length % self.patch or self.horizon % self.patch:
            raise ValueError(f"context {self.context_length} and horizon {self.horizon} must be multiples of patch {self.patch}")

    @property
    def n_past_tokens(self) -> int:
        return self.context_length // self.patch

    @property
    def n_future_tokens(self) -> int:
        return self.horizon // self.patch

    def to_json(self) -> dict:
        out = asdict(self)
        out["quantiles"] = list(self.quantiles)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "TFTConfig":
        data = dict(data)
        data["quantiles"] = tuple(data["quantiles"])
        return cls(**data)


def linear_2d(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` with the leading axes flattened: exported, a 2-D input becomes one Gemm with the
    bias fused, a 3-D one a MatMul plus a separate Add; ~20 % more rows per second under ONNX
    Runtime for the whole graph, identical numbers."""
    shape = x.shape
    return layer(x.reshape(-1, shape[-1])).reshape(*shape[:-1], layer.out_features)


class GRN(nn.Module):
    """Gated residual network: LayerNorm(skip(a) + GLU(W2 ELU(W1 a + Wc c)))."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, d_context: int = 0, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.ctx = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.gate = nn.Linear(d_hidden, 2 * d_out)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else None
        self.norm = nn.LayerNorm(d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, a: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = linear_2d(self.fc1, a)
        if self.ctx is not None and c is not None:
            h = h + self.ctx(c)
        h = linear_2d(self.fc2, F.elu(h))
        h = F.glu(linear_2d(self.gate, self.dropout(h)), dim=-1)
        skip = a if self.skip is None else linear_2d(self.skip, a)
        return self.norm(skip + h)


class GateAddNorm(nn.Module):
    """LayerNorm(skip + GLU(x)), the TFT's gated skip connection."""

    def __init__(self, d: int, dropout: float = 0.0):
        super().__init__()
        self.gate = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(skip + F.glu(linear_2d(self.gate, self.dropout(x)), dim=-1))


class VariableSelection(nn.Module):
    """TFT variable selection with a linear embedding per variable (as the paper does for
    continuous inputs): variable v (width w_v: the 12 z-values of a patch, or one calendar
    feature) is embedded as e_v = x_v W_v + b_v; the selection weights are softmax(GRN(all inputs,
    c_s)); the output is sum_v weight_v e_v = (weight expanded to the inputs * x) W + weight B,
    two small products per token and no [tokens, V, d] tensor."""

    def __init__(self, widths: tuple[int, ...], d: int, d_context: int, dropout: float):
        super().__init__()
        n_in, n_vars = sum(widths), len(widths)
        self.emb_w = nn.Parameter(torch.randn(n_in, d) / math.sqrt(max(widths)))
        self.emb_b = nn.Parameter(torch.randn(n_vars, d) * 0.1)
        # expand[v, i] = 1 where input i belongs to variable v
        expand = torch.zeros(n_vars, n_in)
        start = 0
        for v, w in enumerate(widths):
            expand[v, start : start + w] = 1.0
            start += w
        self.register_buffer("expand", expand)
        self.select = GRN(n_in, d, n_vars, d_context, dropout)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, N, sum(widths)], c [B, 1, d] -> ([B, N, d], weights [B, N, V])."""
        weights = torch.softmax(self.select(x, c), dim=-1)
        per_input = torch.matmul(weights, self.expand)
        return torch.matmul(per_input * x, self.emb_w) + torch.matmul(weights, self.emb_b), weights


class TemporalFusionTransformer(nn.Module):
    """The fleetcast forecaster; `forward` is exactly the exported ONNX graph."""

    def __init__(self, cfg: TFTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        assert len(cfg.quantiles) == 3 and cfg.quantiles[1] == 0.5, "the head predicts p10/p50/p90"
        assert d % cfg.heads == 0
        self.d_head = d // cfg.heads
        p, n_cal = cfg.patch, len(schema.CALENDAR_FEATURES)
        n_past, n_fut = cfg.n_past_tokens, cfg.n_future_tokens

        self.register_buffer("range_low", torch.tensor(cfg.range_low, dtype=torch.float32))
        high = torch.tensor(cfg.range_high, dtype=torch.float32)
        self.register_buffer("range_high", torch.where(high < 0, torch.full_like(high, 3.0e38), high))
        self.register_buffer("step_index", torch.arange(cfg.context_length, dtype=torch.float32))
        # calendar at the last step of every patch: k = -(n_past-1)..n_fut patches from the last context step
        offsets = torch.arange(-(n_past - 1), n_fut + 1, dtype=torch.int64) * (p * cfg.step_seconds)
        self.register_buffer("token_offsets", offsets)

        self.metric_embedding = nn.Embedding(cfg.n_metric_slots, d)
        self.profile_embedding = nn.Embedding(cfg.n_profiles, d)
        self.static_reals = nn.Linear(len(STATIC_REALS), d)
        self.static_grns = nn.ModuleList([GRN(d, d, d, 0, cfg.dropout) for _ in range(4)])
        self.past_vsn = VariableSelection((p, p, *([1] * n_cal)), d, d, cfg.dropout)
        self.future_vsn = VariableSelection(tuple([1] * n_cal), d, d, cfg.dropout)
        self.encoder = nn.LSTM(d, d, batch_first=True)
        self.decoder = nn.LSTM(d, d, batch_first=True)
        self.lstm_gate = GateAddNorm(d, cfg.dropout)
        self.enrichment = GRN(d, d, d, d, cfg.dropout)
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_gate = GateAddNorm(d, cfg.dropout)
        self.positionwise = GRN(d, d, d, 0, cfg.dropout)
        self.out_gate = GateAddNorm(d, 0.0)
        self.head = nn.Linear(d, p * 3)
        with torch.no_grad():  # start as persistence with modest intervals rather than noise
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()

    # -- pieces shared by training and the graph ---------------------------------------------

    def normalise(self, past: torch.Tensor, metric: torch.Tensor):
        """Masked per-row scaling. Returns (z [B,T] soft-clipped with gaps at 0, mask [B,T] float,
        loc [B,1], scale [B,1], statics [B, len(STATIC_REALS)])."""
        cfg = self.cfg
        t = past.shape[1]
        observed = ~(torch.isnan(past) | torch.isinf(past))
        mask = observed.to(past.dtype)
        filled = torch.where(observed, past, torch.zeros_like(past))
        n = mask.sum(dim=1, keepdim=True)
        n_safe = torch.clamp(n, min=1.0)
        mean = filled.sum(dim=1, keepdim=True) / n_safe
        mad = ((filled - mean).abs() * mask).sum(dim=1, keepdim=True) / n_safe
        # k-th last observed step: where an observed step has exactly k observed steps at or after it
        # (cumulative counts, no sort or argmax); a row with fewer than k observed steps has none
        count_after = n - torch.cumsum(mask, dim=1) + mask
        last = mask * (count_after == 1).to(past.dtype)
        v1 = (filled * last).sum(dim=1, keepdim=True)
        last_idx = (last * self.step_index).sum(dim=1, keepdim=True)
        if cfg.loc_method == "median3":
            picked = []
            for k in (2.0, 3.0):
                sel = mask * (count_after == k).to(past.dtype)
                picked.append(torch.where(sel.sum(dim=1, keepdim=True) > 0, (filled * sel).sum(dim=1, keepdim=True), v1))
            v2, v3 = picked
            loc = torch.maximum(torch.minimum(v1, v2), torch.minimum(torch.maximum(v1, v2), v3))
        elif cfg.loc_method == "median12":
            loc = self._median_of_last(filled, mask, count_after, v1, 12)
        else:
            loc = v1
        floor = cfg.rel_floor * torch.maximum(loc.abs(), mean.abs()) + cfg.abs_floor
        scale = torch.maximum(mad * 1.2533, floor)
        c = cfg.input_clip
        z = c * torch.tanh(((filled - loc) / scale) / c) * mask
        low = self.range_low[metric].unsqueeze(1)
        high = self.range_high[metric].unsqueeze(1)
        statics = torch.cat([
            n / t,
            (t - 1 - last_idx) / t,
            torch.tanh(((low - loc) / scale) / c),
            torch.tanh(((high - loc) / scale) / c),
        ], dim=1)
        return z, mask, loc, scale, statics

    @staticmethod
    def _median_of_last(filled, mask, count_after, v1, k: int) -> torch.Tensor:
        """Median of the last k observed values [B,1]: the j-th last observed value is picked with
        a one-hot over steps (count_after == j, a [B,T,k] product, no gather), slots a short row
        lacks take the last observed value, and the median of k (even) is the mean of the two
        middle values of a TopK (exported as ONNX TopK, exact in ORT)."""
        ranks = torch.arange(1, k + 1, dtype=filled.dtype, device=filled.device)
        sel = mask.unsqueeze(-1) * (count_after.unsqueeze(-1) == ranks).to(filled.dtype)  # [B,T,k]
        vals = torch.matmul(filled.unsqueeze(1), sel).squeeze(1)  # [B,k]
        have = sel.sum(dim=1)  # [B,k]: 1 where the row has a j-th last observed value
        vals = torch.where(have > 0, vals, v1.expand(-1, k))
        low = torch.topk(vals, k // 2 + 1, dim=1, largest=False, sorted=True).values
        if k % 2:
            return low[:, k // 2 : k // 2 + 1]
        return 0.5 * (low[:, k // 2 - 1 : k // 2] + low[:, k // 2 : k // 2 + 1])

    def calendar(self, last_timestamp: torch.Tensor) -> torch.Tensor:
        """Calendar features [B, n_past + n_fut, 4] at the last step of every patch token.

        Token k (k = -(n_past-1)..n_fut) ends at t = last_timestamp + k * patch * step (integer
        seconds, UTC); day = floor(t / 86400), sec = t - 86400 day, dow = (day + 3) mod 7 (Monday
        = 0); hour_sin/cos = sin/cos(2 pi sec / 86400), week_sin/cos = sin/cos(2 pi (dow +
        sec/86400) / 7). Integer arithmetic stays in int64, so 10-digit unix times lose nothing.
        """
        t = last_timestamp.unsqueeze(1) + self.token_offsets.unsqueeze(0)
        day = torch.div(t, 86400, rounding_mode="floor")
        sec = (t - day * 86400).to(torch.float32)
        dow = (day + 3) - torch.div(day + 3, 7, rounding_mode="floor") * 7
        day_frac = sec / 86400.0
        week_frac = (dow.to(torch.float32) + day_frac) / 7.0
        two_pi = 2.0 * math.pi
        return torch.stack([torch.sin(two_pi * day_frac), torch.cos(two_pi * day_frac),
                            torch.sin(two_pi * week_frac), torch.cos(two_pi * week_frac)], dim=-1)

    def forward_normalised(self, z, mask, statics, metric, profile, last_timestamp):
        """TFT core on normalised inputs: returns (quantiles in z units [B,H,3], encoder selection
        weights [B,n_past,V], attention [B,n_fut,n_past] averaged over heads)."""
        cfg = self.cfg
        b = z.shape[0]
        p, n_past, n_fut = cfg.patch, cfg.n_past_tokens, cfg.n_future_tokens
        cal = self.calendar(last_timestamp)
        static = self.metric_embedding(metric) + self.profile_embedding(profile) + self.static_reals(statics)
        c_s, c_e, c_h, c_c = (g(static) for g in self.static_grns)

        zp = z.reshape(b, n_past, p)
        mp = mask.reshape(b, n_past, p)
        past_x, past_w = self.past_vsn(torch.cat([zp, mp, cal[:, :n_past]], dim=-1), c_s.unsqueeze(1))
        fut_x, _ = self.future_vsn(cal[:, n_past:], c_s.unsqueeze(1))

        enc_out, (h_n, c_n) = self.encoder(past_x, (c_h.unsqueeze(0), c_c.unsqueeze(0)))
        dec_out, _ = self.decoder(fut_x, (h_n, c_n))
        temporal = self.lstm_gate(torch.cat([enc_out, dec_out], dim=1), torch.cat([past_x, fut_x], dim=1))
        enriched = self.enrichment(temporal, c_e.unsqueeze(1))
        enc_e, dec_e = enriched[:, :n_past], enriched[:, n_past:]

        heads, dh = cfg.heads, self.d_head
        q = linear_2d(self.query, dec_e).reshape(b, n_fut, heads, dh).transpose(1, 2)  # [B, nh, F, dh]
        k = linear_2d(self.key, enc_e).reshape(b, n_past, heads, dh).permute(0, 2, 3, 1)  # [B, nh, dh, P]
        # a patch with no observed step gets a large negative bias (not -inf: an all-NaN row
        # then attends uniformly instead of producing NaN)
        empty = (mp.sum(dim=-1) == 0).to(z.dtype) * -1.0e4  # [B, P]
        scores = torch.matmul(q, k) * (1.0 / math.sqrt(dh)) + empty[:, None, None, :]
        attn = torch.softmax(scores, dim=-1).mean(dim=1)  # [B, F, P]: heads share V, so average first
        ctx = torch.matmul(attn, linear_2d(self.value, enc_e))
        attended = self.attn_gate(linear_2d(self.attn_out, ctx), dec_e)
        feat = self.out_gate(self.positionwise(attended), temporal[:, n_past:])
        raw = linear_2d(self.head, feat).reshape(b, cfg.horizon, 3)

        median = raw[..., 1]
        low = median - F.softplus(raw[..., 0]) - 1e-4
        high = median + F.softplus(raw[..., 2]) + 1e-4
        return torch.stack([low, median, high], dim=-1), past_w, attn

    def forward(self, past_values: torch.Tensor, metric: torch.Tensor, profile: torch.Tensor,
                last_timestamp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw values in (NaN = not observed), raw-unit quantiles out (the ONNX graph)."""
        z, mask, loc, scale, statics = self.normalise(past_values, metric)
        zq, past_w, attn = self.forward_normalised(z, mask, statics, metric, profile, last_timestamp)
        y = loc.unsqueeze(-1) + scale.unsqueeze(-1) * zq  # [B, H, 3]
        # clamp is monotone, so the quantile order survives it
        low = self.range_low[metric][:, None, None]
        high = self.range_high[metric][:, None, None]
        y = torch.minimum(torch.maximum(y, low), high)
        # each patch's attention spread evenly over its steps: [B, P] -> [B, T]
        attn_steps = (attn.mean(dim=1) / self.cfg.patch).unsqueeze(-1).expand(-1, -1, self.cfg.patch)
        return y, past_w.mean(dim=1), attn_steps.reshape(attn.shape[0], self.cfg.context_length)


def encoder_variable_names() -> list[str]:
    return list(ENCODER_VARIABLES)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: TemporalFusionTransformer) -> int:
    """FLOPs of one row (batch 1): matmuls counted by torch's FlopCounterMode (2 x MACs), plus
    the LSTMs, which it does not see, counted analytically (4 gates x (in+hidden) x hidden MACs
    per token, x2). Element-wise ops are excluded."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.cfg
    was_training = model.training
    model.eval()
    past = torch.rand(1, cfg.context_length) * 50
    ts = torch.tensor([1_767_571_200], dtype=torch.int64)
    zero = torch.tensor([0], dtype=torch.int64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(past, zero, zero, ts)
    flops = counter.get_total_flops()
    d = cfg.hidden
    lstm = 2 * 4 * (d + d) * d * (cfg.n_past_tokens + cfg.n_future_tokens)
    model.train(was_training)
    return int(flops + lstm)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: tuple[float, ...],
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean quantile loss; pred [..., Q], target [...]; weight [...] (0 = ignore, e.g. a NaN target)."""
    q = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device)
    err = target.unsqueeze(-1) - pred
    loss = torch.maximum(q * err, (q - 1.0) * err)
    if weight is None:
        return loss.mean()
    w = weight.unsqueeze(-1)
    return (loss * w).sum() / (w.sum() * len(quantiles)).clamp(min=1.0)
