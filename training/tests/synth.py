"""Tiny synthetic fleets in the long Parquet format, for tests that need no Rust exporter."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training import schema


def make_frame(servers: int = 4, steps: int = 600, seed: int = 0, start: str = "2026-01-05T00:00:00Z",
               step_seconds: int = schema.STEP_SECONDS) -> pd.DataFrame:
    """A learnable fleet: daily cycles plus AR noise per metric, one profile per server."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    times = t0 + pd.to_timedelta(np.arange(steps) * step_seconds, unit="s")
    hours = (np.arange(steps) * step_seconds / 3600.0) % 24
    frames = []
    for s in range(servers):
        profile = schema.PROFILES[s % len(schema.PROFILES)]
        cols = {}
        for j, metric in enumerate(schema.METRICS):
            base = rng.uniform(10, 60)
            amp = rng.uniform(2, 15)
            noise = np.zeros(steps)
            for k in range(1, steps):
                noise[k] = 0.8 * noise[k - 1] + rng.normal(0, 1.0)
            v = base + amp * np.sin(2 * np.pi * (hours - 6 - j) / 24) + noise
            lo, hi = schema.METRIC_RANGES[metric]
            cols[metric] = np.clip(v, lo, hi if hi is not None else np.inf)
        frame = pd.DataFrame({"timestamp": times, "server": f"srv{s:03d}", "profile": profile, **cols})
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    df["timestamp"] = df["timestamp"].astype("datetime64[ms, UTC]")
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # row order is not guaranteed
