"""SavedModel export for TF Serving: `export_workdir(config)` (docs/design.md §10)."""

from midg_keras.export.saved_model import (
    SIGNATURE_NAME,
    export_model,
    export_workdir,
    find_run,
    load_float32_model,
    next_version,
)

__all__ = [
    "SIGNATURE_NAME",
    "export_model",
    "export_workdir",
    "find_run",
    "load_float32_model",
    "next_version",
]
