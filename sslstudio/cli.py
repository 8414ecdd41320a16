"""The command line: the same engine as the app, driven from a terminal or a cluster job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sslstudio.core.events import AdaptFinished, ExportFinished
from sslstudio.core.run.folder import RunFolder
from sslstudio.cli_common import ProgressPrinter, UsageError  # noqa: F401 - the CLI's names
from sslstudio.cli_train import cmd_train, default_objective_for  # noqa: F401 - the CLI's names

# Each command imports the engine when it runs, not at the top: torch, timm and onnxruntime take
# about 2.8 s to import here (measured), which `sslstudio --help`, `sslstudio objectives` and the
# app's first window (which must show before torch loads) should not wait for.

EXIT_USAGE = 2
EXIT_CRASH = 70  # EX_SOFTWARE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sslstudio",
        description="Self-supervised pretraining on a folder of your own images.")
    from sslstudio import __version__

    parser.add_argument("--version", action="version", version=f"sslstudio {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="pretrain an encoder on a folder")
    train.add_argument("--data", help="image or text folder (searched recursively)")
    train.add_argument("--objective", help="self-supervised method; see `sslstudio objectives`")
    train.add_argument("--out", help="run folder to create (or to resume with --resume)")
    train.add_argument("--project", metavar="PROJECT",
                       help="an SSL Studio project folder (made if missing): the run goes into its "
                            "runs/ unless --out says otherwise, --data defaults to its data folder, "
                            "and the folder's scan is shared with the app and the project's other runs")
    train.add_argument("--device", help="auto, cpu, cuda:N or mps (default auto)")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="passes over the data")
    budget.add_argument("--minutes", type=float, help="wall-clock budget in minutes (default on a CPU 5, 10 to distil images; on a GPU 30)")
    train.add_argument("--batch-size", type=int, help="items per step (default: up to 256, sized by timed steps to the memory and the time budget)")
    train.add_argument("--backbone", help="small_cnn, resnet18, resnet50, vit_tiny (default auto)")
    train.add_argument("--weights", help="start from these weights: a .safetensors/.pth file, or a "
                       "Hugging Face text model folder (e.g. all-MiniLM-L6-v2)")
    train.add_argument("--teacher", help="distil from this encoder (implies --objective distill): "
                       "a finished run's folder, a BERT model folder, a pretrained backbone's name "
                       "(pretrained_efficientnet_lite0) or its weights file; the student is "
                       "--backbone (default: the modality's small one)")
    train.add_argument("--image-size", type=int, help="training resolution in px (default: from data)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any knob of the objective or the run, e.g. --set temperature=0.1")
    train.add_argument("--labels-from-folders", action="store_true", default=None,
                       help="use first-level subfolder names as labels (kNN monitor only)")
    train.add_argument("--labels", metavar="LABELS.csv",
                       help="a few labels (path,label rows): the monitor's probe judges by them "
                            "and the run keeps the encoder that scored best")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                       help="continue a stopped run (RUN, or the --out folder)")
    train.add_argument("--other-data", action="store_true",
                       help="with --resume: continue on a --data folder other than the one the "
                            "run was trained on (refused without it)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    embed = commands.add_parser("embed", help="features of every image in a folder")
    embed.add_argument("run", help="a run folder made by `sslstudio train`")
    embed.add_argument("--data", required=True, help="image folder")
    embed.add_argument("--out", required=True, help="FEATS.npy; FEATS.paths.txt goes beside it")
    embed.add_argument("--device", default="auto")
    embed.add_argument("--batch-size", type=int, default=256)
    embed.add_argument("--overwrite", action="store_true", help="replace FEATS.npy/.paths.txt if they exist")
    embed.add_argument("--other-data", action="store_true",
                       help="embed a folder other than the one the run was trained on (refused "
                            "without it)")

    adapt = commands.add_parser("adapt", help="train a classifier from a few labels on a run's encoder")
    adapt.add_argument("run", help="a run folder made by `sslstudio train`")
    adapt.add_argument("--data", required=True, help="image folder the labels refer to")
    adapt.add_argument("--labels", required=True, metavar="LABELS.csv",
                       help="path,label rows; paths absolute or relative to --data")
    adapt.add_argument("--method", default="linear",
                       help="linear, finetune, lora, adapter, prefix, prompt, ia3 or setfit (default linear); "
                            "`sslstudio methods --run RUN` says which fit the run's backbone")
    adapt.add_argument("--out", help="adapted model folder (default RUN/adapted/TIME-METHOD)")
    adapt.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a knob of the method, e.g. --set rank=4; see `sslstudio methods`")
    adapt.add_argument("--device", default="auto")
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--overwrite", action="store_true",
                       help="replace the adapted model already at --out (never any other folder)")

    predict = commands.add_parser("predict", help="classify every image of a folder")
    predict.add_argument("adapted", help="an adapted model folder made by `sslstudio adapt`")
    predict.add_argument("--data", required=True, help="image folder")
    predict.add_argument("--out", required=True, metavar="PREDICTIONS.csv",
                         help="path,label,confidence per image")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    zeroshot = commands.add_parser(
        "zeroshot", help="label every item with no labels at all: the class whose description is "
                         "nearest, by a model that reads items and texts (CLIP, a sentence encoder)")
    zeroshot.add_argument("model", metavar="RUN_OR_MODEL",
                          help="a CLIP folder (images), a sentence-encoder folder such as "
                               "all-MiniLM-L6-v2 or a text run (texts)")
    zeroshot.add_argument("--data", required=True, help="the folder of items to label")
    zeroshot.add_argument("--classes", required=True, nargs="+", metavar="CLASS",
                          help='class names, or NAME="one-line description" '
                               '(e.g. fresh="a positive review" rotten="a negative review")')
    zeroshot.add_argument("--template", help='how a bare name becomes a description, "{}" for the '
                          'name (default: "a photo of a {}." for images, the name for texts)')
    zeroshot.add_argument("--out", required=True, metavar="LABELS.csv", help="path,label,confidence per item")
    zeroshot.add_argument("--device", default="auto")
    zeroshot.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    export = commands.add_parser("export", help="export a run's encoder or an adapted classifier "
                                 "to ONNX, verified with onnxruntime")
    export.add_argument("source", help="a run folder or an adapted model folder")
    export.add_argument("--out", required=True, metavar="MODEL.onnx",
                        help="the ONNX file; MODEL.json is written beside it")
    export.add_argument("--encoder", action="store_true",
                        help="for an adapted model: export its encoder (embeddings), not the classifier")
    export.add_argument("--quantize", choices=["int8"], help="also write MODEL.int8.onnx (dynamic int8)")
    export.add_argument("--data", help="folder of items to check the export on "
                        "(default: the folder the model was trained on)")
    export.add_argument("--overwrite", action="store_true", help="replace existing files of that name")

    gui = commands.add_parser("gui", help="open the desktop app (the default with no command)")
    gui.add_argument("project", nargs="?", help="a project folder to open")
    gui.add_argument("--sample", action="store_true", help="open the bundled sample dataset")

    commands.add_parser("objectives", help="list the objectives and their knobs")
    weights = commands.add_parser("weights", help="pretrained encoders: which weights are on disk, "
                                  "and downloading them (only when asked)")
    weights.add_argument("action", nargs="?", choices=["list", "download"], default="list")
    weights.add_argument("name", nargs="?", help="a pretrained backbone, e.g. pretrained_efficientnet_lite0, "
                         "text (all-MiniLM-L6-v2, the sentence encoder for text runs and zero-shot labels of "
                         "texts), or clip (the image-text model zero-shot labels images with)")
    weights.add_argument("--yes", action="store_true", help="download without asking")

    methods = commands.add_parser("methods", help="list the adaptation methods and their knobs")
    methods.add_argument("--run", help="say which methods fit this run's backbone")
    commands.add_parser("devices", help="list the devices training can use")
    selftest = commands.add_parser("selftest", help="check this installation: the window, then "
                                   "train, label, probe, export and parity on the bundled sample")
    selftest.add_argument("--keep", metavar="DIR", help="keep what the test makes in DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--self-test"]:  # the bundle's spelling, as desktop apps have it
        argv = ["selftest", *argv[1:]]
    args = parser.parse_args(argv)
    if args.command in (None, "gui"):
        return cmd_gui(getattr(args, "project", None), getattr(args, "sample", False))
    from sslstudio.core.backbones import WeightsError
    from sslstudio.core.run.checkpoint import CheckpointError
    from sslstudio.core.config import ConfigError
    from sslstudio.core.data import DataError
    from sslstudio.core.devices import DeviceError
    from sslstudio.core.labels import LabelError
    from sslstudio.core.outputs import OutputError
    from sslstudio.core.registry import UnknownName

    # Only `export` raises ExportError; its module loads onnx and onnxruntime (0.13 s), which
    # the other commands would pay before their first step.
    export_errors: tuple[type[Exception], ...] = ()
    if args.command == "export":
        from sslstudio.core.export import ExportError

        export_errors = (ExportError,)
    from sslstudio.core import locks

    locks.holder_name = f"sslstudio {args.command}"  # what a second writer is told
    handlers = {"train": cmd_train, "embed": cmd_embed, "objectives": cmd_objectives,
                "devices": cmd_devices, "adapt": cmd_adapt, "predict": cmd_predict,
                "methods": cmd_methods, "export": cmd_export, "weights": cmd_weights,
                "zeroshot": cmd_zeroshot, "selftest": cmd_selftest}
    try:
        return handlers[args.command](args)
    except BrokenPipeError:  # output piped into `head` and closed early
        return 0
    except (UsageError, ConfigError, DataError, DeviceError, UnknownName, WeightsError,
            LabelError, OutputError, CheckpointError, *export_errors) as error:
        print(f"sslstudio: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        print(f"sslstudio: error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sslstudio: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - a bug: one line for the user, the details in a file
        return report_crash(args.command)


def report_crash(command: str) -> int:
    """An unexpected error: the traceback goes to a file (or to stderr with SSLSTUDIO_DEBUG=1),
    the user gets one line that says where."""
    import tempfile
    import traceback

    details = traceback.format_exc()
    if os.environ.get("SSLSTUDIO_DEBUG"):
        print(details, file=sys.stderr)
        return EXIT_CRASH
    fd, path = tempfile.mkstemp(prefix="sslstudio-crash-", suffix=".txt")
    with os.fdopen(fd, "w", errors="backslashreplace") as handle:
        handle.write(f"sslstudio {command}\n{details}")
    last = details.strip().splitlines()[-1]
    print(f"sslstudio: internal error in {command}: {last}; details in {path} (please report it)",
          file=sys.stderr)
    return EXIT_CRASH


def no_display_reason() -> str:
    """Why no window can open here, or "". Qt itself aborts the process (SIGABRT, a screen of
    its text) when it finds no display, so this is asked first."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return ""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return ""
    return ("no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set): run it "
            "on a desktop or over `ssh -X`, or use the commands that need none (`sslstudio --help`)")


def cmd_gui(project: str | None, sample: bool = False) -> int:
    reason = no_display_reason()
    if reason:
        print(f"sslstudio: error: {reason}", file=sys.stderr)
        return EXIT_USAGE
    try:
        from sslstudio.gui.app import run
    except ImportError as error:
        print(f"sslstudio: error: the desktop app needs PySide6 and pyqtgraph ({error}); "
              "`sslstudio --help` lists the commands that work without them", file=sys.stderr)
        return EXIT_USAGE
    return run(project, sample)


def cmd_objectives(args) -> int:
    from sslstudio.core.config import describe_knob, knobs
    from sslstudio.core.objectives import OBJECTIVES
    from sslstudio.core.preprocess import PREPROCESSES

    kinds = [PREPROCESSES.get(m) for m in PREPROCESSES.names()]
    for name in OBJECTIVES.names():
        cls = OBJECTIVES.get(name)
        default = "".join(f"  (default for {kind.item_noun})" for kind in kinds
                          if kind.default_objective == name)
        print(f"{name}{default}: {cls.summary}")
        for field in knobs(cls.config_cls):
            print(f"    {describe_knob(field)}")
    return 0


def cmd_devices(args) -> int:
    from sslstudio.core.devices import list_devices, resolve_device

    best = str(resolve_device("auto"))
    for device in list_devices():
        memory = f", {device.memory_bytes / 2**30:.1f} GiB" if device.memory_bytes else ""
        marker = "  <- auto" if device.name == best else ""
        print(f"{device.name:8s} {device.description}{memory}{marker}")
    return 0


def _named(path: str, flag: str = "--out") -> Path:
    if not path.strip():
        raise UsageError(f"{flag} is empty: give a file name")
    return Path(path)


def cmd_embed(args) -> int:
    from sslstudio.core.embed import embed_folder

    printer = ProgressPrinter(enabled=True)
    for event in embed_folder(Path(args.run), Path(args.data), _named(args.out), args.device,
                              args.batch_size, overwrite=args.overwrite,
                              other_data=args.other_data):
        printer.show(event)
    return 0


def cmd_methods(args) -> int:
    from sslstudio.core.adapt import ADAPTERS
    from sslstudio.core.config import describe_knob, knobs

    unfit, backbone = {}, ""
    if args.run:
        from sslstudio.core.adapt.job import unfit_methods_for_run
        from sslstudio.core.run.folder import RunFolder

        folder = RunFolder(Path(args.run))
        if not folder.is_run():
            raise UsageError(f"{args.run} is not a run folder (it has no {RunFolder.CONFIG})")
        backbone = folder.train_settings().backbone
        unfit = unfit_methods_for_run(folder.path)
    for name in ADAPTERS.names():
        adapter = ADAPTERS.get(name)
        if name in unfit:
            print(f"{name}: does not apply to {backbone}: {unfit[name]}")
            continue
        print(f"{name}: {(adapter.__doc__ or '').strip().splitlines()[0]}")
        for field in knobs(adapter.config_cls):
            print(f"    {describe_knob(field)}")
    return 0


def read_labels_csv(csv_path: Path, data_dir: Path) -> dict[str, str]:
    from sslstudio.core.labels import parse_label_csv

    if not csv_path.is_file():
        raise UsageError(f"labels file not found: {csv_path}")
    data_root = data_dir.resolve()
    parsed = parse_label_csv(csv_path, data_root)
    if parsed.unknown:
        print(f"warning: {len(parsed.unknown)} labelled paths are outside {data_root} and are "
              f"ignored (first: {parsed.unknown[0]})", file=sys.stderr)
    if parsed.bad:
        print(f"warning: {len(parsed.bad)} rows of {csv_path} are not path,label and are ignored "
              f"(first: {parsed.bad[0]})", file=sys.stderr)
    if parsed.conflicts:
        print(f"warning: {len(parsed.conflicts)} files are labelled twice with different classes "
              f"and are left out (first: {parsed.conflicts[0]})", file=sys.stderr)
    if not parsed.labels:
        raise UsageError(f"{csv_path} holds no usable path,label rows for files in {data_root}")
    return parsed.labels


def cmd_adapt(args) -> int:
    from sslstudio.core.adapt.job import AdaptRequest, adapt, check_adapted_out, method_config
    from sslstudio.core.config import parse_set_options

    run, data = Path(args.run), Path(args.data)
    if not RunFolder(run).is_run():
        raise UsageError(f"{run} is not a run folder (no {RunFolder.CONFIG}); make one with "
                         "`sslstudio train`")
    if not data.is_dir():
        raise UsageError(f"data folder not found: {data}")
    overrides = parse_set_options(args.set)
    method_config(args.method, overrides)  # a bad method or knob fails before any work
    request = AdaptRequest(run, data, {}, args.method, overrides,
                           out_dir=Path(args.out) if args.out else None, device=args.device,
                           seed=args.seed, overwrite=args.overwrite)
    check_adapted_out(request)  # before the labels and the folder are read
    request.labels = read_labels_csv(Path(args.labels), data)
    printer = ProgressPrinter(enabled=True)
    finished = None
    for event in adapt(request):
        printer.show(event)
        if isinstance(event, AdaptFinished):
            finished = event
    return 0 if finished is not None and finished.status == "completed" else 1


def cmd_predict(args) -> int:
    from sslstudio.core.adapt.job import predict_folder

    if not Path(args.data).is_dir():
        raise UsageError(f"data folder not found: {args.data}")
    printer = ProgressPrinter(enabled=True)
    for event in predict_folder(Path(args.adapted), Path(args.data), _named(args.out), args.device,
                                overwrite=args.overwrite):
        printer.show(event)
    return 0


def cmd_zeroshot(args) -> int:
    from sslstudio.core.zeroshot import ZeroShotRequest, zero_shot

    if not Path(args.data).is_dir():
        raise UsageError(f"data folder not found: {args.data}")
    if not Path(args.model).exists():
        raise UsageError(f"model folder not found: {args.model}")
    printer = ProgressPrinter(enabled=True)
    finished = None
    for event in zero_shot(ZeroShotRequest(Path(args.model), Path(args.data), list(args.classes),
                                           args.template, _named(args.out), args.device, args.overwrite)):
        printer.show(event)
        finished = event
    return 0 if finished is not None and getattr(finished, "status", "") == "completed" else 1


def cmd_selftest(args) -> int:
    from sslstudio.selftest import run_self_test

    return run_self_test(Path(args.keep) if args.keep else None)


def cmd_weights(args) -> int:
    from sslstudio.core.backbones.pretrained import (
        PRETRAINED,
        TEXT_ENCODER_DOWNLOAD,
        cached_text_encoder,
        cached_text_models,
        cached_weights,
        download_text_encoder,
        download_weights,
    )
    from sslstudio.core.zeroshot.clip import CLIP_DOWNLOAD, cached_clip_folder, download_clip

    if args.action == "list":
        for name, (description, info) in PRETRAINED.items():
            found = cached_weights(name)
            where = f"on disk: {found}" if found else "not on disk (pick a file, or download)"
            print(f"{name}: {description}\n    {info.source}, licence {info.licence}; {where}")
        text = cached_text_encoder()
        print(f"text: {TEXT_ENCODER_DOWNLOAD['repo']}, the sentence encoder text runs and zero-shot labels "
              f"of texts start from ({TEXT_ENCODER_DOWNLOAD['size']}, licence {TEXT_ENCODER_DOWNLOAD['licence']}); "
              + (f"on disk: {text}" if text else "not on disk (`sslstudio weights download text`)"))
        others = [folder for folder in cached_text_models() if folder != text]
        if others:
            print("    other BERT-family folders in your Hugging Face cache (pass one as --weights):")
            for folder in others:
                print(f"    {folder}")
        clip = cached_clip_folder()
        print(f"clip: {CLIP_DOWNLOAD['repo']} for zero-shot labels of images ({CLIP_DOWNLOAD['size']}, "
              f"licence {CLIP_DOWNLOAD['licence']}); "
              + (f"on disk: {clip}" if clip else "not on disk (`sslstudio weights download clip`)"))
        return 0
    if args.name == "clip":
        fetch, what, then = download_clip, f"{CLIP_DOWNLOAD['repo']} ({CLIP_DOWNLOAD['size']}, licence " \
            f"{CLIP_DOWNLOAD['licence']})", "use it with: sslstudio zeroshot {} --data IMAGES --classes ..."
    elif args.name == "text":
        fetch, what, then = download_text_encoder, f"{TEXT_ENCODER_DOWNLOAD['repo']} " \
            f"({TEXT_ENCODER_DOWNLOAD['size']}, licence {TEXT_ENCODER_DOWNLOAD['licence']})", \
            "train from it with: sslstudio train --data TEXTS --weights {}"
    elif args.name in PRETRAINED:
        info = PRETRAINED[args.name][1]
        fetch, what, then = (lambda: download_weights(args.name)), \
            f"{info.hf_hub_id} (licence {info.licence})", "train from it with: sslstudio train --data " \
            f"IMAGES --backbone {args.name}"
    else:
        raise UsageError(f"download what? one of: {', '.join(PRETRAINED)}, text, clip")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("downloading needs your consent: add --yes")
        answer = input(f"Download {what} from huggingface.co into your Hugging Face cache? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing downloaded")
            return 1
    try:
        path = fetch()
    except OSError as error:
        raise UsageError(str(error)) from None
    print(f"downloaded: {path}\n{then.format(path)}")
    return 0


def cmd_export(args) -> int:
    from sslstudio.core.export import ExportRequest, export_model

    request = ExportRequest(Path(args.source), _named(args.out), args.encoder, args.quantize or "",
                            Path(args.data) if args.data else None, overwrite=args.overwrite)
    printer = ProgressPrinter(enabled=True)
    finished = None
    for event in export_model(request):
        printer.show(event)
        if isinstance(event, ExportFinished):
            finished = event
    return 0 if finished is not None and finished.status == "completed" else 1


