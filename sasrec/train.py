"""Training SASRec on the prepared train_all windows, epoch chosen on the validation split, test predictions.

The loss is SASRec's objective (Kang and McAuley 2018): cross-entropy over all behaviors for the next event at
every position of the window (``loss_positions: all``; ``last`` trains on the window's label only). After each
epoch the model predicts the validation windows' labels; the epoch with the best validation accuracy is kept
(paper 4.1.4: "selecting the best-performing model on the validation set"), and training stops after ``patience``
epochs without an improvement of more than ``min_delta`` or at ``max_epochs``. An "epoch" is one pass over the
training windows, or, for a subset smaller than ``min_round_windows``, as many whole passes as reach that many
windows: a 1,000-window subset would otherwise stop after a few 8-step epochs still predicting the majority
behavior, and validating 50k windows after every 8 steps would cost more than the training. Seeded and
deterministic on CPU: fixed thread count, ``torch.use_deterministic_algorithms``, seeded batch order and dropout.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from data_prep.config import PrepareConfig
from data_prep.writing.outputs import atomic_open
from evaluation.config import PredictConfig
from evaluation.files import (
    TEST_SPLITS,
    candidate_names,
    distribution_row,
    load_stats,
    write_json_atomic,
    write_predictions,
)
from evaluation.temperature import calibration_subset, fit_record, write_temperature

from .data import Windows, read_split
from .model import ModelConfig, SASRec

LOSS_POSITIONS = ("all", "last")


def _setting(default, help: str):
    """A setting with its default and where the value comes from ("SASRec": the defaults Kang and McAuley (2018)
    published for MovieLens-1M, since the paper gives no SASRec hyperparameters for Table 3; "paper": BehaviorLM;
    "our choice" otherwise)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """The training settings: these defaults, then a profile's ``training:`` (``--config``), then KEY=VALUE."""
    loss_positions: str = _setting("all", "SASRec's objective: the next behavior at every position of the window "
                                          "(all), or the window's label only (last)")
    batch_size: int = _setting(128, "SASRec")
    eval_batch_size: int = _setting(1024, "our choice (inference only)")
    learning_rate: float = _setting(1e-3, "SASRec")
    adam_betas: tuple[float, float] = _setting((0.9, 0.98), "SASRec")
    weight_decay: float = _setting(0.0, "SASRec (no L2 on embeddings)")
    max_epochs: int = _setting(30, "our choice (the paper trains its LLMs for at most 8 epochs)")
    patience: int = _setting(3, "our choice: stop after this many epochs without a better validation accuracy")
    min_delta: float = _setting(0.001, "our choice: better = by more than this (on 200k windows the validation "
                                       "accuracy crept up ~0.0003 an epoch)")
    seed: int = _setting(PrepareConfig.seed, "seed of the initialisation, batch order, dropout and the "
                                             "temperature's validation subset")
    threads: int = _setting(1, "our choice: fixed (results do not depend on the core count); one thread, because "
                               "OpenMP's spinning barriers make 2 threads up to 10x slower on a shared, busy CPU")
    valid_cap: int | None = _setting(None, "validation windows at most (none: every one; prepare caps valid)")
    min_round_windows: int = _setting(20000, "our choice: a smaller training set makes an epoch of several passes "
                                             "(at least this many windows)")
    calib_samples: int = _setting(PredictConfig.calib_samples, "validation windows (a subset seeded by seed) the "
                                  "temperature is fitted on, as the LLMs' (temperature.json); 0: none")

    def __post_init__(self):
        self.adam_betas = tuple(self.adam_betas)
        if self.loss_positions not in LOSS_POSITIONS:
            raise ValueError(f"loss_positions must be one of {', '.join(LOSS_POSITIONS)}, got {self.loss_positions!r}")
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("batch_size, max_epochs and patience must be positive")


MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"n_behaviors", "n_places", "seq_len"}
TRAIN_KEYS = {f.name for f in fields(TrainConfig)}


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> tuple[dict, TrainConfig]:
    """(model settings, TrainConfig): the defaults of ModelConfig and TrainConfig, then a profile YAML's ``model:``
    and ``training:`` sections (`path`, e.g. recipes/sasrec/gpt2_small.yaml), then ``KEY=VALUE`` overrides
    (values read as YAML, keys of either section)."""
    raw, where = {}, "sasrec" if path is None else str(path)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"missing SASRec config {path}")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown_sections = set(raw) - {"model", "training"}
    if unknown_sections:
        raise ValueError(f"{where}: unknown section(s) {sorted(unknown_sections)} (expected model, training)")
    model, train = dict(raw.get("model") or {}), dict(raw.get("training") or {})
    for spec in overrides:
        key, sep, value = spec.partition("=")
        if not sep:
            raise ValueError(f"override {spec!r} is not KEY=VALUE")
        (model if key in MODEL_KEYS else train)[key.strip()] = yaml.safe_load(value)
    for section, keys, name in ((model, MODEL_KEYS, "model"), (train, TRAIN_KEYS, "training")):
        unknown = set(section) - keys
        if unknown:
            raise ValueError(f"{where}: unknown {name} setting(s) {sorted(unknown)}")
    return model, TrainConfig(**train)


def set_determinism(seed: int, threads: int, device: str) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    # on CUDA some kernels have no deterministic version: warn instead of failing there
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    # its NaN-filling of every new tensor only detects reads of uninitialised memory (none here) and cost
    # ~7 % of a CPU step; results stay deterministic without it
    torch.utils.deterministic.fill_uninitialized_memory = False


def to_tensors(w: Windows, device: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(getattr(w, k)).to(device) for k in ("behavior", "weekday", "hour", "place", "label")}


def batch_of(t: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in t.items()}


@torch.no_grad()
def predict_logprobs(model: SASRec, t: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
    """Log-softmax over all behaviors of each window's next event, [N, K]."""
    model.eval()
    n = len(t["label"])
    out = [F.log_softmax(model(b["behavior"], b["weekday"], b["hour"], b["place"], last_only=True), dim=-1)
           for b in (batch_of(t, torch.arange(i, min(i + batch_size, n))) for i in range(0, n, batch_size))]
    return torch.cat(out).cpu()


def predict_probs(model: SASRec, t: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
    """Softmax over all behaviors of each window's next event, [N, K]."""
    return predict_logprobs(model, t, batch_size).exp()


def passes_per_epoch(n_windows: int, min_round_windows: int) -> int:
    return max(1, -(-min_round_windows // n_windows))


def train_epoch(model, optimizer, t, tcfg: TrainConfig, generator: torch.Generator, desc: str) -> float:
    model.train()
    n = len(t["label"])
    order = torch.cat([torch.randperm(n, generator=generator)
                       for _ in range(passes_per_epoch(n, tcfg.min_round_windows))])
    batches = order.split(tcfg.batch_size)
    total = 0.0
    bar = tqdm(batches, desc=desc, unit="batch", leave=False)
    for index in bar:
        b = batch_of(t, index.to(t["label"].device))
        last = tcfg.loss_positions == "last"
        logits = model(b["behavior"], b["weekday"], b["hour"], b["place"], last_only=last)
        target = b["label"] if last else torch.cat([b["behavior"][:, 1:], b["label"][:, None]], dim=1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return total / len(order)


def fit(train: Windows, valid: Windows, model_cfg: ModelConfig, tcfg: TrainConfig, device: str = "cpu",
        desc: str = "sasrec") -> tuple[SASRec, dict]:
    """Train with early stopping on validation accuracy; returns the best epoch's model and the history."""
    set_determinism(tcfg.seed, tcfg.threads, device)
    model = SASRec(model_cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.learning_rate, betas=tcfg.adam_betas,
                                 weight_decay=tcfg.weight_decay)
    generator = torch.Generator().manual_seed(tcfg.seed)
    t_train, t_valid = to_tensors(train, device), to_tensors(valid, device)
    best = {"epoch": 0, "valid_accuracy": -1.0, "state": None, "seconds_to_best": 0.0}
    history, elapsed = [], 0.0
    for epoch in range(1, tcfg.max_epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(model, optimizer, t_train, tcfg, generator, f"{desc} epoch {epoch}")
        probs = predict_probs(model, t_valid, tcfg.eval_batch_size)
        acc = float((probs.argmax(-1) == t_valid["label"].cpu()).float().mean())
        seconds = time.perf_counter() - start
        elapsed += seconds
        history.append({"epoch": epoch, "train_loss": loss, "valid_accuracy": acc, "seconds": seconds})
        tqdm.write(f"{desc} epoch {epoch}: loss {loss:.4f}, valid accuracy {acc:.4f}, {seconds:.1f} s")
        if acc > best["valid_accuracy"] + tcfg.min_delta:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best.update(epoch=epoch, valid_accuracy=acc, state=state, seconds_to_best=elapsed)
        elif epoch - best["epoch"] >= tcfg.patience:
            break
    model.load_state_dict(best.pop("state"))
    model.eval()
    return model, {**best, "epochs": len(history), "seconds_total": elapsed, "history": history,
                   "passes_per_epoch": passes_per_epoch(len(train), tcfg.min_round_windows)}


def prediction_rows(probs: torch.Tensor, w: Windows, candidates: list[str],
                    logprobs: torch.Tensor | None = None) -> list[dict]:
    """Rows of the evaluation's predictions contract (``distribution_row``): pred and the top-3 are the ranking
    of the stored log-probabilities (of probs when logprobs is None: then only the top-3 probabilities are kept)."""
    lp = (probs.log() if logprobs is None else logprobs).double().numpy()
    p = probs.double().numpy()
    return [distribution_row(i, meta, candidates, lp[i], p[i], keep_logprobs=logprobs is not None)
            for i, meta in enumerate(w.meta)]


def fit_valid_temperature(model: SASRec, valid: Windows, tcfg: TrainConfig, device: str) -> dict | None:
    """temperature.json's record: T fitted on a seeded subset of calib_samples validation windows (None at 0)."""
    if tcfg.calib_samples < 1 or not len(valid):
        return None
    subset = valid.subset(calibration_subset(len(valid), tcfg.calib_samples, tcfg.seed))
    logprobs = predict_logprobs(model, to_tensors(subset, device), tcfg.eval_batch_size)
    return fit_record(logprobs.numpy(), subset.label.tolist(), tcfg.seed)


def model_config(stats: dict, places: dict[str, int], train: Windows, settings: dict) -> ModelConfig:
    return ModelConfig(n_behaviors=len(stats["behaviors"]), n_places=len(places), seq_len=train.behavior.shape[1],
                       **settings)


def load_splits(dataset_dir, valid_cap: int | None = None, seed: int = 0) -> dict:
    """stats, candidates, place vocabulary and the encoded train_all, valid, test_p1, test_p2 windows."""
    stats = load_stats(dataset_dir)
    candidates = candidate_names(stats)
    train, places = read_split(dataset_dir, "train_all", candidates)
    valid, _ = read_split(dataset_dir, "valid", candidates, places)
    if valid_cap is not None and len(valid) > valid_cap:
        valid = valid.subset(np.sort(np.random.default_rng(seed).permutation(len(valid))[:valid_cap]))
    tests = {s: read_split(dataset_dir, s, candidates, places, keep_meta=True)[0] for s in TEST_SPLITS}
    return {"stats": stats, "candidates": candidates, "places": places, "train": train, "valid": valid,
            "tests": tests}


def write_outputs(model: SASRec, data: dict, result: dict, tcfg: TrainConfig, out_dir, extra: dict) -> list[Path]:
    """<out>/{test_p1,test_p2}.predictions.jsonl (+ info), model.pt and train_log.json."""
    out_dir = Path(out_dir)
    info = {"method": "sasrec", "model_config": asdict(model.cfg), "train_config": asdict(tcfg),
            "best_epoch": result["epoch"], "valid_accuracy": result["valid_accuracy"],
            "train_windows": len(data["train"]), **extra}
    paths = []
    device = next(model.parameters()).device.type
    for split, w in data["tests"].items():
        logprobs = predict_logprobs(model, to_tensors(w, device), tcfg.eval_batch_size)
        rows = prediction_rows(logprobs.exp(), w, data["candidates"], logprobs)
        paths.append(write_predictions(out_dir, split, rows, info))
    record = fit_valid_temperature(model, data["valid"], tcfg, device)
    if record is not None:
        paths.append(write_temperature(out_dir, record))
    with atomic_open(out_dir / "model.pt", "wb") as handle:
        torch.save({"model_config": asdict(model.cfg), "state_dict": model.state_dict(),
                    "places": data["places"], "behaviors": data["candidates"]}, handle)
    write_json_atomic(out_dir / "train_log.json", {**info, "history": result["history"],
                                                   "seconds_to_best": result["seconds_to_best"],
                                                   "seconds_total": result["seconds_total"],
                                                   "epochs": result["epochs"]})
    return paths


def run_train(dataset_dir, out_dir, config: str | None = None, overrides: list[str] = (),
              device: str = "cpu") -> list[Path]:
    """``python -m sasrec train``: train on train_all, choose the epoch on valid, predict both test splits."""
    settings, tcfg = load_config(config, overrides)
    data = load_splits(dataset_dir, tcfg.valid_cap, tcfg.seed)
    model, result = fit(data["train"], data["valid"], model_config(data["stats"], data["places"], data["train"],
                                                                   settings), tcfg, device)
    tqdm.write(f"sasrec: best epoch {result['epoch']} of {result['epochs']} (valid accuracy "
               f"{result['valid_accuracy']:.4f}), {result['seconds_to_best']:.1f} s to the best epoch")
    return write_outputs(model, data, result, tcfg, out_dir, {"dataset_dir": str(dataset_dir)})
