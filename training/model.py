"""A compact Temporal Fusion Transformer (Lim et al., 2019) in plain PyTorch.

Written so that `torch.onnx.export` produces one graph with a dynamic batch axis and the whole
serving contract inside it: the caller passes raw metric values, the unix time of the last
context step and the profile index; the graph normalises each window, derives the calendar
features, runs the TFT, de-normalises, orders and clips the quantiles.

Layout (hidden size `d`):

* static covariate encoder: profile embedding -> four GRNs giving the contexts for variable
  selection (c_s), static enrichment (c_e) and the LSTM's initial state (c_h, c_c). With a single
  static variable the static variable selection is the identity, so it is left out.
* variable selection networks for the past (14 normalised metrics + 4 calendar features) and the
  future (4 calendar features). Each variable has its own small GRN; all of them are evaluated as
  one batched matrix product over the variable axis (no Python loop), and the selection weights
  come from a GRN over the scalar inputs and the static context.
* LSTM encoder over the 288 context steps, LSTM decoder over the 96 forecast steps, gated skip
  connection + layer norm.
* static enrichment GRN on every step.
* interpretable multi-head attention: per-head queries/keys, one value projection shared by all
  heads, head attentions averaged. Queries are the forecast steps only and keys the context steps,
  which is all the output needs (and keeps the cost at 96 x 288 per head).
* position-wise GRN, gated skip to the decoder's LSTM output, and a quantile head that predicts
  the median plus softplus gaps, so p10 <= p50 <= p90 holds by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from . import schema


@dataclass
class TFTConfig:
    """Everything needed to rebuild the network; stored in `model.json` under `architecture`."""

    n_metrics: int = len(schema.METRICS)
    n_profiles: int = len(schema.PROFILES)
    context_length: int = schema.CONTEXT_LENGTH
    horizon: int = schema.HORIZON
    step_seconds: int = schema.STEP_SECONDS
    quantiles: tuple[float, ...] = schema.QUANTILES
    hidden: int = 32
    var_hidden: int = 8
    #: width of each variable's GRN output before the weighted sum (then projected to `hidden`)
    var_dim: int = 16
    heads: int = 4
    dropout: float = 0.1
    #: encoder variable selection: "grn" = a small GRN per variable at every step (tft-v1);
    #: "linear" = a linear embedding per variable, x_v * W_v + b_v, weighted by the selection GRN
    #: (the weighted sum collapses to two [B*T, V] x [V, d] products; tft-v2)
    encoder_selection: str = "grn"
    #: robust spread of the in-graph normalisation: "iqr" = max(IQR/1.349, std/4, floor) (sorts
    #: along time; tft-v1); "mad" = max(1.2533 * mean |x - mean|, floor) (sort-free; tft-v2)
    scale_method: str = "iqr"
    input_clip: float = 10.0
    scale_floors: list[float] = field(
        default_factory=lambda: [schema.SCALE_FLOORS[m] for m in schema.METRICS]
    )
    range_low: list[float] = field(default_factory=lambda: [schema.METRIC_RANGES[m][0] for m in schema.METRICS])
    #: upper bound per metric; a negative value means "unbounded above"
    range_high: list[float] = field(
        default_factory=lambda: [
            -1.0 if schema.METRIC_RANGES[m][1] is None else float(schema.METRIC_RANGES[m][1]) for m in schema.METRICS
        ]
    )

    def to_json(self) -> dict:
        out = asdict(self)
        out["quantiles"] = list(self.quantiles)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "TFTConfig":
        data = dict(data)
        data["quantiles"] = tuple(data["quantiles"])
        return cls(**data)


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
        h = self.fc1(a)
        if self.ctx is not None and c is not None:
            h = h + self.ctx(c)
        h = self.fc2(F.elu(h))
        h = F.glu(self.gate(self.dropout(h)), dim=-1)
        skip = a if self.skip is None else self.skip(a)
        return self.norm(skip + h)


class GateAddNorm(nn.Module):
    """LayerNorm(skip + GLU(x)), the TFT's gated skip connection."""

    def __init__(self, d: int, dropout: float = 0.0):
        super().__init__()
        self.gate = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(skip + F.glu(self.gate(self.dropout(x)), dim=-1))


class VariableSelection(nn.Module):
    """Variable selection over V scalar inputs, every per-variable GRN in one batched product.

    Per variable v with scalar input x_v: the variable's features are f_v = [ELU(x_v u_v + b_v),
    x_v, 1] (hidden size `var_hidden` + 2); its GRN output is
    out_v = LayerNorm(f_v S_v + (f_v A_v) * sigmoid(f_v G_v)): a linear skip path plus a gated
    linear unit, biases folded in through the constant feature. The three products are each one
    matmul batched over the variable axis, in a [V, B*T, .] layout so that no large tensor is ever
    transposed, and the weighted sum over variables is a multiply and a reduction. The selection
    weights are softmax(GRN([x_1..x_V], c_s)).
    """

    def __init__(self, n_vars: int, d: int, var_hidden: int, d_context: int, dropout: float, d_var: int | None = None):
        super().__init__()
        d_out = d
        d = d_var or d
        self.n_vars, self.d = n_vars, d
        k = var_hidden + 2
        self.hid_w = nn.Parameter(torch.randn(n_vars, 1, var_hidden))
        self.hid_b = nn.Parameter(torch.randn(n_vars, 1, var_hidden) * 0.5)
        self.skip_w = nn.Parameter(torch.randn(n_vars, k, d) / math.sqrt(k))
        self.glu_a = nn.Parameter(torch.randn(n_vars, k, d) / math.sqrt(k))
        self.glu_b = nn.Parameter(torch.randn(n_vars, k, d) / math.sqrt(k))
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.select = GRN(n_vars, d_out, n_vars, d_context, dropout)
        # per-variable outputs live in a narrower space (d_var) and are projected up after the
        # weighted sum: the [V, B*T, d_var] tensors are the bulk of the graph's memory traffic
        self.project = nn.Linear(d, d_out) if d != d_out else None

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, V] scalars, c [B, 1, d] static context -> ([B, T, d], weights [B, T, V])."""
        b, t, v = x.shape
        xv = x.reshape(b * t, v).transpose(0, 1).unsqueeze(-1)  # [V, BT, 1] (small)
        feats = torch.cat([F.elu(xv * self.hid_w + self.hid_b), xv, torch.ones_like(xv)], dim=-1)  # [V, BT, k]
        gated = torch.matmul(feats, self.glu_a) * torch.sigmoid(torch.matmul(feats, self.glu_b))
        per_var = self.norm(torch.matmul(feats, self.skip_w) + self.dropout(gated))  # [V, BT, d]
        weights = torch.softmax(self.select(x, c), dim=-1)  # [B, T, V]
        wv = weights.reshape(b * t, v).transpose(0, 1).unsqueeze(-1)  # [V, BT, 1]
        combined = (per_var * wv).sum(dim=0).reshape(b, t, self.d)
        if self.project is not None:
            combined = self.project(combined)
        return combined, weights


class LinearVariableSelection(nn.Module):
    """Variable selection with a linear embedding per variable (as the paper does for continuous
    inputs) instead of a per-variable GRN: e_v = x_v W_v + b_v, selection weights w =
    softmax(GRN([x_1..x_V], c_s)), output sum_v w_v e_v = (w * x) W + w B, i.e. two small matrix
    products per step and no [V, B*T, d] tensor at all."""

    def __init__(self, n_vars: int, d: int, d_context: int, dropout: float):
        super().__init__()
        self.n_vars, self.d = n_vars, d
        self.emb_w = nn.Parameter(torch.randn(n_vars, d))
        self.emb_b = nn.Parameter(torch.randn(n_vars, d) * 0.1)
        self.select = GRN(n_vars, d, n_vars, d_context, dropout)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, V] scalars, c [B, 1, d] static context -> ([B, T, d], weights [B, T, V])."""
        weights = torch.softmax(self.select(x, c), dim=-1)  # [B, T, V]
        combined = torch.matmul(weights * x, self.emb_w) + torch.matmul(weights, self.emb_b)
        return combined, weights


class TemporalFusionTransformer(nn.Module):
    """The fleetcast forecaster; `forward` is exactly the exported ONNX graph."""

    def __init__(self, cfg: TFTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        m = cfg.n_metrics
        self.n_quantiles = len(cfg.quantiles)
        assert self.n_quantiles == 3 and cfg.quantiles[1] == 0.5, "the head predicts p10/p50/p90"
        assert d % cfg.heads == 0
        self.d_head = d // cfg.heads
        n_cal = len(schema.CALENDAR_FEATURES)

        self.register_buffer("scale_floor", torch.tensor(cfg.scale_floors, dtype=torch.float32))
        self.register_buffer("range_low", torch.tensor(cfg.range_low, dtype=torch.float32))
        high = torch.tensor(cfg.range_high, dtype=torch.float32)
        self.register_buffer("range_high", torch.where(high < 0, torch.full_like(high, 3.0e38), high))
        past_offsets = torch.arange(-(cfg.context_length - 1), 1, dtype=torch.int64) * cfg.step_seconds
        future_offsets = torch.arange(1, cfg.horizon + 1, dtype=torch.int64) * cfg.step_seconds
        self.register_buffer("time_offsets", torch.cat([past_offsets, future_offsets]))

        self.profile_embedding = nn.Embedding(cfg.n_profiles, d)
        self.static_grns = nn.ModuleList([GRN(d, d, d, 0, cfg.dropout) for _ in range(4)])
        if cfg.encoder_selection == "linear":
            self.past_vsn = LinearVariableSelection(m + n_cal, d, d, cfg.dropout)
        elif cfg.encoder_selection == "grn":
            self.past_vsn = VariableSelection(m + n_cal, d, cfg.var_hidden, d, cfg.dropout, cfg.var_dim)
        else:
            raise ValueError(f"unknown encoder_selection {cfg.encoder_selection!r} (grn or linear)")
        if cfg.scale_method not in ("iqr", "mad"):
            raise ValueError(f"unknown scale_method {cfg.scale_method!r} (iqr or mad)")
        self.future_vsn = VariableSelection(n_cal, d, cfg.var_hidden, d, cfg.dropout, cfg.var_dim)
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
        self.head = nn.Linear(d, m * self.n_quantiles)
        with torch.no_grad():  # start as "recent level, modest spread" rather than noise
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    # -- pieces shared by training and the graph ---------------------------------------------

    def normalise(self, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-window robust scaling: loc = median of the last 3 steps (follows a level shift at
        once, ignores a single-step spike), scale = max(IQR/1.349, std/4, floor) ("iqr") or
        max(1.2533 * mean absolute deviation around the window mean, floor) ("mad", no sort; the
        factor makes it equal to the standard deviation for Gaussian data, and a spike moves it
        linearly, not quadratically as it would the standard deviation).
        Returns (soft-clipped z [B,T,M], loc [B,1,M], scale [B,1,M])."""
        t = past.shape[1]
        a, b, c = past[:, -3:-2, :], past[:, -2:-1, :], past[:, -1:, :]
        loc = torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))
        mean = past.mean(dim=1, keepdim=True)
        if self.cfg.scale_method == "mad":
            mad = (past - mean).abs().mean(dim=1, keepdim=True)
            scale = torch.maximum(mad * 1.2533, self.scale_floor)
        else:
            ordered, _ = torch.sort(past, dim=1)
            q1 = ordered[:, (t - 1) // 4 : (t - 1) // 4 + 1, :]
            q3 = ordered[:, 3 * (t - 1) // 4 : 3 * (t - 1) // 4 + 1, :]
            std = torch.sqrt(((past - mean) ** 2).mean(dim=1, keepdim=True))
            scale = torch.maximum(torch.maximum((q3 - q1) / 1.349, std * 0.25), self.scale_floor)
        z = (past - loc) / scale
        clip = self.cfg.input_clip
        z = clip * torch.tanh(z / clip)
        return z, loc, scale

    def calendar(self, last_timestamp: torch.Tensor) -> torch.Tensor:
        """Calendar features [B, T+H, 4] for every context and forecast step.

        t_k = last_timestamp + k * step for k = -(T-1)..H (integer seconds, UTC);
        day = floor(t / 86400), sec = t - 86400 day, dow = (day + 3) mod 7 (Monday = 0);
        hour_sin/cos = sin/cos(2 pi sec / 86400), week_sin/cos = sin/cos(2 pi (dow + sec/86400) / 7).
        All integer arithmetic is done in int64 before converting to float, so no precision is
        lost on 10-digit unix times.
        """
        t = last_timestamp.unsqueeze(1) + self.time_offsets.unsqueeze(0)  # [B, T+H] int64
        day = torch.div(t, 86400, rounding_mode="floor")
        sec = (t - day * 86400).to(torch.float32)
        dow = (day + 3) - torch.div(day + 3, 7, rounding_mode="floor") * 7
        day_frac = sec / 86400.0
        week_frac = (dow.to(torch.float32) + day_frac) / 7.0
        two_pi = 2.0 * math.pi
        return torch.stack(
            [
                torch.sin(two_pi * day_frac),
                torch.cos(two_pi * day_frac),
                torch.sin(two_pi * week_frac),
                torch.cos(two_pi * week_frac),
            ],
            dim=-1,
        )

    def forward_normalised(
        self, z: torch.Tensor, last_timestamp: torch.Tensor, profile: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """TFT core on normalised inputs: returns (quantiles in z units [B,H,M,3],
        past selection weights [B,T,V], attention [B,H,T] averaged over heads)."""
        cfg = self.cfg
        b = z.shape[0]
        t, h = cfg.context_length, cfg.horizon
        cal = self.calendar(last_timestamp)
        static = self.profile_embedding(profile)  # [B, d]
        c_s, c_e, c_h, c_c = (g(static) for g in self.static_grns)

        past_in = torch.cat([z, cal[:, :t, :]], dim=-1)  # [B, T, M+4]
        past_x, past_w = self.past_vsn(past_in, c_s.unsqueeze(1))
        fut_x, _ = self.future_vsn(cal[:, t:, :], c_s.unsqueeze(1))

        enc_out, (h_n, c_n) = self.encoder(past_x, (c_h.unsqueeze(0), c_c.unsqueeze(0)))
        dec_out, _ = self.decoder(fut_x, (h_n, c_n))
        temporal = self.lstm_gate(torch.cat([enc_out, dec_out], dim=1), torch.cat([past_x, fut_x], dim=1))
        enriched = self.enrichment(temporal, c_e.unsqueeze(1))
        enc_e, dec_e = enriched[:, :t, :], enriched[:, t:, :]

        heads, dh = cfg.heads, self.d_head
        q = self.query(dec_e).reshape(b, h, heads, dh).transpose(1, 2)  # [B, nh, H, dh]
        k = self.key(enc_e).reshape(b, t, heads, dh).permute(0, 2, 3, 1)  # [B, nh, dh, T]
        scores = torch.matmul(q, k) * (1.0 / math.sqrt(dh))
        attn = torch.softmax(scores, dim=-1).mean(dim=1)  # [B, H, T]: heads share V, so average first
        ctx = torch.matmul(attn, self.value(enc_e))  # [B, H, d]
        attended = self.attn_gate(self.attn_out(ctx), dec_e)
        feat = self.out_gate(self.positionwise(attended), temporal[:, t:, :])
        raw = self.head(feat).reshape(b, h, cfg.n_metrics, 3)

        median = raw[..., 1]
        low = median - F.softplus(raw[..., 0]) - 1e-4
        high = median + F.softplus(raw[..., 2]) + 1e-4
        return torch.stack([low, median, high], dim=-1), past_w, attn

    def forward(
        self, past_values: torch.Tensor, last_timestamp: torch.Tensor, profile: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw values in, raw-unit quantiles out (the ONNX graph)."""
        z, loc, scale = self.normalise(past_values)
        zq, past_w, attn = self.forward_normalised(z, last_timestamp, profile)
        y = loc.unsqueeze(-1) + scale.unsqueeze(-1) * zq  # [B, H, M, 3]
        # clamp is monotone, so the quantile order survives it
        y = torch.minimum(torch.maximum(y, self.range_low[:, None]), self.range_high[:, None])
        return y, past_w.mean(dim=1), attn.mean(dim=1)


def encoder_variable_names() -> list[str]:
    return [*schema.METRICS, *schema.CALENDAR_FEATURES]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: TemporalFusionTransformer) -> int:
    """FLOPs of one forecast (batch 1): matmuls counted by torch's FlopCounterMode (2 x MACs),
    plus the LSTMs, which it does not see, counted analytically (4 gates x (in+hidden) x hidden
    MACs per step, x2)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.cfg
    was_training = model.training
    model.eval()
    past = torch.rand(1, cfg.context_length, cfg.n_metrics) * 50
    ts = torch.tensor([1_767_571_200], dtype=torch.int64)
    prof = torch.tensor([0], dtype=torch.int64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(past, ts, prof)
    flops = counter.get_total_flops()
    d = cfg.hidden
    lstm = 2 * 4 * (d + d) * d * (cfg.context_length + cfg.horizon)
    model.train(was_training)
    return int(flops + lstm)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: tuple[float, ...]) -> torch.Tensor:
    """Mean quantile loss; pred [..., Q], target [...]."""
    q = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device)
    err = target.unsqueeze(-1) - pred
    return torch.maximum(q * err, (q - 1.0) * err).mean()
