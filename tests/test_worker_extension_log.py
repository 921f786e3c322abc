"""The vLLM reload log filter: it hides the rotary-cache warning and nothing else."""

from __future__ import annotations

import logging

from rollout.worker_extension import RELOAD_LOGGER, RotaryReloadFilter, install_log_filter


def _record(layer: str, msg: str = "%s: Failed to load weights") -> logging.LogRecord:
    return logging.LogRecord(RELOAD_LOGGER, logging.WARNING, __file__, 1, msg, (layer,), None)


def test_rotary_warning_is_dropped_and_other_layers_pass():
    f = RotaryReloadFilter()
    assert not f.filter(_record("RotaryEmbedding"))
    assert not f.filter(_record("Llama3RotaryEmbedding"))
    assert f.filter(_record("QKVParallelLinear"))  # a real missing weight must still be seen
    assert f.filter(_record("RotaryEmbedding", msg="%s: Delayed processing"))


def test_filter_is_installed_once_on_vllms_reload_logger(caplog):
    install_log_filter()
    install_log_filter()
    logger = logging.getLogger(RELOAD_LOGGER)
    assert sum(isinstance(f, RotaryReloadFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=RELOAD_LOGGER):
        logger.warning("%s: Failed to load weights", "RotaryEmbedding")
        logger.warning("%s: Failed to load weights", "RMSNorm")
    assert [r.getMessage() for r in caplog.records] == ["RMSNorm: Failed to load weights"]
