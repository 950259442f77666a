"""SASRec (Kang and McAuley 2018) with event context, as a compact PyTorch module.

Input token t = behavior embedding * sqrt(d) (SASRec's scaling) + learned position embedding + the event's
context embedding (weekday + hour + place). Causal self-attention blocks (pre-LayerNorm, as GPT-2, the
architecture of the paper's Fig. 4 transformer) turn it into h_t, a summary of events 0..t. The prediction
head sees h_t *and* the context of the event to predict (t + 1; for the last position the next event's
weekday, hour and place, which the LLM's prompt reveals too): q = FFN([h_t; c_{t+1}]), and the logits are
q . e_b + bias_b over all behaviors b, with e_b the input behavior embeddings (SASRec shares them). The
context enters the head through a non-linear layer because the next behavior can depend on the *pair*
(history, next hour), which a sum of separate scores cannot express.

``use_context=False`` removes every context input (events and head): plain SASRec on behavior ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def _setting(default, help: str):
    """A setting with its default and its source ("SASRec": Kang and McAuley (2018); "our choice" otherwise)."""
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    """The architecture: the first three come from the prepared data, the rest are settings. Fig. 4's
    transformer is GPT-2 small: recipes/sasrec/gpt2_small.yaml."""
    n_behaviors: int
    n_places: int
    seq_len: int
    hidden_size: int = _setting(50, "SASRec (d = 50)")
    num_blocks: int = _setting(2, "SASRec (b = 2)")
    num_heads: int = _setting(1, "SASRec (single head)")
    ffn_mult: int = _setting(1, "SASRec: the point-wise feed-forward keeps width d")
    activation: str = _setting("relu", "SASRec (relu or gelu)")
    dropout: float = _setting(0.2, "SASRec on dense data (MovieLens-1M): embeddings, residuals, feed-forward")
    attention_dropout: float = _setting(0.0, "our choice: SASRec also drops attention weights, which costs ~20 % "
                                             "of a CPU step")
    use_context: bool = _setting(True, "weekday, hour, place of each event and of the next event (as the prompt)")


class Context(nn.Module):
    """c = weekday + hour + place embeddings of one event."""

    def __init__(self, n_places: int, d: int):
        super().__init__()
        self.weekday, self.hour, self.place = nn.Embedding(7, d), nn.Embedding(24, d), nn.Embedding(n_places, d)

    def forward(self, weekday, hour, place):
        return self.weekday(weekday) + self.hour(hour) + self.place(place)


class FeedForward(nn.Sequential):
    """Linear, activation, Linear (dropout is applied to its output, on the residual path, as GPT-2 does)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, activation: str):
        super().__init__(nn.Linear(d_in, d_hidden), ACTIVATIONS[activation](), nn.Linear(d_hidden, d_out))


class Dropout(nn.Module):
    """Inverted dropout whose CPU masks come from a seeded NumPy generator (8-bit thresholds, so the drop rate
    is p rounded to 1/256): torch's CPU Bernoulli sampling took ~20 % of a training step, NumPy's ~4x less.
    On other devices, or at p = 0, it is F.dropout."""

    def __init__(self, p: float, rng: np.random.Generator):
        super().__init__()
        self.p, self.rng = p, rng
        self.threshold = round(p * 256)

    def forward(self, x):
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        keep = torch.from_numpy(self.rng.integers(0, 256, size=tuple(x.shape), dtype=np.uint8) >= self.threshold)
        return x * keep * (256.0 / (256 - self.threshold))


class Block(nn.Module):
    """x + Attn(LN(x)) under a causal mask, then x + FFN(LN(x))."""

    def __init__(self, cfg: ModelConfig, rng: np.random.Generator):
        super().__init__()
        d = cfg.hidden_size
        if d % cfg.num_heads:
            raise ValueError(f"hidden_size {d} is not divisible by num_heads {cfg.num_heads}")
        self.heads, self.attention_dropout = cfg.num_heads, cfg.attention_dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ffn = FeedForward(d, cfg.ffn_mult * d, d, cfg.activation)
        self.drop_attn, self.drop_ffn = Dropout(cfg.dropout, rng), Dropout(cfg.dropout, rng)

    def forward(self, x):
        n, length, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        x = x + self.drop_attn(self.proj(att.transpose(1, 2).reshape(n, length, d)))
        return x + self.drop_ffn(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        # the dropout masks' generator, seeded from torch's (seeded by the trainer): one seed drives everything
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        self.behavior = nn.Embedding(cfg.n_behaviors, d)
        self.position = nn.Embedding(cfg.seq_len, d)
        self.context = Context(cfg.n_places, d) if cfg.use_context else None
        self.next_context = Context(cfg.n_places, d) if cfg.use_context else None
        self.drop = Dropout(cfg.dropout, rng)
        self.blocks = nn.ModuleList(Block(cfg, rng) for _ in range(cfg.num_blocks))
        self.norm = nn.LayerNorm(d)
        self.head = FeedForward(2 * d if cfg.use_context else d, max(cfg.ffn_mult, 1) * d, d, cfg.activation)
        self.bias = nn.Parameter(torch.zeros(cfg.n_behaviors))
        self.apply(_init)

    def forward(self, behavior, weekday, hour, place, last_only: bool = False):
        """Logits [N, L, K] (or [N, K] with ``last_only``): position t predicts event t + 1, whose context is
        column t + 1 of weekday/hour/place ([N, L + 1]; column L is the next event's)."""
        length = behavior.shape[1]
        if length > self.cfg.seq_len:
            raise ValueError(f"windows of {length} events, the model was built for {self.cfg.seq_len}")
        x = self.behavior(behavior) * math.sqrt(self.cfg.hidden_size)
        x = x + self.position(torch.arange(length, device=behavior.device))
        if self.context is not None:
            x = x + self.context(weekday[:, :length], hour[:, :length], place[:, :length])
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        h = self.norm(x)
        if last_only:
            h, weekday, hour, place = h[:, -1:], weekday[:, -1:], hour[:, -1:], place[:, -1:]
        else:
            weekday, hour, place = weekday[:, 1:], hour[:, 1:], place[:, 1:]
        if self.next_context is not None:
            h = torch.cat([h, self.next_context(weekday, hour, place)], dim=-1)
        logits = self.head(h) @ self.behavior.weight.T + self.bias
        return logits[:, 0] if last_only else logits


def _init(module: nn.Module) -> None:
    """GPT-2's initialisation (normal, std 0.02; zero biases)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
