"""Counseling data: raw sources -> anonymized, split, schema-checked Parquet records.

`prepare_data(cfg.data)` builds `{train,validation,test}.parquet` once (`empathy-rl prepare-data`);
training and evaluation then call `load_records(prepared_dir, split)`.
"""

from empathy_rl.data.prepare import PrepareSummary, prepare_data
from empathy_rl.data.readers import BadRowError, DataError
from empathy_rl.data.records import (
    PREPARED_SCHEMA,
    CounselingRecord,
    PreparedDataError,
    load_records,
    read_parquet,
    write_parquet,
)

__all__ = [
    "BadRowError",
    "CounselingRecord",
    "DataError",
    "PREPARED_SCHEMA",
    "PrepareSummary",
    "PreparedDataError",
    "load_records",
    "prepare_data",
    "read_parquet",
    "write_parquet",
]
