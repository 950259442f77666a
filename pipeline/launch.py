"""How stages call the outside world: recipes read with a YAML parser, the stock `llamafactory-cli`, the
torchrun launcher, and this project's own `python -m ...` commands, always from the repository root
(recipe paths such as the DeepSpeed JSON are relative to it)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from functools import cached_property
from pathlib import Path

import yaml

from cli import UsageError

from .precision import gpu_visible
from .settings import ROOT, Variables

BIN = Path(sys.executable).parent


class Recipe:
    """One LLaMA-Factory YAML of recipes/<MODEL>/; the chat template and cutoff come from here alone."""

    def __init__(self, variables: Variables, name: str):
        self.path = Path(variables["RECIPES"]) / variables["MODEL"] / f"{name}.yaml"
        if not self.path.is_file():
            raise FileNotFoundError(f"no recipe {self.path} (MODEL={variables['MODEL']}, "
                                    f"folders: {', '.join(sorted(p.name for p in self.path.parent.parent.iterdir()))})")

    @cached_property
    def values(self) -> dict:
        data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise TypeError(f"{self.path}: not a mapping of keys to values")
        return data

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def datasets(self) -> list[str]:
        return [d.strip() for d in str(self.values.get("dataset", "")).split(",") if d.strip()]

    def model_path(self) -> str:
        """model_name_or_path: a folder relative to the repository root, or a hub id left as it is."""
        value = str(self.values.get("model_name_or_path", ""))
        return str(ROOT / value) if value and (ROOT / value).exists() else value

    def deepspeed(self, variables: Variables) -> Path | None:
        choice = variables["DEEPSPEED"]
        if choice == "none":
            return None
        if choice:
            return ROOT / "recipes" / "deepspeed" / f"ds_{choice}_config.json"
        value = self.values.get("deepspeed")
        return ROOT / value if value else None


def deepspeed_args(variables: Variables) -> list[str]:
    choice = variables["DEEPSPEED"]
    if choice == "none":
        return ["deepspeed=null"]
    return [f"deepspeed=recipes/deepspeed/ds_{choice}_config.json"] if choice else []


def echo(cmd: list[str], env_note: dict[str, str] | None = None) -> None:
    prefix = " ".join(f"{k}={v}" for k, v in (env_note or {}).items())
    print("$ " + (prefix + " " if prefix else "") + shlex.join(str(c) for c in cmd), flush=True)


# This project's commands that run inside the pipeline's own process when nothing calls for another one: one
# rank, no GPU visible (a GPU's memory must be free for the next stage's process), no extra environment. A new
# process re-imports torch, transformers and LLaMA-Factory, about 10 s on a 2-core CPU, which is a quarter of a
# small evaluation; the command printed and stamped is the same either way.
IN_PROCESS = ("evaluation", "scoring", "selection")


def in_process_module(cmd: list[str], env_extra: dict[str, str] | None = None) -> str | None:
    """The package of a `python -m <package> ...` command that may run in this process, else None."""
    if env_extra or len(cmd) < 3 or str(cmd[0]) != sys.executable or cmd[1] != "-m" or cmd[2] not in IN_PROCESS:
        return None
    return None if gpu_visible() else str(cmd[2])


def call_in_process(module: str, args: list[str]) -> int:
    """`python -m module args` as a call of its `main(argv)`, from the repository root; its exit code."""
    import gc
    import importlib

    main = importlib.import_module(f"{module}.__main__").main
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        os.chdir(cwd)
        gc.collect()  # the command's model goes before the next stage's process starts
    return code or 0


def run(cmd: list[str], env_extra: dict[str, str] | None = None) -> None:
    """Runs a command from the repository root; a failure stops the pipeline with the command's exit code."""
    echo(cmd, env_extra)
    module = in_process_module(cmd, env_extra)
    if module:
        code = call_in_process(module, cmd[3:])
    else:
        env = dict(os.environ, **(env_extra or {}))
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT)
        code = subprocess.run([str(c) for c in cmd], check=False, cwd=ROOT, env=env).returncode
    if code != 0:
        words = [Path(str(cmd[0])).name, *map(str, cmd[1:4 if len(cmd) > 1 and cmd[1] == "-m" else 2])]
        print(f"error: {' '.join(words)} failed (exit {code})", file=sys.stderr)
        raise SystemExit(code)


def python_module(module: str, *args, nproc: int = 1, nodes: list[str] | None = None) -> list[str]:
    """`python -m module args`, or under torchrun with nproc ranks (data-parallel scoring, evaluation); `nodes`:
    torchrun's rendezvous flags for several nodes (``nodes(variables)``), else one standalone node."""
    if nproc > 1 or nodes:
        return [str(BIN / "torchrun"), *(nodes or ["--standalone"]), "--nproc_per_node", str(nproc), "-m", module,
                *args]
    return [sys.executable, "-m", module, *args]


def nodes(variables: Variables) -> list[str] | None:
    """torchrun's flags for NNODES > 1 nodes (NODE_RANK, MASTER_ADDR, MASTER_PORT), as for training; else None."""
    if variables.int("NNODES") <= 1:
        return None
    if not variables["MASTER_ADDR"]:
        raise UsageError(f"NNODES={variables['NNODES']} needs MASTER_ADDR (the address of node 0)")
    return ["--nnodes", variables["NNODES"], "--node_rank", variables["NODE_RANK"], "--master_addr",
            variables["MASTER_ADDR"], "--master_port", variables["MASTER_PORT"] or "29500"]


def launcher_env(variables: Variables, recipe: Recipe) -> dict[str, str]:
    """LLaMA-Factory's launcher: torchrun when several processes, several nodes or DeepSpeed are in effect."""
    env = {"NPROC_PER_NODE": variables["NPROC"], "NNODES": variables["NNODES"], "NODE_RANK": variables["NODE_RANK"]}
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if variables[name]:
            env[name] = variables[name]
    if variables.int("NPROC") > 1 or variables.int("NNODES") > 1 or recipe.deepspeed(variables) is not None:
        env["FORCE_TORCHRUN"] = "1"
    return env


def extension_build_locks() -> list[Path]:
    """The lock files of torch's JIT extension builds, where DeepSpeed builds its CPU ops (``shm_comm``, ...) when
    a ZeRO run starts: ``TORCH_EXTENSIONS_DIR/<op>/lock``, else
    ``~/.cache/torch_extensions/<python>_<device>/<op>/lock``."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return sorted(Path(root).glob("*/lock"))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch_extensions"
    return sorted(cache.glob("*/*/lock"))


def held_open(path: Path) -> bool:
    """Whether a process of this machine holds `path` open: a build keeps its lock's descriptor until it removes
    the file, so a lock no process holds was left by a killed build. True where /proc cannot tell."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return True
    target = os.path.realpath(path)
    for fd in proc.glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == target:
                return True
        except OSError:  # the process ended, or is another user's
            continue
    return False


def check_build_locks(variables: Variables) -> None:
    """Refuses to launch a DeepSpeed run beside a stale build lock: torch's FileBaton waits on it forever, at 0 %
    CPU and with no message. With several nodes a shared home may hold another node's live build: a warning."""
    stale = [p for p in extension_build_locks() if not held_open(p)]
    if not stale:
        return
    message = (f"{stale[0]} is a stale lock of torch's extension build (no process holds it; a killed DeepSpeed "
               f"run leaves it), and DeepSpeed would wait on it forever: remove it (rm {shlex.join(map(str, stale))})")
    if variables.int("NNODES") > 1:
        print(f"warning: {message}, unless another node is building now", file=sys.stderr, flush=True)
        return
    raise UsageError(message)


def lf_train_command(variables: Variables, recipe: Recipe, overrides: list[str]) -> list[str]:
    """`llamafactory-cli train <recipe> key=value...`: the stage's overrides, DEEPSPEED, then ARGS."""
    return [str(BIN / "llamafactory-cli"), "train", str(recipe.path), *overrides, *deepspeed_args(variables),
            *variables.words("ARGS")]


def lf_export_command(recipe: Recipe, overrides: list[str]) -> list[str]:
    return [str(BIN / "llamafactory-cli"), "export", str(recipe.path), *overrides]
