"""The C enums as Python sees them: StopReason, the text channels, and the names each option enum
accepts (backend, precision, grammar scope, tool choice, logits mode, log level)."""
from __future__ import annotations

import enum

from .errors import Status


class StopReason(str, enum.Enum):
    """Why a reply or a generation ended (sibyl_stop_reason). Compares equal to its value."""
    EOS = "eos"                # the model ended its reply
    MAX_TOKENS = "max_tokens"  # max_new_tokens generated
    STRING = "stop_string"     # a stop string appeared in the answer
    CALLBACK = "callback"      # a callback asked to stop
    CANCELLED = "cancelled"    # cancel() was called
    ERROR = "error"            # a request ended with an error

    def __str__(self) -> str:
        return self.value


_STOP_REASONS = [StopReason.EOS, StopReason.MAX_TOKENS, StopReason.STRING, StopReason.CALLBACK,
                 StopReason.CANCELLED, StopReason.ERROR]


def _stop_reason(code: int):
    return _STOP_REASONS[code] if 0 <= code < len(_STOP_REASONS) else code


def _status(code: int):
    try:
        return Status(code)
    except ValueError:
        return code


REASONING = "reasoning"
ANSWER = "answer"
_CHANNELS = (REASONING, ANSWER)


def _channel(code: int):
    return _CHANNELS[code] if 0 <= code < 2 else code


_BACKENDS = {"auto": 0, "cpu": 1, "cuda": 2, "vulkan": 3}
_PRECISIONS = {"fast": 0, "exact": 1}
_SCOPES = {"answer": 0, "whole": 1}
_TOOL_CHOICES = {"auto": 0, "none": 1, "required": 2}
_LOGITS_MODES = {"last": 0, "all": 1, "none": 2}
_LOG_LEVELS = {"debug": 0, "info": 1, "warn": 2, "warning": 2, "error": 3, "off": 4}
_LOG_LEVEL_NAMES = ("debug", "info", "warn", "error", "off")
