"""What is learned: networks, losses, validation metrics and export format per task.

* ``strip`` / ``strip-nocsf``: a SynthStrip U-Net regressing the brain's signed distance (mm,
  clipped to the +-5 mm band) with a masked MSE; exported as ``{'model_state_dict': ...}``
  with the official key layout, plus a ``'synthbids'`` entry (conform settings, recipe).
* ``head``: the same U-Net with one output per head tissue (brain, CSF, bone, skin, eyes,
  other soft tissue, background), trained with soft Dice plus cross-entropy; same export format.
* ``seg``: SynthSeg 2.0's 33 labels with soft Dice over all labels; a SynthSeg U-Net
  exported as a Keras-layout ``.h5`` (what ``mri_synthseg`` and our loader read), with the
  metadata (voxel size, recipe) as a root attribute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..core.stripnet import StripUNet
from ..synth.generator import Sample
from ..synth.labelmaps import HEAD_CLASSES, SEG_LABELS_V2, LabelTables
from ..synth.targets import brain_mask, head_target, seg_target, strip_target

SDT_BAND = 5.0


@dataclass
class NetConfig:
    """U-Net width and depth: features double per level from ``features`` up to ``max``."""

    features: int = 16
    max_features: int = 64
    levels: int = 6  # poolings; the input must be a multiple of 2**levels
    convs: int = 2

    def seg_layout(self, outputs: int) -> dict:
        """SynthSeg's U-Net: ``levels`` poolings, skips concatenated at every level."""
        feats = [min(self.features * 2**lv, self.max_features) for lv in range(self.levels + 1)]
        encoder = [[f] * self.convs for f in feats]
        decoder = [[f] * self.convs for f in feats[::-1][1:]]
        return {'in_channels': 1, 'n_labels': outputs, 'encoder': encoder, 'decoder': decoder}

    def strip_layout(self, outputs: int = 1) -> dict:
        feats = [min(self.features * 2**lv, self.max_features) for lv in range(self.levels + 1)]
        encoder = [[f] * self.convs for f in feats[:-1]]
        decoder = [[f] * self.convs for f in feats[::-1][:-1]]
        return {
            'encoder': encoder,
            'decoder': decoder,
            'tail': [feats[0]] * self.convs + [outputs],
        }


def he_init(net: torch.nn.Module, slope: float = 0.2) -> torch.nn.Module:
    """He initialisation for LeakyReLU(0.2) convolutions, zero biases.

    PyTorch's default init shrinks activations by about half per convolution; through the
    ~25 convolutions of a SynthStrip U-Net (no normalisation layers) the deep path then starts
    dead and training stalls (the golden README observes the near-constant output).
    """
    for m in net.modules():
        if isinstance(m, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity='leaky_relu')
            torch.nn.init.zeros_(m.bias)
    return net


def seg_init(net: torch.nn.Module) -> torch.nn.Module:
    """He initialisation of the SynthSeg U-Net's ELU convolutions, zero biases, and a
    unit-gain ``likelihood`` layer.

    With PyTorch's default init the decoder's ELUs drifted into saturation (every
    pre-activation far below zero, so every output -1 and every BatchNorm output its bias):
    measured on a 1,100-step run, the network's output no longer depended on its input and
    it predicted the label priors everywhere, i.e. background. The likelihood layer reads
    BatchNorm-ed features, so unit gain gives logits of unit spread from the start (a small
    init left Adam, which moves each weight by about the learning rate per step, hundreds of
    steps from separating 33 labels: measured on one sample, white-matter Dice 0.06 vs 0.61
    after 40 steps).
    """
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv3d):
            if name == 'likelihood':
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity='linear')
            else:
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity='relu')
            torch.nn.init.zeros_(m.bias)
    return net


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """Soft Dice loss of logits (see :func:`soft_dice`)."""
    return soft_dice(torch.softmax(logits, dim=1), target, weight, eps)


def soft_dice(
    prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """SynthSeg's loss: 1 - mean over classes (background included) of
    2 sum(gp) / (sum(g^2) + sum(p^2)), with g the one-hot target.

    The one-hot tensor is never built: sum(gp) per class is the true class's probability summed
    by class, and sum(g^2) the weighted class count (a constant); only sum(p^2) needs every
    channel. Same values, a third of the time and memory of the one-hot form (a 33-label 64^3
    crop: ``docs/training.md``)."""
    n = prob.shape[1]
    w = weight.to(prob)
    flat = target.reshape(-1)
    p_true = prob.gather(1, target[:, None]).reshape(-1)
    inter = torch.zeros(n, dtype=prob.dtype, device=prob.device).index_add(
        0, flat, p_true * w.reshape(-1)
    )
    count = torch.bincount(flat, weights=w.reshape(-1), minlength=n).to(prob)
    squares = torch.einsum('bcxyz,bxyz->c', prob * prob, w)
    return 1 - (2 * inter / (count + squares + eps)).mean()


def cross_entropy(
    prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Mean -log p(true label) over the weighted voxels, from probabilities."""
    p_true = prob.gather(1, target[:, None]).squeeze(1).clamp_min(eps)
    w = weight.to(prob)
    return -(torch.log(p_true) * w).sum() / w.sum().clamp_min(1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


@dataclass
class Task:
    """Base: subclasses define the network, the batch, the loss and the metrics."""

    name: str
    tables: LabelTables
    voxsize: float
    net_config: NetConfig = field(default_factory=NetConfig)
    context: int = 0  # label voxels of context the targets need around the crop

    def make_net(self) -> torch.nn.Module:
        raise NotImplementedError

    def target(self, sample: Sample) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, pred, target, weight) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, pred, target, weight) -> dict[str, float]:
        raise NotImplementedError

    #: name of the validation metric used to keep the best weights, and whether higher is better
    select = ('dice', True)

    #: file suffix of exported weights
    suffix = '.pt'

    def save_weights(self, net, path, meta: dict) -> None:
        """Official SynthStrip format plus our metadata."""
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        torch.save({'model_state_dict': state, 'synthbids': meta}, path)

    def export_meta(self, step: int, recipe: dict) -> dict:
        return {
            'task': self.name,
            'iterations': step,
            'recipe': recipe,
            'net': asdict(self.net_config),
        }


@dataclass
class StripTask(Task):
    context: int = 4

    def make_net(self) -> StripUNet:
        return he_init(StripUNet(**self.net_config.strip_layout(1)))

    def target(self, sample: Sample) -> torch.Tensor:
        return strip_target(
            sample.context,
            self.context,
            self.tables,
            self.voxsize,
            no_csf=self.name == 'strip-nocsf',
            band=SDT_BAND,
        )[None, None]

    def loss(self, pred, target, weight):
        w = weight[:, None].to(pred)
        return ((pred - target) ** 2 * w).sum() / w.sum().clamp_min(1)

    def metrics(self, pred, target, weight):
        valid = weight[0].cpu().numpy().astype(bool)
        p = pred[0, 0].detach().cpu().numpy()
        t = target[0, 0].cpu().numpy()
        truth = (t < 0) & valid
        return {
            'dice': dice((p < 1) & valid, truth),  # the default border of 1 mm
            'dice_b0': dice((p < 0) & valid, truth),
            'mae_mm': float(np.abs(np.clip(p, -SDT_BAND, SDT_BAND) - t)[valid].mean()),
        }

    def export_meta(self, step, recipe):
        meta = super().export_meta(step, recipe)
        crop = recipe.get('crop', [96, 96, 96])
        meta['conform'] = conform_meta(self.voxsize)
        meta['band_mm'] = SDT_BAND
        meta['crop'] = crop
        return meta


@dataclass
class HeadTask(Task):
    def make_net(self) -> StripUNet:
        net = he_init(StripUNet(**self.net_config.strip_layout(len(HEAD_CLASSES))))
        # a zero output layer starts from equal class probabilities (loss near log 7 + 6/7)
        # instead of He-sized logits, whose cross-entropy started at ~4 and spent the first
        # steps unlearning them
        torch.nn.init.zeros_(net.remaining[-1].conv.weight)
        return net

    def target(self, sample):
        return head_target(sample.indices, self.tables)[None]

    def loss(self, pred, target, weight):
        # soft Dice plus cross-entropy, as for seg: the thin skull needs the voxel-wise term
        prob = torch.softmax(pred, dim=1)
        return soft_dice(prob, target, weight) + cross_entropy(prob, target, weight)

    def metrics(self, pred, target, weight):
        valid = weight[0].cpu().numpy().astype(bool)
        p = pred[0].argmax(0).cpu().numpy()
        t = target[0].cpu().numpy()
        scores = {
            f'dice_{n}': dice((p == c) & valid, (t == c) & valid)
            for c, n in enumerate(HEAD_CLASSES)
            if c
        }
        scores['dice'] = float(np.mean(list(scores.values())))
        return scores

    def export_meta(self, step, recipe):
        meta = super().export_meta(step, recipe)
        meta['classes'] = HEAD_CLASSES
        meta['conform'] = conform_meta(self.voxsize)
        return meta


def conform_meta(voxsize: float) -> dict:
    """Inference grid for weights trained at ``voxsize``: the official 192-320 mm extent,
    and anti-aliased linear resampling (the official pipeline uses nearest neighbour)."""
    return {
        'voxsize': voxsize,
        'min_shape': int(round(192 / voxsize)),
        'max_shape': int(round(320 / voxsize)),
        'interp': 'linear' if voxsize > 1 else 'nearest',
    }


@dataclass
class SegTask(Task):
    """SynthSeg 2.0 labels with SynthSeg's U-Net (ELU + BatchNorm), soft Dice."""

    suffix = '.h5'

    def make_net(self):
        from ..core.seg_nets import SegUNet

        return seg_init(SegUNet(**self.net_config.seg_layout(len(SEG_LABELS_V2))))

    def target(self, sample):
        return seg_target(sample.indices, self.tables)[None]

    def loss(self, pred, target, weight):
        # SegUNet.forward returns probabilities. SynthSeg trains on soft Dice alone; the
        # cross-entropy term makes the first thousands of CPU iterations count (measured:
        # soft Dice alone was still at 0.92 after 380 steps).
        return soft_dice(pred, target, weight) + cross_entropy(pred, target, weight)

    def metrics(self, pred, target, weight):
        return seg_metrics(pred, target, weight)

    def save_weights(self, net, path, meta):
        from ..core.seg_keras import write_keras_h5

        meta = {**meta, 'trained_layout': 'LIA', 'exported_layout': 'RAS'}
        write_keras_h5(ras_network(net), path, prefix='unet_', meta=meta)

    def export_meta(self, step, recipe):
        meta = super().export_meta(step, recipe)
        meta['voxsize'] = self.voxsize
        meta['labels'] = SEG_LABELS_V2
        meta['loss'] = 'soft Dice (33 labels, background included) + cross-entropy'
        return meta


def lia_to_ras(t: torch.Tensor) -> torch.Tensor:
    """An array in the generator's LIA voxel layout (last three dims) as RAS, what
    ``mri_synthseg`` aligns every input to: the inverse of ``labelmaps.ras_to_lia``."""
    return t.flip(-3).transpose(-2, -1).flip(-1)


def ras_network(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of a network trained on LIA arrays that computes the same thing on RAS arrays.

    The generator (shared with SynthStrip, which conforms to LIA) draws LIA crops, while the
    SynthSeg pipeline aligns images to RAS. A signed axis permutation of the input commutes
    with every layer once each convolution kernel gets the same permutation (odd kernels,
    symmetric padding; pooling and nearest upsampling by 2 on the even sizes the padding
    guarantees), so transforming the kernels gives exactly ``ras(net(x)) == copy(ras(x))``.
    """
    return _with_kernels(net, lia_to_ras)


def ras_to_lia(t: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`lia_to_ras` (last three dims)."""
    return t.flip(-1).transpose(-2, -1).flip(-3)


def lia_network(net: torch.nn.Module) -> torch.nn.Module:
    """The inverse of :func:`ras_network`: exported (RAS) seg weights in the training layout,
    so that a packaged ``.h5`` can seed a new run."""
    return _with_kernels(net, ras_to_lia)


def _with_kernels(net: torch.nn.Module, permute) -> torch.nn.Module:
    """A copy of ``net`` with every spatial convolution kernel transformed by ``permute``."""
    import copy

    out = copy.deepcopy(net)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, torch.nn.Conv3d) and m.kernel_size != (1, 1, 1):
                m.weight.copy_(permute(m.weight).contiguous())
    return out


def brain_weight(sample: Sample) -> torch.Tensor:
    return sample.valid[None].float()


def seg_metrics(pred, target, weight, n_labels: int | None = None) -> dict[str, float]:
    n_labels = n_labels or len(SEG_LABELS_V2)
    valid = weight[0].cpu().numpy().astype(bool)
    p = pred[0].argmax(0).cpu().numpy()
    t = target[0].cpu().numpy()
    scores = {}
    for c in range(1, n_labels):
        if ((t == c) & valid).any():
            scores[f'dice_{SEG_LABELS_V2[c]}'] = dice((p == c) & valid, (t == c) & valid)
    scores['dice'] = float(np.mean(list(scores.values()))) if scores else 0.0
    return scores


__all__ = [
    'NetConfig',
    'StripTask',
    'HeadTask',
    'Task',
    'brain_mask',
    'brain_weight',
    'seg_metrics',
    'seg_target',
    'soft_dice_loss',
]
