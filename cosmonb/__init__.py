"""cosmonb: notebook-first tutorials on machine learning for cosmological fields.

Data flows one way: ``sims`` / ``data`` make maps and catalogs -> ``models`` learn
them through ``train`` -> ``inference`` turns a model into posteriors ->
``stats`` / ``plotting`` judge and show -> the notebooks tell the story.

Example:
    >>> import cosmonb
    >>> rng = cosmonb.seed_everything(0)
    >>> cosmonb.device().type in {"cpu", "cuda", "mps"}
    True
"""
from .runtime import device, is_quick, read_records, record, seed_everything

__version__ = "0.1.0"
__all__ = ["device", "seed_everything", "record", "read_records", "is_quick", "__version__"]
