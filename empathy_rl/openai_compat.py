"""One call to any OpenAI-compatible `/chat/completions` endpoint (vLLM's server, a hosted API).

Shared by the LLM judge of the ranking page, the CoE drafting teacher (`empathy-rl draft-coe`) and
the optional crisis judge. Plain `urllib`: no client library to pin. The API key comes from an
environment variable named in config, never from a config file. Every request has a timeout, and
every failure raises EndpointError naming the URL, the status and the config keys to check.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, Optional, Sequence


class EndpointError(RuntimeError):
    """The endpoint could not be reached or answered with an error (the message names URL and status)."""


def chat_completion(
    base_url: str,
    model: str,
    messages: Sequence[dict[str, str]],
    *,
    timeout_s: float,
    key_env: Optional[str] = None,
    temperature: float = 0.0,
    max_tokens: Optional[int] = None,
    seed: Optional[int] = None,
    hint: str = "",
) -> str:
    """The first choice's message content for ``messages``.

    ``hint`` is appended to error messages, e.g. "(rank.judge_url, rank.judge_model)", so that the
    user knows which config keys to check.
    """
    url = base_url.rstrip("/") + "/chat/completions"
    payload: dict[str, Any] = {"model": model, "temperature": temperature, "messages": list(messages)}
    if max_tokens is not None:
        payload["max_tokens"] = int(max_tokens)
    if seed is not None:
        payload["seed"] = int(seed)
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(key_env, "") if key_env else ""
    if key:
        headers["Authorization"] = f"Bearer {key}"
    suffix = f" {hint}" if hint else ""
    request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: Any = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        detail = ""
        try:
            detail = err.read().decode("utf-8", "replace")[:200]
        except OSError:
            pass
        raise EndpointError(f"{url} answered HTTP {err.code}{': ' + detail if detail else ''}{suffix}") from err
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise EndpointError(f"{url} unreachable or too slow (timeout {timeout_s}s): {err}{suffix}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EndpointError(f"{url} did not answer JSON{suffix}") from err
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise EndpointError(f"{url} answered without choices[0].message.content{suffix}") from err
    return "" if content is None else str(content)
