"""``anatomix fit|validate|test|predict``: LightningCLI over SegmentationModule and the data modules.

Every argument lives in YAML (``--config configs/pretrain.yaml``) and can be overridden on the
command line (``--trainer.max_steps 100``, ``--model.init_args...`` is not needed: the model is a
fixed class, so ``--model.lr 3e-4``). The data module is chosen by ``data.class_path``.
"""

from __future__ import annotations

import sys
from typing import Sequence

__all__ = ["lightning_main"]


def _cli_class():
    from lightning.pytorch.cli import LightningCLI

    from anatomix.train.writer import NiftiPredictionWriter

    class AnatomixCLI(LightningCLI):
        """LightningCLI with the prediction writer wired in (``--prediction_writer.output_dir``)."""

        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001
            parser.add_lightning_class_args(NiftiPredictionWriter, "prediction_writer")

        def _prepare_subcommand_parser(self, klass, subcommand, **kwargs):  # noqa: ANN001, ANN202
            # `--ckpt_path` files are read by Lightning's own torch.load, whose weights_only
            # defaults to False (unpickling arbitrary objects): make the safe load the default.
            # The method arguments (ckpt_path, weights_only) are added by this private hook.
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
            parser.set_defaults(weights_only=True)
            return parser

        def _parse_ckpt_path(self) -> None:  # noqa: D401
            # Lightning reads --ckpt_path right after parsing (its hyper-parameters); check it
            # first so that a bad file gets the same clear message as a bad --model.pretrained,
            # not a KeyError/UnpicklingError traceback
            sub = self.config.get("subcommand") if hasattr(self.config, "get") else None
            sub_cfg = self.config[sub] if sub else None
            ckpt = sub_cfg.get("ckpt_path") if sub_cfg is not None else None
            if ckpt is not None and str(ckpt) not in ("last", "best", "hpc") \
                    and not str(ckpt).startswith("registry"):
                from anatomix.train.checkpoint import check_lightning_checkpoint

                check_lightning_checkpoint(ckpt)
            # --model.pretrained is checked when the module is built (checkpoint.check_pretrained),
            # also before Lightning writes config.yaml
            super()._parse_ckpt_path()
            if ckpt is not None and sub_cfg is not None:
                # every weight comes from --ckpt_path; the pre-training checkpoint a fine-tuned
                # model was initialised from (saved among its hyper-parameters, which Lightning
                # has just applied over the command line) is neither needed nor required to exist
                self.config[sub].model.pretrained = None

    return AnatomixCLI


def lightning_main(argv: Sequence[str] | None = None) -> None:
    """Run LightningCLI for ``fit``, ``validate``, ``test`` or ``predict``.

    Args:
        argv: arguments after ``anatomix`` (e.g. ``["fit", "--config", "configs/tiny.yaml"]``);
            default ``sys.argv[1:]``.

    User errors (bad config values, missing files, unusable checkpoints) end the process with
    exit code 1 and one message, without a traceback.
    """
    import lightning.pytorch as pl

    from anatomix.errors import AnatomixError
    from anatomix.train.module import SegmentationModule

    from anatomix.resources import lightning_argv

    args = list(sys.argv[1:] if argv is None else argv)
    cls = _cli_class()
    saved_argv = sys.argv
    try:
        # `--config tiny` (a shipped name) or a path; its input paths resolve relative to it
        args = lightning_argv(args)
        if argv is None:  # the console script: LightningCLI reads sys.argv itself (no "args and argv" warning)
            sys.argv = [saved_argv[0], *args]
        cls(
            SegmentationModule,
            pl.LightningDataModule,
            subclass_mode_data=True,
            args=None if argv is None else args,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=False,  # no global seeding: data and init are seeded explicitly
        )
    except AnatomixError as e:
        from rich.console import Console

        from rich.markup import escape

        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
    finally:
        sys.argv = saved_argv

