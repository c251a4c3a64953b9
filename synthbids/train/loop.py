"""The training loop: resumable, logged, validated on held-out label maps.

A run folder holds ``state.pt`` (network, optimiser, step, RNG state: resuming continues the
exact sample sequence), ``history.tsv`` (losses and validation metrics), ``best.pt`` and
``last.pt`` (exported weights in the format every loader reads) and ``run.json`` (the recipe).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.checkpoints import read_checkpoint
from ..synth.generator import SynthGenerator
from .tasks import Task, brain_weight

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-4
    seed: int = 0
    val_every: int = 250
    save_every: int = 50
    log_every: int = 10
    val_samples: int = 12
    warmup: int = 0  # steps of linear learning-rate warm-up
    workers: int = 0  # background processes generating samples
    init: Path | None = None  # exported weights to start a new run from
    clip: float = 5.0  # gradient-norm clipping (no normalisation layers: keeps Adam stable)
    freeze_bn: bool = False  # batch norm in inference mode while training (see train_mode)
    time_limit: float | None = None  # minutes of wall time, then save and stop (GPU jobs)


class Progress:
    """A one-line progress bar on terminals, periodic log lines elsewhere."""

    def __init__(self, total: int, start: int, every: int):
        self.total, self.start, self.every = total, start, every
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def update(self, step: int, text: str) -> None:
        done = step - self.start
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate else math.inf
        line = (
            f'step {step}/{self.total} ({100 * step / self.total:5.1f} %) {text} '
            f'{rate:.2f} it/s, ETA {_hms(eta)}'
        )
        if self.tty:
            print('\r' + line.ljust(110), end='', file=sys.stderr, flush=True)
        elif step % self.every == 0 or step == self.total:
            print(line, file=sys.stderr, flush=True)


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return '?'
    seconds = int(seconds)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def sample_seed(seed: int, step: int) -> int:
    """Seed of the sample used at ``step``: the sequence does not depend on how many data
    workers produce it, and a resumed run continues it exactly."""
    return (seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1)


class SampleStream(torch.utils.data.IterableDataset):
    """Training batches for steps ``start, start + 1, ...`` (split across data workers)."""

    def __init__(self, task: Task, generator: SynthGenerator, seed: int, start: int):
        self.task, self.generator, self.seed, self.start = task, generator, seed, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
            # a job-wide SIGTERM (scancel) is the main process's to handle: it saves and
            # shuts the workers down; a worker dying first would crash the run instead
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        step = self.start + worker
        while True:
            gen = torch.Generator(device=self.generator.device)
            gen.manual_seed(sample_seed(self.seed, step))
            sample = self.generator.sample(gen)
            yield sample.image[0], self.task.target(sample)[0], brain_weight(sample)[0]
            step += workers


def validation_set(task: Task, generator: SynthGenerator, n: int, seed: int = 12345):
    """Fixed synthetic samples (contrast, resolution, deformation) of the held-out maps."""
    gen = torch.Generator(device=generator.device).manual_seed(seed)
    out = []
    for i in range(n):
        sample = generator.sample(gen, map_index=i % len(generator.maps))
        out.append((sample.image, task.target(sample), brain_weight(sample), sample.info))
    return out


def train_mode(net, freeze_bn: bool = False) -> None:
    """Training mode; with ``freeze_bn`` every batch norm keeps normalising by its running
    statistics, as at inference, while its scale and shift still learn.

    With batch size 1, a training-mode batch norm normalises each sample by its own feature
    statistics, which under random contrasts differ from sample to sample; at inference the
    running averages replace them. A batch-1 SynthSeg net trained 8,000 steps scored 0.51
    mean Dice on the validation samples with per-sample statistics and 0.35 with the running
    ones. Fine-tuning with frozen statistics trains what inference runs."""
    net.train()
    if freeze_bn:
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


@torch.no_grad()
def validate(task: Task, net, samples, device, freeze_bn: bool = False) -> dict[str, float]:
    net.eval()
    scores: dict[str, list[float]] = {}
    for x, target, weight, _ in samples:
        pred = net(x.to(device).contiguous(memory_format=torch.channels_last_3d))
        for k, v in task.metrics(pred, target.to(device), weight.to(device)).items():
            scores.setdefault(k, []).append(v)
    train_mode(net, freeze_bn)
    return {k: float(sum(v) / len(v)) for k, v in scores.items()}


def export(task: Task, net, path: Path, step: int, recipe: dict, metrics: dict) -> None:
    """Write deployable weights (official format + synthbids metadata) atomically."""
    meta = task.export_meta(step, recipe)
    meta['validation'] = metrics
    tmp = path.with_name(f'.{path.name}.tmp')
    modes = [(m, m.training) for m in net.modules()]  # frozen batch norms stay frozen
    net.eval()
    task.save_weights(net, tmp, meta)
    for m, training in modes:
        m.training = training
    os.replace(tmp, path)


def init_weights(path: Path, device) -> dict:
    """The network weights of exported ``.pt`` weights, of another run's ``state.pt``, or of
    exported seg weights (Keras ``.h5`` in RAS layout, brought back to the training layout:
    the packaged seg weights can seed the next run)."""
    from ..core.checkpoints import HDF5_MAGIC, CheckpointError, network_weights
    from ..core.errors import WeightsError

    with open(path, 'rb') as fh:
        if fh.read(8).startswith(HDF5_MAGIC):
            from ..core.seg_keras import build_unet, read_keras_weights
            from .tasks import lia_network

            net = lia_network(build_unet(read_keras_weights(path), 'unet_', path))
            return {k: v.to(device) for k, v in net.state_dict().items()}
    try:
        return network_weights(path, map_location=device)
    except CheckpointError as err:  # an .h5 file, a truncated file, ...
        raise WeightsError(
            f'cannot start from it: {err.problem}; give exported weights (.pt, seg .h5) or '
            "a run's state.pt",
            path,
        ) from None


def load_matching(net: torch.nn.Module, weights: dict, path: Path) -> str:
    """Start ``net`` from ``weights``: every tensor whose name and shape match is copied, the
    rest keep their fresh initialisation. A strip network seeds a head network this way
    (all but the output layer, which has 7 channels instead of 1). Weights that share no
    tensor with the network are an error, not a silent fresh start."""
    from ..core.errors import WeightsError

    own = net.state_dict()
    same = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not same:
        raise WeightsError('cannot start from it: no tensor fits this network', path)
    net.load_state_dict({**own, **same})
    fresh = sorted(set(own) - set(same))
    if not fresh:
        return f'all {len(own)} tensors'
    return f'{len(same)} of {len(own)} tensors; new: {", ".join(fresh)}'


def _logged_step(line: str) -> float:
    """The step of a history row; a row cut short by a kill counts as never logged."""
    head = line.split('\t', 1)[0]
    return int(head) if head.isdigit() and line.endswith('\n') else math.inf


def trim_history(history: Path, step: int) -> None:
    """Drop the rows logged after the saved ``step`` (a run killed between two saves): the
    resumed run logs those steps again, and each step keeps one row per kind."""
    lines = history.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if _logged_step(line) <= step]
    if len(kept) < len(lines):
        tmp = history.with_suffix('.tmp')
        tmp.write_text(''.join(kept))
        os.replace(tmp, history)


def train(
    task: Task,
    generator: SynthGenerator,
    val_generator: SynthGenerator,
    out: Path,
    config: TrainConfig,
    device: torch.device,
    recipe: dict,
) -> dict:
    """Train ``task`` until ``config.steps`` (or ``config.time_limit`` minutes after the call);
    resumes from ``out/state.pt`` when present."""
    t_called = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    cl = torch.channels_last_3d  # about 2x faster convolutions on CPU
    net = task.make_net().to(device, memory_format=cl)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    step, best = 0, None
    state_path = out / 'state.pt'
    if config.init is not None and not state_path.exists():
        kept = load_matching(net, init_weights(config.init, device), config.init)
        log.info('initialised from %s (%s)', config.init, kept)
    if state_path.exists():
        state = read_checkpoint(state_path, full_state=True, map_location=device)
        net.load_state_dict(state['net'])
        opt.load_state_dict(state['optimizer'])
        step, best = state['step'], state['best']
        log.info('resumed %s at step %d', out, step)
    (out / 'run.json').write_text(json.dumps(recipe, indent=1))
    history = out / 'history.tsv'
    if not history.exists():
        history.write_text('step\tkind\tvalue\tseconds\n')
    else:
        trim_history(history, step)

    val = validation_set(task, val_generator, config.val_samples)
    metric, higher = task.select
    stop = {'now': False}

    def request_stop(signum, frame):
        stop['now'] = True

    previous = signal.signal(signal.SIGTERM, request_stop)
    progress = Progress(config.steps, step, config.log_every)
    ema = None
    t_start = time.perf_counter()
    train_mode(net, config.freeze_bn)

    def save():
        tmp = state_path.with_suffix('.tmp')
        torch.save(
            {'net': net.state_dict(), 'optimizer': opt.state_dict(), 'step': step, 'best': best},
            tmp,
        )
        os.replace(tmp, state_path)
        export(task, net, out / f'last{task.suffix}', step, recipe, {})

    stream = SampleStream(task, generator, config.seed, step)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=1,
        num_workers=config.workers,
        prefetch_factor=2 if config.workers else None,
        pin_memory=device.type == 'cuda',
    )
    batches = iter(loader)
    deadline = None if config.time_limit is None else t_called + 60 * config.time_limit
    try:
        while step < config.steps and not stop['now']:
            if deadline is not None and time.perf_counter() > deadline:
                log.info(
                    'time limit of %g min reached at step %d; saving', config.time_limit, step
                )
                break
            lr = config.lr * min(1.0, (step + 1) / config.warmup) if config.warmup else config.lr
            for group in opt.param_groups:
                group['lr'] = lr
            x, target, weight = (t.to(device, non_blocking=True) for t in next(batches))
            x = x.contiguous(memory_format=cl)
            loss = task.loss(net(x), target, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip)
            opt.step()
            step += 1
            value = float(loss.detach())
            ema = value if ema is None else 0.98 * ema + 0.02 * value
            with history.open('a') as fh:
                fh.write(f'{step}\tloss\t{value:.6f}\t{time.perf_counter() - t_start:.1f}\n')
            progress.update(step, f'loss {ema:.4f}')
            if step % config.val_every == 0 or step == config.steps:
                scores = validate(task, net, val, device, config.freeze_bn)
                with history.open('a') as fh:
                    for k, v in scores.items():
                        fh.write(
                            f'{step}\tval_{k}\t{v:.6f}\t{time.perf_counter() - t_start:.1f}\n'
                        )
                log.info('step %d validation %s', step, json.dumps(scores))
                better = best is None or (
                    scores[metric] > best if higher else scores[metric] < best
                )
                if better:
                    best = scores[metric]
                    export(task, net, out / f'best{task.suffix}', step, recipe, scores)
            if step % config.save_every == 0:
                save()
    except KeyboardInterrupt:
        log.warning('interrupted at step %d; saving', step)
    finally:
        del batches, loader
        save()
        signal.signal(signal.SIGTERM, previous)
        if progress.tty:
            print(file=sys.stderr)
    return {'step': step, 'best': best}
