"""Kernels tuned by MetaSchedule take their records from a database (`--tune-db`); dlight
schedules the rest."""

from __future__ import annotations


def apply_tuning_pass(db_path: str):
    import tvm
    from tvm import relax

    from wsd.compat import meta_schedule

    database = meta_schedule().database.JSONDatabase(work_dir=db_path)
    inner = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)

    @tvm.transform.module_pass(opt_level=0, name="wsd.ApplyTuning")
    def apply(mod, ctx):
        with database:
            return inner(mod)

    return apply


def make(target, options):
    """The pipeline's step (wsd/passes/pipeline.py)."""
    return apply_tuning_pass(options.tune_db)
