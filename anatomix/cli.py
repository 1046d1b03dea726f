"""The ``anatomix`` command: parses arguments, loads config, calls one library function.

Each command lives in its own section below; the library does the work. ``fit``, ``validate``,
``test`` and ``predict`` are handed to LightningCLI (see ``anatomix.train.cli``).
"""
# size: one typer command per section (ingest, bank, graph, synth, preview, resources, evaluate, replay);
# each is a thin parser calling one library function.

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from anatomix.cli_checks import (
    MAX_CASES,
    check_output_path,
    os_error_message,
    remove_empty_run,
    violating_cases,
)

app = typer.Typer(
    name="anatomix",
    help="Synthetic, fully labelled 3D volumes with correct anatomy, for segmentation pre-training.",
    epilog=(
        "Training (Lightning): fit, validate, test, predict --config FILE [--section.key value ...]; "
        "e.g. anatomix fit --config tiny --trainer.max_steps 5. "
        "Their options: anatomix fit --help."
    ),
    no_args_is_help=True,
    add_completion=True,  # `anatomix --install-completion` (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)
bank_app = typer.Typer(help="Inspect shape banks.", no_args_is_help=True)
graph_app = typer.Typer(help="Learn, check and draw organ graphs.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")
app.add_typer(graph_app, name="graph")
appearance_app = typer.Typer(help="Learn appearance priors from real image + label pairs.", no_args_is_help=True)
app.add_typer(appearance_app, name="appearance")

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _version_callback(value: bool) -> None:
    if value:
        from anatomix import __version__

        typer.echo(f"anatomix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Synthetic, fully labelled 3D volumes with correct anatomy, for segmentation pre-training."""


def fail(message: str, code: int = 1) -> None:
    """Print an error in red on stderr and exit non-zero."""
    from rich.console import Console

    # messages hold paths and values: "[...]" in them is text, not rich markup
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _interrupted(e: KeyboardInterrupt, default: str) -> None:
    """Ctrl-C: say what was kept / how to resume and exit 130 (no traceback)."""
    from anatomix.errors import Interrupted

    fail(e.message if isinstance(e, Interrupted) else default, code=130)


# ---- ingest-masks / bank (shape bank) ------------------------------------------------------


@app.command("ingest-masks")
def ingest_masks_command(
    inputs: list[str] = typer.Argument(..., help="Label maps (.nii, .nii.gz, .nrrd, .seg.nrrd, "
                                       ".mha, .mhd), folders of them, or per-structure mask folders."),
    out: str = typer.Option(..., "--out", help="Bank folder to create."),
    labels: str = typer.Option("auto", "--labels", help="auto (names embedded in the files), a "
                               "preset (btcv, amos, flare22, word, totalsegmentator) or a JSON/YAML "
                               "file mapping label value (or embedded name) to organ name."),
    spacing: float = typer.Option(1.5, "--spacing", help="Isotropic bank spacing (mm)."),
    organs: str | None = typer.Option(None, "--organs", help="Comma-separated organs to keep; "
                                      "other labels are ignored."),
    truncated: str = typer.Option("keep", "--truncated", help="Shapes cut by the field of view: "
                                  "keep (flagged), drop, or prefer-complete (drop when another "
                                  "subject has a complete one)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bank."),
    strict: bool = typer.Option(False, "--strict", help="Turn warnings (truncated, tiny, "
                                "fragmented, wrong side) into errors."),
) -> None:
    """Build a de-identified, label-only shape bank from real label maps."""
    import warnings

    from rich.console import Console

    from anatomix.bank import BankWarning, ingest_masks
    from anatomix.errors import AnatomixError

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    organ_list = [o.strip() for o in organs.split(",") if o.strip()] if organs else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BankWarning)
        try:
            manifest = ingest_masks(inputs, out, labels=labels, spacing_mm=spacing,
                                    overwrite=overwrite, strict=strict, organs=organ_list,
                                    truncated=truncated,  # type: ignore[arg-type]
                                    progress=sys.stderr.isatty())
        except AnatomixError as e:
            fail(str(e))
            return
        except KeyboardInterrupt as e:
            _interrupted(e, f"interrupted: nothing was written ({out} is as it was); run the "
                            "command again to build the bank")
            return
        except OSError as e:
            fail(os_error_message(e))
            return
    for w in caught:
        if issubclass(w.category, BankWarning):
            err.print(f"[yellow]warning:[/] {escape(str(w.message))}")
    Console(highlight=False, markup=False).print(
        f"wrote {out}: {len(manifest.subjects)} subject(s), "
        f"{len({r.organ for r in manifest.shapes})} organ(s), {len(manifest.shapes)} shape(s), "
        f"{sum(r.truncated for r in manifest.shapes)} truncated")


@bank_app.command("info")
def bank_info_command(
    path: str = typer.Argument(..., help="Bank folder (`default` for the embedded bank)."),
    verify: bool = typer.Option(False, "--verify", help="Check every file against its hash."),
) -> None:
    """Print a bank's summary: organs x subjects with volumes (ml) and flags."""
    from rich.console import Console

    from anatomix.bank import ShapeBank, bank_table, default_bank_path
    from anatomix.errors import AnatomixError

    try:
        from anatomix.resources import resolve

        bank = ShapeBank.load(default_bank_path() if path == "default" else resolve("bank", path), verify=verify)
    except AnatomixError as e:
        fail(str(e))
        return
    Console().print(bank_table(bank))
    if verify:  # a failed check has ended above, with the file and what differs
        n = len(bank.manifest.shapes)
        typer.echo(f"verified: the manifest's content hash and every file's SHA-256 match, and all {n} "
                   "shape mask(s) decode and are non-empty")


# ---- graph (organ graph) --------------------------------------------------------------------


def _graph_load_bank(path: str | None):  # type: ignore[no-untyped-def]
    """A ShapeBank from a folder (`default` or no value with default=True: the embedded one)."""
    from anatomix.bank import ShapeBank, default_bank_path

    from anatomix.resources import resolve

    if path is None:
        return None
    return ShapeBank.load(default_bank_path() if path == "default" else resolve("bank", path))


@graph_app.command("learn")
def graph_learn_command(
    bank: str = typer.Option(..., "--bank", help="Shape bank folder (`default` for the embedded bank)."),
    out: str = typer.Option(..., "--out", help="Graph YAML file to write."),
    organs: list[str] | None = typer.Option(None, "--organs", help="Organs to include (repeat the option "
                                            "or give a comma-separated list); default: every organ of the bank."),
    name: str = typer.Option("learned", "--name", help="Graph name written into the file."),
    anatomical_parents: bool = typer.Option(
        True, "--anatomical-parents/--nearest-parents",
        help="Placement parents from anatomy where known (adrenal -> kidney, pancreas -> duodenum, aorta a "
             "root, ...; anatomix.graph.learn.ANATOMICAL_PARENTS), else the nearest larger organ in contact; "
             "--nearest-parents: always the nearest larger organ in contact."),
    groove_radius_mm: float = typer.Option(
        15.0, "--groove-radius", min=0.0, max=100.0,
        help="Closing radius (mm) that finds an organ lying in a groove of its contact partner (the IVC "
             "in the liver's): such a contact may overlap a partner of another subject by that share."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Learn anchors, size ranges, contacts, directions and parents from a shape bank."""
    from pathlib import Path

    from rich.console import Console

    from anatomix.errors import AnatomixError
    from anatomix.graph import learn_graph

    if Path(out).exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite to replace it")
    organ_list = [o.strip() for item in (organs or []) for o in item.split(",") if o.strip()] or None
    try:
        b = _graph_load_bank(bank)
        graph = learn_graph(b, organ_list, name=name, anatomical_parents=anatomical_parents,
                            groove_radius_mm=groove_radius_mm)
        graph.save(out, header=f"Learned by `anatomix graph learn --bank {bank}`; "
                               "curate by hand and say why in comments.")
    except AnatomixError as e:
        fail(str(e))
        return
    n_rel = len(graph.relations(implicit=False))
    Console(highlight=False, markup=False).print(f"wrote {out}: {len(graph)} organs, {n_rel} relations")


@graph_app.command("check")
def graph_check_command(
    graph: str = typer.Option(..., "--graph", help="Graph YAML file."),
    bank: str | None = typer.Option(None, "--bank", help="Also measure the relations on this bank's "
                                    "subjects (`default` for the embedded bank)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every measurement."),
) -> None:
    """Validate a graph file; with --bank, report organs without shapes and violated relations."""
    from rich.console import Console

    from anatomix.errors import AnatomixError
    from anatomix.graph import OrganGraph, check_graph

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        from anatomix.resources import resolve

        g = OrganGraph.load(resolve("graph", graph))
        rep = check_graph(g, _graph_load_bank(bank))
    except AnatomixError as e:
        fail(str(e))
        return
    if verbose:
        for m in rep.measured:
            mark = "ok " if m["holds"] else "NO "
            out.print(escape(f"{mark} {m['subject']}: {m['relation']}: {m['value']:.3g}"))
    for w in rep.warnings:
        err.print(f"[yellow]warning:[/] {escape(str(w))}")
    if not rep.ok:
        fail(f"{rep.summary}\n" + "\n".join(f"  - {p}" for p in rep.problems))
    out.print(escape(rep.summary))


@graph_app.command("show")
def graph_show_command(
    graph: str = typer.Option(..., "--graph", help="Graph YAML file."),
    out: str = typer.Option("graph.png", "--out", help="PNG file to write."),
) -> None:
    """Draw the graph: organs at their anchors (coronal view), relations coloured by type."""
    from anatomix.errors import AnatomixError
    from anatomix.graph import OrganGraph, draw_graph

    try:
        from anatomix.resources import resolve

        path = draw_graph(OrganGraph.load(resolve("graph", graph)), out)
    except AnatomixError as e:
        fail(str(e))
        return
    typer.echo(f"wrote {path}")


# ---- synth / preview (synthesis) -------------------------------------------------------------


@app.command("synth")
def synth_command(
    config: str = typer.Option(None, "--config", help="Synthesis YAML (mode: fdif | anatomy)."),
    n: int = typer.Option(..., "-n", "--n", help="Number of cases (indices 0..n-1)."),
    out: str = typer.Option(..., "--out", help="Output folder (nnU-Net v2 raw layout)."),
    seed: int = typer.Option(0, "--seed", help="Run seed; case i of seed s is always the same."),
    workers: int = typer.Option(1, "--workers", help="Worker processes."),
    shard: str = typer.Option("0/1", "--shard", help="Write only cases with index % n == k (k/n)."),
    device: str = typer.Option("cpu", "--device", help="torch device for generation."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    graph: str = typer.Option(None, "--graph", help="Organ graph YAML: structure-aware synthesis (mode anatomy)."),
    bank: str = typer.Option(None, "--bank", help="Shape bank folder (with --graph; default: the embedded bank)."),
    fov: str = typer.Option(None, "--fov", help="With --graph: whole (whole abdomen) or window (fixed grid)."),
    strict: bool = typer.Option(False, "--strict", help="With --graph: fail when the bank lacks a graph organ "
                                                        "(default: warn once and leave it out)."),
    allow_violations: bool = typer.Option(
        False, "--allow-violations", help="With --graph: exit 0 even when a case misses a required organ or "
        "breaks a hard constraint (such cases are flagged in their records either way)."),
) -> None:
    """Write n synthetic cases: imagesTr/, labelsTr/, dataset.json, datalist.json, records/."""
    from anatomix.errors import AnatomixError
    from anatomix.synth import build_generator, write_dataset

    if config is None and graph is None:
        fail("give --graph NAME|FILE (e.g. abdomen) or --config NAME|FILE (e.g. fdif); "
             "`anatomix resources` lists the shipped ones")
    if not 0 <= n <= MAX_CASES:
        fail(f"-n: expected 0 to {MAX_CASES:,} cases, found {n:,}; " + (
            "write larger sets in several output folders (--shard k/n)" if n > 0 else "give a case count"))
    bad_out = check_output_path(out, "--out", folder=True)
    if bad_out:
        fail(bad_out)
    from pathlib import Path

    out_existed = Path(out).exists()
    try:
        if graph is None and (bank is not None or fov is not None or strict):
            fail("--bank, --fov and --strict go with --graph (structure-aware synthesis)")
        from anatomix.api import synth_config

        cfg = synth_config(graph=graph, config=config, bank=bank, fov=fov, strict=strict or None)
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generator = build_generator(cfg, seed=seed, device=device)
        from anatomix.anatomy import GraphBankWarning

        for w in caught:  # a graph and bank that do not fit: one warning before generation starts
            if issubclass(w.category, GraphBankWarning):
                typer.echo(f"warning: {w.message}", err=True)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        summary = write_dataset(generator, out, n=n, seed=seed, workers=workers, shard=shard,
                                progress=progress)
    except AnatomixError as exc:
        remove_empty_run(out, out_existed)
        fail(str(exc))
        return
    except KeyboardInterrupt as exc:  # before the cases (loading the graph and bank)
        remove_empty_run(out, out_existed)
        _interrupted(exc, f"interrupted; finished cases in {out} are kept; run the same command again to resume"
                     if Path(out).exists() else "interrupted before the first case was written; run the command again")
        return
    except OSError as exc:
        remove_empty_run(out, out_existed)
        fail(os_error_message(exc))
        return
    from rich.console import Console

    Console(markup=False).print(f"wrote {summary['written']} case(s), kept {summary['skipped']} finished, "
                    f"{summary['total_done']} in {summary['out_dir']} ({summary['seconds']:.1f} s)")
    if graph is not None:
        from anatomix.anatomy import format_summary

        Console().print(format_summary(summary.get("generator_summary") or {}), highlight=False)
        bad = violating_cases(summary["out_dir"], n)
        if bad and not allow_violations:
            shown = "; ".join(f"{case}: {why}" for case, why in bad[:10]) + (" ..." if len(bad) > 10 else "")
            fail(f"{len(bad)} case(s) miss a required organ or break a hard constraint ({shown}); they are "
                 "written and flagged in their records (constraints.hard_ok false / constraints.failed). "
                 "Fix the graph or the bank (`anatomix graph check --graph G --bank B`), or pass "
                 "--allow-violations to accept such cases")


@app.command("replay")
def replay_command(
    record: str = typer.Argument(..., help="A case record: <synth out>/records/<case>.json."),
    out: str = typer.Option(..., "--out", help="Folder for <case>_0000.nii.gz and <case>.nii.gz."),
    bank: str = typer.Option(None, "--bank",
                             help="Shape bank of the run (default: the record's, else the embedded one)."),
) -> None:
    """Rebuild one case from its record, byte for byte (the bank must be the pinned one)."""
    from anatomix.errors import AnatomixError
    from anatomix.replay import replay_to_folder

    try:
        paths = replay_to_folder(record, out, bank=bank)
    except AnatomixError as exc:
        fail(str(exc))
        return
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@app.command("preview")
def preview_command(
    folder: str = typer.Argument(..., help="Output folder of `anatomix synth`."),
    out: str = typer.Option("preview.png", "--out", help="Montage PNG to write."),
    cases: int = typer.Option(4, "--cases", help="Number of cases (rows) in the montage."),
    mesh: str = typer.Option(None, "--mesh", help="Also export the first case's organs as a mesh (.glb/.ply/.obj)."),
) -> None:
    """Montage of a few cases (axial/coronal/sagittal, labels overlaid); optional 3D mesh."""
    from anatomix.errors import AnatomixError
    from anatomix.preview import preview_dataset

    try:
        path = preview_dataset(folder, out, cases=cases, mesh=mesh)
    except AnatomixError as exc:
        fail(str(exc))
        return
    from rich.console import Console

    Console(markup=False).print(f"wrote {path}" + (f" and {mesh}" if mesh else ""))

# ---- resources (what ships with the package) ------------------------------------------------


@app.command("resources")
def resources_command() -> None:
    """List the graphs, shape banks and configs that ship with anatomix (usable by name)."""
    from anatomix.resources import listing, resource_root

    typer.echo(f"shipped with anatomix ({resource_root()}); use the name wherever a path is asked:")
    use = {"graph": "--graph", "bank": "--bank", "config": "--config"}
    for kind, name, path in listing():
        typer.echo(f"  {kind:<7} {name:<14} {use[kind] + ' ' + name:<24} {path}")
    ct = resource_root() / "tests" / "fixtures" / "totalsegmentator" / "example_ct.nii.gz"
    if ct.is_file():  # the tiny demo's predict input (configs/tiny_finetune.yaml fine-tunes on it)
        typer.echo(f"  example CT (TotalSegmentator excerpt, Apache-2.0; a path, not a name): {ct}")


# ---- evaluate (anatomical realism) ----------------------------------------------------------


@app.command("evaluate")
def evaluate_command(
    real: list[str] = typer.Option(..., "--real", help="Real label maps: files and/or folders (repeatable)."),
    synthetic: list[str] = typer.Option(
        ..., "--synthetic", help="An `anatomix synth` output folder, or label map files/folders (repeatable)."),
    out: str = typer.Option(..., "--out", help="Report (JSON)."),
    real_labels: str | None = typer.Option(
        None, "--real-labels", help="Label preset (btcv, amos, flare22, word, totalsegmentator) or a "
        "JSON/YAML file value->organ; default: names embedded in the files."),
    synthetic_labels: str | None = typer.Option(
        None, "--synthetic-labels", help="Label file for the synthetic maps; default: the folder's dataset.json."),
    plot: str | None = typer.Option(None, "--plot", help="Figure (PNG) side by side with the real baseline."),
    spacing_mm: float = typer.Option(2.0, "--spacing-mm", help="Isotropic evaluation grid spacing (mm)."),
    tolerance_mm: float | None = typer.Option(
        None, "--contact-tolerance-mm", help="Largest surface gap counted as contact; default one grid voxel."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report / figure."),
    pairs: int = typer.Option(
        15, "--pairs", help="Organ pairs printed in the per-pair table, worst first (0: all; the report "
        "holds every pair)."),
) -> None:
    """Measure the anatomical realism of synthetic label maps against real ones."""
    from pathlib import Path

    from anatomix.errors import AnatomixError

    if spacing_mm <= 0 or (tolerance_mm is not None and tolerance_mm < 0):
        fail(f"--spacing-mm must be > 0 and --contact-tolerance-mm >= 0; found {spacing_mm} and {tolerance_mm}")
    for path, option in ((out, "--out"), (plot, "--plot")):  # before the computation, not after
        bad = check_output_path(path, option, folder=False) if path else None
        if bad:
            fail(bad)
        if path and not overwrite and Path(path).exists():
            fail(f"{option} {path}: expected a new file, found it exists; pass --overwrite to replace it")
    from rich.console import Console

    import warnings

    from anatomix.evaluate import EvaluationWarning, Settings, evaluate

    console = Console(stderr=True)
    syn: str | list[str] = synthetic[0] if len(synthetic) == 1 else list(synthetic)
    try:
        settings = Settings(eval_spacing_mm=spacing_mm, contact_tolerance_mm=tolerance_mm)
        with console.status("reading label maps") as status, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EvaluationWarning)
            report = evaluate(real, syn, real_labels=real_labels, synthetic_labels=synthetic_labels,
                              out=out, plot=plot, settings=settings,
                              progress=lambda name: status.update(f"reading {name}"))
        for w in caught:
            if issubclass(w.category, EvaluationWarning):
                console.print(f"[yellow]warning:[/] {escape(str(w.message))}")
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    except AnatomixError as exc:
        fail(str(exc))
        return
    except KeyboardInterrupt as exc:
        _interrupted(exc, "interrupted: no report was written")
        return
    except OSError as exc:
        fail(os_error_message(exc))
        return
    s = report["summary"]

    def _f(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    from rich.table import Table

    table = Table(title=f"anatomical realism ({report['inputs']['synthetic']['n']} synthetic vs "
                        f"{report['inputs']['real']['n']} real)")
    table.add_column("score")
    table.add_column("synthetic", justify="right")
    table.add_column("real (leave-one-out)", justify="right")
    for key in ("mahalanobis_median", "contact_f1_median", "volume_abs_z_overall_median",
                "direction_errors_total", "cases_with_direction_errors", "impossible_overlaps_total"):
        if key in s:
            table.add_row(key, _f(s[key]["synthetic"]), _f(s[key]["real_loo"]))
    Console().print(table)
    rows = report["pair_table"] if pairs <= 0 else report["pair_table"][:pairs]
    if rows:
        pt = Table(title=f"organ pairs, worst first ({len(rows)} of {len(report['pair_table'])}): "
                         "offset Mahalanobis median and contact frequency")
        for col in ("pair", "offset syn", "offset real LOO", "contact syn", "contact real"):
            pt.add_column(col, justify="left" if col == "pair" else "right")
        for r in rows:
            pt.add_row(r["pair"], _f(r["offset_mahalanobis_synthetic"]), _f(r["offset_mahalanobis_real_loo"]),
                       _f(r["contact_rate_synthetic"]), _f(r["contact_rate_real"]))
        Console().print(pt)
    Console(markup=False).print(f"report: {out}" + (f", plot: {plot}" if plot else ""))


# ---- appearance (learned HU priors) ------------------------------------------------------------


@appearance_app.command("learn")
def appearance_learn_command(
    images: list[str] = typer.Option(..., "--images", help="Real images (repeat; any format io reads)."),
    labels: list[str] = typer.Option(..., "--labels", help="Their label maps, in the same order."),
    label_table: str = typer.Option("auto", "--label-table",
                                    help="Label names: auto (embedded), a preset, or a JSON/YAML file."),
    out: str = typer.Option(..., "--out", help="Prior JSON to write (e.g. prior.json)."),
) -> None:
    """Fit per-structure HU statistics (robust mean, spread, texture scale) from real CT."""
    import json

    from anatomix.errors import AnatomixError
    from anatomix.io import atomic_write_text
    from anatomix.prior import learn_prior

    try:
        prior = learn_prior(images, labels, label_table=label_table)
    except AnatomixError as e:
        fail(str(e))
        return
    atomic_write_text(out, json.dumps(prior, indent=1, sort_keys=True) + "\n")
    typer.echo(f"wrote {out}: {len(prior['structures'])} structure(s) from {prior['source_pairs']} pair(s)")


def _wide_when_piped() -> None:
    """Output to a pipe, a file or a CI log is drawn 160 columns wide (``COLUMNS``, which rich
    reads): at the 80 a non-terminal gets by default, rich cuts table cells and option names, so
    ``adrenal_gland_left`` and ``adrenal_gland_right`` both read ``adrenal_gla…``."""
    import os

    if "COLUMNS" not in os.environ and not sys.stdout.isatty() and not sys.stderr.isatty():
        os.environ["COLUMNS"] = "160"  # (with a terminal on either stream, rich sizes to it)


def main() -> None:
    """Console-script entry point."""
    _wide_when_piped()
    if len(sys.argv) > 1 and sys.argv[1] in LIGHTNING_COMMANDS:
        from anatomix.train.cli import lightning_main

        lightning_main()  # reads sys.argv, as the console script it is
        return
    app()


if __name__ == "__main__":
    main()
